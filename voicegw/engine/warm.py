"""Warm (attended) transfers: brief the agent, then connect (issue: warm transfer).

The consult machine (:mod:`voicegw.engine.consult`) decides, fed through the call's
controller, whose commands the executor carries out by this module's ConsultEffects
methods (engine/effects.py), on a live call:

- a consult leg C to the agent while the caller stays with the bot, or hears the
  configured hold audio (music file, TTS notice, silence);
- when C answers, a briefing for the agent only (TTS of the summary, and/or an
  audio file), then optionally a DTMF confirmation (accept / decline keys);
- completion by bridge (the caller's media switches to C, the bot gets BYE) or by
  REFER with Replaces on the caller's leg (RFC 3891, RFC 5589 7): the carrier joins
  caller and agent and voicegw leaves the path.

Its outcome is a :class:`~voicegw.engine.transfer_state.Transfer` like any other, so the
fallback rules see ``declined``, ``no_answer`` and SIP codes the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from ..media.player import Player
from ..media.prompts import followed_by_silence, load_prompt
from ..media.wav import WavError
from ..settings import WarmSettings
from ..sip.events import TransactionTimedOut
from ..sip.locate import literal_hop
from ..sip.message import Request
from ..sip.refer import ReferSubscriptions
from ..sip.uri import SipUri
from .call import Call, CallState, Leg
from .consult import ConsultError, ConsultMachine, Input, State
from .control_io import ConsultFed, LiveBriefingDue, ReferSent
from .desk_leg import DeskLegEvents
from .dial import LegInvite, NotDialled, dial_leg
from .events import (
    AgentDtmfReceived,
    BriefingStarted,
    LegConsulting,
    LiveBriefingStarted,
    ReferReplacesSent,
    WarmTransferMoved,
)
from .outbound import apply_media, peer_of
from .ports import CallHost
from .transfer_state import Transfer

log = structlog.get_logger("voicegw.warm")


@dataclass(eq=False)
class WarmTransfer:
    transfer: Transfer
    settings: WarmSettings
    machine: ConsultMachine
    leg: Leg
    hold: Player | None = None
    briefing: Player | None = None
    context: dict[str, str] | None = None
    refer_id: int | None = None
    live: Any = None
    """The bot <-> agent bridge of a live briefing, while it lasts."""
    live_over: asyncio.Future[None] | None = None
    """Resolved when the live briefing's time is up or the machine leaves BRIEFING."""


