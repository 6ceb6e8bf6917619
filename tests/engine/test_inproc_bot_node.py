"""A flow's bot node in-process (tests/peers/inproc.py): voicegw answers the caller,
dials the bot, bridges them once it answers, and the flow goes on when that bot ends,
as an input to the call's controller (``BotNodeDialled``, then the bot's BYE or
``BotNodeFailed``, answered ``BotNodeOver``): the bot hanging up goes to ``next``, a
bot that never answers (a final error, the ring timeout) to ``on_failure``; the caller
hanging up while the bot rings or talks ends everything; an agent the bot REFERred the
caller to keeps the caller when that bot leaves. Over the wire: the bot node of
tests/wire/test_bot_context_wire.py (its context handed back on its BYE)."""

from __future__ import annotations

from peers.inproc import Answer, Lab, engine_config, peer_uri

from voicegw.flow.runner import BotNode, Flow, HangupNode, MessageNode


def bot_node_lab(*, answer_timeout: float = 30.0) -> Lab:
    nodes = {"assistant": BotNode("assistant", peer_uri("bot"), next="after", on_failure="sorry",
                                  answer_timeout=answer_timeout),
             "after": MessageNode("after", "Thank you.", "bye"),
             "sorry": MessageNode("sorry", "Sorry.", "bye"),
             "bye": HangupNode("bye")}
    return Lab(engine_config(flow=Flow("t", "assistant", nodes)))


def prompted(lab: Lab) -> bool:
    """The flow played a prompt (the call may not be there yet)."""
    return bool(lab.calls()) and "flow.prompt" in lab.events()


def test_the_bot_hanging_up_hands_the_caller_to_the_flows_next_node() -> None:
    with bot_node_lab() as lab:
        caller = lab.caller.call()
        assert lab.run_until(lambda: lab.bot.calls and lab.bot.last.state == "confirmed", within=2.0), lab.describe()
        bot = lab.bot.last
        assert caller.state == "confirmed", lab.describe()
        lab.run_for(0.2)
        since = lab.now()
        lab.bot.media.send_audio(bot.remote_media, packets=5)
        lab.run_for(0.2)
        assert lab.rtp_to(lab.caller, since=since) == 5, "the caller hears the bot through the bridge"
        lab.bot.hang_up(bot)
        assert lab.run_until(lambda: prompted(lab), within=2.0), lab.describe()
        prompt = lab.when("flow.prompt")
        assert prompt >= lab.when("leg.bot.bye")
        lab.run_for(1.5)
        # the next node's prompt (the TTS fallback beep, 1 s), then its hang-up
        assert lab.rtp_to(lab.caller, since=prompt) in (50, 51), lab.describe()
        assert caller.state == "ended" and caller.methods() == ["BYE"], lab.describe()
        assert bot.methods() == [], "the bot that left gets nothing more"
        lab.assert_clean(instances=True)


def test_a_bot_that_refuses_sends_the_flow_to_on_failure() -> None:
    with bot_node_lab() as lab:
        lab.bot.answer = Answer(status=486, after=0.3)
        caller = lab.caller.call()
        assert lab.run_until(lambda: prompted(lab), within=2.0), lab.describe()
        assert lab.bot.last.state == "failed" and caller.state == "confirmed", lab.describe()
        failed = next(e for _, e in lab.call().timeline if e.name == "leg.bot.failed")
        assert failed.status == 486
        lab.run_for(1.5)
        assert caller.state == "ended" and caller.methods() == ["BYE"], lab.describe()
        lab.assert_clean(instances=True)


def test_a_bot_that_never_answers_is_cancelled_at_its_answer_timeout_and_the_flow_goes_on() -> None:
    with bot_node_lab(answer_timeout=2.0) as lab:
        lab.bot.answer = Answer(after=None)
        caller = lab.caller.call()
        lab.run_for(1.5)
        assert not prompted(lab) and lab.bot.last.state in ("calling", "early"), lab.describe()
        assert lab.run_until(lambda: prompted(lab) and lab.bot.last.state == "cancelled",
                             within=2.0), lab.describe()
        lab.run_for(1.5)
        assert caller.state == "ended", lab.describe()
        lab.assert_clean(instances=True)


def test_the_caller_hanging_up_while_the_bot_rings_cancels_it() -> None:
    with bot_node_lab() as lab:
        lab.bot.answer = Answer(after=None)
        caller = lab.caller.call()
        assert lab.run_until(lambda: lab.bot.calls and lab.bot.last.state == "early", within=2.0), lab.describe()
        lab.caller.hang_up(caller)
        assert lab.run_until(lambda: lab.bot.last.state == "cancelled", within=2.0), lab.describe()
        assert not prompted(lab)
        lab.assert_clean(instances=True)


def test_the_caller_hanging_up_while_the_bot_talks_byes_the_bot() -> None:
    with bot_node_lab() as lab:
        caller = lab.caller.call()
        assert lab.run_until(lambda: lab.bot.calls and lab.bot.last.state == "confirmed", within=2.0), lab.describe()
        lab.caller.hang_up(caller)
        assert lab.run_until(lambda: lab.bot.last.state == "ended", within=2.0), lab.describe()
        assert lab.bot.last.methods() == ["BYE"] and "flow.prompt" not in lab.events(), lab.describe()
        lab.assert_clean(instances=True)


def test_the_bot_leaving_after_it_referred_the_caller_to_an_agent_ends_nothing() -> None:
    with bot_node_lab() as lab:
        caller = lab.caller.call()
        assert lab.run_until(lambda: lab.bot.calls and lab.bot.last.state == "confirmed", within=2.0), lab.describe()
        bot = lab.bot.last
        lab.bot.refer(bot, peer_uri("agent"))
        assert lab.run_until(lambda: "transfer.succeeded" in lab.events(), within=5.0), lab.describe()
        lab.run_until(lambda: bot.state == "ended", within=5.0)
        lab.bot.hang_up(bot)  # if voicegw did not BYE it already
        lab.run_for(1.0)
        assert not prompted(lab), "the flow does not take the caller back from the agent"
        assert caller.state == "confirmed" and lab.agent.last.state == "confirmed", lab.describe()
        lab.caller.hang_up(caller)
        lab.assert_clean(instances=True)
