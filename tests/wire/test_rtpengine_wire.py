"""``media.backend: rtpengine`` over the wire: ``voicegw run`` with a real rtpengine in
userspace on loopback (the ``rtpengine`` fixture) as its media plane.

The SDP voicegw gives each peer carries a port of rtpengine's range (not voicegw's), and
what the peers hear is checked: a caller's tone comes back from a bot that echoes
(Goertzel at the tone's frequency), the demo flow's greeting is a prompt rtpengine plays
(``play media``), the caller's RFC 4733 "0" reaches the flow through rtpengine's DTMF
log, and the INVITE transfer it starts swaps the bridge to an echoing agent.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from peers.caller import speech_energy
from peers.calls import HOST, SIPP
from peers.lab import NO_SHEDDING, agent_uri, caller, event, finish, peer, requests, start_voicegw, wait_event
from voicegw.media import g711, tones

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]

TONE_HZ = 1000.0


def rtpengine_media(engine, workdir) -> dict[str, object]:
    return {**NO_SHEDDING, "media": {"backend": "rtpengine", "rtpengine": {
        "ng": f"{engine.ng[0]}:{engine.ng[1]}", "dtmf_listen": f"{engine.dtmf[0]}:{engine.dtmf[1]}",
        "files": str(workdir / "rtpengine-files")}}}


def in_range(engine, port: int) -> bool:
    return engine.port_min <= port <= engine.port_max


def sdp_port(body: bytes) -> int:
    return int(re.search(rb"m=audio (\d+)", body).group(1))  # type: ignore[union-attr]


def send_tone(c, seconds: float) -> None:
    samples = tones.generate(tones.ToneSpec((TONE_HZ,), (), level_dbm0=-10.0), seconds)
    for start in range(0, len(samples) - 159, 160):
        c.send_rtp(g711.ulaw_encode(samples[start:start + 160]))
        c.rtp_ts += 160  # a real stream's clock (rtpengine's DTMF detection reads it)
        time.sleep(0.02)


def tone_power(packets: list[bytes]) -> tuple[float, float]:
    """(power at the tone, power at 600 Hz) of the PCMU audio received."""
    audio = b"".join(p[12:] for p in packets if len(p) > 12 and p[1] & 0x7F == 0)
    x = g711.ulaw_decode(audio) if audio else np.zeros(0, np.int16)
    return tones.goertzel_power(x, TONE_HZ), tones.goertzel_power(x, 600.0)


def test_caller_and_bot_through_rtpengine(lab, rtpengine):
    start_voicegw(lab, sections=rtpengine_media(rtpengine, lab.workdir))
    b = lab.bot("b2bua_bot_answer.xml", rtp_echo=True)
    c = caller(lab)
    answer = c.invite()
    assert answer.status == 200
    assert c.remote_media is not None and in_range(rtpengine, c.remote_media[1]), \
        f"the caller's SDP names rtpengine's port: {c.remote_media}"
    invite = requests(b.messages(), "INVITE")[0]
    assert in_range(rtpengine, sdp_port(invite.body)), "the bot is offered rtpengine's port"
    c.receive_rtp(0.2)
    send_tone(c, 1.0)
    echoed = c.receive_rtp(0.8)
    at_tone, off_tone = tone_power(echoed)
    assert at_tone > 1e-4 and at_tone > 20 * off_tone, (at_tone, off_tone, len(echoed))
    assert c.bye().status == 200
    finish(lab, b)


def test_demo_flow_prompt_dtmf_and_invite_transfer_through_rtpengine(lab, rtpengine):
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    start_voicegw(lab, bot=False, sections=rtpengine_media(rtpengine, lab.workdir),
                  agent_uri=agent_uri(agent), transfer_method="invite")
    c = caller(lab)
    assert c.invite().status == 200
    assert c.remote_media is not None and in_range(rtpengine, c.remote_media[1])
    greeting = c.receive_rtp(1.5)
    assert speech_energy(greeting) > 200, "the greeting rtpengine plays is heard"
    # a phone sends audio from the answer on; rtpengine reports no event that opens a
    # stream (docs/scaling.md), so the caller speaks before it presses a key
    send_tone(c, 0.3)
    c.send_dtmf("0")
    wait_event(lab, "flow.dtmf", digit="0")
    wait_event(lab, "transfer.succeeded")
    invite = requests(agent.messages(), "INVITE")[0]
    assert in_range(rtpengine, sdp_port(invite.body)), "the agent is offered rtpengine's port"
    c.receive_rtp(0.5)  # ringback and prompt leftovers
    send_tone(c, 1.0)
    echoed = c.receive_rtp(0.8)
    at_tone, off_tone = tone_power(echoed)
    assert at_tone > 1e-4 and at_tone > 20 * off_tone, "the caller hears the agent's echo of its tone"
    assert event(lab, "call.ended") is None
    assert c.bye().status == 200
    finish(lab, agent)
