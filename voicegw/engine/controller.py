"""A call's controller: typed inputs in, commands out (engine/control_io.py).

Pure, like sip/transaction.py: no loop, no socket, no clock. A timer is a
:class:`StartTimer` command with a due time computed from the ``now`` of the input
that asked for it, and comes back as a :class:`TimerFired` input with the ``now``
it fired at. The executor (engine/executor.py) feeds the inputs and carries the
commands out against the SIP endpoint, the media layer and the store.

It holds, so far, each outgoing leg's dial attempt (one ``Phase`` enum and one
``TABLE`` of ``(phase, what happened) -> (steps, next phase)``) and the call's
end: an ended call is forgotten at once when its legs' INVITE sessions are over, else
as soon as the last one is (``LegsSettled``) or, at the latest, 64*T1 after the end
(the forget timer). Nothing else needs an ended call: the UA core absorbs
retransmitted requests and final responses in its transactions, re-ACKs copies of a
2xx (RFC 3261 13.2.2.4) and answers 481 for a forgotten dialog (12.2.2)::

    RINGING --progress--> RINGING (told)
       |--answered--> ANSWERED   (ring timer stopped, told)
       |--failed----> FAILED     (ring timer stopped, told)
       |--ring timer-> GAVE_UP   (CANCEL, told "no_answer": fallback_policy.py's name)
       +--dropped---> GAVE_UP    (ring timer stopped, CANCEL)

A decided attempt is forgotten at once: late inputs for it (a 1xx after the ring
timer, a second failure) find nothing and mean nothing.

A transfer attempt's inputs (:class:`TransferFed`) go to its own machine
(engine/transfer_machine.py, an enum and a table); each action it answers becomes
one command (:data:`TRANSFER_COMMANDS`), carried out by the executor. A warm
transfer's consult inputs (:class:`ConsultFed`) go to its consult machine
(engine/consult.py) the same way (:data:`CONSULT_COMMANDS`). A leg's BYE
(:class:`ByeReceived`) is decided by :func:`bye_commands`. A flow's bot node is held
here too: ``BotNodeDialled`` names the bot it waits on, and that bot's BYE or failure
(``BotNodeFailed``) answers ``BotNodeOver``, on which the flow goes on; no future is
awaited across modules.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..sip.refer import (
    ReferAccepted,
    ReferFailed,
    ReferProgressed,
    ReferSucceeded,
    ReferUnconfirmed,
)
from .consult import Action as ConsultAction
from .consult import ConsultMachine
from .consult import Input as ConsultHappened
from .consult import State as ConsultState
from .control_io import (
    Attempt,
    BotNodeDialled,
    BotNodeFailed,
    BotNodeOver,
    ByeCommand,
    ByeReceived,
    CallEnded,
    Cancel,
    CancelTimer,
    CheckMedia,
    Command,
    Connect,
    ConsultAgentGone,
    ConsultCommand,
    ConsultFed,
    Decide,
    DropLeg,
    EndCall,
    EndLiveBriefing,
    FlowStopped,
    Forget,
    HandBack,
    HangUpAgent,
    Input,
    Leave,
    LegAnswered,
    LegDialled,
    LegDropped,
    LegFailed,
    LegProgressed,
    LegsSettled,
    LetBotGo,
    LiveBriefingDue,
    MediaCheckDue,
    NotifyBot,
    PlayBriefing,
    RecordAccepted,
    RecordConsult,
    RecordProgress,
    ReferReported,
    RefersDue,
    ReferSent,
    ReleaseBot,
    ResumeAfterAgent,
    Settle,
    SettleConsult,
    StartTimer,
    StopHold,
    StopPlay,
    SwapBridge,
    TakeContext,
    TellAnswer,
    TellFailure,
    TellProgress,
    TickRefers,
    Timer,
    TimerFired,
    TransferCommand,
    TransferFed,
    Who,
)
from .transfer_machine import Action
from .transfer_machine import Input as TransferHappened


class Phase(enum.Enum):
    RINGING = "ringing"
    ANSWERED = "answered"
    FAILED = "failed"
    GAVE_UP = "gave up"


class Happened(enum.Enum):
    PROGRESS = "a provisional response"
    ANSWERED = "the session is confirmed"
    FAILED = "the session ended first"
    RING_TIMEOUT = "the ring timer fired"
    DROPPED = "the call no longer wants the leg"


class Step(enum.Enum):
    STOP_RING_TIMER = "cancel the ring timer"
    DECIDE = "the attempt is over: route the leg's later events"
    CANCEL = "CANCEL the INVITE"
    TELL_PROGRESS = "tell the dialler of the 1xx"
    TELL_ANSWER = "tell the dialler of the answer"
    TELL_FAILURE = "tell the dialler of the failure"
    TELL_NO_ANSWER = "tell the dialler nobody answered"


P, H, St = Phase, Happened, Step
#: (phase, what happened) -> (steps in order, next phase). The decision comes before
#: the tell: whoever dialled may act on the leg at once (hang it up, dial again).
TABLE: dict[tuple[Phase, Happened], tuple[tuple[Step, ...], Phase]] = {
    (P.RINGING, H.PROGRESS): ((St.TELL_PROGRESS,), P.RINGING),
    (P.RINGING, H.ANSWERED): ((St.STOP_RING_TIMER, St.DECIDE, St.TELL_ANSWER), P.ANSWERED),
    (P.RINGING, H.FAILED): ((St.STOP_RING_TIMER, St.DECIDE, St.TELL_FAILURE), P.FAILED),
    (P.RINGING, H.RING_TIMEOUT): ((St.DECIDE, St.CANCEL, St.TELL_NO_ANSWER), P.GAVE_UP),
    (P.RINGING, H.DROPPED): ((St.STOP_RING_TIMER, St.DECIDE, St.CANCEL), P.GAVE_UP),
}


class CallController:
    """One call's controller. ``forget_after``: how long, at most, an ended call whose
    legs' sessions are not all over stays indexed (64*T1)."""

    __slots__ = ("_bot_node", "_confirming", "_forget_after", "_live", "_refers", "_ringing", "ended", "forgotten")

    def __init__(self, forget_after: float) -> None:
        self._ringing: dict[Attempt, Phase] = {}
        """Attempts not decided yet (a decided one is forgotten at once)."""
        self._bot_node: BotNodeDialled | None = None
        """The bot a flow's bot node dialled and waits on, until it ends."""
        self._confirming: dict[object, ConsultFed] = {}
        """Warm transfers whose confirm timer runs: the input that armed it."""
        self._live: set[object] = set()
        """Warm transfers whose live briefing's timer runs."""
        self._refers: dict[int, ReferSent] = {}
        """Our REFERs by id: the machine each one's subscription events go to."""
        self._forget_after = forget_after
        self.ended = False
        self.forgotten = False

    def ringing(self, attempt: Attempt) -> bool:
        return attempt in self._ringing

    def feed(self, event: Input) -> tuple[Command, ...]:
        return _FEED[type(event)](self, event)

    def _bot_node_dialled(self, event: BotNodeDialled) -> tuple[Command, ...]:
        if not self.ended:
            self._bot_node = event
        return ()

    def _bot_node_failed(self, event: BotNodeFailed) -> tuple[Command, ...]:
        node = self._bot_node
        if node is None or node.leg is not event.leg:
            return ()  # the flow no longer waits on that bot
        self._bot_node = None
        return (BotNodeOver(node.leg, node.flow, event.status),)

    def _flow_stopped(self, event: FlowStopped) -> tuple[Command, ...]:
        self._bot_node = None
        return ()

    def _refer_sent(self, event: ReferSent) -> tuple[Command, ...]:
        if not self.ended:
            self._refers[event.refer_id] = event
        return ()

    def _refer_reported(self, event: ReferReported) -> tuple[Command, ...]:
        sent = self._refers.get(event.event.refer_id)
        return () if sent is None else refer_commands(sent, event)

    def _refers_due(self, event: RefersDue) -> tuple[Command, ...]:
        if self.ended:
            return ()  # the end cancelled every timer
        return (CancelTimer(Timer.REFER),) if event.due is None else (StartTimer(Timer.REFER, event.due),)

    def _live_briefing_due(self, event: LiveBriefingDue) -> tuple[Command, ...]:
        if self.ended:
            return ()  # the end cancelled every timer
        self._live.add(event.warm)
        return (StartTimer(Timer.LIVE_BRIEFING, event.due, event.warm),)

    def _media_check_due(self, event: MediaCheckDue) -> tuple[Command, ...]:
        return () if self.ended else (StartTimer(Timer.MEDIA, event.due),)

    def _leg_dialled(self, event: LegDialled) -> tuple[Command, ...]:
        if self.ended:
            return ()
        self._ringing[event.attempt] = P.RINGING
        return (StartTimer(Timer.NO_ANSWER, event.due, event.attempt),)

    def _call_ended(self, event: CallEnded) -> tuple[Command, ...]:
        if self.ended:
            return ()
        self.ended = True
        self._bot_node = None
        self._confirming.clear()  # the end cancels every timer of the call
        self._live.clear()
        self._refers.clear()
        if event.settled:
            return self._forget()
        return (StartTimer(Timer.FORGET, event.now + self._forget_after),)

    def _legs_settled(self, event: LegsSettled) -> tuple[Command, ...]:
        if not self.ended or self.forgotten:
            return ()
        return (CancelTimer(Timer.FORGET), *self._forget())

    def _timer_fired(self, event: TimerFired) -> tuple[Command, ...]:
        if event.timer is Timer.FORGET:
            return self._forget()
        if event.timer is Timer.REFER:
            return (TickRefers(event.now),)
        if event.timer is Timer.MEDIA:
            return () if self.ended else (CheckMedia(event.now),)
        if event.timer is Timer.LIVE_BRIEFING:
            if event.attempt not in self._live:
                return ()
            self._live.discard(event.attempt)
            return (EndLiveBriefing(event.attempt),)
        if event.timer is Timer.CONFIRM:
            armed = self._confirming.pop(event.attempt, None)
            if armed is None:
                return ()
            return consult_commands(replace(armed, happened=ConsultHappened.CONFIRM_TIMEOUT, status=None,
                                            reason="no confirmation", now=event.now))
        return self._attempt(event.attempt, H.RING_TIMEOUT, event)

    def _consult(self, event: ConsultFed) -> tuple[Command, ...]:
        """The consult machine's commands; its confirm timer is this controller's: armed
        on CONFIRMING, cancelled once the consult left it (accepted, declined, gone); so
        is a live briefing's, cancelled once the consult left BRIEFING."""
        commands = consult_commands(event)
        warm = event.warm
        if warm in self._live and event.machine.state is not ConsultState.BRIEFING:
            self._live.discard(warm)
            commands = (CancelTimer(Timer.LIVE_BRIEFING, warm), *commands)
        if any(isinstance(command, StartTimer) for command in commands):
            self._confirming[warm] = event
        elif warm in self._confirming and event.machine.state is not ConsultState.CONFIRMING:
            del self._confirming[warm]
            return (CancelTimer(Timer.CONFIRM, warm), *commands)
        return commands

    def _bye(self, event: ByeReceived) -> tuple[ByeCommand, ...]:
        node = self._bot_node
        waits = node if node is not None and node.leg is event.leg else None
        commands = bye_commands(event, waits)
        if waits is not None or any(isinstance(c, ResumeAfterAgent) for c in commands):
            # that bot is gone, or the post_agent node takes the caller: nothing waits on it
            self._bot_node = None
        return commands

    def _forget(self) -> tuple[Command, ...]:
        if self.forgotten:
            return ()
        self.forgotten = True
        return (Forget(),)

    def _attempt(self, attempt: Attempt | None, happened: Happened, event: Input) -> tuple[Command, ...]:
        current = self._ringing.get(attempt)
        if current is None:
            return ()  # decided already: a late input means nothing
        row = TABLE.get((current, happened))
        if row is None:
            return ()
        steps, phase = row
        if phase is P.RINGING:
            self._ringing[attempt] = phase
        else:
            del self._ringing[attempt]
        return tuple(_command(step, attempt, phase, event) for step in steps)


