"""The controller's timers of a warm transfer's live briefing and of the RTP inactivity
check, in-process (tests/peers/inproc.py, virtual clock): each is armed on the call by
the controller's StartTimer (``Call.timers`` keyed by the controller's ``Timer``), does
its work when due, is cancelled when what it waits for ends first, and is gone when
the caller hangs up while it is armed (nothing left: ``assert_clean``). Over the wire:
tests/wire/test_warm_wire.py (live briefing) and tests/wire/test_media_timeout_wire.py."""

from __future__ import annotations

from dataclasses import replace

from peers.inproc import Answer, Lab, PeerCall, engine_config, peer_uri

from voicegw.engine.control_io import Timer
from voicegw.settings import WarmSettings

AGENT = peer_uri("agent")
LIVE = WarmSettings(briefing_text="", bot_briefing_seconds=2.0)
"""No recorded briefing: the live one (bot <-> agent, 2 s) starts at the agent's answer."""


def armed(lab: Lab, timer: Timer) -> list[float]:
    """When the call's ``timer`` is due (one entry per armed one)."""
    return [handle.when() for (kind, _), handle in lab.call().timers.items() if kind is timer]


# ---------------------------------------------------------------------- live briefing
def live_lab(**settings: object) -> Lab:
    return Lab(engine_config(bot_uri=peer_uri("bot"),
                             transfer={"bot_refer_method": "warm", "warm": replace(LIVE, **settings)}))


def briefing(lab: Lab) -> tuple[PeerCall, PeerCall, PeerCall]:
    """The bot REFERs at 0.5 s, the agent answers 1 s later: the live briefing runs."""
    lab.agent.answer = Answer(after=1.0)
    caller = lab.caller.call()
    lab.run_for(0.5)
    bot = lab.bot.last
    lab.bot.refer(bot, AGENT)
    assert lab.run_until(lambda: "transfer.live_briefing" in lab.events(), within=5.0), lab.describe()
    return caller, bot, lab.agent.last


def test_the_live_briefing_ends_when_the_controllers_timer_fires() -> None:
    with live_lab() as lab:
        _caller, bot, agent = briefing(lab)
        started = lab.when("transfer.live_briefing")
        assert armed(lab, Timer.LIVE_BRIEFING) == [started + 2.0]
        lab.run_for(started + 1.9 - lab.now())
        assert bot.state == "confirmed" and agent.state == "confirmed", "still briefing"
        lab.bot.media.send_audio(bot.remote_media, 3)
        lab.run_for(0.05)
        assert lab.agent.media.received == {agent.remote_media: 3}, "the bot and the agent are bridged"
        lab.run_for(0.2)  # past the due time: the agent has the caller, the bot is let go
        assert armed(lab, Timer.LIVE_BRIEFING) == []
        assert bot.state == "ended" and bot.notifies[-1] == 200, lab.describe()
        assert "transfer.succeeded" in lab.events(), lab.describe()
        lab.caller.hang_up()
        lab.assert_clean()


def test_the_agent_leaving_mid_briefing_cancels_the_timer_and_the_caller_gets_the_bot_back() -> None:
    with live_lab(bot_briefing_seconds=5.0) as lab:
        caller, bot, _agent = briefing(lab)
        lab.run_for(0.5)
        assert len(armed(lab, Timer.LIVE_BRIEFING)) == 1
        lab.agent.hang_up()
        lab.run_for(0.1)
        assert armed(lab, Timer.LIVE_BRIEFING) == [], "the consult left BRIEFING: cancelled"
        assert bot.state == "confirmed" and bot.notifies[-1] >= 400, lab.describe()
        lab.caller.media.send_audio(caller.remote_media, 4)
        lab.run_for(0.1)
        assert lab.bot.media.received == {bot.remote_media: 4}, "the caller is back on the bot"
        lab.caller.hang_up()
        lab.assert_clean()


def test_the_caller_hanging_up_mid_briefing_leaves_no_timer() -> None:
    with live_lab(bot_briefing_seconds=5.0) as lab:
        _caller, bot, agent = briefing(lab)
        lab.run_for(0.5)
        assert len(armed(lab, Timer.LIVE_BRIEFING)) == 1
        lab.caller.hang_up()
        lab.run_for(0.1)
        assert lab.call().timers == {}, lab.describe()
        assert bot.state == "ended" and agent.state == "ended", lab.describe()
        lab.assert_clean(instances=True)


# ---------------------------------------------------------------------- RTP inactivity
def bridged(timeout: float) -> tuple[Lab, PeerCall, PeerCall]:
    lab = Lab(engine_config(bot_uri=peer_uri("bot"), media_inactivity_timeout=timeout))
    caller = lab.caller.call()
    assert lab.run_until(lambda: lab.caller.last.state == "confirmed", within=2.0), lab.describe()
    return lab, caller, lab.bot.last


def test_a_silent_call_ends_on_the_controllers_media_timer() -> None:
    lab, caller, bot = bridged(timeout=2.0)
    with lab:
        answered = lab.when("call.connected")
        assert armed(lab, Timer.MEDIA) == [answered + 0.5], "every quarter of the timeout"
        for _ in range(6):  # both sides keep sending for 3 s: the checks find them
            lab.caller.media.send_audio(caller.remote_media, 25)
            lab.bot.media.send_audio(bot.remote_media, 25)
            lab.run_for(0.5)
        assert caller.state == "confirmed" and len(armed(lab, Timer.MEDIA)) == 1, lab.describe()
        silent_from = lab.now()  # the last packets went 0.5 s ago: a check has seen them since
        assert lab.run_until(lambda: caller.state == "ended", within=5.0), lab.describe()
        # silent for the 2 s timeout since the check that saw the last packets (in the
        # last 0.5 s), found by the next check at most 0.5 s later (virtual time)
        assert silent_from + 1.5 < lab.when("call.ended") <= silent_from + 2.5, lab.describe()
        ended = next(event for _, event in lab.call().timeline if event.name == "call.ended")
        assert ended.cause == "media_timeout" and "no RTP" in ended.reason, ended
        assert bot.state == "ended" and lab.call().timers == {}, lab.describe()
        lab.assert_clean()


def test_the_caller_hanging_up_while_the_media_check_is_armed_leaves_no_timer() -> None:
    lab, _caller, bot = bridged(timeout=30.0)
    with lab:
        lab.run_for(1.0)
        assert len(armed(lab, Timer.MEDIA)) == 1
        lab.caller.hang_up()
        lab.run_for(0.1)
        assert lab.call().timers == {}, lab.describe()
        assert bot.state == "ended", lab.describe()
        lab.assert_clean(instances=True)
