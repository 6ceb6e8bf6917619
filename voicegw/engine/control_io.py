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
from ..sip.refer import ReferEvent
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
    CONFIRM = "confirm"
    """A warm transfer's agent has the warm settings' ``confirm_timeout`` to accept or
    decline once briefed; it is cancelled as soon as the consult leaves CONFIRMING."""
    REFER = "refer"
    """Our REFER subscriptions' next timeout (sip/refer.py: no 202, no final NOTIFY
    in time), handed to them as ``TickRefers(now)``."""
    LIVE_BRIEFING = "live briefing"
    """A warm transfer's live briefing (the bot and the agent bridged) lasts the warm
    settings' ``bot_briefing_seconds``; cancelled as soon as the consult leaves BRIEFING."""
    MEDIA = "media"
    """The RTP inactivity check's next run (engine/media_watch.py), every check
    interval while the call is connected; handed to the engine as ``CheckMedia(now)``."""
    FORGET = "forget"
    """A backstop, armed only when a leg's INVITE session outlives the end (a CANCEL
    awaiting the INVITE's final response, our BYE held until the ACK of our 2xx, 15):
    64*T1 after the end the call is dropped even if a session is still not over. The
    copies of a 2xx are the UA core's to ACK again (sip/ack_store.py), not the call's."""


# ---------------------------------------------------------------------- what they are about
@dataclass(frozen=True, slots=True)
class OnAttempt:
    """About one dial attempt (its ``Dialing``, opaque here)."""

    attempt: Attempt


@dataclass(frozen=True, slots=True)
class OnTransfer:
    """About one transfer attempt (a ``Transfer``, opaque here)."""

    transfer: object


@dataclass(frozen=True, slots=True)
class OnWarm:
    """About one warm transfer (a ``WarmTransfer``, opaque here)."""

    warm: object


@dataclass(frozen=True, slots=True)
class OnLeg:
    """About one leg of the call (a ``Leg``, opaque here)."""

    leg: object


# ---------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True)
class LegDialled(OnAttempt):
    """The leg's INVITE left; no final answer by ``due`` gives it up."""

    due: float


@dataclass(frozen=True, slots=True)
class LegProgressed(OnAttempt):
    """A provisional response to the leg's INVITE."""

    response: Response
    early_media: NegotiatedMedia | None = None
    """What its SDP settled (a 183's early answer), if it carried usable SDP."""


@dataclass(frozen=True, slots=True)
class LegAnswered(OnAttempt):
    """The leg's session is confirmed (2xx ACKed): what offer/answer settled on."""

    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class LegFailed(OnAttempt):
    """The leg's session ended before an answer, with ``status``."""

    status: FailureStatus
    reason: str


@dataclass(frozen=True, slots=True)
class LegDropped(OnAttempt):
    """The call no longer wants the leg (it ended, a warm transfer was abandoned)."""


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
class TransferFed(OnTransfer):
    """Something happened to a transfer attempt (engine/transfer_machine.py's
    ``Input``). ``transfer`` is opaque here, like an ``Attempt``; ``machine`` is its
    machine (kept on the attempt, read by the API). ``leg``: the agent leg it concerns
    (opaque); ``headers``: the caller's BYE's headers for a hand-back; ``subscription``:
    the carrier's 202's subscription state."""

    machine: TransferMachine
    happened: TransferHappened
    status: FailureStatus | None = None
    reason: str = ""
    leg: object | None = None
    headers: tuple[tuple[str, str], ...] | None = None
    subscription: object = None


@dataclass(frozen=True, slots=True)
class ConsultFed(OnWarm):
    """Something happened to a warm transfer's consult (engine/consult.py's ``Input``)
    at ``now``. ``warm`` is opaque here (a ``WarmTransfer``); ``machine`` is its consult
    machine; ``confirm_after``: the agent's time to accept or decline once briefed."""

    machine: ConsultMachine
    happened: ConsultHappened
    status: FailureStatus | None = None
    reason: str = ""
    now: float = 0.0
    confirm_after: float = 0.0


@dataclass(frozen=True, slots=True)
class BotNodeDialled(OnLeg):
    """A flow's bot node dialled ``leg`` (opaque, a ``Leg``) and waits for that bot to
    end; ``flow`` (opaque, the flow's runner) is where the flow goes on then."""

    flow: object


@dataclass(frozen=True, slots=True)
class BotNodeFailed(OnLeg):
    """The bot a flow's bot node dialled never answered: its final ``status``."""

    status: FailureStatus


@dataclass(frozen=True, slots=True)
class FlowStopped:
    """The call's flow was stopped (an operator's transfer took the call, the caller
    leg was replaced): no bot node waits on its bot any more."""


@dataclass(frozen=True, slots=True)
class ReferSent:
    """Our REFER ``refer_id`` left on the caller's dialog, for ``owner`` (opaque): a
    transfer attempt when ``machine`` is its TransferMachine, a warm transfer's
    completion (REFER with Replaces) when it is its ConsultMachine. The events of
    its subscription go to that machine."""

    refer_id: int
    owner: object
    machine: TransferMachine | ConsultMachine