#: Each input -> the controller's handler for it.
_FEED: dict[type, Callable[[CallController, Any], tuple[Command, ...]]] = {
    LegDialled: CallController._leg_dialled,
    LegProgressed: lambda controller, event: controller._attempt(event.attempt, H.PROGRESS, event),
    LegAnswered: lambda controller, event: controller._attempt(event.attempt, H.ANSWERED, event),
    LegFailed: lambda controller, event: controller._attempt(event.attempt, H.FAILED, event),
    LegDropped: lambda controller, event: controller._attempt(event.attempt, H.DROPPED, event),
    TimerFired: CallController._timer_fired,
    CallEnded: CallController._call_ended,
    LegsSettled: CallController._legs_settled,
    TransferFed: lambda controller, event: transfer_commands(event),
    ConsultFed: CallController._consult,
    ByeReceived: CallController._bye,
    BotNodeDialled: CallController._bot_node_dialled,
    BotNodeFailed: CallController._bot_node_failed,
    FlowStopped: CallController._flow_stopped,
    ReferSent: CallController._refer_sent,
    ReferReported: CallController._refer_reported,
    RefersDue: CallController._refers_due,
    LiveBriefingDue: CallController._live_briefing_due,
    MediaCheckDue: CallController._media_check_due,
}


def _command(step: Step, attempt: Attempt, phase: Phase, event: Input) -> Command:
    if step is St.STOP_RING_TIMER:
        return CancelTimer(Timer.NO_ANSWER, attempt)
    if step is St.DECIDE:
        return Decide(attempt, answered=phase is P.ANSWERED)
    if step is St.CANCEL:
        return Cancel(attempt)
    if step is St.TELL_PROGRESS:
        assert isinstance(event, LegProgressed)
        return TellProgress(attempt, event.response, event.early_media)
    if step is St.TELL_ANSWER:
        assert isinstance(event, LegAnswered)
        return TellAnswer(attempt, event.media)
    if step is St.TELL_FAILURE:
        assert isinstance(event, LegFailed)
        return TellFailure(attempt, event.status, event.reason)
    return TellFailure(attempt, "no_answer", "no answer")  # the ring timeout (fallback_policy.py)


