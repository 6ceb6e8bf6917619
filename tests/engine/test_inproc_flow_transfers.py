"""Transfers from a flow's agent_transfer node in-process (tests/peers/inproc.py), each
fallback action: goto a node (an apology, then the end), end with a message, retry
the same attempt, next (another target), the named matches (no_answer at the ring
timeout, policy for a target off the allow-list), and the flow resuming at its
post_agent node when the agent hangs up first; plus the demo flow, where the caller's
RFC 4733 "0" asks for the agent. The caller's leg stays up through every failure
until a rule ends the call. Over the wire: tests/wire/test_fallback_wire.py and
the flow cases of tests/wire/test_b2bua_wire.py."""

from __future__ import annotations

import pytest
from peers.inproc import Answer, Lab, engine_config, peer_uri

from voicegw.flow.fallback_policy import FallbackPolicy, FallbackRule, Prompt
from voicegw.flow.runner import AgentTransferNode, Flow, HangupNode, MessageNode, demo_flow

AGENT, AGENT2 = peer_uri("agent"), peer_uri("agent2")
SORRY = Prompt(text="Sorry, nobody can take your call.")


def flow_lab(node: AgentTransferNode, *, post_agent: bool = False, **transfer: object) -> Lab:
    nodes = {"xfer": node, "sorry": MessageNode("sorry", "Sorry.", "bye"), "bye": HangupNode("bye"),
             "survey": MessageNode("survey", "Please rate the call.", "bye")}
    flow = Flow("t", "xfer", nodes, post_agent="survey" if post_agent else None)
    return Lab(engine_config(flow=flow, transfer={"retry_prompt": None, **transfer}))


def policy(*rules: FallbackRule, default: FallbackRule | None = None, attempts: int = 3) -> FallbackPolicy:
    return FallbackPolicy(rules=rules, default=default or FallbackRule("default", "end"),
                          max_total_attempts=attempts)


def test_busy_goes_to_the_named_node_which_apologises_and_hangs_up() -> None:
    node = AgentTransferNode("xfer", AGENT, fallback=policy(FallbackRule("486", "goto", node="sorry")))
    with flow_lab(node) as lab:
        lab.agent.answer = Answer(status=486, after=0.5)
        caller = lab.caller.call()
        lab.run_for(0.6)
        assert caller.state == "confirmed" and lab.agent.last.state == "failed", lab.describe()
        lab.run_for(1.5)
        # the apology: the TTS fallback beep, 1 s (a ringback packet may share its first instant)
        assert lab.rtp_to(lab.caller, since=lab.when("flow.prompt")) in (50, 51), lab.describe()
        assert caller.state == "ended" and caller.methods() == ["BYE"], lab.describe()
        assert "transfer.fallback" in lab.events()
        lab.assert_clean(instances=True)


def test_end_rule_plays_its_prompt_then_ends_the_call() -> None:
    node = AgentTransferNode("xfer", AGENT, fallback=policy(default=FallbackRule("default", "end", prompt=SORRY)))
    with flow_lab(node) as lab:
        lab.agent.answer = Answer(status=603, after=0.2)
        caller = lab.caller.call()
        lab.run_for(0.5)
        assert caller.state == "confirmed", lab.describe()
        lab.run_for(2.0)
        assert caller.state == "ended" and lab.rtp_to(lab.caller, since=lab.when("fallback.prompt")) in (50, 51), lab.describe()
        lab.assert_clean()


def test_retry_dials_the_same_agent_again() -> None:
    node = AgentTransferNode("xfer", AGENT, fallback=policy(FallbackRule("5xx", "retry", max_attempts=2)))
    with flow_lab(node) as lab:
        lab.agent.answer = [Answer(status=503, after=0.2), Answer(after=0.2)]
        caller = lab.caller.call()
        lab.run_for(2.0)
        first, second = lab.agent.calls.values()
        assert (first.state, second.state) == ("failed", "confirmed"), lab.describe()
        lab.agent.hang_up(second)
        lab.run_for(0.5)
        assert caller.state == "ended", "no post_agent node: the agent's BYE ends the call"
        lab.assert_clean()


def test_next_tries_the_next_target() -> None:
    node = AgentTransferNode("xfer", AGENT, more_attempts=(("invite", AGENT2),),
                             fallback=FallbackPolicy(rules=(), default=FallbackRule("default", "next"),
                                                     on_exhausted=FallbackRule("exhausted", "end")))
    with flow_lab(node) as lab:
        lab.agent.answer = Answer(status=480, after=0.2)
        lab.caller.call()
        lab.run_for(2.0)
        agent2 = lab.peers["agent2"].last
        assert agent2.state == "confirmed", lab.describe()
        lab.peers["agent2"].media.send_audio(agent2.remote_media, 5)
        before = lab.caller.media.total
        lab.run_for(0.2)
        assert lab.caller.media.total - before == 5
        lab.caller.hang_up()
        lab.assert_clean()


@pytest.mark.parametrize("match", ["timeout", "no_answer"])
def test_ring_timeout_goes_where_the_rule_says(match: str) -> None:
    node = AgentTransferNode("xfer", AGENT, ring_timeout=4.0,
                             fallback=policy(FallbackRule(match, "goto", node="sorry")))
    with flow_lab(node) as lab:
        lab.agent.answer = Answer(after=None)
        caller = lab.caller.call()
        lab.run_for(4.5)
        assert lab.agent.last.state == "cancelled" and caller.state == "confirmed", lab.describe()
        assert "flow.prompt" in lab.events(), "the rule's node, not the default (end at once)"
        lab.run_for(2.0)
        assert caller.state == "ended", lab.describe()
        lab.assert_clean()


def test_target_off_the_allow_list_never_leaves_the_box() -> None:
    node = AgentTransferNode("xfer", "sip:premium@203.0.113.9",
                             fallback=policy(FallbackRule("policy", "goto", node="sorry")))
    with flow_lab(node) as lab:
        caller = lab.caller.call()
        lab.run_for(3.0)
        assert caller.state == "ended" and not any(p.calls for p in (lab.agent, lab.peers["agent2"]))
        assert lab.loop.network.dropped == 0, "nothing was sent anywhere else"
        lab.assert_clean()


@pytest.mark.parametrize("method", ["invite", "warm"])
def test_agent_hanging_up_first_resumes_the_flow_at_post_agent(method: str) -> None:
    with flow_lab(AgentTransferNode("xfer", AGENT, method), post_agent=True) as lab:
        caller = lab.caller.call()
        lab.run_for(3.0)
        assert lab.agent.last.state == "confirmed", lab.describe()
        lab.agent.hang_up()
        lab.run_for(0.2)
        assert caller.state == "confirmed", "the survey has the caller"
        lab.run_for(2.0)
        assert lab.rtp_to(lab.caller, since=lab.when("flow.post_agent")) == 50, lab.describe()
        assert caller.state == "ended"
        lab.assert_clean()


def test_demo_flow_caller_presses_zero_for_the_agent() -> None:
    with Lab(engine_config(flow=demo_flow(AGENT))) as lab:
        caller = lab.caller.call()
        lab.run_for(0.5)
        assert caller.state == "confirmed"
        lab.run_for(1.0)  # the greeting (the 1 s beep) is over: the menu listens
        lab.caller.media.send_digit(caller.remote_media, "0")
        lab.run_for(0.5)
        agent = lab.agent.last
        assert agent.state == "confirmed", lab.describe()
        lab.agent.hang_up()
        lab.run_for(0.5)
        assert caller.state == "ended"
        lab.assert_clean()