@dataclass(frozen=True, slots=True)
class ReferReported:
    """An event of one of our REFERs' subscriptions at ``now`` (sip/refer.py: the
    202, a NOTIFY's sipfrag, a final outcome, a timeout), as the caller's dialog's
    ReferSubscriptions reported it (RFC 3515 2.4.4-2.4.7)."""

    event: ReferEvent
    now: float
    challenge: str = ""
    """A 401/407 that ended the REFER (RFC 3261 22.2): why it was not answered (the
    caller leg's digest answers, read at the edge); the transfer attempt, or the warm
    transfer's completion, then fails with status ``auth``."""


@dataclass(frozen=True, slots=True)
class RefersDue:
    """Our REFER subscriptions' next timeout (``get_timer()``), None: no timer."""

    due: float | None


@dataclass(frozen=True, slots=True)
class LiveBriefingDue(OnWarm):
    """A warm transfer's live briefing began: it ends at ``due`` unless the consult
    leaves BRIEFING first."""

    due: float


@dataclass(frozen=True, slots=True)
class MediaCheckDue:
    """The RTP inactivity check runs next at ``due`` (the call answered, or the last
    check found every watched leg sending)."""

    due: float


class Who(enum.Enum):
    """Which of the call's legs a BYE came on."""

    BOT = "the call's bot"
    AGENT = "the call's agent"
    OTHER = "the caller (or a leg the call no longer holds)"


@dataclass(frozen=True, slots=True)
class ByeReceived(OnLeg):
    """A leg's peer sent BYE (its session answered it 200, RFC 3261 15.1.2), with what
    the call knew of that leg then, read by the executor's host: the controller decides
    what it means (:func:`~voicegw.engine.controller.bye_commands`)."""

    who: Who
    role: str
    agent_connected: bool
    """An agent has the caller (the bot was replaced)."""
    consulting: bool
    """A warm transfer consults this agent (its machine is not finished)."""
    post_agent: bool
    """The call's flow still runs and names a post_agent node, the call connected."""
    context: tuple[tuple[str, str], ...] = ()
    """What the bot handed back on its BYE (its UUI and X- headers, as context keys)."""


Input = (LegDialled | LegProgressed | LegAnswered | LegFailed | LegDropped | TimerFired | CallEnded | LegsSettled
         | TransferFed | ConsultFed | ByeReceived | BotNodeDialled | BotNodeFailed | FlowStopped | ReferSent
         | ReferReported | RefersDue | LiveBriefingDue | MediaCheckDue)


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
class Decide(OnAttempt):
    """The attempt is over: its leg's later session events go to the engine when it
    was answered, nowhere otherwise; the leg lets go of its ``Dialing``."""

    answered: bool


@dataclass(frozen=True, slots=True)
class Cancel(OnAttempt):
    """End the leg's INVITE: CANCEL once it had a provisional response (9.1)."""


@dataclass(frozen=True, slots=True)
class TellProgress(OnAttempt):
    """Hand a provisional response (and its early media, if any) to whoever dialled the leg."""

    response: Response
    early_media: NegotiatedMedia | None = None


@dataclass(frozen=True, slots=True)
class TellAnswer(OnAttempt):
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class TellFailure(OnAttempt):
    status: FailureStatus
    reason: str


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop the ended call from the engine's indexes (its dialogs, its handlers)."""


# A transfer attempt's commands: one per action of its machine (engine/transfer_machine.py),
# carried out by the executor through its TransferEffects port (engine/effects.py).
@dataclass(frozen=True, slots=True)
class RecordProgress(OnTransfer):
    """A provisional status of the attempt: kept and recorded (TransferProgress)."""

    status: FailureStatus | None


@dataclass(frozen=True, slots=True)
class RecordAccepted(OnTransfer):
    """The carrier took our REFER (202): recorded with its subscription state."""

    status: FailureStatus | None
    subscription: object


@dataclass(frozen=True, slots=True)
class NotifyBot(OnTransfer):
    """NOTIFY the bot that asked for the transfer by REFER of where it stands
    (RFC 3515 2.4.5)."""


@dataclass(frozen=True, slots=True)
class StopPlay(OnTransfer):
    """Stop the caller's ringback or hold audio (the bot's audio comes back)."""


@dataclass(frozen=True, slots=True)
class SwapBridge(OnTransfer):
    """Switch the caller's media to the agent's ``leg``; the bot's fate by BOT_TABLE."""

    leg: object


@dataclass(frozen=True, slots=True)
class DropLeg(OnTransfer):
    """Close the failed agent ``leg`` (None: there was none)."""

    leg: object | None


@dataclass(frozen=True, slots=True)
class HandBack(OnTransfer):
    """End the call by a BYE to the caller carrying ``headers`` (the destination)."""

    headers: tuple[tuple[str, str], ...] | None


@dataclass(frozen=True, slots=True)
class Leave(OnTransfer):
    """The carrier has the caller (REFER): voicegw leaves, the bot's fate by BOT_TABLE."""


