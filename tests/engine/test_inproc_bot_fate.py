"""When the bot gets its BYE, in-process (tests/peers/inproc.py): the one rule of
engine/transfer_machine.py's BOT_TABLE as the peers see it. An operator's transfer by
INVITE BYEs the bot as soon as the agent answers (no NOTIFY: the bot never asked); an
operator's REFER leaves the call (caller and bot both get BYE); a bot that asked by
REFER with ``bot_listens`` stays, muted, and hears caller and agent, and is never
sent BYE by the transfer. Nothing is left once the call is over. Over the wire:
tests/wire/test_transfer_wire.py, test_bot_listens_wire.py, test_refer_wire.py."""

from __future__ import annotations

from peers.inproc import Lab, PeerCall, engine_config, peer_uri

AGENT = peer_uri("agent")


def operator_transfer(lab: Lab, method: str) -> None:
    """What the control API does, from inside the loop as the API's handler would."""
    call = lab.call()
    lab.loop.call_soon(lambda: lab.engine.transfers.start(call, AGENT, method, trigger="api"))


def connected(lab: Lab) -> tuple[PeerCall, PeerCall]:
    caller = lab.caller.call()
    lab.run_for(0.5)
    bot = lab.bot.last
    assert bot.state == "confirmed", lab.describe()
    return caller, bot


def test_an_operator_transfer_by_invite_byes_the_bot_when_the_agent_answers() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        caller, bot = connected(lab)
        operator_transfer(lab, "invite")
        assert lab.run_until(lambda: bot.state == "ended", within=5.0), lab.describe()
        assert lab.agent.last.state == "confirmed"
        assert bot.methods() == ["BYE"] and bot.notifies == [], lab.describe()
        assert "transfer.succeeded" in lab.events()
        assert caller.state == "confirmed"
        lab.caller.hang_up(caller)
        lab.settle()
        assert lab.agent.last.state == "ended"
        lab.assert_clean(instances=True)


def test_an_operator_refer_leaves_the_call() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        caller, bot = connected(lab)
        operator_transfer(lab, "refer")
        assert lab.run_until(lambda: caller.state == "ended" and bot.state == "ended", within=5.0), lab.describe()
        assert caller.methods() == ["REFER", "BYE"], lab.describe()
        assert bot.methods() == ["BYE"]
        lab.settle()
        lab.assert_clean(instances=True)


def test_a_listening_bot_that_asked_stays_and_hears_both_sides() -> None:
    config = engine_config(bot_uri=peer_uri("bot"), transfer={"bot_listens": True})
    with Lab(config) as lab:
        caller, bot = connected(lab)
        lab.bot.refer(bot, AGENT)
        assert lab.run_until(lambda: lab.agent.calls and lab.agent.last.state == "confirmed", within=5.0)
        lab.run_for(1.0)
        agent = lab.agent.last
        assert bot.notifies[-1] == 200 and "BYE" not in bot.methods(), lab.describe()
        assert "leg.bot.listening" in lab.events(), lab.events()
        before = lab.bot.media.total
        lab.caller.media.send_audio(caller.remote_media, 5)
        lab.agent.media.send_audio(agent.remote_media, 5)
        lab.run_for(0.5)
        assert lab.bot.media.total > before, "the bot hears the call it handed over"
        lab.caller.hang_up(caller)
        lab.settle()
        assert bot.state == "ended" and agent.state == "ended", lab.describe()
        lab.assert_clean(instances=True)
