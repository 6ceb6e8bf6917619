"""Carrying out a transfer with its fallback: the pure machine decides, this runs it.

:class:`~voicegw.engine.fallback.FallbackMachine` says what to do after each
outcome (start an attempt, play a prompt, go to a node, end the call); this module
does it on a live call and reports where the call's flow continues. The caller's
leg stays up throughout: only an explicit ``end`` rule ends the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from ..flow.fallback_policy import NAMED_STATUSES, Attempt, FallbackPolicy, FallbackRule, Prompt
from ..media.prompts import load_prompt
from ..media.wav import WavError
from .call import Call, CallState
from .events import FallbackDecided, FallbackPromptPlayed
from .fallback import EndCall, FallbackMachine, GoToNode, PlayPrompt, StartAttempt
from .ports import CallHost
from .transfer_state import Transfer, TransferOptions, TransferState

log = structlog.get_logger("voicegw.fallback")

@dataclass(frozen=True)
class Outcome:
    """Where the flow goes after the transfer: ``connected`` (the agent has the call),
    ``goto`` a node, ``end`` (the machine ended the call), or ``gone`` (the caller left)."""

    kind: str
    node: str | None = None
    reason: str = ""
    transfer: Transfer | None = None
    """The last attempt."""


#: Where a transfer the bot asked for goes when the fallback gives up: back to the bot.
BACK_TO_BOT = "bot"


def bot_policy(methods: int, retry_prompt: str | None) -> FallbackPolicy:
    """For a bot's REFER: the next method on any failure (with an optional "please
    hold" prompt), and back to the bot when none is left (its NOTIFY says why)."""
    back = FallbackRule("exhausted", "goto", node=BACK_TO_BOT)
    if methods < 2:
        return FallbackPolicy(rules=(), default=back)
    prompt = Prompt(text=retry_prompt) if retry_prompt else None
    return FallbackPolicy(rules=(), default=FallbackRule("default", "next", prompt=prompt, max_attempts=methods),
                          max_total_attempts=methods, on_exhausted=back)


async def transfer_with_fallback(
    engine: CallHost, call: Call, attempts: list[Attempt], policy: FallbackPolicy, *, trigger: str,
    context: dict[str, str] | None = None, options: TransferOptions | None = None,
) -> Outcome:
    """Run the attempts under ``policy``. The last attempt's Transfer is
    ``outcome.transfer``."""
    machine = FallbackMachine(policy, attempts)
    last: Transfer | None = None
    actions = list(machine.start())
    for _ in range(64):  # the machine is bounded by its attempt limits; this is a backstop
        if call.state is CallState.ENDED:
            return Outcome("gone", reason="the caller hung up")
        if not actions:
            break
        action = actions.pop(0)
        if isinstance(action, StartAttempt):
            transfer = engine.transfers.start(call, action.target, action.method, trigger=trigger,
                                              context=context, options=options)
            last = transfer
            await engine.transfers.settled(transfer)
            if transfer.state is TransferState.SUCCEEDED:
                actions = list(machine.succeeded())
                return Outcome("connected", transfer=transfer)
            if call.state is CallState.ENDED or transfer.status in ("call_state", "call_ended"):
                return Outcome("gone", reason=str(transfer.reason), transfer=transfer)
            actions = list(machine.failed(_fallback_status(transfer.status)))
            decision = machine.record[-1]
            call.record(engine.now(), FallbackDecided(transfer.id, decision.status, decision.rule,
                                                      decision.action, decision.why))
        elif isinstance(action, PlayPrompt):
            await _play(engine, call, action.prompt)
            actions = list(machine.prompt_finished())
        elif isinstance(action, GoToNode):
            return Outcome("goto", node=action.node, transfer=last)
        elif isinstance(action, EndCall):
            return Outcome("end", reason=action.reason, transfer=last)
    return Outcome("end", reason="fallback gave no further action", transfer=last)


def _fallback_status(status: Any) -> int | str:
    """A transfer's failure status as the machine takes it (300-699 or a named key)."""
    if isinstance(status, int) and 300 <= status <= 699:
        return status
    if status in NAMED_STATUSES:
        return status
    return 500  # anything else is our own failure: a server error to the rules


async def _play(engine: CallHost, call: Call, prompt: Prompt) -> None:
    endpoint = call.caller.endpoint
    if endpoint is None or call.state is not CallState.CONNECTED:
        return
    samples: np.ndarray
    if prompt.file:
        try:
            samples = load_prompt(prompt.file)
        except (OSError, WavError) as error:
            log.warning("fallback.prompt_unreadable", file=prompt.file, error=str(error))
            samples = await engine.render("Sorry.")
    else:
        samples = await engine.render(prompt.text or "")
    call.record(engine.now(), FallbackPromptPlayed(prompt.text, prompt.file))
    player = engine.media.play(endpoint, samples)
    call.resources.append(player)
    await player.wait()
