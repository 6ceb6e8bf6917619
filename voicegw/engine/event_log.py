"""The log listener: a call's typed events as structured log lines.

One engine listener beside the store and the control API (``Engine.listeners``). It
picks events by type from :data:`INFO` and logs each at info under its stable name
(``transfer.failed``, ``call.ended``) with the call's Call-ID and the event's fields.
The other events are not logged: the call's timeline, its record and the API have
them, and the signalling path stays short (a set look-up per event). Nothing here
decides anything: the engine's behaviour does not depend on what is logged.
"""

from __future__ import annotations

from typing import Any

import structlog

from .events import (
    CallDisposed,
    CallEnded,
    CallEvent,
    FlowDtmfReceived,
    LegEvent,
    SessionExpired,
    TransferEvent,
    TransferFailed,
    TransferProgress,
    TransferRefused,
    TransferStarted,
    TransferSucceeded,
)

log = structlog.get_logger("voicegw.engine")

#: Events an operator reads at the default level: a call's end and its disposition,
#: the transfers and their outcomes, the caller's keys while a flow runs.
INFO: frozenset[type[CallEvent]] = frozenset({
    CallEnded, CallDisposed, SessionExpired, TransferStarted, TransferProgress, TransferSucceeded, TransferFailed,
    TransferRefused, FlowDtmfReceived,
})


class EventLog:
    """An engine listener: one log line per event of :data:`INFO`. It remembers each transfer's method
    from its TransferStarted until its outcome, so the outcome's line names it too."""

    def __init__(self) -> None:
        self._methods: dict[str, str] = {}
        """Transfer id -> method, while the attempt is pending."""

    def __call__(self, call: Any, now: float, event: CallEvent) -> None:
        if type(event) in INFO:
            log.info(event.name, **self.fields(call, event))

    def fields(self, call: Any, event: CallEvent) -> dict[str, Any]:
        """The line's fields: the Call-ID, the leg's role or the transfer's method, then
        the event's own."""
        extra: dict[str, Any] = {"call_id": call.id}
        if isinstance(event, LegEvent):
            extra["leg"] = event.role
        elif isinstance(event, TransferStarted):
            self._methods[event.transfer_id] = event.method
        elif isinstance(event, (TransferSucceeded, TransferFailed)):
            method = self._methods.pop(event.transfer_id, None)
            if method is not None:
                extra["method"] = method
        elif isinstance(event, TransferEvent) and event.transfer_id in self._methods:
            extra["method"] = self._methods[event.transfer_id]
        return {**extra, **event.detail()}
