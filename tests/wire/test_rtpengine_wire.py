"""``media.backend: rtpengine`` over the wire: ``voicegw run`` with a real rtpengine in
userspace on loopback (the ``rtpengine`` fixture) as its media plane.

The SDP voicegw gives each peer carries a port of rtpengine's range (not voicegw's), and
what the peers hear is checked: a caller's tone comes back from a bot that echoes
(Goertzel at the tone's frequency), the demo flow's greeting is a prompt rtpengine plays
(``play media``), the caller's RFC 4733 "0" reaches the flow through rtpengine's DTMF
log, and the INVITE transfer it starts swaps the bridge to an echoing agent. A caller
offering SDES-SRTP (RTP/SAVP) is answered RTP/SAVP with a key rtpengine protects with,
towards a plain-RTP bot: its tone comes back protected (libsrtp checks every packet). A
PCMA caller talks to a PCMU bot through rtpengine's transcoding.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from peers.caller import PcmaCaller, SrtpCaller, speech_energy
from peers.calls import SIPP
from peers.lab import (
    NO_SHEDDING,
    agent_uri,
    caller,
    event,
    finish,
    peer,
    requests,
    start_voicegw,
    wait_event,
)

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


def send_tone(c, seconds: float, pt: int = 0) -> None:
    samples = tones.generate(tones.ToneSpec((TONE_HZ,), (), level_dbm0=-10.0), seconds)
    encode = g711.alaw_encode if pt == 8 else g711.ulaw_encode
    for start in range(0, len(samples) - 159, 160):
        c.send_rtp(encode(samples[start:start + 160]), pt=pt)
        c.rtp_ts += 160  # a real stream's clock (rtpengine's DTMF detection reads it)
        time.sleep(0.02)


def tone_power(packets: list[bytes], pt: int = 0) -> tuple[float, float]:
    """(power at the tone, power at 600 Hz) of the PCMU (or ``pt`` 8: PCMA) audio received."""
    audio = b"".join(p[12:] for p in packets if len(p) > 12 and p[1] & 0x7F == pt)
    decode = g711.alaw_decode if pt == 8 else g711.ulaw_decode
    x = decode(audio) if audio else np.zeros(0, np.int16)
    return tones.goertzel_power(x, TONE_HZ), tones.goertzel_power(x, 600.0)


def echo_of_tone(c) -> list[bytes]:
    """The caller sends 1 s of its tone; what comes back, from the first packet that
    carries the tone on. What came before it is the tail of the prompt or ringback
    rtpengine played to the caller: after the swap its ``stop media`` may come late
    on a loaded box (a stray packet of it once failed the check); from the echo's first
    packet on, everything is checked."""
    send_tone(c, 1.0)
    echoed = c.receive_rtp(0.8)
    for i, packet in enumerate(echoed):
        at_tone, off_tone = tone_power([packet])
        if at_tone > 1e-4 and at_tone > 20 * off_tone:
            return echoed[i:]
    return []


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
    echoed = echo_of_tone(c)
    at_tone, off_tone = tone_power(echoed)
    assert at_tone > 1e-4 and at_tone > 20 * off_tone, \
        f"the caller hears the agent's echo of its tone: {(at_tone, off_tone, len(echoed))}"
    assert event(lab, "call.ended") is None
    assert c.bye().status == 200
    finish(lab, agent)


def test_an_srtp_caller_through_rtpengine_to_a_plain_bot(lab, rtpengine):
    """rtpengine does the SRTP: the caller's RTP/SAVP offer is answered RTP/SAVP with
    a=crypto (voicegw's key, the one rtpengine protects with), on rtpengine's port; the
    bot's leg is plain RTP/AVP; the caller's protected tone reaches the echoing bot (it
    was unprotected with the caller's key) and comes back protected: every packet passes
    libsrtp's authentication with the answer's key, and carries the tone."""
    start_voicegw(lab, sections=rtpengine_media(rtpengine, lab.workdir))
    b = lab.bot("b2bua_bot_answer.xml", rtp_echo=True)
    c = SrtpCaller(lab.daemon.address)
    lab.callers.append(c)
    answer = c.invite()
    assert answer.status == 200
    assert re.search(rb"m=audio \d+ RTP/SAVP 0", answer.body), answer.body
    assert c.remote_media is not None and in_range(rtpengine, c.remote_media[1])
    ours = c.keyed(answer.body)
    assert ours.suite == "AES_CM_128_HMAC_SHA1_80" and ours.key_salt != c.key, "voicegw answers with its own key"
    bot_offer = requests(b.messages(), "INVITE")[0].body
    assert b"RTP/AVP" in bot_offer and b"a=crypto" not in bot_offer, "the bot leg stays plain RTP"
    c.receive_rtp(0.2)
    send_tone(c, 1.0)
    echoed = c.receive_rtp(0.8)
    clear = c.unprotect(echoed)
    assert echoed and all(p is not None for p in clear), f"{clear.count(None)} of {len(echoed)} failed SRTP"
    at_tone, off_tone = tone_power([p for p in clear if p is not None])
    assert at_tone > 1e-4 and at_tone > 20 * off_tone, (at_tone, off_tone, len(echoed))
    assert c.bye().status == 200
    finish(lab, b)


def test_a_pcma_caller_talks_to_a_pcmu_bot_through_rtpengine_transcoding(lab, rtpengine):
    """The caller speaks PCMA, the bot PCMU: the caller's answer says PCMA, the bot's
    offer PCMU; the caller's A-law tone reaches the bot as mu-law (its echo is the tone
    again) and comes back as A-law (PT 8) carrying the tone."""
    start_voicegw(lab, sections=rtpengine_media(rtpengine, lab.workdir))
    b = lab.bot("b2bua_bot_answer.xml", rtp_echo=True)
    c = PcmaCaller(lab.daemon.address)
    lab.callers.append(c)
    answer = c.invite()
    assert answer.status == 200
    assert re.search(rb"m=audio \d+ RTP/AVP 8", answer.body), answer.body
    assert c.remote_media is not None and in_range(rtpengine, c.remote_media[1])
    assert re.search(rb"m=audio \d+ RTP/AVP 0", requests(b.messages(), "INVITE")[0].body)
    c.receive_rtp(0.2)
    send_tone(c, 1.0, pt=8)
    echoed = c.receive_rtp(0.8)
    assert echoed and all(p[1] & 0x7F in (8, 101) for p in echoed), {p[1] & 0x7F for p in echoed}
    at_tone, off_tone = tone_power(echoed, pt=8)
    assert at_tone > 1e-4 and at_tone > 20 * off_tone, (at_tone, off_tone, len(echoed))
    assert c.bye().status == 200
    finish(lab, b)
