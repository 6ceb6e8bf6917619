"""FreeSWITCH as the bot voicegw bridges callers to (issue 11): its dialplan apps play the
bot's part, so voicegw's B2BUA hop is checked against another stack's media and timing.

caller (peers.caller: raw SIP and RTP) -> ``voicegw run --bot-uri sip:<number>@FreeSWITCH``.
Numbers of the test dialplan: ``early-<Hz>`` (183 with SDP and a tone as early media, then
200 and echo), ``dtmf-<digits>`` (answer, send the digits as RFC 4733 events, echo) and
``hangup-<ms>`` (answer, BYE after <ms>). Asserted: what the caller receives (the 183 with
SDP, the early tone before the 200, the telephone-events relayed, the BYE), FreeSWITCH's
SIP trace and voicegw's JSON log.
"""

from __future__ import annotations

import struct
import time

import pytest
from peers.calls import SIPP
from peers.freeswitch import INSTALL, SKIP_REASON, talk, tone, wait_request
from peers.lab import caller, start_voicegw, wait_event
from peers.pbx import tone_packets

from voicegw.sip.message import Response

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(INSTALL is None, reason=SKIP_REASON),
]


def bot_is(lab, freeswitch, number: str):
    """voicegw bridging every call to FreeSWITCH's ``number``, and a caller."""
    start_voicegw(lab, bot=False, bot_uri=freeswitch.uri(number))
    return caller(lab)


def test_the_bots_early_media_reaches_the_caller_before_the_answer(lab, freeswitch):
    """FreeSWITCH answers 183 with SDP and plays 600 Hz for 2 s before its 200: voicegw
    gives the caller a 183 with its own SDP and relays the tone at once, so the caller has
    the tone queued on its socket by the time the 200 arrives."""
    c = bot_is(lab, freeswitch, "early-600")
    assert c.invite().status == 200
    early = [m for m in c.received if isinstance(m, Response) and m.status == 183]
    assert early and b"m=audio" in early[0].body, [getattr(m, "status", None) for m in c.received]
    before_answer = c.receive_rtp(0.3)  # what arrived while the INVITE was pending, and a bit
    assert tone_packets(before_answer, 600) >= 10, "the bot's early tone, relayed before the 200"
    heard = talk(c, tone(1100, 100))
    assert tone_packets(heard, 1100) >= 40, "after the 200, FreeSWITCH echoes the caller"
    fs = [m.describe() for m in freeswitch.sip_messages(freeswitch.since)]
    assert fs.index("out 183 INVITE") < fs.index("out 200 INVITE"), fs
    assert c.bye().status == 200


def test_the_bots_rfc4733_digits_are_relayed_to_the_caller(lab, freeswitch):
    """``dtmf-42``: FreeSWITCH sends 4 then 2 as telephone-events one second after
    answering; the caller receives both events (event codes 4 and 2, end bits set)."""
    c = bot_is(lab, freeswitch, "dtmf-42")
    assert c.invite().status == 200
    events: list[tuple[int, int, int]] = []
    ended: list[int] = []
    deadline = time.monotonic() + 10.0
    while len(ended) < 2 and time.monotonic() < deadline:
        packets = c.receive_rtp(0.5)
        events += [struct.unpack("!BBH", p[12:16]) for p in packets if len(p) >= 16 and p[1] & 0x7F == 101]
        ended = []
        for code, flags, _duration in events:
            if flags & 0x80 and (not ended or ended[-1] != code):
                ended.append(code)
    assert ended == [4, 2], events[:20]
    assert c.bye().status == 200


def test_the_bot_hangs_up_and_the_caller_gets_a_bye(lab, freeswitch):
    """``hangup-1500``: FreeSWITCH answers and sends BYE 1.5 s later; voicegw ends the
    call towards the caller with a BYE of its own."""
    c = bot_is(lab, freeswitch, "hangup-1500")
    assert c.invite().status == 200
    assert wait_request(c, "BYE"), "voicegw BYEs the caller once the bot left"
    fs = [m.describe() for m in freeswitch.wait_sip("in 200 BYE", freeswitch.since)]
    assert "out BYE" in fs and "in 200 BYE" in fs, fs
    wait_event(lab, "call.ended")
