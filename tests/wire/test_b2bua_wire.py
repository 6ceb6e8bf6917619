"""The B2BUA over the wire: ``voicegw run`` between real peers on 127.0.0.1.

caller (sipp UAC, or a raw-UDP caller in Python) -> voicegw -> bot (sipp UAS). Each
test starts its own daemon on a free SIP port with its own RTP range, and its own sipp
peers on free ports; :class:`CallLab` stops them all. The assertions are on what
crossed the wire: sipp's exit code (its scenarios check the SDP with regexps) and the
messages in its ``-trace_msg`` log; for media, the RTP packets the test's own socket
receives.
"""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest
from peers.calls import SIPP, CallLab, render_scenario, sdp_media
from peers.daemon import wait_until

from voicegw.media.dtmf import event_payloads
from voicegw.media.g711 import ulaw_decode
from voicegw.media.rtp import RtpPacket, build_rtp

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]


@pytest.fixture
def lab(tmp_path):
    with CallLab(tmp_path) as lab:
        yield lab
        # the daemon survived the call and logged no error
        assert lab.daemon is None or lab.daemon.running(), lab.report()
        if lab.daemon is not None:
            errors = [e for e in lab.daemon.events() if e.get("level") in ("error", "critical")]
            assert not errors, errors


def finish(lab: CallLab, *peers, timeout: float = 20.0) -> None:
    """Wait for each sipp peer; each must exit 0 (every call as its scenario says)."""
    for peer in peers:
        try:
            code = peer.wait(timeout)
        except AssertionError:
            raise AssertionError(f"sipp {peer.name} did not finish\n{lab.report()}") from None
        assert code == 0, f"sipp {peer.name} exited {code}\n{lab.report()}"


def only(messages, description):
    found = [m for m in messages if m.describe() == description]
    assert found, f"no {description!r} in {[m.describe() for m in messages]}"
    return found[0]


# --- calls bridged to the bot ----------------------------------------------------------
def test_call_bridged_to_bot_caller_hangs_up(lab):
    lab.start_voicegw()
    bot = lab.bot("b2bua_bot_answer.xml")
    caller = lab.caller("b2bua_uac_call.xml")
    finish(lab, caller, bot)

    assert caller.flow() == [
        "out INVITE", "in 100 INVITE", "in 180 INVITE", "in 200 INVITE", "out ACK",
        "out BYE", "in 200 BYE",
    ], lab.report()
    assert bot.flow() == [
        "in INVITE", "out 180 INVITE", "out 200 INVITE", "in ACK", "in BYE", "out 200 BYE",
    ], lab.report()
    got, sent = caller.messages(), bot.messages()
    # two dialogs: leg B has its own Call-ID and tags, and voicegw's own SDP both ways
    assert only(sent, "in INVITE").header("call-id") != only(got, "out INVITE").header("call-id")
    answer = sdp_media(only(got, "in 200 INVITE").body)
    offer = sdp_media(only(sent, "in INVITE").body)
    bot_answer = sdp_media(only(sent, "out 200 INVITE").body)
    assert answer[0] == offer[0] == "127.0.0.1"
    assert answer[1] != offer[1] and bot_answer[1] not in (answer[1], offer[1])
    assert answer[2][0] == 0  # PCMU, as offered
    # the 180 and the 200 to the caller belong to one dialog (same To tag)
    assert only(got, "in 180 INVITE").tag("to") == only(got, "in 200 INVITE").tag("to")
    # the daemon's record: answered, then ended by the caller
    assert wait_until(lambda: lab.events("call.ended"), 3)
    assert lab.events("call.ended")[0]["reason"] == "caller hung up"


def test_bot_hangs_up_first_caller_gets_bye(lab):
    lab.start_voicegw()
    bot = lab.bot("b2bua_bot_hangup.xml")
    caller = lab.caller("b2bua_uac_wait_bye.xml")
    finish(lab, caller, bot)

    assert bot.flow() == [
        "in INVITE", "out 180 INVITE", "out 200 INVITE", "in ACK", "out BYE", "in 200 BYE",
    ], lab.report()
    assert caller.flow()[-2:] == ["in BYE", "out 200 BYE"], lab.report()
    # the BYE to the caller is in the caller's dialog: its From tag is the To tag of the 200
    got = caller.messages()
    bye, ok = only(got, "in BYE"), only(got, "in 200 INVITE")
    assert bye.tag("from") == ok.tag("to") and bye.header("call-id") == ok.header("call-id")
    assert wait_until(lambda: lab.events("call.ended"), 3)
    assert lab.events("call.ended")[0]["reason"] == "bot hung up"


