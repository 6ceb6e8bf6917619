"""Each transfer method in-process (tests/peers/inproc.py), started by the bot's REFER
with the method the config names: REFER to the carrier (accepted and reported, refused,
never answered, no final NOTIFY), BYE hand-back, warm (briefing, then the bridge),
INVITE (the agent never answers: CANCEL at the ring timeout), and REFER falling back
to INVITE. What crossed the wire is checked at the peers (requests, headers, sipfrag
statuses, RTP), and nothing is left once the call is over. Over the wire:
tests/wire/test_bot_refer_wire.py, test_bot_refer_methods_wire.py, test_handoff_wire.py,
test_warm_wire.py and the PBX suites."""

from __future__ import annotations

import pytest
from peers.inproc import Answer, Lab, PeerCall, engine_config, peer_uri

AGENT = peer_uri("agent")


def refer_lab(method: str, **transfer: object) -> Lab:
    return Lab(engine_config(bot_uri=peer_uri("bot"), transfer={"bot_refer_method": method, **transfer}))


def bot_refers(lab: Lab) -> tuple[PeerCall, PeerCall]:
    caller = lab.caller.call()
    lab.run_for(0.5)
    bot = lab.bot.last
    assert bot.state == "confirmed", lab.describe()
    lab.bot.refer(bot, AGENT)
    return caller, bot


def header(call: PeerCall, method: str, name: str) -> str | None:
    request = next(r for r in call.requests if r.method == method)
    return request.headers.get(name)


def test_refer_to_the_carrier_then_voicegw_leaves() -> None:
    with refer_lab("refer") as lab:
        caller, bot = bot_refers(lab)
        lab.run_for(2.0)
        assert caller.methods() == ["REFER", "BYE"], lab.describe()
        assert header(caller, "REFER", "refer-to") == f"<{AGENT}>"
        assert header(caller, "REFER", "x-vg-call-id") == caller.call_id
        assert caller.responses["NOTIFY"] == [200, 200, 200]
        assert bot.notifies[-1] == 200 and bot.methods()[-1] == "BYE", lab.describe()
        assert not lab.agent.calls, "the carrier connects the agent, not voicegw"
        lab.assert_clean(instances=True)


@pytest.mark.parametrize(("outcome", "status", "when"), [
    (405, 405, 0.0),          # the carrier refuses the REFER
    ([100, 486], 486, 0.0),   # accepted, then the target was busy (sipfrag)
    (None, 408, 8.0),         # no answer to the REFER: refer_timeout
    ([100], 408, 20.0),       # 202 but no final NOTIFY: notify_timeout
])
def test_refer_failure_is_reported_to_the_bot_and_the_caller_stays(outcome: object, status: int,
                                                                   when: float) -> None:
    with refer_lab("refer") as lab:
        lab.caller.refer_outcome = outcome  # type: ignore[assignment]
        caller, bot = bot_refers(lab)
        lab.run_for(when + 1.0)
        assert bot.notifies[-1] == status, lab.describe()
        assert caller.state == bot.state == "confirmed"
        lab.caller.media.send_audio(caller.remote_media, 3)
        lab.run_for(0.2)
        assert lab.bot.media.received == {bot.remote_media: 3}, "caller and bot still bridged"
        lab.bot.hang_up()
        lab.assert_clean()


def test_refer_refused_falls_back_to_invite() -> None:
    with refer_lab("refer", bot_refer_methods=("refer", "invite"), retry_prompt=None) as lab:
        lab.caller.refer_outcome = 501
        caller, bot = bot_refers(lab)
        lab.run_for(2.0)
        agent = lab.agent.last
        assert agent.state == "confirmed" and caller.methods() == ["REFER"], lab.describe()
        assert bot.notifies[-1] == 200 and bot.state == "ended"
        lab.agent.media.send_audio(agent.remote_media, 5)
        before = lab.caller.media.total
        lab.run_for(0.2)
        assert lab.caller.media.total - before == 5
        lab.caller.hang_up()
        lab.run_for(0.5)
        assert agent.state == "ended"
        lab.assert_clean()


def test_bye_hand_back_names_the_destination_on_the_callers_bye() -> None:
    with refer_lab("bye") as lab:
        caller, bot = bot_refers(lab)
        lab.run_for(1.0)
        assert caller.methods() == ["BYE"] and caller.state == "ended", lab.describe()
        assert header(caller, "BYE", "x-transfer-destination") == f"<{AGENT}>"
        assert header(caller, "BYE", "x-vg-call-id") == caller.call_id
        assert bot.state == "ended" and not lab.agent.calls
        lab.assert_clean()


def test_warm_transfer_briefs_the_agent_then_bridges_the_caller() -> None:
    with refer_lab("warm") as lab:
        lab.agent.answer = Answer(after=1.0)
        caller, bot = bot_refers(lab)
        lab.run_for(1.2)
        agent = lab.agent.last
        assert agent.state == "confirmed" and bot.state == "confirmed", lab.describe()
        lab.run_for(0.5)
        briefing = lab.agent.media.total
        assert briefing > 20, "the agent hears the briefing (the TTS fallback beep here)"
        assert lab.caller.media.total == 0, "the caller stays with the bot meanwhile"
        lab.run_for(2.0)
        assert bot.notifies[-1] == 200 and bot.state == "ended", lab.describe()
        lab.caller.media.send_audio(caller.remote_media, 4)
        lab.run_for(0.2)
        assert lab.agent.media.total - briefing >= 4
        lab.agent.hang_up()
        lab.run_for(0.5)
        assert caller.state == "ended"
        lab.assert_clean(instances=True)


def test_agent_that_never_answers_is_cancelled_at_the_ring_timeout() -> None:
    with refer_lab("invite", ring_timeout=6.0) as lab:
        lab.agent.answer = Answer(after=None)
        caller, bot = bot_refers(lab)
        lab.run_for(5.9)
        assert lab.agent.last.state == "early" and lab.caller.media.total > 200, "ringback meanwhile"
        lab.run_for(0.5)
        assert lab.agent.last.state == "cancelled" and bot.notifies[-1] == 408, lab.describe()
        ringback = lab.caller.media.total
        lab.run_for(1.0)
        assert lab.caller.media.total == ringback, "the ringback stopped"
        assert caller.state == bot.state == "confirmed"
        lab.caller.hang_up()
        lab.assert_clean()
