"""``voicegw check --simulate FLOW:NODE:STATUS``: what the fallback machine would do when
a transfer from an agent_transfer node fails with STATUS, without placing a call.

It drives the engine's own pure machine (engine/fallback.py) with the node's own
attempts and rules, so the answer is the daemon's answer: the rule that matches and
how, its prompt, then the next attempt (method, target, counts), the node the flow goes
to, or the end of the call. When the rule starts another attempt, the simulation
assumes that attempt fails the same way and goes on, so a retry or ``next`` chain is
shown to its end (bounded by ``max_total_attempts``). ``STATUS`` ``all`` runs one
status of each kind: every code and class the rules name, a code of every class
they do not, each named condition, and a status only the default rule takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..engine.fallback import EndCall, FallbackMachine, GoToNode, PlayPrompt, StartAttempt
from ..flow.fallback_policy import NAMED_MATCHES, FallbackPolicy, Prompt, Status
from ..flow.runner import AgentTransferNode, Flow


class SimulateError(ValueError):
    """A --simulate argument that names nothing simulatable."""


@dataclass(frozen=True, slots=True)
class Step:
    """One failed attempt and what the fallback did about it."""

    attempt: int
    method: str
    target: str
    status: Status
    rule: str
    how: str
    action: str
    prompt: str | None
    then: str
    """``attempt N: METHOD TARGET``, ``goto NODE`` or ``end the call``."""
    attempts_used: int
    max_total_attempts: int


@dataclass(frozen=True, slots=True)
class Simulation:
    flow: str
    node: str
    status: Status
    steps: list[Step] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "node": self.node, "status": self.status,
                "steps": [asdict(step) for step in self.steps]}


def parse_target(text: str) -> tuple[str, str, str]:
    """``FLOW:NODE:STATUS`` -> its three parts."""
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise SimulateError(f"--simulate {text!r}: expected FLOW:NODE:STATUS (e.g. support:agent:486)")
    return parts[0], parts[1], parts[2]


def parse_status(text: str) -> Status:
    """A SIP failure code 300-699 or a named condition (timeout, policy, ...)."""
    if text.isdigit() and 300 <= int(text) <= 699:
        return int(text)
    if text in NAMED_MATCHES:
        return text
    named = ", ".join(NAMED_MATCHES)
    raise SimulateError(f"status {text!r}: a SIP code 300-699, one of {named}, or all")


def transfer_node(flow: Flow, name: str) -> AgentTransferNode:
    node = flow.nodes.get(name)
    if not isinstance(node, AgentTransferNode):
        transfers = ", ".join(n for n, v in flow.nodes.items() if isinstance(v, AgentTransferNode))
        raise SimulateError(f"flow {flow.name!r} has no agent_transfer node {name!r} "
                            f"(its agent_transfer nodes: {transfers or 'none'})")
    return node


def simulate(flow: Flow, node: AgentTransferNode, status: Status) -> Simulation:
    """Every attempt fails with ``status`` until the fallback leaves the transfer."""
    policy = node.policy()
    machine = FallbackMachine(policy, node.attempts())
    result = Simulation(flow.name, node.name, status)
    actions = machine.start()
    for _ in range(policy.max_total_attempts + 1):  # at most one failure per attempt
        attempt = machine.current_attempt
        number = machine.attempt_count
        actions = machine.failed(status)
        prompts: list[str] = []
        while actions and isinstance(actions[0], PlayPrompt):  # the rule's, then an end message
            prompts.append(_prompt_text(actions[0].prompt))
            actions = machine.prompt_finished()
        prompt = ", then ".join(prompts) or None
        decision = machine.record[-1]
        result.steps.append(Step(number, attempt.method, attempt.target, status, decision.rule,
                                 decision.how, decision.action, prompt, _then(actions),
                                 machine.attempt_count, policy.max_total_attempts))
        if machine.finished:
            break
    return result


def statuses_for(policy: FallbackPolicy) -> list[Status]:
    """One status of each kind the policy tells apart (see the module docstring)."""
    keys = [rule.match for rule in policy.rules]
    out: list[Status] = [int(k) for k in keys if k.isdigit()]
    for klass in "3456":
        named = [k for k in keys if k == f"{klass}xx"]
        listed = {s for s in out if isinstance(s, int) and s // 100 == int(klass)}
        # a code of this class that no exact rule names: what the class rule (or the
        # default) does with the rest of the class
        spare = next(c for c in range(int(klass) * 100 + 99, int(klass) * 100, -1)
                     if c not in listed and not any(c in codes for codes in NAMED_MATCHES.values()))
        if named or klass in "456":
            out.append(spare)
    out.extend(NAMED_MATCHES)
    return sorted(set(out), key=lambda s: (isinstance(s, str), s))


def _then(actions: list[Any]) -> str:
    for action in actions:
        if isinstance(action, StartAttempt):
            return f"attempt {action.number}: {action.method} {action.target}"
        if isinstance(action, GoToNode):
            return f"goto {action.node}"
        if isinstance(action, EndCall):
            return "end the call"
    return "wait"


def _prompt_text(prompt: Prompt) -> str:
    return f"file {prompt.file}" if prompt.file else f"say {prompt.text!r}"


def render(simulation: Simulation) -> list[str]:
    """The human form: one line per failed attempt."""
    lines = [f"{simulation.flow}:{simulation.node} failing with {simulation.status}:"]
    for step in simulation.steps:
        prompt = f"; prompt: {step.prompt}" if step.prompt else ""
        lines.append(
            f"  attempt {step.attempt} ({step.method} {step.target}) -> {step.status}: "
            f"rule '{step.rule}' ({step.how}) -> {step.action}{prompt}; then {step.then} "
            f"[attempts {step.attempts_used}/{step.max_total_attempts}]")
    return lines
