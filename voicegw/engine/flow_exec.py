"""Running a call's flow when voicegw itself is the bot (the built-in demo, IVR nodes).

The flow runner (:mod:`voicegw.flow.runner`) is pure; this carries out its actions on
the caller's leg: prompts (TTS or tones), DTMF collection, agent transfers through the
fallback machine, and the post-agent resume when the agent hangs up first.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np
import structlog

from ..flow.runner import AgentTransferNode, EndCall, FlowRunner, PlayPrompt, StartTransfer, WaitForDigit
from ..media import tones
from ..media.player import play_samples
from ..media.tts import TtsError
from .call import Call, CallInput, CallState
from .fallback import Attempt
from .fallback_runner import default_policy, transfer_with_fallback

if TYPE_CHECKING:
    from .b2bua import Engine

log = structlog.get_logger("voicegw.engine")


class FlowExecutor:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def run(self, call: Call, at: str | None = None) -> None:
        engine = self.engine
        endpoint = call.caller.endpoint
        assert endpoint is not None
        digits: asyncio.Queue[str] = asyncio.Queue()

        def on_digit(digit: str) -> None:
            digits.put_nowait(digit)
            call.record(engine.now(), "flow.dtmf", digit=digit)
            log.info("flow.dtmf", call_id=call.id, digit=digit)

        endpoint.on_dtmf = on_digit
        endpoint._changed()
        runner = FlowRunner(engine.config.flow)
        action = runner.start(at)
        for _ in range(runner.max_steps):
            if call.state is not CallState.CONNECTED:
                return
            if isinstance(action, PlayPrompt):
                call.record(engine.now(), "flow.prompt", node=runner.current)
                player = play_samples(endpoint, await self.render(action.text))
                call.resources.append(player)
                await player.wait()
                action = runner.prompt_finished()
            elif isinstance(action, WaitForDigit):
                try:
                    digit = await asyncio.wait_for(digits.get(), action.timeout)
                except asyncio.TimeoutError:
                    action = runner.timed_out()
                else:
                    action = runner.digit(digit) or action
            elif isinstance(action, StartTransfer):
                node = runner.flow.nodes[runner.current]
                assert isinstance(node, AgentTransferNode)
                attempts = [Attempt(node.method, node.target)] + [Attempt(m, t) for m, t in node.more_attempts]
                policy = node.fallback or default_policy(node.on_failure)
                outcome = await transfer_with_fallback(engine, call, attempts, policy, trigger="flow")
                if outcome.kind in ("connected", "gone"):
                    return  # the agent has the caller now, or the caller left
                if outcome.kind == "goto" and outcome.node:
                    action = runner.goto(outcome.node)
                else:
                    action = EndCall(outcome.reason or "transfer failed")
            else:
                assert isinstance(action, EndCall)
                call.record(engine.now(), "flow.end", reason=action.reason)
                engine.end(call, CallInput.HUNG_UP, f"flow: {action.reason}")
                return

    async def render(self, text: str) -> np.ndarray:
        try:
            return await self.engine.tts.render(text)
        except TtsError as error:
            log.warning("tts.failed", error=str(error))
            return tones.ToneGenerator(tones.HOLD_BEEP).read(8000)

    def resume_after_agent(self, call: Call) -> bool:
        """The agent hung up first: the flow's post_agent node takes the caller back
        (a survey, a goodbye), when the call runs a flow and the flow names one."""
        engine = self.engine
        post_agent = engine.config.flow.post_agent
        if post_agent is None or call.bot is not None or call.state is not CallState.CONNECTED:
            return False
        bridge = engine.bridge(call)
        if bridge is not None:
            bridge.close()
        if call.agent is not None and call.agent.endpoint is not None:
            call.agent.endpoint.close()
        call.record(engine.now(), "flow.post_agent", node=post_agent)
        call.flow_task = engine.spawn(self.run(call, at=post_agent), call)
        return True
