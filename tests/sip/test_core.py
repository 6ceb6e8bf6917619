"""The UA core driven as a list of inputs on a virtual clock, and two cores talking
over a fake network (aioquic/h11 style): bytes and events checked on both sides."""

from __future__ import annotations

from voicegw.sip.build import make_response, new_tag
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.events import (
    Address,
    CancelReceived,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from voicegw.sip.message import Headers, Request, Response
from voicegw.sip.parser import parse_message

SRC = Address("udp", "127.0.0.2", 5070)


def req(method: str, *, branch: str = "z9hG4bKc1", to_tag: str = "", extra: str = "",
        cseq: int = 1, cseq_method: str | None = None, via_host: str = "127.0.0.2:5070") -> bytes:
    to = "<sip:bot@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:bot@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host};branch={branch};rport\r\n"
        "From: <sip:alice@example.com>;tag=fa\r\n"
        f"To: {to}\r\n"
        "Call-ID: core-test-1\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def feed(core: UserAgentCore, data: bytes, now: float = 0.0, src: Address = SRC) -> list[Response]:
    core.receive_datagram(data, src, now)
    return sent_responses(core, now)


def sent_responses(core: UserAgentCore, now: float) -> list[Response]:
    out = []
    for data, _addr in core.datagrams_to_send(now):
        message = parse_message(data)
        assert isinstance(message, Response)
        out.append(message)
    return out


def events(core: UserAgentCore) -> list:
    result = []
    while (event := core.next_event()) is not None:
        result.append(event)
    return result


def test_options_answered_with_capabilities_and_via_stamped() -> None:
    core = UserAgentCore()
    (resp,) = feed(core, req("OPTIONS", via_host="192.0.2.9:5999"))
    assert resp.status == 200
    assert "INVITE" in resp.headers.get("allow") and "REFER" in resp.headers.get("allow")
    assert resp.headers.get("accept") == "application/sdp"
    assert "supported" in resp.headers
    via = resp.top_via
    assert via.params["received"] == "127.0.0.2" and via.params["rport"] == "5070"
    assert resp.to.tag
    # the retransmission is answered by the transaction with the same bytes
    core.receive_datagram(req("OPTIONS", via_host="192.0.2.9:5999"), SRC, 0.5)
    (again, addr), = core.datagrams_to_send(0.5)
    assert parse_message(again) == resp and addr == SRC  # rport: back to the source port
    assert events(core) == []


def test_options_answered_503_while_not_ready_and_200_once_ready() -> None:
    """A daemon starting (API not up) or draining: an out-of-dialog OPTIONS gets 503 with
    Retry-After, so a dispatcher pinging it (2xx = up) sends no calls; INVITEs are not
    refused for it (a call already on its way is still taken)."""
    core = UserAgentCore()
    core.ready = False
    (resp,) = feed(core, req("OPTIONS"))
    assert resp.status == 503 and resp.headers.get("retry-after") == "1" and "allow" not in resp.headers
    (trying,) = feed(core, req("INVITE", branch="z9hG4bKinv"))
    assert trying.status == 100
    core.ready = True
    (resp,) = feed(core, req("OPTIONS", branch="z9hG4bKo2"))
    assert resp.status == 200 and "INVITE" in resp.headers.get("allow")


def test_unknown_method_501_known_unsupported_405_with_allow() -> None:
    core = UserAgentCore()
    (r501,) = feed(core, req("FROBNICATE"))
    assert r501.status == 501 and r501.headers.get("allow")
    (r405,) = feed(core, req("REGISTER", branch="z9hG4bKr"))
    assert r405.status == 405 and "INVITE" in r405.headers.get("allow")


def test_out_of_dialog_bye_and_unknown_dialog_get_481() -> None:
    core = UserAgentCore()
    assert [r.status for r in feed(core, req("BYE"))] == [481]
    assert [r.status for r in feed(core, req("INFO", branch="z9hG4bKi", to_tag="nope"))] == [481]
    core.register_dialog("core-test-1", "known", "fa")
    assert feed(core, req("INFO", branch="z9hG4bKj", to_tag="known")) == []
    (event,) = events(core)
    assert isinstance(event, RequestReceived) and event.request.method == "INFO"


def test_a_bye_crossing_ours_gets_200_until_ours_is_answered() -> None:
    """RFC 5407's crossing BYEs: the application sent BYE and forgot the dialog; the
    peer's BYE, sent before ours arrived, still names the dialog (it lasts until our
    BYE's final response, 15.1.1) and gets 200 (15.1.2); after that final, 481 again."""
    core = UserAgentCore()
    core.register_dialog("core-test-1", "ours", "fa")
    bye = Request("BYE", "sip:alice@127.0.0.2:5070", Headers([
        ("From", "<sip:bot@127.0.0.1>;tag=ours"), ("To", "<sip:alice@example.com>;tag=fa"),
        ("Call-ID", "core-test-1"), ("CSeq", "2 BYE")]))
    tx = core.send_request(bye, SRC, 0.0)
    (sent, _), = core.datagrams_to_send(0.0)
    core.forget_dialog("core-test-1", "ours", "fa")
    (crossing,) = feed(core, req("BYE", branch="z9hG4bKx1", to_tag="ours", cseq=5), 0.1)
    assert crossing.status == 200 and crossing.to.tag == "ours"
    assert events(core) == [], "the core answers it; the application has forgotten the call"
    assert [r.status for r in feed(core, req("INFO", branch="z9hG4bKx2", to_tag="ours", cseq=6), 0.1)] == [481]
    ours = parse_message(sent)
    core.receive_datagram(bytes(make_response(ours, 200)), SRC, 0.2)
    (answered,) = events(core)
    assert isinstance(answered, ResponseReceived) and answered.transaction_id == tx
    assert [r.status for r in feed(core, req("BYE", branch="z9hG4bKx3", to_tag="ours", cseq=7), 0.3)] == [481]


def test_require_unknown_extension_gets_420_listing_it() -> None:
    core = UserAgentCore(CoreConfig(supported=("timer",)))
    (resp,) = feed(core, req("OPTIONS", extra="Require: timer, foo-bar\r\n"))
    assert resp.status == 420 and resp.headers.get("unsupported") == "foo-bar"


def test_malformed_request_gets_400_naming_the_problem() -> None:
    core = UserAgentCore()
    bad = req("OPTIONS", cseq_method="INVITE")
    (resp,) = feed(core, bad)
    assert resp.status == 400 and "CSeq method" in resp.reason
    broken = req("OPTIONS", branch="z9hG4bKb2", extra="X-Broken header without colon\r\n")
    (resp,) = feed(core, broken)
    assert resp.status == 400 and "colon" in resp.reason
    assert resp.call_id == "core-test-1" and resp.top_via.params["received"] == "127.0.0.2"
    # without a Call-ID no valid response can be built: dropped
    assert feed(core, broken.replace(b"Call-ID: core-test-1\r\n", b"")) == []
    assert any(isinstance(e, MessageRejected) for e in events(core))


def test_stray_and_broken_responses_are_dropped_silently() -> None:
    core = UserAgentCore()
    core.receive_datagram(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\n"
                          b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", SRC, 0.0)
    core.receive_datagram(b"SIP/2.0 4294967301 Huge\r\n\r\n", SRC, 0.0)
    assert core.datagrams_to_send(0.0) == []
    assert core.statistics().stray_responses == 1


def test_invite_gets_100_then_failure_retransmitted_until_ack() -> None:
    core = UserAgentCore()
    (trying,) = feed(core, req("INVITE"))
    assert trying.status == 100 and trying.to.tag is None  # no To tag on 100 (8.2.6.2)
    (event,) = events(core)
    assert isinstance(event, RequestReceived)
    core.send_response(event.transaction_id, make_response(event.request, 486, to_tag="uas1"), 0.1)
    assert [r.status for r in sent_responses(core, 0.1)] == [486]
    assert core.get_timer() == 0.6  # Timer G
    core.handle_timer(0.6)
    assert [r.status for r in sent_responses(core, 0.6)] == [486]
    feed(core, req("ACK", to_tag="uas1"), 0.7)  # same branch: absorbed by the transaction
    assert events(core) == []
    core.handle_timer(100.0)
    assert core.statistics().server_transactions == 0


def test_invite_2xx_resent_by_the_tu_until_ack_and_ack_reaches_application() -> None:
    core = UserAgentCore()
    feed(core, req("INVITE"))
    (event,) = events(core)
    ok = make_response(event.request, 200, to_tag="uas2")
    core.send_response(event.transaction_id, ok, 0.1)
    sent_responses(core, 0.1)
    core.handle_timer(0.6)
    assert sent_responses(core, 0.6) == []  # no Timer G for a 2xx: the INVITE session's (13.3.1.4)
    assert core.send_response(event.transaction_id, ok, 0.6)
    assert [r.status for r in sent_responses(core, 0.6)] == [200]
    core.register_dialog("core-test-1", "uas2", "fa")
    feed(core, req("ACK", branch="z9hG4bKack", to_tag="uas2"), 0.8)
    (ack,) = events(core)
    assert isinstance(ack, RequestReceived) and ack.request.method == "ACK" and ack.transaction_id == ""
    core.handle_timer(1.6)
    assert sent_responses(core, 1.6) == []  # retransmissions stopped
    core.handle_timer(100.0)
    assert not any(isinstance(e, TransactionTimedOut) for e in events(core))


def test_cancel_matches_pending_invite() -> None:
    core = UserAgentCore()
    feed(core, req("INVITE"))
    (invite,) = events(core)
    (ok,) = feed(core, req("CANCEL"), 0.2)
    assert ok.status == 200 and ok.cseq.method == "CANCEL"
    (cancel,) = events(core)
    assert isinstance(cancel, CancelReceived) and cancel.transaction_id == invite.transaction_id
    core.send_response(invite.transaction_id, make_response(invite.request, 487, to_tag=new_tag()), 0.3)
    assert [r.status for r in sent_responses(core, 0.3)] == [487]
    (r481,) = feed(core, req("CANCEL", branch="z9hG4bKother"), 0.4)
    assert r481.status == 481


def test_rfc2543_peer_without_branch_is_matched_by_fields() -> None:
    core = UserAgentCore()
    old = req("OPTIONS").replace(b";branch=z9hG4bKc1", b"")
    assert [r.status for r in feed(core, old)] == [200]
    assert [r.status for r in feed(core, old, 0.2)] == [200]  # the transaction resends
    assert core.statistics().server_transactions == 1


def test_max_forwards_zero() -> None:
    core = UserAgentCore()
    zero = req("OPTIONS").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    assert [r.status for r in feed(core, zero)] == [200]  # we are the target
    zero_invite = req("INVITE", branch="z9hG4bKmf").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    assert [r.status for r in feed(core, zero_invite)] == [100, 483]


class FakeNetwork:
    """Two cores joined by a lossless network on a virtual clock."""

    def __init__(self) -> None:
        self.a = UserAgentCore(CoreConfig(host="127.0.0.1", udp_port=5060))
        self.b = UserAgentCore(CoreConfig(host="127.0.0.2", udp_port=5060))
        self.addr = {id(self.a): Address("udp", "127.0.0.1", 5060), id(self.b): Address("udp", "127.0.0.2", 5060)}
        self.now = 0.0

    def flush(self, drop: bool = False) -> int:
        moved = 0
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            for data, _to in src.datagrams_to_send(self.now):
                moved += 1
                if not drop:
                    dst.receive_datagram(data, self.addr[id(src)], self.now)
        return moved


def test_two_cores_invite_dialogue_over_fake_network() -> None:
    net = FakeNetwork()
    invite = Request("INVITE", "sip:bot@127.0.0.2", Headers([
        ("From", "<sip:gw@127.0.0.1>;tag=gw1"), ("To", "<sip:bot@127.0.0.2>"),
        ("Call-ID", "pair-1"), ("CSeq", "1 INVITE"), ("Contact", "<sip:gw@127.0.0.1:5060>"),
    ]))
    tx_id = net.a.send_request(invite, Address("udp", "127.0.0.2", 5060), net.now)
    net.flush()
    (received,) = events(net.b)
    assert isinstance(received, RequestReceived)
    assert received.request.top_via.params.get("rport") == "5060"
    net.flush()  # the 100 back to A
    assert [type(e) for e in events(net.a)] == [ResponseReceived]
    net.b.send_response(received.transaction_id, make_response(received.request, 200, to_tag="bot1"), net.now)
    net.flush()
    (final,) = events(net.a)
    assert isinstance(final, ResponseReceived) and final.response.status == 200
    assert final.transaction_id == tx_id


def test_client_retransmits_over_lossy_network_then_times_out() -> None:
    net = FakeNetwork()
    options = Request("OPTIONS", "sip:bot@127.0.0.2", Headers([
        ("From", "<sip:gw@127.0.0.1>;tag=gw1"), ("To", "<sip:bot@127.0.0.2>"),
        ("Call-ID", "pair-2"), ("CSeq", "1 OPTIONS"),
    ]))
    net.a.send_request(options, Address("udp", "127.0.0.2", 5060), 0.0)
    sends = 0
    for _ in range(100):
        sends += net.flush(drop=True)
        due = net.a.get_timer()
        if due is None:
            break
        net.now = due
        net.a.handle_timer(due)
    assert sends == 11  # 1 + 10 retransmissions within 64*T1 (Timer E capped at T2)
    (timeout,) = [e for e in events(net.a) if isinstance(e, TransactionTimedOut)]
    assert timeout.timer == "F" and net.now == 32.0


def test_response_routing_symmetric_by_default_and_strict_when_asked() -> None:
    plain_via = req("OPTIONS", via_host="192.0.2.9:5999").replace(b";rport", b"")
    core = UserAgentCore()
    core.receive_datagram(plain_via, SRC, 0.0)
    ((_, addr),) = core.datagrams_to_send(0.0)
    assert addr == SRC  # RFC 3581 symmetric: back to the source port
    strict = UserAgentCore(CoreConfig(force_rport=False))
    strict.receive_datagram(plain_via, SRC, 0.0)
    ((data, addr),) = strict.datagrams_to_send(0.0)
    assert addr == Address("udp", "127.0.0.2", 5999)  # 18.2.2: received address, sent-by port
    assert parse_message(data).top_via.params["received"] == "127.0.0.2"


def test_completed_transactions_do_not_count_against_the_limit() -> None:
    core = UserAgentCore(CoreConfig(max_transactions=2))
    for n in range(5):  # each OPTIONS completes at once and lingers for Timer J
        (resp,) = feed(core, req("OPTIONS", branch=f"z9hG4bKlim{n}"), 0.1 * n)
        assert resp.status == 200
    feed(core, req("INVITE", branch="z9hG4bKi1"))
    feed(core, req("INVITE", branch="z9hG4bKi2"))
    (busy,) = feed(core, req("INVITE", branch="z9hG4bKi3"))
    assert busy.status == 503 and busy.headers.get("retry-after")
    assert busy.headers.get("reason") == 'SIP;cause=503;text="transaction_limit"'  # RFC 3326
    assert core.statistics().pending_transactions == 2
    rejected = [e for e in events(core) if isinstance(e, MessageRejected)]
    assert [(e.status, e.cause, e.method) for e in rejected] == [(503, "transaction_limit", "INVITE")]


def test_cancel_200_carries_the_to_tag_of_the_ringing_response() -> None:
    core = UserAgentCore()
    feed(core, req("INVITE", branch="z9hG4bKct"))
    (invite,) = events(core)
    core.send_response(invite.transaction_id, make_response(invite.request, 180, to_tag="ring1"), 0.1)
    sent_responses(core, 0.1)
    (ok,) = feed(core, req("CANCEL", branch="z9hG4bKct"), 0.2)
    assert ok.status == 200 and ok.to.tag == "ring1"  # RFC 3261 9.2


def test_transport_failure_ends_the_client_transactions_to_that_peer_only() -> None:
    """RFC 3261 17.1.4: a transport failure ends the client transaction at once and
    tells the TU (timer ``"transport"``, a 503 for the TU by 8.1.3.1); a transaction
    to another address keeps waiting for its response."""
    core = UserAgentCore()
    unreachable, other = Address("tcp", "127.0.0.2", 5090), Address("tcp", "127.0.0.3", 5090)

    def invite(call_id: str) -> Request:
        return Request("INVITE", "sip:agent@127.0.0.2;transport=tcp", Headers([
            ("From", "<sip:gw@127.0.0.1>;tag=gw1"), ("To", "<sip:agent@127.0.0.2>"),
            ("Call-ID", call_id), ("CSeq", "1 INVITE"),
        ]))

    failed = core.send_request(invite("tf-1"), unreachable, 0.0)
    waiting = core.send_request(invite("tf-2"), other, 0.0)
    core.datagrams_to_send(0.0)
    core.transport_failed(unreachable, 0.5)
    (timeout,) = events(core)
    assert timeout == TransactionTimedOut(failed, "INVITE", "transport")
    assert core.statistics().client_transactions == 1
    core.transport_failed(unreachable, 0.6)  # nothing left there: no news
    assert events(core) == [] and core.datagrams_to_send(0.6) == []
    assert core.get_timer() == 32.0  # Timer B of the other one only
    core.handle_timer(32.0)
    assert events(core) == [TransactionTimedOut(waiting, "INVITE", "B")]


def test_invite_whose_cancel_is_never_answered_ends_64_t1_after_the_cancel() -> None:
    """RFC 3261 9.1: after a CANCEL the UAC waits for the INVITE's final response;
    "If there is no final response for the original request in 64*T1 seconds ...
    the client SHOULD then consider the original transaction cancelled and SHOULD
    destroy the client transaction handling the original request." Without that a
    ringing INVITE whose peer went away stays in Proceeding for ever (issue 16)."""
    core = UserAgentCore()
    peer = Address("udp", "127.0.0.2", 5090)
    invite = Request("INVITE", "sip:agent@127.0.0.2", Headers([
        ("From", "<sip:gw@127.0.0.1>;tag=gw1"), ("To", "<sip:agent@127.0.0.2>"),
        ("Call-ID", "cancel-lost-1"), ("CSeq", "1 INVITE"), ("Contact", "<sip:gw@127.0.0.1>"),
    ]))
    tx_id = core.send_request(invite, peer, 0.0)
    branch = invite.top_via.branch
    ringing = (f"SIP/2.0 180 Ringing\r\nVia: {invite.headers.get('via')}\r\n"
               "From: <sip:gw@127.0.0.1>;tag=gw1\r\nTo: <sip:agent@127.0.0.2>;tag=ag1\r\n"
               "Call-ID: cancel-lost-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
    core.receive_datagram(ringing, peer, 1.0)
    assert [type(e) for e in events(core)] == [ResponseReceived]
    cancel = Request("CANCEL", "sip:agent@127.0.0.2", Headers([
        ("Via", invite.headers.get("via") or ""), ("From", "<sip:gw@127.0.0.1>;tag=gw1"),
        ("To", "<sip:agent@127.0.0.2>"), ("Call-ID", "cancel-lost-1"), ("CSeq", "1 CANCEL"),
    ]))
    assert cancel.top_via.branch == branch
    core.send_request(cancel, peer, 10.0)
    now = 10.0
    for _ in range(200):  # nothing answers: neither the CANCEL nor the INVITE
        core.datagrams_to_send(now)
        due = core.get_timer()
        if due is None:
            break
        now = due
        core.handle_timer(now)
    assert core.statistics().client_transactions == 0
    timed_out = [e for e in events(core) if isinstance(e, TransactionTimedOut)]
    assert [(e.transaction_id, e.method) for e in timed_out if e.method == "INVITE"] == [(tx_id, "INVITE")]
    assert now == 10.0 + 64 * 0.5  # the CANCEL's own Timer F and the INVITE's wait end together
