"""Warm transfer with a live briefing: the bot (sipp, echoing RTP) asks for the agent
by REFER; voicegw consults the agent and bridges bot <-> agent for a moment so the bot
can speak the handover; the caller hears none of it; then caller <-> agent."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from peers.agent import Agent, Carrier, WarmDaemon
from peers.net import free_port
from peers.ports import free_block
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]
SCENARIOS = Path(__file__).resolve().parents[1] / "peers" / "scenarios"
AGENT_TONE = bytes([0xA5]) * 160
CALLER_TONE = bytes([0x5A]) * 160


def test_bot_and_agent_talk_during_the_briefing_the_caller_does_not_hear_it(tmp_path: Path) -> None:
    bot_port, bot_media = free_port(), free_block(4)
    base = free_block(40)
    with Agent(answer_delay=0.1) as agent:
        bot = subprocess.Popen(
            [SIPP, "-sf", str(SCENARIOS / "bot_refer.xml"), "-key", "refer_to", agent.uri,
             "-p", str(bot_port), "-i", "127.0.0.1", "-mp", str(bot_media), "-rtp_echo", "-m", "1",
             "-nostdin", "-timeout", "30s", "-trace_msg", "-message_file", str(tmp_path / "bot.log")],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemon = WarmDaemon(tmp_path / "d", agent.uri,
                            {"briefing_text": "", "bot_briefing_seconds": 2.0, "auto_complete": True,
                             "hold": "silence"},
                            (base, base + 38), transfer_methods=["warm"], bot_uri=f"sip:bot@127.0.0.1:{bot_port}")
        caller = None
        try:
            time.sleep(0.3)
            daemon.start()
            caller = Carrier(daemon.address)
            assert caller.invite().status == 200
            assert caller.listen(10, lambda: agent.call is not None and agent.call.acked), "the agent was consulted"
            time.sleep(0.2)
            start = time.monotonic()
            for _ in range(30):  # the agent talks; the echoing bot sends it straight back
                agent.send_rtp(AGENT_TONE)
                caller.send_rtp(CALLER_TONE)
                caller.listen(0.02)
            caller.listen(0.3)
            echoed = sum(1 for p in agent.audio(since=start) if p[12:] == AGENT_TONE)
            assert echoed >= 20, f"bot and agent are bridged during the briefing ({echoed} echoed)"
            assert not any(p[12:] == AGENT_TONE for p in caller.audio()), "the caller hears nothing of it"
            assert not any(p[12:] == CALLER_TONE for p in agent.audio(since=start)), "nor the agent the caller"
            assert caller.listen(6, lambda: bool(daemon.logged("transfer.succeeded"))), "then it connects"
            time.sleep(0.2)
            after = time.monotonic()
            for _ in range(25):
                caller.send_rtp(CALLER_TONE)
                caller.listen(0.02)
            caller.listen(0.3)
            assert sum(1 for p in agent.audio(since=after) if p[12:] == CALLER_TONE) >= 20, "caller <-> agent now"
            assert daemon.logged("transfer.live_briefing") or any(
                e.get("event") == "transfer.succeeded" for e in daemon.events())
            assert bot.wait(10) == 0, "the bot got its final NOTIFY and BYE"
        finally:
            if caller is not None:
                caller.hang_up_quietly()
                caller.close()
            bot.kill()
            daemon.terminate()
