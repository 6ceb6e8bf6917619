"""The executor: feeds a call's controller and carries its commands out.

The controller (engine/controller.py) is pure; this is the one engine module that
turns its commands into effects on the event loop: it arms and cancels the timers
(the loop's clock is read here, at the edge, and comes back as ``TimerFired(now)``),
ends an outgoing leg's INVITE on its session, tells whoever dialled a leg what became
of it, carries out a transfer attempt's commands through its port
(engine/effects.py: stop the waiting audio, swap the bridge, drop a leg, BYE, NOTIFY
the bot, record, settle), and drops an ended call from the engine's indexes. The helpers' own named
timers (a warm transfer's confirm timeout, a REFER's subscription) are armed through
the same :class:`CallTimers`.

Why a timer handle is kept on the call: ``Engine.end`` cancels every timer a call
still holds. The forget timer (a backstop, when a leg's session outlives the end) is
armed after the end on purpose, and cancelled when the last session is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .call import Call
from .control_io import (
    BotNodeOver,
    Cancel,
    CancelTimer,
    Command,
    Connect,
    ConsultAgentGone,
    Decide,
    DropLeg,
    EndCall,
    EndLiveBriefing,
    Forget,
    HandBack,
    HangUpAgent,
    Input,
    Leave,
    LetBotGo,
    NotifyBot,
    PlayBriefing,
    RecordAccepted,
    RecordConsult,
    RecordProgress,
    ReleaseBot,
    ResumeAfterAgent,
    Settle,
    SettleConsult,
    StartConfirmTimer,
    StartTimer,
    StopHold,
    StopPlay,
    SwapBridge,
    TakeContext,
    TellAnswer,
    TellFailure,
    TellProgress,
    TimerFired,
)
from .controller import CallController
from .effects import ByeEffects, ConsultEffects, TransferEffects
from .outbound import Dialing, OutboundLegs

TimerHandler = Callable[[float], None]
"""Called with the loop time the timer fired at."""


class CallTimers:
    """Named per-call timers on the loop: arming a name again replaces its timer; a
    timer that fired is forgotten at once, so its handle never keeps the call alive."""

    def __init__(self, loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self._loop = loop

    def arm(self, call: Call, name: Any, due: float, fire: TimerHandler) -> None:
        """Fire ``fire(now)`` at loop time ``due`` (at once if it is past)."""
        call.cancel_timer(name)
        call.timers[name] = self._loop().call_at(due, self._fire, call, name, fire)

    def after(self, call: Call, name: Any, delay: float, fire: TimerHandler) -> None:
        """Fire ``fire(now)`` ``delay`` seconds from now."""
        self.arm(call, name, self._loop().time() + delay, fire)

    def _fire(self, call: Call, name: Any, fire: TimerHandler) -> None:
        call.timers.pop(name, None)
        fire(self._loop().time())


class Executor:
    """``forget`` drops an ended call from the engine's indexes; ``forget_after`` is
    how long, at most, it stays when a leg's session outlives the end (64*T1)."""

    def __init__(self, loop: Callable[[], asyncio.AbstractEventLoop], outbound: OutboundLegs,
                 forget: Callable[[Call], None], forget_after: float) -> None:
        self._loop = loop
        self.timers = CallTimers(loop)
        self._outbound = outbound
        self._forget = forget
        self._forget_after = forget_after
        self.transfers: TransferEffects | None = None
        """Carries out a transfer attempt's commands (engine/transfer.py's Transfers,
        set by the engine once it has them)."""
        self.consults: ConsultEffects | None = None
        """Carries out a warm transfer's consult commands (engine/warm.py's WarmTransfers)."""
        self.byes: ByeEffects | None = None
        """Carries out what a leg's BYE means (the engine)."""

    def controller(self, call: Call) -> CallController:
        controller = call.controller
        if controller is None:
            controller = call.controller = CallController(self._forget_after)
        return controller

    def feed(self, call: Call, event: Input) -> None:
        """Feed the call's controller one input and carry out its commands, in order."""
        for command in self.controller(call).feed(event):
            self._carry_out(call, command)

    def _carry_out(self, call: Call, command: Command) -> None:
        if isinstance(command, StartTimer):
            self._start_timer(call, command)
        elif isinstance(command, CancelTimer):
            call.cancel_timer((command.timer, command.attempt))
        elif isinstance(command, Decide):
            self._outbound.decide(_dialing(command.attempt), command.answered)
        elif isinstance(command, Cancel):
            _dialing(command.attempt).end()
        elif isinstance(command, TellProgress):
            _dialing(command.attempt).on_progress(command.response, command.early_media)
        elif isinstance(command, TellAnswer):
            _dialing(command.attempt).on_answer(None, command.media)
        elif isinstance(command, TellFailure):
            _dialing(command.attempt).on_failure(command.status, command.reason)
        elif isinstance(command, Forget):
            self._forget(call)
        elif isinstance(command, (RecordConsult, PlayBriefing, StartConfirmTimer, Connect, HangUpAgent, StopHold,
                                  SettleConsult, EndLiveBriefing)):
            self._consult(call, command)
        elif isinstance(command, (LetBotGo, TakeContext, BotNodeOver, ConsultAgentGone, ResumeAfterAgent, EndCall)):
            self._bye(call, command)
        else:
            self._transfer(call, command)

    def _bye(self, call: Call, command: Command) -> None:
        """What a leg's BYE means, through the port (engine/effects.py)."""
        effects = self.byes
        assert effects is not None
        if isinstance(command, LetBotGo):
            effects.let_bot_go(call, command.leg)
        elif isinstance(command, TakeContext):
            effects.take_context(call, command.context)
        elif isinstance(command, BotNodeOver):
            effects.bot_node_over(call, command.leg)
        elif isinstance(command, ConsultAgentGone):
            effects.consult_agent_gone(call, command.leg)
        elif isinstance(command, ResumeAfterAgent):
            effects.resume_after_agent(call, command.leg)
        elif isinstance(command, EndCall):
            effects.end_call(call, command.reason)

    def _consult(self, call: Call, command: Command) -> None:
        """A warm transfer's consult command, through the port (engine/effects.py)."""
        effects = self.consults
        assert effects is not None
        if isinstance(command, RecordConsult):
            effects.record_consult(call, command.warm, command.state, command.happened)
        elif isinstance(command, PlayBriefing):
            effects.play_briefing(call, command.warm)
        elif isinstance(command, StartConfirmTimer):
            effects.start_confirm_timer(call, command.warm)
        elif isinstance(command, Connect):
            effects.connect(call, command.warm)
        elif isinstance(command, HangUpAgent):
            effects.hang_up_agent(call, command.warm)
        elif isinstance(command, StopHold):
            effects.stop_hold(call, command.warm)
        elif isinstance(command, SettleConsult):
            effects.settle(call, command.warm, command.failed, command.status, command.reason)
        elif isinstance(command, EndLiveBriefing):
            effects.end_live_briefing(call, command.warm)

    def _transfer(self, call: Call, command: Command) -> None:
        """A transfer attempt's command, through the port (engine/effects.py)."""
        effects = self.transfers
        assert effects is not None
        if isinstance(command, RecordProgress):
            effects.record_progress(call, command.transfer, command.status)
        elif isinstance(command, RecordAccepted):
            effects.record_accepted(call, command.transfer, command.status, command.subscription)
        elif isinstance(command, NotifyBot):
            effects.notify_bot(call, command.transfer)
        elif isinstance(command, StopPlay):
            effects.stop_play(call, command.transfer)
        elif isinstance(command, SwapBridge):
            effects.swap_bridge(call, command.transfer, command.leg)
        elif isinstance(command, DropLeg):
            effects.drop_leg(call, command.transfer, command.leg)
        elif isinstance(command, HandBack):
            effects.hand_back(call, command.transfer, command.headers)
        elif isinstance(command, Leave):
            effects.leave(call, command.transfer)
        elif isinstance(command, ReleaseBot):
            effects.release_bot(call, command.transfer)
        elif isinstance(command, Settle):
            effects.settle(call, command.transfer, command.succeeded, command.status, command.reason)

    def _start_timer(self, call: Call, command: StartTimer) -> None:
        timer, attempt = command.timer, command.attempt
        self.timers.arm(call, (timer, attempt), command.due,
                        lambda now: self.feed(call, TimerFired(timer, now, attempt)))


def _dialing(attempt: object) -> Dialing:
    assert isinstance(attempt, Dialing)
    return attempt


__all__ = ["CallTimers", "Executor", "TimerHandler"]
