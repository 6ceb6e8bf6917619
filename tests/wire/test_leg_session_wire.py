"""The engine's legs on INVITE sessions (engine/leg_session.py), over the wire.

What changed on the wire when the legs moved onto the INVITE session layer
(sip/invite_session.py), each against ``voicegw run`` with a Python caller on raw UDP
(so the test can withhold an ACK or cross a re-INVITE) and a sipp bot:

- the caller's 200 carries Allow (RFC 3261 13.3.1.4) and, when the INVITE asked for a
  session timer, the negotiated Session-Expires (RFC 4028 9);
- a too brief Session-Expires gets 422 only from a caller that said ``Supported:
  timer`` (RFC 4028 8.1); one that did not gets the interval raised, voicegw refreshing;
- voicegw retransmits its 2xx until the ACK and, hung up before the ACK, sends its BYE
  only after it (RFC 3261 15, 13.3.1.4);
- a re-INVITE crossing voicegw's own is answered 491, and voicegw, answered 491 too,
  sends its re-INVITE again after the randomised back-off (RFC 3261 14.1, 14.2).
"""

from __future__ import annotations

import random
import time

import pytest
from peers.caller import Caller
from peers.calls import SIPP, CallLab, sdp_media
from peers.daemon import wait_until

from voicegw.sip.message import Request, Response
from voicegw.sip.parser import parse_message

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]


@pytest.fixture
def lab(tmp_path):
    with CallLab(tmp_path) as lab:
        yield lab
        assert lab.daemon is None or lab.daemon.running(), lab.report()
        if lab.daemon is not None:
            errors = [e for e in lab.daemon.events() if e.get("level") in ("error", "critical")]
            assert not errors, errors


@pytest.fixture
def voicegw(lab):
    """The daemon, bridging to a sipp bot, and a raw-UDP caller towards it."""
    lab.start_voicegw()
    caller = Caller(lab.daemon.address)
    yield lab, caller
    caller.close()


def finish(lab: CallLab, *peers, timeout: float = 20.0) -> None:
    for peer in peers:
        try:
            code = peer.wait(timeout)
        except AssertionError:
            raise AssertionError(f"sipp {peer.name} did not finish\n{lab.report()}") from None
        assert code == 0, f"sipp {peer.name} exited {code}\n{lab.report()}"


def receive(caller, seconds: float) -> list[tuple[bytes, Request | Response, tuple[str, int]]]:
    """Every SIP message reaching the caller within ``seconds``, unanswered."""
    got = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        caller.sip.settimeout(max(0.01, min(0.1, deadline - time.monotonic())))
        try:
            data, addr = caller.sip.recvfrom(65535)
        except TimeoutError:
            continue
        got.append((data, parse_message(data), addr))
    return got