@pytest.mark.parametrize("bot_status, caller_status", [(486, 486), (503, 503), (403, 480), (500, 503)])
def test_bot_failure_is_mapped_for_the_caller(lab, bot_status, caller_status):
    lab.start_voicegw()
    scenarios = lab.workdir / "scenarios"
    bot = lab.bot(render_scenario("b2bua_bot_reject.xml", scenarios, status=bot_status))
    caller = lab.caller(render_scenario("b2bua_uac_rejected.xml", scenarios, status=caller_status))
    finish(lab, caller, bot)

    assert bot.flow() == ["in INVITE", "out 180 INVITE", f"out {bot_status} INVITE", "in ACK"], lab.report()
    # no 200 ever reached the caller, and the final status came once (the ACK matched)
    flow = caller.flow()
    assert flow[0] == "out INVITE" and flow[-1] == "out ACK", lab.report()
    assert flow.count(f"in {caller_status} INVITE") == 1, lab.report()
    assert not any(" 200 " in line for line in flow), lab.report()
    # the bot's ACK for a non-2xx is hop-by-hop: same branch as voicegw's INVITE
    sent = bot.messages()
    assert only(sent, "in ACK").branch == only(sent, "in INVITE").branch


def test_bot_never_answers_caller_gets_480_and_bot_gets_cancel(lab):
    lab.start_voicegw(calls={"bot_answer_timeout": 2})
    bot = lab.bot("b2bua_bot_ring.xml")
    scenario = render_scenario("b2bua_uac_rejected.xml", lab.workdir / "scenarios", status=480)
    started = time.monotonic()
    caller = lab.caller(scenario)
    finish(lab, caller, bot)
    elapsed = time.monotonic() - started

    assert caller.flow()[:3] == ["out INVITE", "in 100 INVITE", "in 180 INVITE"], lab.report()
    assert "in 480 INVITE" in caller.flow()
    assert bot.flow() == [
        "in INVITE", "out 180 INVITE", "in CANCEL", "out 200 CANCEL", "out 487 INVITE", "in ACK",
    ], lab.report()
    sent = bot.messages()
    invite, cancel = only(sent, "in INVITE"), only(sent, "in CANCEL")
    # RFC 3261 9.1: the CANCEL matches the INVITE (branch, Call-ID, CSeq number, tags)
    assert cancel.branch == invite.branch
    assert cancel.header("call-id") == invite.header("call-id")
    assert cancel.header("cseq").split()[0] == invite.header("cseq").split()[0]
    assert cancel.tag("from") == invite.tag("from")
    assert 1.5 < elapsed < 8, elapsed  # the 2 s timeout, not the default 30 s


def test_caller_cancels_while_bot_rings(lab):
    lab.start_voicegw()
    bot = lab.bot("b2bua_bot_ring.xml")
    caller = lab.caller("b2bua_uac_cancel.xml")
    finish(lab, caller, bot)

    assert caller.flow() == [
        "out INVITE", "in 100 INVITE", "in 180 INVITE", "out CANCEL", "in 200 CANCEL",
        "in 487 INVITE", "out ACK",
    ], lab.report()
    assert bot.flow() == [
        "in INVITE", "out 180 INVITE", "in CANCEL", "out 200 CANCEL", "out 487 INVITE", "in ACK",
    ], lab.report()
    got = caller.messages()
    # the 487 ends the early dialog the 180 began (same To tag)
    assert only(got, "in 487 INVITE").tag("to") == only(got, "in 180 INVITE").tag("to")
    assert wait_until(lambda: lab.events("call.ended"), 3)
    assert lab.events("call.ended")[0]["reason"] == "caller cancelled"


def test_hold_and_unhold_answered_and_relayed_to_the_bot(lab):
    lab.start_voicegw()
    bot = lab.bot("b2bua_bot_hold.xml")  # checks a=sendonly, then a=sendrecv, from voicegw's o=
    caller = lab.caller("b2bua_uac_hold.xml")
    finish(lab, caller, bot)

    got = [m for m in caller.messages() if m.describe() == "in 200 INVITE"]
    assert [sdp_media(m.body)[3] for m in got] == ["sendrecv", "recvonly", "sendrecv"], lab.report()
    # the media address towards the caller does not move on hold
    assert len({sdp_media(m.body)[1] for m in got}) == 1
    # the hold and the unhold were relayed to the bot as re-INVITEs on its own dialog
    assert bot.flow() == [
        "in INVITE", "out 180 INVITE", "out 200 INVITE", "in ACK",
        "in INVITE", "out 200 INVITE", "in ACK", "in INVITE", "out 200 INVITE", "in ACK",
        "in BYE", "out 200 BYE",
    ], lab.report()
    offers = [m for m in bot.messages() if m.describe() == "in INVITE"]
    assert len({sdp_media(m.body)[1] for m in offers}) == 1, "the bot-facing port stays put"


