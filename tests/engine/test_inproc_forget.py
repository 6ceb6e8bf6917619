"""An ended call is forgotten at once (issue 16), in-process (tests/peers/inproc.py):
once its legs' INVITE sessions are over the engine holds nothing of it (calls, legs,
dialogs, handlers, endpoints, timers) well before 64*T1, and what must still be
answered is the UA core's: a copy of the bot's 2xx arriving after the call was forgotten
(our ACK lost, RFC 3261 13.2.2.4) gets the same ACK again, and none 64*T1 after the 2xx.
A call whose bot leg is still being cancelled stays until that INVITE is over."""

from __future__ import annotations

from peers.inproc import HOST, HOSTS, SIP_PORT, Answer, Lab, engine_config, peer_uri
from peers.leftovers import ENGINE_KEYS
from peers.vloop import Datagram

VOICEGW = (HOST, SIP_PORT)
BOT = (HOSTS["bot"], SIP_PORT)


def held(lab: Lab) -> dict[str, int]:
    """What the engine still holds, by ENGINE_KEYS (as GET /debug/objects counts it)."""
    stats = lab.engine.statistics()
    return {key: getattr(stats, key) for key in ENGINE_KEYS if getattr(stats, key)}


def sent(lab: Lab, source: tuple[str, int], destination: tuple[str, int], start: bytes) -> list[Datagram]:
    return [d for d in lab.loop.network.log
            if d.source == source and d.destination == destination and d.data.startswith(start)]


def test_an_ended_call_is_gone_at_once_and_the_core_acks_a_late_2xx_copy() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        caller = lab.caller.call()
        lab.run_for(0.5)
        assert caller.statuses == [100, 180, 200] and lab.bot.last.state == "confirmed", lab.describe()
        assert held(lab)["calls"] == 1
        lab.caller.hang_up()
        lab.run_for(0.5)
        assert lab.bot.last.methods()[-1:] == ["BYE"], lab.describe()
        # nothing of the call is left in the engine, 0.5 s after its end (not 64*T1)
        assert held(lab) == {}, lab.describe()
        assert lab.engine.calls == {}
        # the bot's 2xx comes again (as if our ACK were lost): the core ACKs it again,
        # with the bytes it sent the first time
        (answer,) = [d for d in sent(lab, BOT, VOICEGW, b"SIP/2.0 200") if b" INVITE\r\n" in d.data]
        (first_ack,) = sent(lab, VOICEGW, BOT, b"ACK ")
        lab.loop.network.send(BOT, VOICEGW, answer.data)
        lab.run_for(0.2)
        acks = sent(lab, VOICEGW, BOT, b"ACK ")
        assert [d.data for d in acks] == [first_ack.data] * 2
        assert lab.endpoint.core.statistics().acks_resent == 1
        assert held(lab) == {}  # the copy brought nothing back
        # 64*T1 after the 2xx the ACK is gone: a copy then is a stray response
        lab.run_for(answer.at + 32.0 - lab.now() + 0.1)
        assert lab.endpoint.core.statistics().acks_kept == 0
        lab.loop.network.send(BOT, VOICEGW, answer.data)
        lab.run_for(0.2)
        assert len(sent(lab, VOICEGW, BOT, b"ACK ")) == 2
        lab.assert_clean(instances=True)


def test_a_call_ended_while_the_bot_rings_is_kept_until_its_invite_is_over() -> None:
    """The caller cancels while the bot rings: the bot leg's CANCEL waits for the
    INVITE's final response (9.1), so the call stays until that session is over, then
    goes."""
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        lab.bot.answer = Answer(after=None)  # rings, never answers
        caller = lab.caller.call()
        lab.run_for(0.5)
        lab.caller.cancel(caller)
        lab.run_for(1.0)
        assert 487 in caller.statuses, lab.describe()
        assert held(lab) == {}, lab.describe()
        lab.assert_clean()