@dataclass(frozen=True, slots=True)
class TickRefers:
    """Hand our REFER subscriptions the time their timer fired at (``handle_timer``)."""

    now: float


@dataclass(frozen=True, slots=True)
class ReleaseBot(OnTransfer):
    """The bot heard the outcome (its final NOTIFY answered): its fate by BOT_TABLE."""


@dataclass(frozen=True, slots=True)
class Settle(OnTransfer):
    """The attempt is over: its outcome recorded, whoever waits for it told."""

    succeeded: bool
    status: FailureStatus
    reason: str


# A warm transfer's commands: one per action of its consult machine (engine/consult.py),
# carried out by the executor through its ConsultEffects port (engine/effects.py).
@dataclass(frozen=True, slots=True)
class RecordConsult(OnWarm):
    """The consult machine moved to ``state`` on ``happened`` (WarmTransferMoved)."""

    state: ConsultState
    happened: ConsultHappened


@dataclass(frozen=True, slots=True)
class PlayBriefing(OnWarm):
    """Brief the agent on the consult leg (the caller never hears it)."""


@dataclass(frozen=True, slots=True)
class Connect(OnWarm):
    """Connect caller and agent: bridge, or REFER with Replaces (RFC 3891)."""


@dataclass(frozen=True, slots=True)
class HangUpAgent(OnWarm):
    """Let go of the consult leg: CANCEL while it rings, else BYE."""


@dataclass(frozen=True, slots=True)
class StopHold(OnWarm):
    """Give the caller back to the bot (its hold audio stops)."""


@dataclass(frozen=True, slots=True)
class SettleConsult(OnWarm):
    """The consult is over: the transfer attempt hears its outcome (a failed one
    lets go of the agent leg first)."""

    failed: bool
    status: FailureStatus
    reason: str


@dataclass(frozen=True, slots=True)
class EndLiveBriefing(OnWarm):
    """The consult left BRIEFING: a live briefing's wait ends."""


@dataclass(frozen=True, slots=True)
class CheckMedia:
    """Run the RTP inactivity check at ``now`` (the MediaEffects port: the engine); it
    ends the call, or answers the next ``MediaCheckDue``."""

    now: float


# What a BYE means: one command, carried out through the ByeEffects port (engine/effects.py).
@dataclass(frozen=True, slots=True)
class LetBotGo(OnLeg):
    """A listening bot left after a transfer: stop feeding it; nothing else ends."""


@dataclass(frozen=True, slots=True)
class TakeContext:
    """The bot's context handed back on its BYE goes into the call's context."""

    context: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class BotNodeOver(OnLeg):
    """The bot a flow's bot node dialled left (``status`` None: it hung up) or never
    answered (its status): the flow goes on with the caller from ``flow``."""

    flow: object
    status: FailureStatus | None = None


@dataclass(frozen=True, slots=True)
class ConsultAgentGone(OnLeg):
    """The consult agent left: the warm transfer's consult machine decides."""


@dataclass(frozen=True, slots=True)
class ResumeAfterAgent(OnLeg):
    """The agent left: the flow's post_agent node takes the caller back."""


@dataclass(frozen=True, slots=True)
class EndCall:
    """The call ends (every leg still up gets BYE)."""

    reason: str


ByeCommand = LetBotGo | TakeContext | BotNodeOver | ConsultAgentGone | ResumeAfterAgent | EndCall

ConsultCommand = (RecordConsult | PlayBriefing | StartTimer | Connect | HangUpAgent | StopHold
                  | SettleConsult | EndLiveBriefing)

TransferCommand = (RecordProgress | RecordAccepted | NotifyBot | StopPlay | SwapBridge | DropLeg | HandBack
                   | Leave | ReleaseBot | Settle | TickRefers)

Command = (StartTimer | CancelTimer | Decide | Cancel | TellProgress | TellAnswer | TellFailure | Forget
           | CheckMedia | TransferCommand | ConsultCommand | ByeCommand)


__all__ = [
    "Attempt",
    "BotNodeDialled",
    "BotNodeFailed",
    "BotNodeOver",
    "ByeCommand",
    "ByeReceived",
    "CallEnded",
    "Cancel",
    "CancelTimer",
    "CheckMedia",
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
    "FlowStopped",
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
    "LiveBriefingDue",
    "MediaCheckDue",
    "NotifyBot",
    "OnAttempt",
    "OnLeg",
    "OnTransfer",
    "OnWarm",
    "PlayBriefing",
    "RecordAccepted",
    "RecordConsult",
    "RecordProgress",
    "ReferReported",
    "ReferSent",
    "RefersDue",
    "ReleaseBot",
    "ResumeAfterAgent",
    "Settle",
    "SettleConsult",
    "StartTimer",
    "StopHold",
    "StopPlay",
    "SwapBridge",
    "TakeContext",
    "TellAnswer",
    "TellFailure",
    "TellProgress",
    "TickRefers",
    "Timer",
    "TimerFired",
    "TransferCommand",
    "TransferFed",
    "Who",
]