#: A transfer machine's action -> the command that carries it out.
TRANSFER_COMMANDS: dict[Action, Callable[[TransferFed], TransferCommand]] = {
    Action.RECORD_PROGRESS: lambda e: RecordProgress(e.transfer, e.status),
    Action.RECORD_ACCEPTED: lambda e: RecordAccepted(e.transfer, e.status, e.subscription),
    Action.TELL_BOT: lambda e: NotifyBot(e.transfer),
    Action.STOP_WAITING_AUDIO: lambda e: StopPlay(e.transfer),
    Action.SWAP_TO_AGENT: lambda e: SwapBridge(e.transfer, e.leg),
    Action.DROP_AGENT: lambda e: DropLeg(e.transfer, e.leg),
    Action.HAND_BACK: lambda e: HandBack(e.transfer, e.headers),
    Action.LEAVE: lambda e: Leave(e.transfer),
    Action.RELEASE_BOT: lambda e: ReleaseBot(e.transfer),
    Action.SUCCEEDED: lambda e: _settle(e, succeeded=True),
    Action.FAILED: lambda e: _settle(e, succeeded=False),
}


def transfer_commands(event: TransferFed) -> tuple[TransferCommand, ...]:
    """Feed the attempt's machine and turn what it answers into commands, in order.
    The machine moves first: a command carried out may feed it again (a hand-back
    ends the call, whose end finds the attempt decided)."""
    actions = event.machine.feed(event.happened, event.status)
    return tuple(TRANSFER_COMMANDS[action](event) for action in actions)


