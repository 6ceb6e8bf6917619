"""A bot that stays on a transferred call, muted, for transcription: after the INVITE
transfer it hears the caller and the agent mixed into one stream, and nothing it says
reaches either of them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from peers.agent import Agent
from peers.caller import Caller
from peers.daemon import wait_until
from peers.ops import OpsDaemon, active_call

from voicegw.media import g711
from voicegw.media.tones import goertzel_power

pytestmark = pytest.mark.wire


def tone(frequency: float) -> bytes:
    t = np.arange(160) / 8000.0
    return g711.ulaw_encode((np.sin(2 * np.pi * frequency * t) * 8000).astype(np.int16))


CALLER_TONE, AGENT_TONE, BOT_TONE = tone(600), tone(1400), tone(2200)


def power(packets: list[bytes], frequency: float) -> float:
    """Goertzel power at ``frequency`` (a full-scale sine gives about 0.25; our tones,
    at a quarter of full scale, about 0.015 alone)."""
    audio = [p[12:] for p in packets if len(p) > 12 and p[1] & 0x7F == 0]
    if not audio:
        return 0.0
    return goertzel_power(g711.ulaw_decode(b"".join(audio)), frequency)


def test_the_bot_hears_both_sides_mixed_and_says_nothing(tmp_path: Path) -> None:
    with Agent(answer_delay=0.0) as bot, Agent(answer_delay=0.1) as human:
        config = {"calls": {"bot_uri": bot.uri, "bot_listens": True, "transfer_allow": [human.uri]}}
        with OpsDaemon(tmp_path, config=config) as ops:
            caller = Caller(ops.address)
            try:
                assert caller.invite().status == 200
                call = active_call(ops)
                started = ops.http("POST", f"/calls/{call['id']}/transfer", json={"target": human.uri})
                assert started.status_code == 202, started.text
                assert wait_until(lambda: ops.http("GET", f"/calls/{call['id']}").json()["transfer"]["state"]
                                  == "succeeded", 10)
                time.sleep(0.2)
                since = time.monotonic()
                heard_by_caller: list[bytes] = []
                for _ in range(50):
                    caller.send_rtp(CALLER_TONE)
                    human.send_rtp(AGENT_TONE)
                    bot.send_rtp(BOT_TONE)
                    heard_by_caller += caller.receive_rtp(0.02)
                heard_by_caller += caller.receive_rtp(0.3)
                bot_heard = bot.audio(since)
                assert len(bot_heard) >= 30, "the bot keeps getting a paced stream"
                assert power(bot_heard, 600) > 0.002 and power(bot_heard, 1400) > 0.002, "both sides, mixed"
                assert power(bot_heard, 2200) < 0.0001, "not its own voice"
                assert not any(p[12:] == BOT_TONE for p in human.audio(since)), "the agent never hears the bot"
                assert all(power([p], 2200) < 0.001 for p in heard_by_caller if len(p) > 12), \
                    "nor does the caller"
                assert any(p[12:] == AGENT_TONE for p in heard_by_caller), "caller and agent talk"
                assert not bot.got("BYE"), "the bot stays on the call"
                assert caller.bye().status == 200
                assert bot.wait_for("BYE", 5) and human.wait_for("BYE", 5), "the caller's BYE ends every leg"
            finally:
                caller.close()
