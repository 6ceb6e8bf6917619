"""The executor: feeds a call's controller and carries its commands out.

The controller (engine/controller.py) is pure; this is the one engine module that
turns its commands into effects on the event loop: it arms and cancels the timers
(the loop's clock is read here, at the edge, and comes back as ``TimerFired(now)``),
ends an outgoing leg's INVITE on its session, tells whoever dialled a leg what became
of it, and drops an ended call from the engine's indexes; every other command goes
to a port (engine/effects.py) by one table, :data:`THROUGH_PORTS`: a transfer
attempt's (stop the waiting audio, swap the bridge, drop a leg, BYE, NOTIFY the bot,
record, settle, tick the REFER subscriptions), a warm transfer's consult, what a
leg's BYE means, the RTP inactivity check. Every timer of a call is the controller's
(a ring timeout, a warm transfer's confirm timeout and live briefing, our REFER
subscriptions' timer, the RTP inactivity check, the forget backstop), armed here
through :class:`CallTimers`.

Why a timer handle is kept on the call: ``Engine.end`` cancels every timer a call
still holds. The forget timer (a backstop, when a leg's session outlives the end) is
armed after the end on purpose, and cancelled when the last session is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from . import control_io as io
from .call import Call
from .controller import CallController
from .effects import ByeEffects, ConsultEffects, MediaEffects, TransferEffects
from .outbound import Dialing, OutboundLegs

#: The commands carried out through a port (engine/effects.py): the executor's
#: attribute holding the port, and its method, called with the call and the command's
#: fields in order (tests/engine/test_executor_table.py checks the names match).
THROUGH_PORTS: dict[type, tuple[str, str]] = {
    # a transfer attempt's machine (TransferEffects: engine/transfer.py's Transfers)
    io.RecordProgress: ("transfers", "record_progress"),
    io.RecordAccepted: ("transfers", "record_accepted"),
    io.NotifyBot: ("transfers", "notify_bot"),
    io.StopPlay: ("transfers", "stop_play"),
    io.SwapBridge: ("transfers", "swap_bridge"),
    io.DropLeg: ("transfers", "drop_leg"),
    io.HandBack: ("transfers", "hand_back"),
    io.Leave: ("transfers", "leave"),
    io.ReleaseBot: ("transfers", "release_bot"),
    io.Settle: ("transfers", "settle"),
    io.TickRefers: ("transfers", "tick_refers"),
    # a warm transfer's consult machine (ConsultEffects: engine/warm.py's WarmTransfers)
    io.RecordConsult: ("consults", "record_consult"),
    io.PlayBriefing: ("consults", "play_briefing"),
    io.Connect: ("consults", "connect"),
    io.HangUpAgent: ("consults", "hang_up_agent"),
    io.StopHold: ("consults", "stop_hold"),
    io.SettleConsult: ("consults", "settle"),
    io.EndLiveBriefing: ("consults", "end_live_briefing"),
    # what a leg's BYE means (ByeEffects: the engine)
    io.LetBotGo: ("byes", "let_bot_go"),
    io.TakeContext: ("byes", "take_context"),
    io.BotNodeOver: ("byes", "bot_node_over"),
    io.ConsultAgentGone: ("byes", "consult_agent_gone"),
    io.ResumeAfterAgent: ("byes", "resume_after_agent"),
    io.EndCall: ("byes", "end_call"),
    # the RTP inactivity check (MediaEffects: the engine)
    io.CheckMedia: ("media", "check_media"),
}

_FIELDS: dict[type, tuple[str, ...]] = {kind: tuple(f.name for f in fields(kind)) for kind in THROUGH_PORTS}

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
        self.media: MediaEffects | None = None
        """Runs the RTP inactivity check (the engine)."""

    def controller(self, call: Call) -> CallController:
        controller = call.controller
        if controller is None:
            controller = call.controller = CallController(self._forget_after)
        return controller

    def feed(self, call: Call, event: io.Input) -> None:
        """Feed the call's controller one input and carry out its commands, in order."""
        for command in self.controller(call).feed(event):
            own = _OWN.get(type(command))
            if own is not None:
                own(self, call, command)
            else:
                port, method = THROUGH_PORTS[type(command)]
                getattr(getattr(self, port), method)(call, *(getattr(command, name) for name in _FIELDS[type(command)]))

    # the commands the executor carries out itself: timers, a dial attempt, the end
    def _start_timer(self, call: Call, command: io.StartTimer) -> None:
        timer, attempt = command.timer, command.attempt
        self.timers.arm(call, (timer, attempt), command.due,
                        lambda now: self.feed(call, io.TimerFired(timer, now, attempt)))

    def _cancel_timer(self, call: Call, command: io.CancelTimer) -> None:
        call.cancel_timer((command.timer, command.attempt))

    def _decide(self, call: Call, command: io.Decide) -> None:
        self._outbound.decide(_dialing(command.attempt), command.answered)

    def _forget_call(self, call: Call, command: io.Forget) -> None:
        self._forget(call)


def _dialing(attempt: object) -> Dialing:
    assert isinstance(attempt, Dialing)
    return attempt




_OWN: dict[type, Callable[[Executor, Call, Any], None]] = {
    io.StartTimer: Executor._start_timer,
    io.CancelTimer: Executor._cancel_timer,
    io.Decide: Executor._decide,
    io.Forget: Executor._forget_call,
    # the dialler of an attempt hears what became of it
    io.Cancel: lambda executor, call, command: _dialing(command.attempt).end(),
    io.TellProgress: lambda executor, call, command: _dialing(command.attempt).on_progress(command.response,
                                                                                           command.early_media),
    io.TellAnswer: lambda executor, call, command: _dialing(command.attempt).on_answer(None, command.media),
    io.TellFailure: lambda executor, call, command: _dialing(command.attempt).on_failure(command.status,
                                                                                         command.reason),
}


__all__ = ["THROUGH_PORTS", "CallTimers", "Executor", "TimerHandler"]
