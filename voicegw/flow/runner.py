"""A flow: named nodes run one at a time for a call; the runner is a pure machine.

The runner never plays audio or waits: it answers each input (started, prompt
finished, digit, timeout) with the next :class:`Action` for the engine to carry out.
Node kinds: message, collect (a DTMF menu, with an optional prompt), agent_transfer,
bot, goto (followed inside the runner: it never reaches the engine) and hangup.
Flows come from YAML through voicegw.config (validated there: every node named
exists, no goto cycle without a prompt or a wait), or from :func:`demo_flow`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sip.caller_id import CallerIdPolicy
from .fallback_policy import Attempt, FallbackPolicy, default_policy


@dataclass(frozen=True)
class MessageNode:
    """Play a prompt, then go to ``next``."""

    name: str
    text: str
    next: str | None = None  # None: end the call after the prompt
    file: str | None = None
    """A WAV file to play instead of speaking ``text``."""


@dataclass(frozen=True)
class CollectNode:
    """Wait for one DTMF digit; ``routes`` maps digits to nodes."""

    name: str
    routes: dict[str, str]
    timeout: float = 10.0
    on_timeout: str | None = None  # None: end the call
    on_invalid: str | None = None  # None: stay and wait again
    prompt: str | None = None
    """Spoken on entering the node (digits pressed meanwhile count); None: silence."""
    prompt_file: str | None = None


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
    fallback: FallbackPolicy | None = None
    """The fallback policy (flow/fallback_policy.py); None: the engine's default
    (an apology, then ``on_failure`` or the end)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Fixed headers for the transfer request (besides the context headers)."""
    destination: str | None = None
    """For ``bye``: the destination header's value (None: the target's URI)."""
    ring_timeout: float | None = None
    """The target profile's ring timeout; None: the engine's."""
    context_headers: tuple[tuple[str, str], ...] | None = None
    """The target profile's header -> context key map; None: the engine's."""
    caller_id: CallerIdPolicy | None = None
    """The target profile's caller ID; None: the engine's."""

    def attempts(self) -> list[Attempt]:
        """The ordered attempts: the node's method and target, then ``more_attempts``."""
        return [Attempt(self.method, self.target)] + [Attempt(m, t) for m, t in self.more_attempts]

    def policy(self) -> FallbackPolicy:
        """The node's fallback rules, or the default (an apology, then on_failure)."""
        return self.fallback or default_policy(self.on_failure)


@dataclass(frozen=True)
class BotNode:
    """Connect the caller to a SIP bot; ``next`` when the bot hangs up (None: end),
    ``on_failure`` when it does not answer (None: end)."""

    name: str
    uri: str
    next: str | None = None
    on_failure: str | None = None
    answer_timeout: float = 30.0
    profile: str = ""


@dataclass(frozen=True)
class GotoNode:
    """Continue at ``node`` at once."""

    name: str
    node: str


Node = MessageNode | CollectNode | HangupNode | AgentTransferNode | BotNode | GotoNode


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
            elif isinstance(node, AgentTransferNode):
                targets.extend(t for t in (node.on_failure,) if t)
                rules = (*node.fallback.rules, node.fallback.default, node.fallback.on_exhausted) if node.fallback else ()
                targets.extend(r.node for r in rules if r is not None and r.node)
            elif isinstance(node, BotNode):
                targets.extend(t for t in (node.next, node.on_failure) if t)
            elif isinstance(node, GotoNode):
                targets.append(node.node)
        return targets


@dataclass(frozen=True)
class PlayPrompt:
    text: str
    file: str | None = None
    """Play this WAV file instead of speaking ``text``."""


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


@dataclass(frozen=True)
class ConnectBot:
    """Dial the bot and bridge the caller to it; report ``bot_finished()`` when the
    bot hangs up, ``bot_failed(status)`` when it does not answer."""

    uri: str
    answer_timeout: float


Action = PlayPrompt | WaitForDigit | EndCall | StartTransfer | ConnectBot


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

    def bot_finished(self) -> Action:
        """The bot hung up (the caller is still there)."""
        node = self.flow.nodes[self.current]
        if isinstance(node, BotNode) and node.next:
            return self._enter(node.next)
        return EndCall("bot hung up")

    def bot_failed(self, status: object) -> Action:
        """The bot did not answer (``status``: its final status or ``timeout``)."""
        node = self.flow.nodes[self.current]
        if isinstance(node, BotNode) and node.on_failure:
            return self._enter(node.on_failure)
        return EndCall(f"bot failed ({status})")

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
            return PlayPrompt(node.text, node.file)
        if isinstance(node, CollectNode):
            if node.prompt or node.prompt_file:
                return PlayPrompt(node.prompt or "", node.prompt_file)
            return WaitForDigit(node.timeout)
        if isinstance(node, AgentTransferNode):
            return StartTransfer(node.target, node.method)
        if isinstance(node, BotNode):
            return ConnectBot(node.uri, node.answer_timeout)
        if isinstance(node, GotoNode):
            return self._enter(node.node)  # a goto cycle ends at the step limit
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