def _settle(event: TransferFed, *, succeeded: bool) -> Settle:
    status = event.machine.status
    assert status is not None  # set by the row that decided the attempt
    return Settle(event.transfer, succeeded, status, event.reason)


#: A consult machine's action -> the command that carries it out.
CONSULT_COMMANDS: dict[ConsultAction, Callable[[ConsultFed], ConsultCommand]] = {
    ConsultAction.PLAY_BRIEFING: lambda e: PlayBriefing(e.warm),
    ConsultAction.START_CONFIRM_TIMER: lambda e: StartTimer(Timer.CONFIRM, e.now + e.confirm_after, e.warm),
    ConsultAction.CONNECT: lambda e: Connect(e.warm),
    ConsultAction.HANG_UP_AGENT: lambda e: HangUpAgent(e.warm),
    ConsultAction.STOP_HOLD: lambda e: StopHold(e.warm),
    ConsultAction.SUCCEEDED: lambda e: SettleConsult(e.warm, False, 200, "agent connected after briefing"),
    ConsultAction.FAILED: lambda e: SettleConsult(e.warm, True, e.machine.status or 500,
                                                  e.reason or "warm transfer failed"),
    ConsultAction.CANCELLED: lambda e: SettleConsult(e.warm, False, "cancelled", e.reason or "cancelled"),
}


