"""A flow: named nodes run one at a time for a call; the runner is a pure machine.

The runner never plays audio or waits: it answers each input (started, prompt
finished, digit, timeout) with the next :class:`Action` for the engine to carry out.
Only the node kinds the built-in demo needs exist so far (message, collect, hangup);
agent_transfer, bot and goto grow here with the transfer work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MessageNode:
    """Play a prompt, then go to ``next``."""

    name: str
    text: str
    next: str | None = None  # None: end the call after the prompt


@dataclass(frozen=True)
class CollectNode:
    """Wait for one DTMF digit; ``routes`` maps digits to nodes."""

    name: str
    routes: dict[str, str]
    timeout: float = 10.0
    on_timeout: str | None = None  # None: end the call
    on_invalid: str | None = None  # None: stay and wait again


@dataclass(frozen=True)
class HangupNode:
    name: str


@dataclass(frozen=True)
class AgentTransferNode:
    """Hand the caller to an agent; on failure go to ``on_failure`` (None: end)."""

    name: str
    target: str
    method: str = "invite"
    on_failure: str | None = None
    more_attempts: tuple[tuple[str, str], ...] = ()
    """(method, target) pairs the fallback's ``next`` rule tries after the first."""
    fallback: Any = None
    """The fallback policy (engine.fallback.FallbackPolicy); None: the engine's default
    (an apology, then ``on_failure`` or the end)."""


Node = MessageNode | CollectNode | HangupNode | AgentTransferNode


@dataclass(frozen=True)
class Flow:
    name: str
    start: str
    nodes: dict[str, Node]
    post_agent: str | None = None
    """Where the caller goes when the agent hangs up first; None ends the call."""

    def __post_init__(self) -> None:
        missing = [t for t in self._targets() if t not in self.nodes]
        if self.post_agent is not None and self.post_agent not in self.nodes:
            missing.append(self.post_agent)
        if self.start not in self.nodes or missing:
            raise ValueError(f"flow {self.name!r}: unknown node(s) {sorted({self.start, *missing} - set(self.nodes))}")

    def _targets(self) -> list[str]:
        targets: list[str] = []
        for node in self.nodes.values():
            if isinstance(node, MessageNode) and node.next:
                targets.append(node.next)
            elif isinstance(node, CollectNode):
                targets.extend(node.routes.values())
                targets.extend(t for t in (node.on_timeout, node.on_invalid) if t)
            elif isinstance(node, AgentTransferNode) and node.on_failure:
                targets.append(node.on_failure)
        return targets


@dataclass(frozen=True)
class PlayPrompt:
    text: str


@dataclass(frozen=True)
class WaitForDigit:
    timeout: float


@dataclass(frozen=True)
class EndCall:
    reason: str


@dataclass(frozen=True)
class StartTransfer:
    target: str
    method: str


Action = PlayPrompt | WaitForDigit | EndCall | StartTransfer


@dataclass
class FlowRunner:
    flow: Flow
    current: str = ""
    visited: list[str] = field(default_factory=list)
    max_steps: int = 200  # a flow that loops without the caller doing anything ends

    def start(self, at: str | None = None) -> Action:
        return self._enter(at or self.flow.start)

    def goto(self, node: str) -> Action:
        """Continue at ``node`` (the fallback machine's goto)."""
        if node not in self.flow.nodes:
            return EndCall(f"unknown node {node}")
        return self._enter(node)

    def prompt_finished(self) -> Action:
        node = self.flow.nodes[self.current]
        if isinstance(node, MessageNode):
            return self._enter(node.next) if node.next else EndCall("flow ended")
        return self._resume()

    def digit(self, digit: str) -> Action | None:
        """A DTMF digit; None when the current node does not listen for digits."""
        node = self.flow.nodes[self.current]
        if not isinstance(node, CollectNode):
            return None
        target = node.routes.get(digit)
        if target is None:
            return self._enter(node.on_invalid) if node.on_invalid else WaitForDigit(node.timeout)
        return self._enter(target)

    def timed_out(self) -> Action:
        node = self.flow.nodes[self.current]
        if isinstance(node, CollectNode) and node.on_timeout:
            return self._enter(node.on_timeout)
        return EndCall("no input")

    def transfer_failed(self, status: object) -> Action:
        node = self.flow.nodes[self.current]
        if isinstance(node, AgentTransferNode) and node.on_failure:
            return self._enter(node.on_failure)
        return EndCall(f"transfer failed ({status})")

    def _resume(self) -> Action:
        node = self.flow.nodes[self.current]
        if isinstance(node, CollectNode):
            return WaitForDigit(node.timeout)
        return EndCall("flow ended")

    def _enter(self, name: str) -> Action:
        if len(self.visited) >= self.max_steps:
            return EndCall("flow step limit")
        self.current = name
        self.visited.append(name)
        node = self.flow.nodes[name]
        if isinstance(node, MessageNode):
            return PlayPrompt(node.text)
        if isinstance(node, CollectNode):
            return WaitForDigit(node.timeout)
        if isinstance(node, AgentTransferNode):
            return StartTransfer(node.target, node.method)
        return EndCall("hangup node")


def demo_flow(agent_target: str | None = None, method: str = "invite") -> Flow:
    """The embedded default flow: greet, offer a menu; 0 asks for an agent (transferred
    by INVITE when ``agent_target`` is set), then goodbye."""
    nodes: dict[str, Node] = {
        "greeting": MessageNode("greeting", "Welcome to voice gateway. Press zero to speak with an agent.", "menu"),
        "menu": CollectNode("menu", {"0": "agent"}, timeout=15.0, on_timeout="goodbye"),
        "goodbye": MessageNode("goodbye", "Goodbye.", "hangup"),
        "hangup": HangupNode("hangup"),
    }
    if agent_target:
        # a failed transfer apologises (the engine's default fallback), then the menu again
        nodes["agent"] = AgentTransferNode("agent", agent_target, method, on_failure="menu")
    else:
        nodes["agent"] = MessageNode(
            "agent", "Agent transfer is not configured on this demo. Goodbye.", "hangup")
    return Flow(name="demo", start="greeting", nodes=nodes)


DEMO_FLOW = demo_flow()
