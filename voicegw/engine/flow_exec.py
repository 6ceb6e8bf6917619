"""Running a call's flow when voicegw itself is the bot (the built-in demo, IVR nodes).

The flow runner (:mod:`voicegw.flow.runner`) is pure; this carries out its actions on
the caller's leg: prompts (TTS or tones), DTMF collection, agent transfers through the
fallback machine, and the post-agent resume when the agent hangs up first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import structlog

from ..flow.runner import (
    Action,
    AgentTransferNode,
    ConnectBot,
    EndCall,
    Flow,
    FlowRunner,
    PlayPrompt,
    StartTransfer,
    WaitForDigit,
)
from ..media import tones
from ..media.prompts import load_prompt
from ..media.tts import EspeakTts, TtsError
from ..media.wav import WavError
from ..settings import LegPolicy
from ..sip.uri import SipUri, parse_uri
from .call import Call, CallInput, CallState, Leg
from .control_io import BotNodeDialled, BotNodeFailed
from .dial import LegInvite, NotDialled, dial_leg
from .events import (
    FlowDtmfReceived,
    FlowEnded,
    FlowPromptStarted,
    FlowResumed,
    LegAnswered,
    LegDialing,
    LegFailed,
)
from .fallback_runner import transfer_with_fallback
from .outbound import apply_media
from .ports import CallHost
from .transfer_state import TransferOptions

log = structlog.get_logger("voicegw.engine")


def flow_of(call: Call, engine: CallHost) -> Flow:
    """The flow of the call's channel (the engine's flow for a call made without one)."""
    return call.channel.flow if call.channel is not None else engine.config.flow


@dataclass(eq=False)
class FlowRun:
    """One run of a call's flow: where it is (the pure runner) and the caller's digits
    not read yet. A bot node's ``BotNodeDialled`` carries it to the controller, which
    hands it back in ``BotNodeOver``: where the flow goes on."""

    runner: FlowRunner
    digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)


class FlowExecutor:
    def __init__(self, engine: CallHost, tts: EspeakTts) -> None:
        self.engine = engine
        self.tts = tts

    async def run(self, call: Call, at: str | None = None) -> None:
        flow = FlowRun(FlowRunner(flow_of(call, self.engine)))
        await self._drive(call, flow, flow.runner.start(at))

    async def _drive(self, call: Call, flow: FlowRun, action: Action) -> None:
        """Carry out the flow's actions from ``action`` on, until it ends, hands the
        caller to an agent, or a bot node dialled its bot: then this task ends, and the
        bot's end (a controller input) starts the flow again where it left off."""
        engine = self.engine
        endpoint = call.caller.endpoint
        assert endpoint is not None
        runner, digits = flow.runner, flow.digits

        def on_digit(digit: str) -> None:
            digits.put_nowait(digit)
            call.record(engine.now(), FlowDtmfReceived(digit))

        endpoint.on_dtmf = on_digit  # the flow listens (again, after a bot node)
        endpoint._changed()
        for digit in call.take_digits():  # pressed before the flow listened
            on_digit(digit)
        for _ in range(runner.max_steps):
            if call.state is not CallState.CONNECTED:
                return
            if isinstance(action, PlayPrompt):
                call.record(engine.now(), FlowPromptStarted(runner.current))
                samples = self._wav(action.file) if action.file else None
                if samples is None:
                    samples = await self.render(action.text)
                player = engine.media.play(endpoint, samples)
                call.resources.append(player)
                await player.wait()
                action = runner.prompt_finished()
            elif isinstance(action, ConnectBot):
                status = await self._connect_bot(call, flow, action)
                if status is None or call.state is not CallState.CONNECTED:
                    return  # the bot was dialled: its end goes on with the flow (bot_over)
                action = runner.bot_failed(status)
            elif isinstance(action, WaitForDigit):
                try:
                    digit = await asyncio.wait_for(digits.get(), action.timeout)
                except TimeoutError:
                    action = runner.timed_out()
                else:
                    action = runner.digit(digit) or action
            elif isinstance(action, StartTransfer):
                node = runner.flow.nodes[runner.current]
                assert isinstance(node, AgentTransferNode)
                attempts, policy = node.attempts(), node.policy()
                options = TransferOptions(headers=node.headers, destination=node.destination,
                                          ring_timeout=node.ring_timeout, context_headers=node.context_headers,
                                          caller_id=node.caller_id)
                outcome = await transfer_with_fallback(engine, call, attempts, policy, trigger="flow",
                                                       options=options)
                if outcome.kind in ("connected", "gone"):
                    return  # the agent has the caller now, or the caller left
                if outcome.kind == "goto" and outcome.node:
                    action = runner.goto(outcome.node)
                else:
                    action = EndCall(outcome.reason or "transfer failed")
            else:
                assert isinstance(action, EndCall)
                call.record(engine.now(), FlowEnded(action.reason))
                engine.end(call, CallInput.HUNG_UP, f"flow: {action.reason}")
                return

    async def _connect_bot(self, call: Call, flow: FlowRun, action: ConnectBot) -> object | None:
        """A flow's bot node: dial the bot and bridge the caller to it once it answers.
        None when the bot was dialled: the controller then holds the bot node
        (``BotNodeDialled``) and answers ``BotNodeOver`` when the bot hangs up or never
        answers, which :meth:`bot_over` carries out. Else the status it failed with
        before any INVITE left. The caller leg stays."""
        engine = self.engine
        uri = parse_uri(action.uri)
        caller = call.caller
        if not isinstance(uri, SipUri) or caller.endpoint is None:
            return "policy"

        def answered(leg: Leg, media: object) -> None:
            assert leg.endpoint is not None
            apply_media(leg.endpoint, media)  # type: ignore[arg-type]
            call.resources.append(engine.media.bridge(caller.endpoint, leg.endpoint))  # type: ignore[arg-type]
            call.record(engine.now(), LegAnswered("bot"))

        def failed(leg: Leg, status: object, reason: str) -> None:
            call.record(engine.now(), LegFailed("bot", status, reason))
            assert leg.endpoint is not None
            leg.endpoint.close()
            if call.bot is leg:
                call.bot = None
            engine.control(call, BotNodeFailed(leg, status))

        user = caller.invite.from_.uri.user if caller.invite and isinstance(caller.invite.from_.uri, SipUri) else None
        legs: list[Leg] = []

        def prepare(leg: Leg) -> None:
            legs.append(leg)
            # before the INVITE leaves: a failure at once (DNS) finds the node held
            engine.control(call, BotNodeDialled(leg, flow))

        leg = await dial_leg(
            engine, call, "bot", uri, LegInvite(answer_timeout=action.answer_timeout, caller_user=user or "voicegw",
                                                policy=engine.config.transfer.legs.get(str(uri)) or LegPolicy()),
            while_in=CallState.CONNECTED, prepare=prepare, dialling=LegDialing("bot", str(uri)),
            on_progress=lambda response, early: None,
            on_answer=lambda response, media: answered(legs[0], media),
            on_failure=lambda status, reason: failed(legs[0], status, reason))
        if leg is NotDialled.NO_PORTS:
            return 503
        if leg is NotDialled.CALL_MOVED_ON:
            return "call_ended"
        return None

    def bot_over(self, call: Call, leg: Leg, flow: FlowRun, status: object | None) -> None:
        """The bot a flow's bot node dialled hung up (``status`` None) or never
        answered (its status): the flow goes on with the caller from ``flow``'s node,
        in a task of its own."""
        bridge = self.engine.bridge(call)
        if bridge is not None and status is None:
            bridge.close()
        if leg.endpoint is not None:
            leg.endpoint.close()
        if call.bot is leg:
            call.bot = None
        if call.state is not CallState.CONNECTED:
            return
        action = flow.runner.bot_finished() if status is None else flow.runner.bot_failed(status)
        call.flow_task = self.engine.spawn(self._drive(call, flow, action), call)

    @staticmethod
    def _wav(path: str) -> np.ndarray | None:
        try:
            return load_prompt(path)
        except (OSError, WavError) as error:
            log.warning("flow.prompt_unreadable", file=path, error=str(error))
            return None

    async def render(self, text: str) -> np.ndarray:
        try:
            return await self.tts.render(text)
        except TtsError as error:
            log.warning("tts.failed", error=str(error))
            return tones.ToneGenerator(tones.HOLD_BEEP).read(8000)

    def can_resume_after_agent(self, call: Call) -> bool:
        """The call runs a flow that names a post_agent node, and is connected."""
        return (flow_of(call, self.engine).post_agent is not None and call.flow_task is not None
                and call.state is CallState.CONNECTED)

    def resume_after_agent(self, call: Call) -> None:
        """The agent hung up first: the flow's post_agent node takes the caller back
        (a survey, a goodbye)."""
        engine = self.engine
        post_agent = flow_of(call, engine).post_agent
        if post_agent is None or call.flow_task is None or call.state is not CallState.CONNECTED:
            return
        bridge = engine.bridge(call)
        if bridge is not None:
            bridge.close()
        if call.agent is not None and call.agent.endpoint is not None:
            call.agent.endpoint.close()
        call.record(engine.now(), FlowResumed(post_agent))
        if call.flow_task is not None:
            call.flow_task.cancel()
        if call.caller.endpoint is not None:
            call.caller.endpoint.on_dtmf = call.hold_digit  # until the resumed flow listens
        call.flow_task = engine.spawn(self.run(call, at=post_agent), call)