def wait_for(caller, match, seconds: float) -> tuple[bytes, Request | Response, tuple[str, int]]:
    """The first message ``match`` accepts within ``seconds`` (bounded), unanswered;
    what came before it is kept in ``caller.received``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for item in receive(caller, min(0.2, max(0.01, deadline - time.monotonic()))):
            caller.received.append(item[1])
            if match(item[1]):
                return item
    raise AssertionError(f"nothing matched within {seconds}s: {[describe(m) for m in caller.received]}")


def describe(message: Request | Response) -> str:
    if isinstance(message, Request):
        return f"{message.method} {message.cseq.seq}"
    return f"{message.status} {message.cseq.method} {message.cseq.seq}"


def send_invite(caller, extra: str = "") -> str:
    """The caller's INVITE (SDP offer), not waiting for anything; its branch."""
    branch = f"z9hG4bK{random.getrandbits(48):x}"
    body = caller.sdp()
    data = (
        f"INVITE sip:{caller.request_user}@{caller.daemon[0]}:{caller.daemon[1]} SIP/2.0\r\n"
        + caller._headers("INVITE", 1, branch, None) + extra
        + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    caller.sip.sendto(data, caller.daemon)
    return branch


def respond(caller, request: Request, addr, status: int, reason: str, body: bytes = b"") -> None:
    """Answer a request voicegw sent the caller (its Via, From, To, Call-ID, CSeq)."""
    headers = "".join(f"{name}: {value}\r\n" for name, value in request.headers
                      if name.lower() in ("via", "from", "to", "call-id", "cseq"))
    contact = f"Contact: <sip:{caller.user}@127.0.0.1:{caller.sip_port}>\r\n"
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    caller.sip.sendto(f"SIP/2.0 {status} {reason}\r\n{headers}{contact}{ctype}Content-Length: {len(body)}\r\n\r\n"
                      .encode() + body, addr)


def is_final(method: str):
    return lambda m: isinstance(m, Response) and m.cseq.method == method and m.status >= 200


def test_200_carries_allow_and_the_session_timer_raised_for_a_caller_without_timer_support(voicegw):
    lab, caller = voicegw
    bot = lab.bot("b2bua_bot_answer.xml")
    # 60 s is below our Min-SE (90): without Supported: timer the caller cannot retry,
    # so voicegw raises the interval and refreshes itself (RFC 4028 8.1, 9)
    ok = caller.invite(extra="Session-Expires: 60\r\n")
    assert ok.status == 200, lab.report()
    allowed = {m.strip() for m in (ok.headers.get("allow") or "").split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "REFER"} <= allowed, ok
    assert ok.headers.get("session-expires") == "90;refresher=uas", ok
    assert "require" not in ok.headers  # refresher=uas: no Require: timer (RFC 4028 9)
    assert caller.bye().status == 200
    finish(lab, bot)


def test_422_only_for_a_caller_that_supports_timers(voicegw):
    lab, caller = voicegw
    refused = caller.invite(extra="Supported: timer\r\nSession-Expires: 60\r\n")
    assert refused.status == 422, lab.report()
    assert refused.headers.get("min-se") == "90"
    assert not lab.events("call.started")  # refused before there was a call


def test_2xx_retransmitted_until_the_ack_and_the_bye_waits_for_it(voicegw):
    """The bot hangs up 1 s after answering; the caller holds its ACK back for 3 s:
    the 200 comes again meanwhile (T1, 2*T1...) and voicegw's BYE only after the ACK."""
    lab, caller = voicegw
    bot = lab.bot("b2bua_bot_hangup.xml")
    send_invite(caller)
    _, ok, _ = wait_for(caller, is_final("INVITE"), 10.0)
    assert ok.status == 200, lab.report()
    caller.to_tag = ok.to.tag
    before_ack = receive(caller, 3.0)
    assert wait_until(lambda: lab.events("call.ended"), 5), lab.report()  # the bot has hung up
    kinds = [describe(m) for _, m, _ in before_ack]
    assert kinds.count("200 INVITE 1") >= 2, kinds  # 13.3.1.4: until the ACK
    assert not any(isinstance(m, Request) and m.method == "BYE" for _, m, _ in before_ack), kinds
    caller._send_in_dialog("ACK", cseq=1)
    _data, bye, addr = wait_for(caller, lambda m: isinstance(m, Request) and m.method == "BYE", 10.0)
    respond(caller, bye, addr, 200, "OK")
    assert bye.from_.tag == ok.to.tag and bye.call_id == ok.call_id
    finish(lab, bot)
    assert lab.events("call.ended")[0]["reason"] == "bot hung up"


def test_reinvite_glare_answered_491_and_retried_after_the_back_off(voicegw):
    """The bot holds, voicegw relays it to the caller by re-INVITE; the caller crosses
    it with its own re-INVITE (491 from voicegw: its own is in progress, 14.2) and
    answers voicegw's with 491; voicegw, not the owner of the caller's Call-ID, sends
    it again after 0-2 s (14.1), with a new CSeq, and ACKs the 200."""
    lab, caller = voicegw
    bot = lab.bot("b2bua_bot_holds.xml")
    assert caller.invite().status == 200, lab.report()
    _, first, addr = wait_for(caller, lambda m: isinstance(m, Request) and m.method == "INVITE", 10.0)
    assert sdp_media(first.body)[3] == "sendonly", first.body
    # our own re-INVITE while voicegw's is unanswered
    caller.cseq += 1
    ours = caller.cseq
    branch = f"z9hG4bK{random.getrandbits(48):x}"
    body = caller.sdp("sendrecv")
    caller.sip.sendto((
        f"INVITE sip:{caller.request_user}@{caller.daemon[0]}:{caller.daemon[1]} SIP/2.0\r\n"
        + caller._headers("INVITE", ours, branch, caller.to_tag)
        + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body,
        caller.daemon)
    _, pending, _ = wait_for(caller, lambda m: is_final("INVITE")(m) and m.cseq.seq == ours, 5.0)
    assert pending.status == 491, lab.report()
    caller.sip.sendto((  # the ACK of a non-2xx: the INVITE's branch (17.1.1.3)
        f"ACK sip:{caller.request_user}@{caller.daemon[0]}:{caller.daemon[1]} SIP/2.0\r\n"
        + caller._headers("ACK", ours, branch, caller.to_tag) + "Content-Length: 0\r\n\r\n").encode(),
        caller.daemon)
    respond(caller, first, addr, 491, "Request Pending")
    # voicegw backs off and sends its re-INVITE again (the ACK of our 491 may come first)
    _, again, addr = wait_for(caller, lambda m: isinstance(m, Request) and m.method == "INVITE", 10.0)
    assert again.cseq.seq > first.cseq.seq and sdp_media(again.body)[3] == "sendonly", again
    answer = caller.sdp("recvonly")
    respond(caller, again, addr, 200, "OK", answer)
    wait_for(caller, lambda m: isinstance(m, Request) and m.method == "ACK" and m.cseq.seq == again.cseq.seq, 5.0)
    assert caller.bye().status == 200
    finish(lab, bot)
