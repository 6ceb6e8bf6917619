"""The call controller's typed inputs and commands (engine/controller.py).

Events in, commands out, as sip/invite_session_io.py is for the INVITE session: the
engine feeds a call's controller what happened (an outgoing leg's INVITE left, got a
provisional response, was answered or failed; a timer fired at ``now``; the call
ended) and the executor (engine/executor.py) carries out the commands it answers.
All are frozen: an input is a fact, a command an order; neither changes once made.

A dial attempt is named by its ``Dialing`` (engine/outbound.py), opaque here: the
controller only keys its table by it and hands it back in the commands.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..sip.message import Response
from ..sip.offer_answer import NegotiatedMedia

Attempt = object
"""A dial attempt's handle (its ``Dialing``): compared by identity, never read here."""

FailureStatus = int | str
"""A final status, ``"no_answer"`` (our ring timeout) or ``"timeout"`` (Timer B)."""


class Timer(enum.Enum):
    NO_ANSWER = "no answer"
    """An outgoing leg's ring timeout: no final answer by then, CANCEL (RFC 3261 9.1)."""
    FORGET = "forget"
    """A backstop, armed only when a leg's INVITE session outlives the end (a CANCEL
    awaiting the INVITE's final response, our BYE held until the ACK of our 2xx, 15):
    64*T1 after the end the call is dropped even if a session is still not over. The
    copies of a 2xx are the UA core's to ACK again (sip/ack_store.py), not the call's."""


# ---------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True)
class LegDialled:
    """The leg's INVITE left; no final answer by ``due`` gives it up."""

    attempt: Attempt
    due: float


@dataclass(frozen=True, slots=True)
class LegProgressed:
    """A provisional response to the leg's INVITE."""

    attempt: Attempt
    response: Response


@dataclass(frozen=True, slots=True)
class LegAnswered:
    """The leg's session is confirmed (2xx ACKed): what offer/answer settled on."""

    attempt: Attempt
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class LegFailed:
    """The leg's session ended before an answer, with ``status``."""

    attempt: Attempt
    status: FailureStatus
    reason: str


@dataclass(frozen=True, slots=True)
class LegDropped:
    """The call no longer wants the leg (it ended, a warm transfer was abandoned)."""

    attempt: Attempt


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer
    now: float
    attempt: Attempt | None = None


@dataclass(frozen=True, slots=True)
class CallEnded:
    now: float
    settled: bool = True
    """Every leg's INVITE session is over: nothing can reach the call any more."""


@dataclass(frozen=True, slots=True)
class LegsSettled:
    """The last INVITE session of an ended call is over."""


Input = LegDialled | LegProgressed | LegAnswered | LegFailed | LegDropped | TimerFired | CallEnded | LegsSettled


# ---------------------------------------------------------------------- commands
@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: Timer
    due: float
    attempt: Attempt | None = None


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer
    attempt: Attempt | None = None


@dataclass(frozen=True, slots=True)
class Decide:
    """The attempt is over: its leg's later session events go to the engine when it
    was answered, nowhere otherwise; the leg lets go of its ``Dialing``."""

    attempt: Attempt
    answered: bool


@dataclass(frozen=True, slots=True)
class Cancel:
    """End the leg's INVITE: CANCEL once it had a provisional response (9.1)."""

    attempt: Attempt


@dataclass(frozen=True, slots=True)
class TellProgress:
    """Hand a provisional response to whoever dialled the leg."""

    attempt: Attempt
    response: Response


@dataclass(frozen=True, slots=True)
class TellAnswer:
    attempt: Attempt
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class TellFailure:
    attempt: Attempt
    status: FailureStatus
    reason: str


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop the ended call from the engine's indexes (its dialogs, its handlers)."""


Command = StartTimer | CancelTimer | Decide | Cancel | TellProgress | TellAnswer | TellFailure | Forget


__all__ = [
    "Attempt", "CallEnded", "Cancel", "CancelTimer", "Command", "Decide", "FailureStatus", "Forget", "Input",
    "LegAnswered", "LegDialled", "LegDropped", "LegFailed", "LegProgressed", "LegsSettled", "StartTimer", "TellAnswer",
    "TellFailure", "TellProgress", "Timer", "TimerFired",
]
