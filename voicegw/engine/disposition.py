"""How a call ended, for containment: one small machine folded over its timeline.

How to read it. :func:`disposition` feeds a call's typed events
(:mod:`voicegw.engine.events`) to a machine of five states, by one table (h2's
``stream.py`` habit): an (state, input) pair not in ``TRANSITIONS`` leaves the state
as it is. The state the call is in when it ends names its disposition:

=====================  ===========================================================
state at the end       disposition
=====================  ===========================================================
SETUP                  ``failed``: never connected (set-up failed, refused, the
                       caller cancelled before the answer)
IN_BOT                 ``contained``: the bot or the flow had the caller to the end
TRANSFERRING           ``abandoned``: the call ended while a transfer was under way
                       (the agent rang; the caller hung up)
FAILED_BACK            ``transfer_failed_contained``: a transfer failed (or a bot's
                       REFER was refused), and the bot or the flow finished the call
TRANSFERRED            ``transferred`` (with the method): an agent answered
=====================  ===========================================================

A transfer that succeeded stays ``transferred`` whatever follows (the post-agent flow,
a later attempt). A ``TransferFailed`` whose status is ``call_ended`` is the engine
closing an attempt because the call ended (engine/transfer.py ``call_ended``): it is
the caller abandoning, not a failure the bot recovered from.

Pure: no I/O, no clock; the engine records the result as ``CallDisposed`` right after
``CallEnded`` (engine/call.py).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .events import (
    CallConnected,
    CallEnded,
    CallEvent,
    TransferFailed,
    TransferRefused,
    TransferStarted,
    TransferSucceeded,
)


class Disposition(enum.Enum):
    CONTAINED = "contained"
    TRANSFERRED = "transferred"
    TRANSFER_FAILED_CONTAINED = "transfer_failed_contained"
    ABANDONED = "abandoned"
    FAILED = "failed"


class State(enum.Enum):
    SETUP = "setup"
    IN_BOT = "in_bot"
    TRANSFERRING = "transferring"
    FAILED_BACK = "failed_back"
    TRANSFERRED = "transferred"


class Input(enum.Enum):
    CONNECTED = "connected"
    TRANSFER_STARTED = "transfer_started"
    TRANSFER_SUCCEEDED = "transfer_succeeded"
    TRANSFER_FAILED = "transfer_failed"
    TRANSFER_CUT = "transfer_cut"
    """The attempt was closed because the call ended (status ``call_ended``)."""
    REFUSED = "refused"
    """A bot's REFER refused before any attempt (policy): a failed transfer."""


S, I = State, Input
TRANSITIONS: dict[tuple[State, Input], State] = {
    (S.SETUP, I.CONNECTED): S.IN_BOT,
    (S.IN_BOT, I.TRANSFER_STARTED): S.TRANSFERRING,
    (S.IN_BOT, I.REFUSED): S.FAILED_BACK,
    (S.FAILED_BACK, I.TRANSFER_STARTED): S.TRANSFERRING,
    (S.TRANSFERRING, I.TRANSFER_STARTED): S.TRANSFERRING,  # the fallback's next method
    (S.TRANSFERRING, I.TRANSFER_SUCCEEDED): S.TRANSFERRED,
    (S.TRANSFERRING, I.TRANSFER_FAILED): S.FAILED_BACK,
    (S.TRANSFERRING, I.REFUSED): S.FAILED_BACK,
}
"""Everything else leaves the state alone: a transferred call stays transferred, and a
``TRANSFER_CUT`` (which follows the end) never moves anything: TRANSFERRING at the end
already says abandoned."""

AT_END: dict[State, Disposition] = {
    S.SETUP: Disposition.FAILED,
    S.IN_BOT: Disposition.CONTAINED,
    S.TRANSFERRING: Disposition.ABANDONED,
    S.FAILED_BACK: Disposition.TRANSFER_FAILED_CONTAINED,
    S.TRANSFERRED: Disposition.TRANSFERRED,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    disposition: Disposition
    method: str | None = None
    """For ``transferred``: the method of the attempt the agent answered (``invite``,
    ``refer``, ``bye``, ``warm``)."""


def _input(event: CallEvent) -> Input | None:
    match event:
        case CallConnected():
            return I.CONNECTED
        case TransferStarted():
            return I.TRANSFER_STARTED
        case TransferSucceeded():
            return I.TRANSFER_SUCCEEDED
        case TransferFailed(status="call_ended"):
            return I.TRANSFER_CUT
        case TransferFailed():
            return I.TRANSFER_FAILED
        case TransferRefused():
            return I.REFUSED
    return None


def disposition(events: Iterable[CallEvent]) -> Outcome:
    """The call's disposition from its events, oldest first, up to its ``CallEnded``
    (later events are not looked at; without one, the state so far is named)."""
    state = S.SETUP
    methods: dict[str, str] = {}
    method: str | None = None
    last_method = "unknown"  # a success whose TransferStarted was not seen: the latest attempt's
    for event in events:
        if isinstance(event, CallEnded):
            break
        if isinstance(event, TransferStarted):
            methods[event.transfer_id] = last_method = event.method
        kind = _input(event)
        if kind is None:
            continue
        after = TRANSITIONS.get((state, kind), state)
        if after is S.TRANSFERRED and state is not S.TRANSFERRED:
            assert isinstance(event, TransferSucceeded)
            method = methods.get(event.transfer_id, last_method)
        state = after
    outcome = AT_END[state]
    return Outcome(outcome, method if outcome is Disposition.TRANSFERRED else None)


def containment_rate(counts: dict[str, int]) -> float | None:
    """contained / the calls that reached the bot or the flow (every disposition but
    ``failed``); None when no call reached them."""
    reached = sum(n for d, n in counts.items() if d != Disposition.FAILED.value)
    return counts.get(Disposition.CONTAINED.value, 0) / reached if reached else None
