"""Warm transfers in-process (tests/peers/inproc.py), started by the bot's REFER: the
caller's hold audio while the agent rings, the briefing only the agent hears, the
agent's DTMF accept and decline keys and the confirmation timeout, the live briefing
(bot <-> agent for a while), completion by REFER with Replaces to the carrier (RFC
5589 7), and the agent hanging up mid-briefing. Nothing is left once the call is over.
Over the wire: tests/wire/test_warm_wire.py and the PBX warm-transfer suites."""

from __future__ import annotations

from dataclasses import replace

import pytest
from peers.inproc import Answer, Lab, PeerCall, engine_config, peer_uri

from voicegw.settings import WarmSettings

AGENT = peer_uri("agent")
WARM = WarmSettings(briefing_text="Incoming transfer.")
"""The briefing is the 1 s TTS fallback beep here (no TTS in the harness)."""


def warm_lab(**settings: object) -> Lab:
    return Lab(engine_config(bot_uri=peer_uri("bot"),
                             transfer={"bot_refer_method": "warm", "warm": replace(WARM, **settings)}))


def consult(lab: Lab, answer_after: float = 1.0) -> tuple[PeerCall, PeerCall, PeerCall]:
    """The bot REFERs at 0.5 s; the agent answers ``answer_after`` s later."""
    lab.agent.answer = Answer(after=answer_after)
    caller = lab.caller.call()
    lab.run_for(0.5)
    bot = lab.bot.last
    lab.bot.refer(bot, AGENT)
    lab.run_for(answer_after + 0.1)
    agent = lab.agent.last
    assert agent.state == "confirmed", lab.describe()
    return caller, bot, agent


@pytest.mark.parametrize("hold", ["music", "tts", "silence"])
def test_caller_hears_hold_audio_until_the_agent_is_bridged(hold: str) -> None:
    with warm_lab(hold=hold) as lab:
        _caller, bot, agent = consult(lab, answer_after=2.0)
        assert lab.rtp_to(lab.caller, since=lab.when("transfer.started")) >= 100, "2 s of hold audio"
        lab.run_for(2.0)  # the briefing (1 s beep) is over: bridged
        assert bot.state == "ended" and bot.notifies[-1] == 200, lab.describe()
        lab.run_for(0.5)
        before = lab.caller.media.total
        lab.agent.media.send_audio(agent.remote_media, 5)
        lab.run_for(0.5)
        assert lab.caller.media.total - before == 5, "the agent's audio only: the hold audio stopped"
        lab.caller.hang_up()
        lab.assert_clean()


def test_agent_accepts_with_its_key() -> None:
    with warm_lab(confirm=True, confirm_timeout=10.0) as lab:
        caller, bot, agent = consult(lab)
        lab.run_for(2.0)
        assert bot.state == "confirmed", "waiting for the agent's key"
        lab.agent.media.send_digit(agent.remote_media, "1")
        lab.run_for(0.5)
        assert bot.state == "ended" and bot.notifies[-1] == 200, lab.describe()
        lab.caller.media.send_audio(caller.remote_media, 3)
        briefing = lab.agent.media.total
        lab.run_for(0.2)
        assert lab.agent.media.total - briefing == 3
        lab.agent.hang_up()
        lab.assert_clean(instances=True)


@pytest.mark.parametrize("how", ["decline key", "confirm timeout"])
def test_agent_declining_or_silent_is_let_go_and_the_caller_stays_with_the_bot(how: str) -> None:
    with warm_lab(confirm=True, confirm_timeout=5.0) as lab:
        caller, bot, agent = consult(lab)
        lab.run_for(2.0)
        if how == "decline key":
            lab.agent.media.send_digit(agent.remote_media, "2")
        lab.run_for(5.0)
        assert agent.state == "ended" and agent.methods() == ["BYE"], lab.describe()
        assert bot.state == "confirmed" and bot.notifies[-1] >= 400, lab.describe()
        lab.caller.media.send_audio(caller.remote_media, 3)
        lab.run_for(0.2)
        assert lab.bot.media.received == {bot.remote_media: 3}, "the caller is with the bot again"
        lab.caller.hang_up()
        lab.assert_clean()


def test_live_briefing_bridges_the_bot_and_the_agent_for_a_while() -> None:
    with warm_lab(briefing_text="", bot_briefing_seconds=2.0) as lab:
        caller, bot, agent = consult(lab)
        lab.run_for(0.5)
        lab.bot.media.send_audio(bot.remote_media, 4)
        lab.caller.media.send_audio(caller.remote_media, 2)
        lab.run_for(0.2)
        assert lab.agent.media.received == {agent.remote_media: 4}, "the bot speaks to the agent"
        assert lab.bot.media.total == 0, "the caller is off the bot meanwhile"
        lab.run_for(2.0)
        assert bot.state == "ended", lab.describe()
        lab.caller.hang_up()
        lab.assert_clean()


def test_completion_by_refer_with_replaces_hands_the_caller_to_the_carrier() -> None:
    with warm_lab(complete_by="refer") as lab:
        caller, bot, agent = consult(lab)
        lab.run_for(2.0)
        refer = next(r for r in caller.requests if r.method == "REFER")
        refer_to = refer.headers.get("refer-to") or ""
        assert "Replaces=" in refer_to and agent.call_id.split("@")[0] in refer_to, refer_to
        assert caller.state == "ended" and agent.state == "ended", lab.describe()
        assert bot.state == "ended"
        lab.assert_clean()


def test_agent_hanging_up_mid_briefing_gives_the_caller_back_to_the_bot() -> None:
    with warm_lab() as lab:
        _caller, bot, _agent = consult(lab)
        lab.run_for(0.3)  # 0.3 s into the 1 s briefing
        lab.agent.hang_up()
        lab.run_for(0.05)
        sent = lab.rtp_to(lab.agent)
        lab.run_for(1.0)
        assert lab.rtp_to(lab.agent) == sent, "the briefing stopped with the agent's leg"
        assert bot.state == "confirmed" and bot.notifies[-1] >= 400, lab.describe()
        lab.bot.hang_up()
        lab.assert_clean()
