"""The call controller's typed inputs and commands (engine/controller.py).

Events in, commands out, as sip/invite_session_io.py is for the INVITE session: the
engine feeds a call's controller what happened (an outgoing leg's INVITE left, got a
provisional response, was answered or failed; a timer fired at ``now``; the call
ended; something happened to a transfer attempt) and the executor
(engine/executor.py) carries out the commands it answers.
All are frozen: an input is a fact, a command an order; neither changes once made.

A dial attempt is named by its ``Dialing`` (engine/outbound.py), opaque here: the
controller only keys its table by it and hands it back in the commands.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..sip.message import Response
from ..sip.offer_answer import NegotiatedMedia
from .consult import ConsultMachine
from .consult import Input as ConsultHappened
from .consult import State as ConsultState
from .transfer_machine import Input as TransferHappened
from .transfer_machine import TransferMachine

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
    early_media: NegotiatedMedia | None = None
    """What its SDP settled (a 183's early answer), if it carried usable SDP."""


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


@dataclass(frozen=True, slots=True)
class TransferFed:
    """Something happened to a transfer attempt (engine/transfer_machine.py's
    ``Input``). ``transfer`` is opaque here, like an ``Attempt``; ``machine`` is its
    machine (kept on the attempt, read by the API). ``leg``: the agent leg it concerns
    (opaque); ``headers``: the caller's BYE's headers for a hand-back; ``subscription``:
    the carrier's 202's subscription state."""

    transfer: object
    machine: TransferMachine
    happened: TransferHappened
    status: FailureStatus | None = None
    reason: str = ""
    leg: object | None = None
    headers: tuple[tuple[str, str], ...] | None = None
    subscription: object = None


@dataclass(frozen=True, slots=True)
class ConsultFed:
    """Something happened to a warm transfer's consult (engine/consult.py's ``Input``).
    ``warm`` is opaque here (a ``WarmTransfer``); ``machine`` is its consult machine."""

    warm: object
    machine: ConsultMachine
    happened: ConsultHappened
    status: FailureStatus | None = None
    reason: str = ""


class Who(enum.Enum):
    """Which of the call's legs a BYE came on."""

    BOT = "the call's bot"
    AGENT = "the call's agent"
    OTHER = "the caller (or a leg the call no longer holds)"


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """A leg's peer sent BYE (its session answered it 200, RFC 3261 15.1.2), with what
    the call knew of that leg then, read by the executor's host: the controller decides
    what it means (:func:`~voicegw.engine.controller.bye_commands`)."""

    leg: object
    who: Who
    role: str
    agent_connected: bool
    """An agent has the caller (the bot was replaced)."""
    bot_node_waits: bool
    """A flow's bot node waits for this bot to hang up."""
    consulting: bool
    """A warm transfer consults this agent (its machine is not finished)."""
    post_agent: bool
    """The call's flow still runs and names a post_agent node, the call connected."""
    context: tuple[tuple[str, str], ...] = ()
    """What the bot handed back on its BYE (its UUI and X- headers, as context keys)."""


Input = (LegDialled | LegProgressed | LegAnswered | LegFailed | LegDropped | TimerFired | CallEnded | LegsSettled
         | TransferFed | ConsultFed | ByeReceived)


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
    """Hand a provisional response (and its early media, if any) to whoever dialled the leg."""

    attempt: Attempt
    response: Response
    early_media: NegotiatedMedia | None = None


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


# A transfer attempt's commands: one per action of its machine (engine/transfer_machine.py),
# carried out by the executor through its TransferEffects port (engine/effects.py).
@dataclass(frozen=True, slots=True)
class RecordProgress:
    """A provisional status of the attempt: kept and recorded (TransferProgress)."""

    transfer: object
    status: FailureStatus | None


@dataclass(frozen=True, slots=True)
class RecordAccepted:
    """The carrier took our REFER (202): recorded with its subscription state."""

    transfer: object
    status: FailureStatus | None
    subscription: object


@dataclass(frozen=True, slots=True)
class NotifyBot:
    """NOTIFY the bot that asked for the transfer by REFER of where it stands
    (RFC 3515 2.4.5)."""

    transfer: object


@dataclass(frozen=True, slots=True)
class StopPlay:
    """Stop the caller's ringback or hold audio (the bot's audio comes back)."""

    transfer: object


@dataclass(frozen=True, slots=True)
class SwapBridge:
    """Switch the caller's media to the agent's ``leg``; the bot's fate by BOT_TABLE."""

    transfer: object
    leg: object


@dataclass(frozen=True, slots=True)
class DropLeg:
    """Close the failed agent ``leg`` (None: there was none)."""

    transfer: object
    leg: object | None


@dataclass(frozen=True, slots=True)
class HandBack:
    """End the call by a BYE to the caller carrying ``headers`` (the destination)."""

    transfer: object
    headers: tuple[tuple[str, str], ...] | None


@dataclass(frozen=True, slots=True)
class Leave:
    """The carrier has the caller (REFER): voicegw leaves, the bot's fate by BOT_TABLE."""

    transfer: object


@dataclass(frozen=True, slots=True)
class ReleaseBot:
    """The bot heard the outcome (its final NOTIFY answered): its fate by BOT_TABLE."""

    transfer: object


@dataclass(frozen=True, slots=True)
class Settle:
    """The attempt is over: its outcome recorded, whoever waits for it told."""

    transfer: object
    succeeded: bool
    status: FailureStatus
    reason: str


# A warm transfer's commands: one per action of its consult machine (engine/consult.py),
# carried out by the executor through its ConsultEffects port (engine/effects.py).
@dataclass(frozen=True, slots=True)
class RecordConsult:
    """The consult machine moved to ``state`` on ``happened`` (WarmTransferMoved)."""

    warm: object
    state: ConsultState
    happened: ConsultHappened


@dataclass(frozen=True, slots=True)
class PlayBriefing:
    """Brief the agent on the consult leg (the caller never hears it)."""

    warm: object


@dataclass(frozen=True, slots=True)
class StartConfirmTimer:
    """The agent has the warm settings' confirm timeout to press accept or decline."""

    warm: object


@dataclass(frozen=True, slots=True)
class Connect:
    """Connect caller and agent: bridge, or REFER with Replaces (RFC 3891)."""

    warm: object


@dataclass(frozen=True, slots=True)
class HangUpAgent:
    """Let go of the consult leg: CANCEL while it rings, else BYE."""

    warm: object


@dataclass(frozen=True, slots=True)
class StopHold:
    """Give the caller back to the bot (its hold audio stops)."""

    warm: object


@dataclass(frozen=True, slots=True)
class SettleConsult:
    """The consult is over: the transfer attempt hears its outcome (a failed one
    lets go of the agent leg first)."""

    warm: object
    failed: bool
    status: FailureStatus
    reason: str


@dataclass(frozen=True, slots=True)
class EndLiveBriefing:
    """The consult left BRIEFING: a live briefing's wait ends."""

    warm: object


# What a BYE means: one command, carried out through the ByeEffects port (engine/effects.py).
@dataclass(frozen=True, slots=True)
class LetBotGo:
    """A listening bot left after a transfer: stop feeding it; nothing else ends."""

    leg: object


@dataclass(frozen=True, slots=True)
class TakeContext:
    """The bot's context handed back on its BYE goes into the call's context."""

    context: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class BotNodeOver:
    """The bot a flow's bot node connected left: the flow goes on with the caller."""

    leg: object


@dataclass(frozen=True, slots=True)
class ConsultAgentGone:
    """The consult agent left: the warm transfer's consult machine decides."""

    leg: object


@dataclass(frozen=True, slots=True)
class ResumeAfterAgent:
    """The agent left: the flow's post_agent node takes the caller back."""

    leg: object


@dataclass(frozen=True, slots=True)
class EndCall:
    """The call ends (every leg still up gets BYE)."""

    reason: str


ByeCommand = LetBotGo | TakeContext | BotNodeOver | ConsultAgentGone | ResumeAfterAgent | EndCall

ConsultCommand = (RecordConsult | PlayBriefing | StartConfirmTimer | Connect | HangUpAgent | StopHold
                  | SettleConsult | EndLiveBriefing)

TransferCommand = (RecordProgress | RecordAccepted | NotifyBot | StopPlay | SwapBridge | DropLeg | HandBack
                   | Leave | ReleaseBot | Settle)

Command = (StartTimer | CancelTimer | Decide | Cancel | TellProgress | TellAnswer | TellFailure | Forget
           | TransferCommand | ConsultCommand | ByeCommand)


__all__ = [
    "Attempt",
    "BotNodeOver",
    "ByeCommand",
    "ByeReceived",
    "CallEnded",
    "Cancel",
    "CancelTimer",
    "Command",
    "Connect",
    "ConsultAgentGone",
    "ConsultCommand",
    "ConsultFed",
    "Decide",
    "DropLeg",
    "EndCall",
    "EndLiveBriefing",
    "FailureStatus",
    "Forget",
    "HandBack",
    "HangUpAgent",
    "Input",
    "Leave",
    "LegAnswered",
    "LegDialled",
    "LegDropped",
    "LegFailed",
    "LegProgressed",
    "LegsSettled",
    "LetBotGo",
    "NotifyBot",
    "PlayBriefing",
    "RecordAccepted",
    "RecordConsult",
    "RecordProgress",
    "ReleaseBot",
    "ResumeAfterAgent",
    "Settle",
    "SettleConsult",
    "StartConfirmTimer",
    "StartTimer",
    "StopHold",
    "StopPlay",
    "SwapBridge",
    "TakeContext",
    "TellAnswer",
    "TellFailure",
    "TellProgress",
    "Timer",
    "TimerFired",
    "TransferCommand",
    "TransferFed",
    "Who",
]
