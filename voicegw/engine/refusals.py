"""Refused calls, counted and logged by cause: one place, whichever layer refused.

The UA core refuses statelessly (the guard's overload and call limits, its own
transaction limit) and reports a ``MessageRejected`` with a cause; the engine refuses
calls it has started (no RTP port, draining, the bot refused). Both end here, so the
``call.refused`` log line and ``voicegw_calls_refused_total{cause}`` count every
refusal once. The response itself is built by :func:`voicegw.sip.refusal.refusal_response`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import structlog

from ..sip.refusal import Cause

log = structlog.get_logger("voicegw.engine")


class Refusals:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter({cause.value: 0 for cause in Cause})
        """Refused INVITEs (new calls) by cause value; every cause present from the start,
        so the metric's series exist before the first refusal."""

    def note(self, cause: Cause | str, status: int | None, method: str = "INVITE", **fields: Any) -> None:
        """One refusal: counted when it refused a call (an INVITE), logged always.
        Info, not warning: under overload there is one line per refused call, and the
        guard's own ``guard.overloaded`` warning already marks the episode."""
        value = cause.value if isinstance(cause, Cause) else cause
        if method == "INVITE":
            self.counts[value] += 1
        log.info("call.refused", cause=value, status=status, method=method, **fields)


__all__ = ["Refusals"]