# --- media -----------------------------------------------------------------------------
def test_rtp_through_the_bridge_comes_back_unchanged(lab):
    """Python caller -> voicegw -> sipp bot with -rtp_echo: each packet goes through
    the relay twice (A->B, then the echo B->A) and must return intact and in order."""
    lab.start_voicegw()
    bot = lab.bot("b2bua_bot_answer.xml", rtp_echo=True)
    caller = lab.raw_caller()
    ok = caller.invite()
    assert ok.status == 200, lab.report()
    host, port, pts, direction = sdp_media(ok.body)
    assert (host, pts[0], direction) == ("127.0.0.1", 0, "sendrecv")

    sent = []
    for i in range(100):
        payload = bytes([(i * 7 + j) & 0xFF for j in range(160)])  # distinct per packet
        packet = build_rtp(0, 1000 + i, 160 * i, 0x11223344, payload, marker=(i == 0))
        sent.append(packet)
        caller.send_rtp(packet, (host, port))
        time.sleep(0.002)
    back = []
    deadline = time.monotonic() + 5
    while len(back) < len(sent) and time.monotonic() < deadline:
        data = caller.recv_rtp(max(0.0, deadline - time.monotonic()))
        if data is not None:
            back.append(RtpPacket.parse(data))

    assert len(back) == len(sent), f"{len(back)} of {len(sent)} came back\n{lab.report()}"
    originals = [RtpPacket.parse(p) for p in sent]
    assert [p.payload for p in back] == [p.payload for p in originals]
    assert [p.payload_type for p in back] == [0] * len(sent)
    # in order: the sequence numbers grow by one (the relay may renumber, not reorder)
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(back))
    assert caller.bye().status == 200
    finish(lab, bot)
    assert bot.flow()[-2:] == ["in BYE", "out 200 BYE"]


def test_demo_flow_plays_greeting_and_hears_dtmf(lab):
    lab.start_voicegw(bot=False)
    caller = lab.raw_caller()
    ok = caller.invite()
    assert ok.status == 200, lab.report()
    host, port, pts, _ = sdp_media(ok.body)
    assert pts[0] == 0 and 101 in pts  # PCMU and telephone-event, as offered

    # the greeting: 60 packets (1.2 s) of PCMU paced at 20 ms
    packets, arrivals = [], []
    deadline = time.monotonic() + 15  # the first call renders the prompt with espeak-ng
    while len(packets) < 60 and time.monotonic() < deadline:
        data = caller.recv_rtp(max(0.0, deadline - time.monotonic()))
        if data is not None:
            packets.append(RtpPacket.parse(data))
            arrivals.append(time.monotonic())
    assert len(packets) == 60, f"{len(packets)} RTP packets\n{lab.report()}"
    assert {p.payload_type for p in packets} == {0}
    assert {len(p.payload) for p in packets} == {160}
    assert len({p.ssrc for p in packets}) == 1
    # 160 a packet, or a multiple where the player skipped frames its loop ran over 60 ms
    # late (a loaded machine: tests/media/test_media_relay.py checks the skips exactly)
    steps = [(b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(packets)]
    assert all(step >= 160 and step % 160 == 0 for step in steps), steps
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(packets))
    span = arrivals[-1] - arrivals[0]
    assert span > 59 * 0.020 * 0.8, span  # paced, not a burst (an upper bound is load's)
    audio = ulaw_decode(b"".join(p.payload for p in packets)).astype(np.float64)
    rms = np.sqrt(np.mean(audio**2))
    assert rms > 300, rms  # speech (or the tone fallback), not mu-law silence

    # DTMF '0' as RFC 4733 events, on the stream the caller already sends
    seq, ts = 0, 0
    for i in range(5):
        caller.send_rtp(build_rtp(0, seq, ts, 0x5151, bytes([0xFF]) * 160), (host, port))
        seq, ts = seq + 1, ts + 160
    for payload, marker in event_payloads("0"):
        caller.send_rtp(build_rtp(101, seq, ts, 0x5151, payload, marker), (host, port))
        seq += 1
        time.sleep(0.005)
    assert wait_until(lambda: lab.events("flow.dtmf"), 3), lab.report()
    assert [e["digit"] for e in lab.events("flow.dtmf")] == ["0"]
    assert lab.events("flow.dtmf")[0]["call_id"] == caller.call_id

    assert caller.bye().status == 200
    assert wait_until(lambda: lab.events("call.ended"), 3)
    # every line the daemon wrote is JSON
    assert all(json.loads(line) for line in lab.daemon.lines if line.strip())
