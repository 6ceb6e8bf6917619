"""The caller <-> bot bridge in-process (tests/peers/inproc.py: voicegw's SIP endpoint,
core and engine on a virtual clock, SIP peers and RTP sinks over an in-memory
network): audio both ways, either side hanging up, the bot failing or never answering,
the caller cancelling. After each call nothing is left: no call, leg, dialog,
transaction, timer, task, player or RTP socket. The same paths over real sockets
with sipp are tests/wire/test_b2bua_wire.py and tests/wire/test_leak_wire.py."""

from __future__ import annotations

import pytest
from peers.inproc import Answer, Lab, engine_config, peer_uri


def bot_lab(**overrides: object) -> Lab:
    return Lab(engine_config(bot_uri=peer_uri("bot"), **overrides))


@pytest.mark.parametrize("who", ["caller", "bot"])
def test_bridged_audio_flows_both_ways_until_either_side_hangs_up(who: str) -> None:
    with bot_lab() as lab:
        caller = lab.caller.call()
        lab.run_for(0.5)
        bot = lab.bot.last
        assert caller.statuses == [100, 180, 200] and bot.state == "confirmed", lab.describe()
        lab.caller.media.send_audio(caller.remote_media, 7)
        lab.bot.media.send_audio(bot.remote_media, 9)
        lab.run_for(0.5)
        # what each side sent arrived at the other, from voicegw's endpoint towards it
        assert lab.bot.media.received == {bot.remote_media: 7}
        assert lab.caller.media.received == {caller.remote_media: 9}
        lab.peers[who].hang_up()
        # the collector walk (as /debug/objects?instances) once per side is enough
        lab.run_for(1.0)
        other = lab.bot if who == "caller" else lab.caller
        assert other.last.methods()[-1:] == ["BYE"] and other.last.state == "ended", lab.describe()
        assert "call.ended" in lab.events()
        lab.assert_clean(instances=who == "caller")


@pytest.mark.parametrize(("bot_status", "caller_status"), [(486, 486), (503, 503), (404, 404), (480, 480)])
def test_bot_refusal_is_mapped_to_the_caller(bot_status: int, caller_status: int) -> None:
    with bot_lab() as lab:
        lab.bot.answer = Answer(status=bot_status, after=0.2)
        caller = lab.caller.call()
        lab.run_for(1.0)
        assert caller.state == "failed" and caller.statuses[-1] == caller_status, lab.describe()
        lab.assert_clean()


def test_bot_that_never_answers_is_cancelled_and_the_caller_gets_480() -> None:
    with bot_lab(bot_answer_timeout=5.0) as lab:
        lab.bot.answer = Answer(after=None)
        caller = lab.caller.call()
        lab.run_for(4.9)
        assert caller.state == "early", lab.describe()
        lab.run_for(0.5)
        assert caller.statuses[-1] == 480 and lab.bot.last.state == "cancelled", lab.describe()
        lab.assert_clean()


@pytest.mark.parametrize("when", [0.0, 0.3])
def test_caller_cancel_while_the_bot_rings(when: float) -> None:
    with bot_lab() as lab:
        lab.bot.answer = Answer(after=None)
        caller = lab.caller.call()
        lab.run_for(when)
        lab.caller.cancel(caller)
        lab.run_for(1.0)
        assert caller.state == "cancelled" and caller.statuses[-1] == 487, lab.describe()
        assert lab.bot.last.state == "cancelled", lab.describe()
        lab.assert_clean()



def test_caller_hold_and_unhold_are_relayed_to_the_bot() -> None:
    with bot_lab() as lab:
        caller = lab.caller.call()
        lab.run_for(0.5)
        lab.caller.hold()
        lab.run_for(0.5)
        lab.caller.hold(on=False)
        lab.run_for(0.5)
        assert caller.responses["re-INVITE"] == [200, 200], lab.describe()
        offers = [r.body for r in lab.bot.last.requests if r.method == "INVITE"]
        assert [b"a=sendonly" in o for o in offers] == [True, False], offers
        lab.caller.hang_up()
        lab.assert_clean()