def consult_commands(event: ConsultFed) -> tuple[ConsultCommand, ...]:
    """Feed the consult machine: a move is recorded first, then its actions as
    commands in order; once it is out of BRIEFING (accepted, declined, completed,
    gone) a live briefing's wait ends, last. An input its state refuses raises
    ConsultError (the API answers 409)."""
    before = event.machine.state
    actions = event.machine.feed(event.happened, event.status)
    after = event.machine.state
    commands: list[ConsultCommand] = []
    if after is not before:
        commands.append(RecordConsult(event.warm, after, event.happened))
    commands.extend(CONSULT_COMMANDS[action](event) for action in actions)
    if after is not ConsultState.BRIEFING:
        commands.append(EndLiveBriefing(event.warm))
    return tuple(commands)


def refer_commands(sent: ReferSent, reported: ReferReported) -> tuple[Command, ...]:
    """What an event of our REFER's subscription means to the machine it was sent for.

    - a transfer attempt's REFER (RFC 3515): the 202 is ACCEPTED, a NOTIFY's 1xx
      sipfrag PROGRESS, a 2xx sipfrag (or a subscription that ended without one after
      the 202) CONNECTED, anything else FAILED with its status (``auth`` when a 401/407
      could not be answered);
    - a warm transfer's REFER with Replaces (RFC 5589 7): its success completes the
      consult and voicegw leaves the path (the call ends), its failure is the consult's
      COMPLETION_FAILED (``auth`` too); the 202 and the progress mean nothing to it.
    """
    event, owner, machine = reported.event, sent.owner, sent.machine
    if isinstance(machine, ConsultMachine):
        if isinstance(event, (ReferSucceeded, ReferUnconfirmed)):
            done = consult_commands(ConsultFed(owner, machine, ConsultHappened.COMPLETED_OK, now=reported.now))
            return (*done, EndCall("transferred by REFER with Replaces"))
        if isinstance(event, ReferFailed):
            status, reason = ("auth", reported.challenge) if reported.challenge else (event.status, event.reason)
            return consult_commands(ConsultFed(owner, machine, ConsultHappened.COMPLETION_FAILED, status, reason,
                                               now=reported.now))
        return ()
    if isinstance(event, ReferAccepted):
        fed = TransferFed(owner, machine, TransferHappened.ACCEPTED, event.status, subscription=event.subscription)
    elif isinstance(event, ReferProgressed):
        fed = TransferFed(owner, machine, TransferHappened.PROGRESS, event.status)
    elif isinstance(event, ReferSucceeded):
        fed = TransferFed(owner, machine, TransferHappened.CONNECTED, event.status or 202,
                          "the carrier connected the caller")
    elif isinstance(event, ReferUnconfirmed):
        fed = TransferFed(owner, machine, TransferHappened.CONNECTED, event.status or 202,
                          "accepted without progress reports")
    elif reported.challenge:  # a challenge we could not (or may no longer) answer
        fed = TransferFed(owner, machine, TransferHappened.FAILED, "auth", reported.challenge)
    else:
        fed = TransferFed(owner, machine, TransferHappened.FAILED, event.status, event.reason)
    return transfer_commands(fed)


def bye_commands(event: ByeReceived, bot_node: BotNodeDialled | None = None) -> tuple[ByeCommand, ...]:
    """What a leg's BYE means, first match wins (``bot_node``: the flow's bot node
    waiting on this leg, if one does):

    - the bot, while an agent has the caller: it was listening; only it goes;
    - the bot otherwise: its context is taken, then the flow's bot node goes on with
      the caller if it waits on this bot, else the call ends;
    - the agent, while a warm transfer consults it: the consult machine decides;
    - the agent, when the flow names a post_agent node: that node takes the caller;
    - anyone else (the caller, the agent otherwise): the call ends.
    """
    ends = EndCall(f"{event.role} hung up")
    if event.who is Who.BOT:
        if event.agent_connected:
            return (LetBotGo(event.leg),)
        context: tuple[ByeCommand, ...] = (TakeContext(event.context),) if event.context else ()
        return (*context, BotNodeOver(event.leg, bot_node.flow) if bot_node is not None else ends)
    if event.who is Who.AGENT:
        if event.consulting:
            return (ConsultAgentGone(event.leg),)
        if event.post_agent:
            return (ResumeAfterAgent(event.leg),)
    return (ends,)


__all__ = [
    "CONSULT_COMMANDS",
    "TABLE",
    "TRANSFER_COMMANDS",
    "CallController",
    "Happened",
    "Phase",
    "Step",
    "bye_commands",
    "consult_commands",
    "refer_commands",
    "transfer_commands",
]