class WarmTransfers:
    def __init__(self, engine: CallHost) -> None:
        self.engine = engine
        self.by_call: dict[str, WarmTransfer] = {}

    # ------------------------------------------------------------------ entry points
    async def run(self, call: Call, transfer: Transfer, uri: SipUri, headers: list[tuple[str, str]],
                  settings: WarmSettings, context: dict[str, str]) -> None:

        engine = self.engine
        hold = await self._hold(call, settings)  # the caller waits from now on
        headers = list(headers)
        from_ = engine.transfers.identity(call, transfer, peer_of(uri, transfer.legs.transport), headers)
        made: list[WarmTransfer] = []

        def prepare(leg: Leg) -> None:
            warm = WarmTransfer(transfer, settings, ConsultMachine(), leg, hold=hold, context=context)
            made.append(warm)
            self.by_call[call.key] = warm
            assert leg.endpoint is not None
            leg.endpoint.on_dtmf = lambda digit: self._digit(call, warm, digit)

        leg = await dial_leg(
            engine, call, "agent", uri,
            LegInvite(answer_timeout=transfer.options.ring_timeout or engine.transfers.config.ring_timeout,
                      from_=from_, headers=tuple(headers), policy=transfer.legs),
            while_in=CallState.CONNECTED, prepare=prepare,
            dialling=LegConsulting("agent", str(uri), transfer.id),
            # the consult leg's early media is not the caller's: the caller is on hold (or
            # with the bot) until the warm transfer completes, as in any attended transfer
            on_progress=lambda response, early: engine.transfers.progress(call, transfer, response.status),
            on_answer=lambda response, media: self._answered(call, made[0], media),
            on_failure=lambda status, reason: self._feed(
                call, made[0], Input.DIAL_FAILED, "no_answer" if status == "timeout" else status, reason),
        )
        if isinstance(leg, NotDialled) and hold is not None:
            hold.stop()
        if leg is NotDialled.NO_PORTS:
            engine.transfers.finish(call, transfer, 503, "no media ports")

    async def run_desk(self, call: Call, transfer: Transfer, settings: WarmSettings, context: dict[str, str],
                       desk: Any) -> None:
        """The consult leg to an agent at the desk (engine/desk.py ``ring``): the page
        rings, the agent's accept is the answer, the briefing plays into the page, and
        the page's warm controls are the agent's keys (accept, decline) and the
        operator's (complete, cancel)."""
        hold = await self._hold(call, settings)
        made: list[WarmTransfer] = []

        def prepare(leg: Leg) -> None:
            warm = WarmTransfer(transfer, settings, ConsultMachine(), leg, hold=hold, context=context)
            made.append(warm)
            self.by_call[call.key] = warm

        def events(leg: Leg) -> DeskLegEvents:
            return DeskLegEvents(
                answered=lambda: self._feed(call, made[0], Input.ANSWERED),
                failed=lambda status, reason: self._feed(call, made[0], Input.DIAL_FAILED, status, reason),
                hung_up=lambda: desk.hung_up(call, leg),
                hold=lambda on: desk.hold(call, leg, on),
                warm=lambda action: self._desk_action(call, made[0], action),
            )

        rung = await desk.ring(call, transfer, {**context, "warm": "1"},
                               dialling=LegConsulting("agent", transfer.target, transfer.id),
                               prepare=prepare, events=events)
        if isinstance(rung, Leg):
            return
        status, reason, _ = rung
        if made:
            self._feed(call, made[0], Input.DIAL_FAILED, status, reason)
            return
        if hold is not None:
            hold.stop()
        self.engine.transfers.finish(call, transfer, status, reason)

    def _desk_action(self, call: Call, warm: WarmTransfer, action: str) -> None:
        event = _DESK_ACTIONS.get(action)
        if event is None:
            return
        try:
            self._feed(call, warm, event, reason="the agent declined" if event is Input.DECLINED else "cancelled")
        except ConsultError as error:  # e.g. complete before the briefing: the page is told nothing
            log.info("warm.desk_action_refused", action=action, error=str(error))

    def complete(self, call: Call) -> None:
        """Connect now (flow, API, CLI); raises ConsultError before the agent answered."""
        self._feed(call, self._get(call), Input.COMPLETE)

    def cancel(self, call: Call) -> None:
        """Abandon the consult: the agent gets BYE/CANCEL, the caller goes back."""
        self._feed(call, self._get(call), Input.CANCEL, reason="cancelled")

    def consulting(self, call: Call) -> bool:
        """A warm transfer of the call is under way (its consult machine not finished)."""
        warm = self.by_call.get(call.key)
        return warm is not None and not warm.machine.finished

    def agent_hung_up(self, call: Call) -> None:
        """The consult leg got a BYE from the agent: the consult machine decides."""
        if self.consulting(call):
            self._feed(call, self.by_call[call.key], Input.AGENT_HUNG_UP, reason="the agent hung up")

    def call_ended(self, call: Call) -> None:
        warm = self.by_call.pop(call.key, None)
        if warm is not None and warm.hold is not None:
            warm.hold.stop()  # looped hold audio: it would play on the closed endpoint forever
        if warm is not None and not warm.machine.finished:
            self._feed(call, warm, Input.CALLER_GONE, reason="the caller hung up")

    def _get(self, call: Call) -> WarmTransfer:
        warm = self.by_call.get(call.key)
        if warm is None or warm.machine.finished:
            raise ConsultError("no warm transfer in progress")
        return warm

    # ------------------------------------------------------------------ machine I/O
    def _feed(self, call: Call, warm: WarmTransfer, event: Input, status: Any = None, reason: str = "") -> None:
        """Feed the consult machine through the call's controller: it answers commands
        (engine/control_io.py) that the executor carries out by the methods below (the
        ConsultEffects port, engine/effects.py)."""
        self.engine.control(call, ConsultFed(warm, warm.machine, event, status, reason, now=self.engine.now(),
                                             confirm_after=warm.settings.confirm_timeout))

    def record_consult(self, call: Call, warm: WarmTransfer, state: State, happened: Input) -> None:
        call.record(self.engine.now(), WarmTransferMoved(warm.transfer.id, state.value, happened.value))

    def play_briefing(self, call: Call, warm: WarmTransfer) -> None:
        self.engine.spawn(self._brief(call, warm), call)

    def connect(self, call: Call, warm: WarmTransfer) -> None:
        if warm.briefing is not None:
            warm.briefing.stop()
        if warm.settings.complete_by == "refer" and warm.leg.dialog is not None:  # a desk leg has no dialog
            self._refer_replaces(call, warm)
        else:
            self._bridge(call, warm)

    def hang_up_agent(self, call: Call, warm: WarmTransfer) -> None:
        self.engine.outbound.drop(warm.leg)
        self._drop_agent(call, warm)

    def stop_hold(self, call: Call, warm: WarmTransfer) -> None:
        if warm.hold is not None:
            warm.hold.stop()  # the bridge gives the caller the bot's audio again

    def settle(self, call: Call, warm: WarmTransfer, failed: bool, status: Any, reason: str) -> None:
        if failed:
            self._drop_agent(call, warm)
        self.engine.transfers.finish(call, warm.transfer, status, reason)

    def end_live_briefing(self, call: Call, warm: WarmTransfer) -> None:
        _resolve(warm.live_over)  # accepted, declined, completed, gone: the live briefing ends

    # ------------------------------------------------------------------ steps
    async def _hold(self, call: Call, settings: WarmSettings) -> Player | None:
        endpoint = call.caller.endpoint
        assert endpoint is not None
        if settings.hold == "music" and settings.hold_file:
            try:
                return self.engine.media.hold(endpoint, load_prompt(settings.hold_file))
            except (OSError, WavError) as error:
                log.warning("warm.hold_unreadable", file=settings.hold_file, error=str(error))
                return self.engine.media.hold(endpoint)
        if settings.hold == "music":
            return self.engine.media.hold(endpoint)
        if settings.hold == "tts":
            notice = await self.engine.render(settings.hold_text)
            return self.engine.media.hold(endpoint, followed_by_silence(notice, 20.0))
        if settings.hold == "silence":
            return self.engine.media.hold(endpoint, np.zeros(8000, dtype=np.int16))
        return None  # "bot": the caller keeps talking to the bot

    def _answered(self, call: Call, warm: WarmTransfer, media: Any) -> None:

        assert warm.leg.endpoint is not None
        apply_media(warm.leg.endpoint, media)
        self._feed(call, warm, Input.ANSWERED)

    async def _brief(self, call: Call, warm: WarmTransfer) -> None:
        """The briefing plays on the agent's leg only; the caller cannot hear it."""
        endpoint = warm.leg.endpoint
        assert endpoint is not None
        settings = warm.settings
        context = {"summary": "", "caller": "", **(warm.context or {})}
        parts: list[np.ndarray] = []
        if settings.briefing_text:
            text = settings.briefing_text.format_map(_Missing(context))
            parts.append(await self.engine.render(text))
        if settings.briefing_file:
            try:
                parts.append(load_prompt(settings.briefing_file))
            except (OSError, WavError) as error:
                log.warning("warm.briefing_unreadable", file=settings.briefing_file, error=str(error))
        if parts and warm.machine.state is State.BRIEFING:
            call.record(self.engine.now(), BriefingStarted(warm.transfer.id))
            # one prompt stays the shared (read-only) array: encoded once for every call
            briefing = parts[0] if len(parts) == 1 else np.concatenate(parts)
            warm.briefing = self.engine.media.play(endpoint, briefing)
            call.resources.append(warm.briefing)
            await warm.briefing.wait()
        if settings.bot_briefing_seconds > 0 and warm.machine.state is State.BRIEFING:
            await self._live_briefing(call, warm, settings.bot_briefing_seconds)
        if warm.machine.state is State.BRIEFING:
            self._feed(call, warm, Input.BRIEFED_CONFIRM if settings.confirm else Input.BRIEFED)
            if warm.machine.state is State.READY and settings.auto_complete:
                self._feed(call, warm, Input.COMPLETE)

    async def _live_briefing(self, call: Call, warm: WarmTransfer, seconds: float) -> None:
        """The bot speaks the handover to the agent itself: bot <-> agent for
        ``seconds``, the caller off the bot meanwhile (never on the agent's leg)."""
        bot, agent = call.bot, warm.leg
        caller_bridge = self.engine.bridge(call)
        if bot is None or not bot.up or bot.endpoint is None or agent.endpoint is None or caller_bridge is None:
            return
        caller_bridge.close()
        warm.live = self.engine.media.bridge(bot.endpoint, agent.endpoint)
        call.record(self.engine.now(), LiveBriefingStarted(warm.transfer.id, seconds))
        # the controller's timer (or the consult leaving BRIEFING) answers EndLiveBriefing,
        # which resolves the future; the call's end cancels the timer and this task
        warm.live_over = self.engine.loop.create_future()
        self.engine.control(call, LiveBriefingDue(warm, self.engine.now() + seconds))
        try:
            await warm.live_over
        finally:
            warm.live_over = None
        self._end_live(call, warm)

    def _end_live(self, call: Call, warm: WarmTransfer) -> None:
        """Close the live briefing and give the caller back to the bot."""
        live, warm.live = warm.live, None
        if live is None:
            return
        live.close()
        bot, caller = call.bot, call.caller
        if (bot is not None and bot.up and bot.endpoint is not None and caller.endpoint is not None
                and not caller.endpoint.closed):
            call.resources.append(self.engine.media.bridge(caller.endpoint, bot.endpoint))

    def _digit(self, call: Call, warm: WarmTransfer, digit: str) -> None:
        call.record(self.engine.now(), AgentDtmfReceived(warm.transfer.id, digit))
        if digit == warm.settings.accept_digit:
            self._feed(call, warm, Input.ACCEPTED)
        elif digit == warm.settings.decline_digit:
            self._feed(call, warm, Input.DECLINED, reason="the agent declined")

    def _bridge(self, call: Call, warm: WarmTransfer) -> None:
        engine = self.engine
        self._end_live(call, warm)
        if warm.hold is not None:
            warm.hold.stop()
        caller = call.caller
        assert caller.endpoint is not None and warm.leg.endpoint is not None
        warm.leg.endpoint.on_dtmf = None
        engine.transfers.connect_agent(call, warm.transfer, warm.leg)  # and the bot's BYE, by the one rule
        self._feed(call, warm, Input.COMPLETED_OK)

    def _refer_replaces(self, call: Call, warm: WarmTransfer) -> None:
        """RFC 5589 7: REFER the caller's leg to the agent, with Replaces naming our
        consult dialog as the agent sees it (to-tag = the agent's tag, RFC 3891 3)."""
        engine = self.engine
        leg, consult = call.caller, warm.leg.dialog
        assert leg.dialog is not None and consult is not None
        replaces = f"{consult.id.call_id};to-tag={consult.id.remote_tag};from-tag={consult.id.local_tag}"
        if call.refers is None:
            config = engine.transfers.config
            call.refers = ReferSubscriptions(leg.dialog, response_timeout=config.refer_timeout,
                                             notify_timeout=config.notify_timeout)
        target = consult.remote_target
        request, hop, refer = call.refers.refer(target, engine.now(), embedded_headers=[("Replaces", replaces)])
        warm.refer_id = refer.refer_id
        engine.control(call, ReferSent(refer.refer_id, warm, warm.machine))

        def resent(old: Request, again: Request) -> None:  # a challenge answered (22.2)
            if call.refers is not None:
                call.refers.resent(old.cseq.seq, again.cseq.seq)
            if warm.refer_id == old.cseq.seq:
                warm.refer_id = again.cseq.seq
                engine.control(call, ReferSent(again.cseq.seq, warm, warm.machine))

        engine.send_request(request, literal_hop(hop, leg.peer), lambda event: self._refer_event(call, warm, event), call,
                            leg=leg, on_resent=resent)
        engine.transfers.pump_refers(call)
        call.record(engine.now(), ReferReplacesSent(warm.transfer.id, refer.refer_id))

    def _refer_event(self, call: Call, warm: WarmTransfer, event: Any) -> None:
        refers = call.refers
        if refers is None:
            return
        if isinstance(event, TransactionTimedOut):
            refer = refers.get(warm.refer_id or -1)
            if refer is not None:
                refer.transaction_timed_out(self.engine.now())
        else:
            refers.receive_response(event.response, self.engine.now())
        self.engine.transfers.pump_refers(call)

    def _drop_agent(self, call: Call, warm: WarmTransfer) -> None:
        self._end_live(call, warm)
        leg = warm.leg
        if warm.briefing is not None:
            warm.briefing.stop()  # a decline or hang-up mid-briefing: it must not outlive the leg
        if leg.endpoint is not None:
            leg.endpoint.on_dtmf = None
            leg.endpoint.close()
        if call.agent is leg:
            call.agent = None


_DESK_ACTIONS = {"accept": Input.ACCEPTED, "decline": Input.DECLINED, "complete": Input.COMPLETE,
                 "cancel": Input.CANCEL}


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class _Missing(dict):  # type: ignore[type-arg]
    """format_map that leaves unknown {names} empty instead of failing."""

    def __missing__(self, key: str) -> str:
        return ""
