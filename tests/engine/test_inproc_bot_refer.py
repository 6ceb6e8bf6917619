"""A bot's REFER carried out in-process (tests/peers/inproc.py), by INVITE: voicegw
answers 202, dials the agent, reports 100/180/200 to the bot in NOTIFYs, swaps the
caller's bridge from the bot to the agent and lets the bot go with a BYE after its
final NOTIFY; a refusal comes back to the bot as a failed sipfrag and the caller stays
with the bot. Nothing is left once the call is over. Over the wire:
tests/wire/test_bot_refer_wire.py."""

from __future__ import annotations

from peers.inproc import Answer, Lab, engine_config, peer_uri


def connected(lab: Lab):
    caller = lab.caller.call()
    lab.run_for(0.5)
    assert lab.bot.last.state == "confirmed", lab.describe()
    return caller, lab.bot.last


def test_bot_refer_by_invite_bridges_the_caller_to_the_agent() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        lab.agent.answer = Answer(after=2.0)
        caller, bot = connected(lab)
        lab.bot.refer(bot, peer_uri("agent"))
        lab.run_for(1.0)
        assert bot.responses["REFER"] == [202]
        assert lab.agent.last.state == "early"
        ringback = lab.caller.media.total
        assert ringback > 40, "the caller hears ringback while the agent rings"
        lab.run_for(1.5)
        agent = lab.agent.last
        assert agent.state == "confirmed", lab.describe()
        # the bot heard the agent's progress, then the outcome, then its BYE
        assert bot.notifies == [100, 180, 200] and bot.methods()[-1] == "BYE", lab.describe()
        assert bot.state == "ended"
        lab.caller.media.send_audio(caller.remote_media, 6)
        lab.agent.media.send_audio(agent.remote_media, 4)
        before = lab.caller.media.total
        lab.run_for(0.5)
        assert lab.agent.media.received == {agent.remote_media: 6}
        assert lab.caller.media.total - before == 4, "the agent's audio, and no more ringback"
        assert lab.bot.media.total == 0
        lab.agent.hang_up()
        lab.run_for(1.0)
        assert caller.state == "ended", lab.describe()
        lab.assert_clean(instances=True)


def test_agent_busy_is_reported_to_the_bot_and_the_caller_stays() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        lab.agent.answer = Answer(status=486, after=0.5)
        caller, bot = connected(lab)
        lab.bot.refer(bot, peer_uri("agent"))
        lab.run_for(2.0)
        assert bot.notifies[-1] == 486 and bot.state == "confirmed", lab.describe()
        assert caller.state == "confirmed"
        # the bridge is back: caller and bot hear each other
        lab.caller.media.send_audio(caller.remote_media, 3)
        lab.run_for(0.2)
        assert lab.bot.media.received == {bot.remote_media: 3}
        lab.caller.hang_up()
        lab.assert_clean()


def test_refer_off_the_allow_list_is_refused_and_nothing_is_dialled() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        caller, bot = connected(lab)
        lab.bot.refer(bot, "sip:premium@203.0.113.9")
        lab.run_for(1.0)
        assert bot.responses["REFER"] == [403] and not bot.notifies, lab.describe()
        assert lab.loop.network.dropped == 0 and not lab.agent.calls
        assert caller.state == bot.state == "confirmed"
        lab.caller.hang_up()
        lab.assert_clean()


def test_second_refer_while_the_first_is_under_way_gets_491() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        lab.agent.answer = Answer(after=3.0)
        _caller, bot = connected(lab)
        lab.bot.refer(bot, peer_uri("agent"))
        lab.run_for(1.0)
        lab.bot.refer(bot, peer_uri("agent2"))
        lab.run_for(0.5)
        assert bot.responses["REFER"] == [202, 491], lab.describe()
        assert not lab.peers["agent2"].calls
        lab.run_for(2.0)
        assert lab.agent.last.state == "confirmed" and bot.state == "ended", lab.describe()
        lab.agent.hang_up()
        lab.assert_clean()


def test_caller_hanging_up_while_the_agent_rings_cancels_the_agent_and_tells_the_bot() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        lab.agent.answer = Answer(after=None)
        _caller, bot = connected(lab)
        lab.bot.refer(bot, peer_uri("agent"))
        lab.run_for(1.0)
        lab.caller.hang_up()
        lab.run_for(1.0)
        assert lab.agent.last.state == "cancelled" and bot.state == "ended", lab.describe()
        assert bot.notifies[-1] >= 400, "the bot hears the outcome before its BYE"
        assert bot.methods()[-1] == "BYE"
        lab.assert_clean()


def test_bot_hanging_up_while_its_refer_to_the_carrier_is_under_way() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"), transfer={"bot_refer_method": "refer"})) as lab:
        lab.caller.refer_outcome = None  # the carrier has not answered the REFER yet
        caller, bot = connected(lab)
        lab.bot.refer(bot, peer_uri("agent"))
        lab.run_for(0.05)
        lab.bot.hang_up()
        lab.run_for(1.0)
        assert caller.state == "ended", lab.describe()
        lab.assert_clean()
