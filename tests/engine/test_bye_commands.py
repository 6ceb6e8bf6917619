"""What a leg's BYE means, decided by the call controller (engine/controller.py
bye_commands) with no loop: a listening bot leaving ends nothing, a flow's bot node
goes on (the controller holds the node from ``BotNodeDialled`` until that bot's BYE or
failure), a consult agent's BYE goes to the warm transfer, a post_agent node takes the
caller back, anything else ends the call; the bot's handed-back context comes first."""

from __future__ import annotations

import pytest

from voicegw.engine import control_io as io
from voicegw.engine.controller import CallController


def bye(who: io.Who, role: str, *, agent: bool = False, bot_node: bool = False, consulting: bool = False,
        post_agent: bool = False, context: tuple[tuple[str, str], ...] = ()) -> tuple[io.Command, ...]:
    controller = CallController(32.0)
    if bot_node:
        assert controller.feed(io.BotNodeDialled("leg", "flow")) == ()
    return controller.feed(io.ByeReceived("leg", who, role, agent, consulting, post_agent, context))


def test_a_listening_bot_leaving_after_a_transfer_ends_nothing() -> None:
    assert bye(io.Who.BOT, "bot", agent=True, bot_node=True, context=(("summary", "x"),)) == (io.LetBotGo("leg"),)


def test_the_bot_of_a_flows_bot_node_leaving_hands_its_context_back_and_the_flow_goes_on() -> None:
    assert bye(io.Who.BOT, "bot", bot_node=True, context=(("summary", "x"),)) == (
        io.TakeContext((("summary", "x"),)), io.BotNodeOver("leg", "flow"))


def test_the_bot_leaving_otherwise_ends_the_call() -> None:
    assert bye(io.Who.BOT, "bot") == (io.EndCall("bot hung up"),)


def test_a_consult_agent_leaving_goes_to_the_warm_transfer_before_any_post_agent_node() -> None:
    assert bye(io.Who.AGENT, "agent", agent=True, consulting=True, post_agent=True) == (io.ConsultAgentGone("leg"),)


def test_the_agent_leaving_hands_the_caller_to_the_post_agent_node() -> None:
    assert bye(io.Who.AGENT, "agent", agent=True, post_agent=True) == (io.ResumeAfterAgent("leg"),)


@pytest.mark.parametrize("who, role", [(io.Who.AGENT, "agent"), (io.Who.OTHER, "caller"), (io.Who.OTHER, "bot")])
def test_anyone_else_leaving_ends_the_call(who: io.Who, role: str) -> None:
    assert bye(who, role, consulting=who is io.Who.OTHER, post_agent=who is io.Who.OTHER) == (
        io.EndCall(f"{role} hung up"),)


def test_a_bot_node_waits_on_its_own_bot_only_and_once() -> None:
    controller = CallController(32.0)
    controller.feed(io.BotNodeDialled("bot1", "flow"))
    other = io.ByeReceived("bot0", io.Who.BOT, "bot", False, False, False)
    assert controller.feed(other) == (io.EndCall("bot hung up"),), "a bot the node did not dial ends the call"
    assert controller.feed(io.BotNodeFailed("bot1", 486)) == (io.BotNodeOver("bot1", "flow", 486),)
    assert controller.feed(io.BotNodeFailed("bot1", 486)) == (), "the node went on already"


def test_a_stopped_flow_or_the_post_agent_node_no_longer_waits_on_the_bot() -> None:
    controller = CallController(32.0)
    controller.feed(io.BotNodeDialled("bot", "flow"))
    assert controller.feed(io.FlowStopped()) == ()
    assert controller.feed(io.ByeReceived("bot", io.Who.BOT, "bot", False, False, False)) == (
        io.EndCall("bot hung up"),)
    controller = CallController(32.0)
    controller.feed(io.BotNodeDialled("bot", "flow"))
    assert controller.feed(io.ByeReceived("agent", io.Who.AGENT, "agent", True, False, True)) == (
        io.ResumeAfterAgent("agent"),)
    assert controller.feed(io.BotNodeFailed("bot", 408)) == ()


def test_a_bot_node_is_let_go_of_when_the_call_ends() -> None:
    controller = CallController(32.0)
    controller.feed(io.BotNodeDialled("bot", "flow"))
    controller.feed(io.CallEnded(1.0))
    assert controller.feed(io.BotNodeFailed("bot", 487)) == ()
