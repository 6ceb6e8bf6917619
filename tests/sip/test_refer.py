"""The REFER usage (RFC 3515, 4488, 6665), both sides, as event sequences on real message bytes.

The cast: a carrier at 198.51.100.5 whose call (leg A) voicegw at 10.0.0.1 answered,
so on leg A voicegw is the UAS and sends the REFERs (referrer); and a bot at
192.0.2.7 that voicegw called (leg B), which sends voicegw a REFER (voicegw is the
referee and notifies). Every pitfall of issue 4 has a test here.
"""

from __future__ import annotations

import pytest

from voicegw.sip.dialog import Dialog, make_dialog_response
from voicegw.sip.dialog_table import DialogState
from voicegw.sip.errors import DialogError, ParseError, ProtocolViolation, SipError
from voicegw.sip.message import Request, Response
from voicegw.sip.parser import parse_message
from voicegw.sip.refer import (
    REFER_TABLE,
    OutgoingRefer,
    ReferAccepted,
    ReferEvent,
    ReferFailed,
    ReferInput,
    ReferProgressed,
    ReferState,
    ReferSubscriptions,
    ReferSucceeded,
    ReferUnconfirmed,
)
from voicegw.sip.refer_headers import EventHeader, SubscriptionState, escape_header_part
from voicegw.sip.referee import (
    NOTIFIER_TABLE,
    IncomingRefer,
    NotifierInput,
    NotifierState,
    ReferRequest,
)
from voicegw.sip.uri import parse_uri
from voicegw.sip.validate import check_request

VIA = "SIP/2.0/UDP 10.0.0.1:5060"
CONTACT = "<sip:gw@10.0.0.1:5060>"
T0 = 1000.0


def msg(text: str) -> Request | Response:
    data = text.lstrip("\n").replace("\n", "\r\n").encode()
    if not data.endswith(b"\r\n\r\n"):
        data += b"\r\n"
    return parse_message(data)


def req(text: str) -> Request:
    message = msg(text)
    assert isinstance(message, Request)
    return message


def resp(text: str) -> Response:
    message = msg(text)
    assert isinstance(message, Response)
    return message


def reparse(message: Request | Response) -> Request | Response:
    return parse_message(bytes(message))


# =====================================================================================
# Referrer: voicegw REFERs the carrier on leg A
# =====================================================================================

INVITE_IN = """
INVITE sip:support@10.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bKcar1
Max-Forwards: 69
To: <sip:support@voicegw.example>
From: "Alice" <sip:+15551230000@carrier.example>;tag=car1
Call-ID: leg-a-1@198.51.100.5
CSeq: 1 INVITE
Contact: <sip:+15551230000@198.51.100.5:5060>
Content-Length: 0

"""


def caller_leg() -> Dialog:
    invite = req(INVITE_IN)
    ok = make_dialog_response(invite, 200, local_tag="gw1", contact=CONTACT)
    return Dialog.from_uas_response(invite, ok, local_via=VIA)


def answer(refer: Request, status_line: str, extra: str = "") -> Response:
    """The carrier's response to our REFER, as it arrives on the wire."""
    h = reparse(refer).headers
    return resp(f"""
SIP/2.0 {status_line}
Via: {h.get("via")}
To: {h.get("to")}
From: {h.get("from")}
Call-ID: {h.get("call-id")}
CSeq: {h.get("cseq")}
Contact: <sip:+15551230000@198.51.100.5:5060>
{extra}Content-Length: 0

""")


def notify(
    cseq: int,
    body: bytes = b"SIP/2.0 100 Trying\r\n",
    *,
    event: str | None = "refer;id=1",
    state: str | None = "active;expires=60",
    content_type: str = "message/sipfrag;version=2.0",
) -> Request:
    lines = [
        "NOTIFY sip:gw@10.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bKntfy{cseq}",
        "Max-Forwards: 70",
        "To: <sip:support@voicegw.example>;tag=gw1",
        'From: "Alice" <sip:+15551230000@carrier.example>;tag=car1',
        "Call-ID: leg-a-1@198.51.100.5",
        f"CSeq: {cseq} NOTIFY",
        "Contact: <sip:+15551230000@198.51.100.5:5060>",
    ]
    if event is not None:
        lines.append(f"Event: {event}")
    if state is not None:
        lines.append(f"Subscription-State: {state}")
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


class Referrer:
    """Leg A with its REFERs, driven as the engine would."""

    def __init__(self, **timeouts: float) -> None:
        self.dialog = caller_leg()
        self.refers = ReferSubscriptions(self.dialog, **timeouts)
        self.notify_seq = 100

    def refer(self, target: str = "sip:+4930123@carrier.example", now: float = T0, **kw: object) -> Request:
        request, next_hop, refer = self.refers.refer(target, now, **kw)  # type: ignore[arg-type]
        assert next_hop == parse_uri("sip:+15551230000@198.51.100.5:5060")
        assert refer.state is ReferState.SENT
        return request

    def notify(self, now: float = T0 + 1, body: bytes = b"SIP/2.0 100 Trying\r\n", **kw: object) -> Response:
        self.notify_seq += 1
        request = notify(self.notify_seq, body, **kw)  # type: ignore[arg-type]
        self.dialog.receive_request(request)  # the engine does this for every request
        response = self.refers.receive_notify(request, now)
        # our answer to the NOTIFY is a proper response on the dialog
        assert response.cseq.method == "NOTIFY" and response.to.tag == "gw1"
        return response

    def events(self) -> list[ReferEvent]:
        out = []
        while (event := self.refers.next_event()) is not None:
            out.append(event)
        return out


def test_refer_request_exact_bytes_with_embedded_headers_and_context() -> None:
    leg = caller_leg()
    refers = ReferSubscriptions(leg)
    request, _, refer = refers.refer(
        "sip:+4930123@trunk.example;user=phone",
        T0,
        referred_by="<sip:support@voicegw.example>",
        embedded_headers=[
            ("User-to-User", "56a390f3d2b7310023a2;encoding=hex"),
            ("X-Note", "a&b=c d@e"),
        ],
        extra_headers=[("X-Bot-Session", "s-42")],
        branch="z9hG4bKref1",
    )
    assert refer.refer_id == 1
    assert bytes(request) == (
        b"REFER sip:+15551230000@198.51.100.5:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKref1\r\n"
        b"Max-Forwards: 70\r\n"
        b'To: "Alice" <sip:+15551230000@carrier.example>;tag=car1\r\n'
        b"From: <sip:support@voicegw.example>;tag=gw1\r\n"
        b"Call-ID: leg-a-1@198.51.100.5\r\n"
        b"CSeq: 1 REFER\r\n"
        b"Contact: <sip:gw@10.0.0.1:5060>\r\n"
        b"Refer-To: <sip:+4930123@trunk.example;user=phone"
        b"?User-to-User=56a390f3d2b7310023a2%3Bencoding%3Dhex&X-Note=a%26b%3Dc%20d%40e>\r\n"
        b"Referred-By: <sip:support@voicegw.example>\r\n"
        b"X-Bot-Session: s-42\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    # what the carrier sees parses back to the same target and headers
    arrived = reparse(request)
    assert isinstance(arrived, Request)
    check_request(arrived)
    parsed = ReferRequest.parse(arrived)
    assert parsed.target == parse_uri("sip:+4930123@trunk.example;user=phone")
    assert parsed.embedded_headers == (
        ("User-to-User", "56a390f3d2b7310023a2;encoding=hex"),
        ("X-Note", "a&b=c d@e"),
    )
    assert parsed.refer_sub is True


def test_referred_by_defaults_to_our_address_and_tel_targets_work() -> None:
    r = Referrer()
    request = r.refer("tel:+4930123")
    assert request.headers.get("refer-to") == "<tel:+4930123>"
    assert request.headers.get("referred-by") == "<sip:support@voicegw.example>"
    with pytest.raises(ProtocolViolation):  # tel URIs have no ?headers
        r.refers.refer("tel:+4930123", T0, embedded_headers=[("X-A", "1")])
    with pytest.raises(ParseError):
        r.refers.refer("sip:a@b", T0, referred_by="<<bad")


def test_escape_header_part() -> None:
    assert escape_header_part("abc-_.!~*'()[]/?:+$") == "abc-_.!~*'()[]/?:+$"
    assert escape_header_part("a b;c=d&e@f%") == "a%20b%3Bc%3Dd%26e%40f%25"
    assert escape_header_part("é") == "%C3%A9"


@pytest.mark.parametrize("status_line", ["403 Forbidden", "405 Method Not Allowed",
                                         "501 Not Implemented", "603 Decline"])
def test_refer_rejected_directly_fails_at_once(status_line: str) -> None:
    r = Referrer()
    refer = r.refer()
    status = int(status_line[:3])
    r.refers.receive_response(answer(refer, status_line), T0 + 0.1)
    assert r.events() == [ReferFailed(1, status, status_line[4:])]
    outgoing = r.refers.get(1)
    assert outgoing is not None and outgoing.state is ReferState.FAILED
    assert r.refers.get_timer() is None  # nothing left to wait for
    # no subscription exists: a NOTIFY for it is unknown
    assert r.notify().status == 481
    assert r.events() == []
    assert r.dialog.state is DialogState.CONFIRMED  # the call is untouched


def test_202_then_notify_100_180_200_succeeds_and_is_answered_before_bye() -> None:
    r = Referrer()
    refer = r.refer()
    r.refers.receive_response(answer(refer, "100 Trying"), T0 + 0.05)  # changes nothing
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.1)
    assert r.events() == [ReferAccepted(1, 202, subscription=True)]
    assert r.notify(T0 + 0.2).status == 200
    assert r.notify(T0 + 2, b"SIP/2.0 180 Ringing\r\n").status == 200
    assert r.events() == [ReferProgressed(1, 100, "Trying"), ReferProgressed(1, 180, "Ringing")]
    final = r.notify(T0 + 5, b"SIP/2.0 200 OK\r\n", state="terminated;reason=noresource")
    assert bytes(final).startswith(b"SIP/2.0 200 OK\r\n")
    assert r.events() == [ReferSucceeded(1, 200, "OK", subscription_terminated=True)]
    outgoing = r.refers.get(1)
    assert outgoing is not None and outgoing.subscription_terminated and not outgoing.live
    assert r.refers.get_timer() is None
    # the order rule: the final NOTIFY was answered (above); now the engine BYEs leg A
    bye, _ = r.dialog.create_request("BYE")
    assert bye.cseq.seq == 2 and r.dialog.state is DialogState.TERMINATED
    # a straggler after the BYE: the dialog itself answers 481 now
    with pytest.raises(DialogError):
        r.notify(T0 + 6, b"SIP/2.0 200 OK\r\n")


@pytest.mark.parametrize("frag, status, reason", [
    (b"SIP/2.0 486 Busy Here\r\n", 486, "Busy Here"),
    (b"SIP/2.0 603 Decline\r\n", 603, "Decline"),
    (b"SIP/2.0 503 Service Unavailable\r\nRetry-After: 30\r\n", 503, "Service Unavailable"),
])
def test_202_then_failure_sipfrag_fails_without_touching_the_call(frag: bytes, status: int, reason: str) -> None:
    r = Referrer()
    refer = r.refer()
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.1)
    r.notify(T0 + 0.2)
    assert r.notify(T0 + 3, frag, state="terminated;reason=noresource").status == 200
    assert r.events() == [
        ReferAccepted(1, 202, True), ReferProgressed(1, 100, "Trying"), ReferFailed(1, status, reason),
    ]
    assert r.dialog.state is DialogState.CONFIRMED
    # a new REFER on the same dialog still works (the fallback may retry)
    second = r.refer(now=T0 + 4)
    assert second.cseq.seq == 2


def test_202_then_silence_times_out() -> None:
    r = Referrer(notify_timeout=30.0)
    refer = r.refer()
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.5)
    r.events()
    assert r.refers.get_timer() == T0 + 30.5
    r.refers.handle_timer(T0 + 30.4)
    assert r.events() == []
    r.refers.handle_timer(T0 + 30.5)
    assert r.events() == [ReferFailed(1, "timeout", "no final NOTIFY within 30 s")]
    assert r.refers.get_timer() is None
    r.refers.handle_timer(T0 + 99)
    assert r.events() == []


def test_only_100_trying_then_silence_times_out_progress_does_not_rearm() -> None:
    r = Referrer(notify_timeout=30.0)
    refer = r.refer()
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.5)
    r.notify(T0 + 1)
    r.notify(T0 + 20)  # a repeated 100 Trying
    assert r.refers.get_timer() == T0 + 30.5
    r.refers.handle_timer(T0 + 31)
    events = r.events()
    assert events[-1] == ReferFailed(1, "timeout", "no final NOTIFY within 30 s")
    # the peer's subscription still exists: a late final NOTIFY is answered 200, not 481
    assert r.notify(T0 + 40, b"SIP/2.0 200 OK\r\n", state="terminated;reason=noresource").status == 200
    assert r.events() == []  # the outcome was already decided
    assert r.notify(T0 + 41).status == 481  # and now it is over


def test_no_response_to_the_refer_times_out() -> None:
    r = Referrer(response_timeout=8.0)
    r.refer()
    assert r.refers.get_timer() == T0 + 8
    r.refers.handle_timer(T0 + 8)
    assert r.events() == [ReferFailed(1, "timeout", "no final response to the REFER")]
    r2 = Referrer()
    r2.refer()
    outgoing = r2.refers.get(1)
    assert outgoing is not None
    outgoing.transaction_timed_out(T0 + 32)
    assert r2.events() == [ReferFailed(1, "timeout", "no final response to the REFER")]


def test_terminated_notify_without_body_is_no_final() -> None:
    r = Referrer()
    refer = r.refer()
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.1)
    r.notify(T0 + 1)
    assert r.notify(T0 + 2, b"", state="terminated;reason=noresource").status == 200
    assert r.events()[-1] == ReferFailed(1, "no_final", "subscription terminated without a final status")


def test_terminated_notify_with_a_1xx_is_no_final() -> None:
    r = Referrer()
    refer = r.refer()
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.1)
    r.notify(T0 + 2, b"SIP/2.0 180 Ringing\r\n", state="terminated;reason=timeout")
    assert r.events() == [
        ReferAccepted(1, 202, True),
        ReferProgressed(1, 180, "Ringing"),
        ReferFailed(1, "no_final", "subscription terminated after 180 Ringing"),
    ]


def test_notify_whose_event_header_was_stripped() -> None:
    r = Referrer()
    refer = r.refer()
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.1)
    # exactly one REFER subscription pending: the NOTIFY is its
    assert r.notify(T0 + 1, b"SIP/2.0 200 OK\r\n", event=None, state="terminated").status == 200
    assert r.events()[-1] == ReferSucceeded(1, 200, "OK", True)
    # none pending: unknown subscription
    assert r.notify(T0 + 2, event=None).status == 481


def test_notify_without_event_is_ambiguous_with_two_refers() -> None:
    r = Referrer()
    first, second = r.refer(), r.refer("sip:other@carrier.example")
    r.refers.receive_response(answer(first, "202 Accepted"), T0 + 0.1)
    r.refers.receive_response(answer(second, "202 Accepted"), T0 + 0.1)
    response = r.notify(T0 + 1, event=None)
    assert response.status == 400
    assert [e for e in r.events() if not isinstance(e, ReferAccepted)] == []


def test_sipfrag_ended_by_lf_alone() -> None:
    r = Referrer()
    refer = r.refer()
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.1)
    r.notify(T0 + 1, b"SIP/2.0 180 Ringing\n")
    r.notify(T0 + 2, b"SIP/2.0 200 OK\n", state="terminated;reason=noresource")
    assert r.events()[1:] == [ReferProgressed(1, 180, "Ringing"), ReferSucceeded(1, 200, "OK", True)]


def test_two_concurrent_refers_told_apart_by_event_id() -> None:
    r = Referrer()
    first = r.refer("sip:agent1@carrier.example")
    second = r.refer("sip:agent2@carrier.example")
    assert (first.cseq.seq, second.cseq.seq) == (1, 2)
    r.refers.receive_response(answer(second, "202 Accepted"), T0 + 0.1)
    r.refers.receive_response(answer(first, "202 Accepted"), T0 + 0.2)
    r.notify(T0 + 1, b"SIP/2.0 180 Ringing\r\n", event="refer;id=2")
    r.notify(T0 + 2, b"SIP/2.0 486 Busy Here\r\n", event="refer;id=1", state="terminated")
    r.notify(T0 + 3, b"SIP/2.0 200 OK\r\n", event="refer;id=2", state="terminated")
    one, two = r.refers.get(1), r.refers.get(2)
    assert one is not None and two is not None
    assert one.outcome == ReferFailed(1, 486, "Busy Here")
    assert two.outcome == ReferSucceeded(2, 200, "OK", True)
    events = r.events()
    assert [e for e in events if e.refer_id == 2] == [
        ReferAccepted(2, 202, True), ReferProgressed(2, 180, "Ringing"), ReferSucceeded(2, 200, "OK", True),
    ]
    assert [e for e in events if e.refer_id == 1] == [ReferAccepted(1, 202, True), ReferFailed(1, 486, "Busy Here")]
    # an id we never sent, and a malformed one
    assert r.notify(T0 + 4, event="refer;id=7").status == 481
    assert r.notify(T0 + 4, event="refer;id=x").status == 481


def test_notify_without_id_belongs_to_the_first_refer() -> None:
    # RFC 3515 2.4.6: the id may be left out of the NOTIFYs for the first REFER
    r = Referrer()
    first, second = r.refer(), r.refer()
    r.refers.receive_response(answer(first, "202 Accepted"), T0 + 0.1)
    r.refers.receive_response(answer(second, "202 Accepted"), T0 + 0.1)
    r.notify(T0 + 1, b"SIP/2.0 200 OK\r\n", event="refer", state="terminated")
    assert r.refers.get(1).outcome == ReferSucceeded(1, 200, "OK", True)  # type: ignore[union-attr]
    # the first one is over: an id-less NOTIFY now can only be the one still live
    r.notify(T0 + 2, b"SIP/2.0 603 Decline\r\n", event="refer", state="terminated")
    assert r.refers.get(2).outcome == ReferFailed(2, 603, "Decline")  # type: ignore[union-attr]


def test_refer_sub_false_accepted_means_no_progress() -> None:
    r = Referrer()
    refer = r.refer(refer_sub=False)
    assert refer.headers.get("refer-sub") == "false"
    assert refer.headers.get("require") == "norefersub"
    r.refers.receive_response(answer(refer, "202 Accepted", "Refer-Sub: false\n"), T0 + 0.1)
    assert r.events() == [ReferAccepted(1, 202, subscription=False), ReferUnconfirmed(1, 202)]
    assert r.refers.get_timer() is None
    assert r.refers.pending == []


def test_refer_sub_false_ignored_by_the_peer_means_we_wait_for_notifies() -> None:
    r = Referrer(notify_timeout=10.0)
    refer = r.refer(refer_sub=False, require_norefersub=False)
    assert refer.headers.get("supported") == "norefersub" and "require" not in refer.headers
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.1)  # no Refer-Sub echoed
    assert r.events() == [ReferAccepted(1, 202, subscription=True)]
    assert r.refers.get_timer() == T0 + 10.1
    # and a peer without RFC 4488 that was sent Require: norefersub answers 420: a failure
    r2 = Referrer()
    refer2 = r2.refer(refer_sub=False)
    r2.refers.receive_response(answer(refer2, "420 Bad Extension", "Unsupported: norefersub\n"), T0)
    assert r2.events() == [ReferFailed(1, 420, "Bad Extension")]


def test_notify_overtaking_the_202() -> None:
    # RFC 6665 4.1.2.4: the NOTIFY may arrive before the 2xx
    r = Referrer()
    refer = r.refer()
    r.notify(T0 + 0.1)
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.2)
    assert r.events() == [ReferAccepted(1, None, True), ReferProgressed(1, 100, "Trying")]


def test_bad_notifies_are_answered_and_never_touch_the_call() -> None:
    r = Referrer()
    refer = r.refer()
    r.refers.receive_response(answer(refer, "202 Accepted"), T0 + 0.1)
    r.events()
    assert r.notify(body=b"this is not a sipfrag\r\n").status == 400
    assert r.notify(body=b"INVITE sip:a@b SIP/2.0\r\n").status == 400  # a request line
    assert r.notify(body=b"SIP/2.0 2000 OK\r\n").status == 400
    response = r.notify(body=b"<xml/>", content_type="application/xml")
    assert response.status == 415 and response.headers.get("accept") == "message/sipfrag"
    response = r.notify(event="dialog")
    assert response.status == 489 and response.headers.get("allow-events") == "refer"
    assert r.notify(state="active;expires=soon").status == 400
    assert r.notify(event="refer;;").status == 400
    assert r.events() == []
    assert r.dialog.state is DialogState.CONFIRMED
    outgoing = r.refers.get(1)
    assert outgoing is not None and outgoing.state is ReferState.ACCEPTED
    # and the REFER still completes
    r.notify(body=b"SIP/2.0 200 OK\r\n", state="terminated")
    assert r.events() == [ReferSucceeded(1, 200, "OK", True)]


def test_header_views() -> None:
    assert EventHeader.parse("refer;id=93809824") == EventHeader("refer", "93809824")
    assert EventHeader.parse(" Refer ") == EventHeader("refer", None)
    state = SubscriptionState.parse("terminated;reason=noresource")
    assert state.terminated and state.reason == "noresource"
    assert str(SubscriptionState("active", expires=60)) == "active;expires=60"
    with pytest.raises(ParseError):
        SubscriptionState.parse("active;expires=-1")


@pytest.mark.parametrize("state", list(ReferState))
@pytest.mark.parametrize("event", list(ReferInput))
def test_refer_table_rows_apply_and_others_are_ignored(state: ReferState, event: ReferInput) -> None:
    refer = OutgoingRefer(1, T0)
    refer.state = state
    status: int | str | None = {ReferInput.PROVISIONAL: 100, ReferInput.NOTIFY_PROGRESS: 180,
                                ReferInput.REJECTED: 486, ReferInput.NOTIFY_FAILURE: 486,
                                ReferInput.TIMEOUT: "timeout", ReferInput.NOTIFY_NO_FINAL: "no_final",
                                ReferInput.NOTIFY_EMPTY: None}.get(event, 200)
    refer._fire(event, T0, status, "x")
    row = REFER_TABLE.get((state, event))
    if row is None:
        assert refer.state is state and refer.next_event() is None
    else:
        assert refer.state is row[1]
        # each REFER ends with exactly one terminal event
        events = []
        while (e := refer.next_event()) is not None:
            events.append(e)
        terminal = [e for e in events if isinstance(e, ReferSucceeded | ReferFailed | ReferUnconfirmed)]
        assert len(terminal) == (1 if row[1] in (ReferState.SUCCEEDED, ReferState.FAILED,
                                                 ReferState.UNCONFIRMED) and state is not row[1] else 0)
    assert all(s not in (ReferState.SUCCEEDED, ReferState.FAILED, ReferState.UNCONFIRMED)
               for s, _ in REFER_TABLE)  # final states have no rows: nothing leaves them


# =====================================================================================
# Referee: the bot REFERs voicegw on leg B
# =====================================================================================

INVITE_OUT = """
INVITE sip:bot@192.0.2.7:5070 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv1
Max-Forwards: 70
To: <sip:bot@bot.example.com>
From: <sip:gw@10.0.0.1>;tag=gwb
Call-ID: leg-b-1@10.0.0.1
CSeq: 10 INVITE
Contact: <sip:gw@10.0.0.1:5060>
Content-Length: 0

"""

OK_INVITE = """
SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv1
To: <sip:bot@bot.example.com>;tag=bot1
From: <sip:gw@10.0.0.1>;tag=gwb
Call-ID: leg-b-1@10.0.0.1
CSeq: 10 INVITE
Contact: <sip:bot@192.0.2.7:5070>
Content-Length: 0

"""

BOT_REFER = """
REFER sip:gw@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKbref1
Max-Forwards: 70
To: <sip:gw@10.0.0.1>;tag=gwb
From: <sip:bot@bot.example.com>;tag=bot1
Call-ID: leg-b-1@10.0.0.1
CSeq: 5 REFER
Contact: <sip:bot@192.0.2.7:5070>
Refer-To: <sip:+4930123@trunk.example?User-to-User=c0ffee%3Bencoding%3Dhex>
Referred-By: <sip:bot@bot.example.com>
Content-Length: 0

"""


def bot_leg() -> Dialog:
    return Dialog.from_uac_response(req(INVITE_OUT), resp(OK_INVITE), local_via=VIA, contact=CONTACT)


def bot_refer(text: str = BOT_REFER) -> tuple[Dialog, Request, IncomingRefer]:
    dialog = bot_leg()
    request = req(text)
    dialog.receive_request(request)
    return dialog, request, IncomingRefer.receive(request, dialog)


def ok_for(notify_request: Request, status: str = "200 OK") -> Response:
    h = reparse(notify_request).headers
    return resp(f"""
SIP/2.0 {status}
Via: {h.get("via")}
To: {h.get("to")}
From: {h.get("from")}
Call-ID: {h.get("call-id")}
CSeq: {h.get("cseq")}
Content-Length: 0

""")


def test_referee_202_and_notify_sequence_exact() -> None:
    dialog, _, incoming = bot_refer()
    assert incoming.refer.target == parse_uri("sip:+4930123@trunk.example")
    assert incoming.refer.embedded_headers == (("User-to-User", "c0ffee;encoding=hex"),)
    assert str(incoming.refer.referred_by) == "<sip:bot@bot.example.com>"
    response, first = incoming.accept(T0)
    assert bytes(response) == (
        b"SIP/2.0 202 Accepted\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKbref1\r\n"
        b"To: <sip:gw@10.0.0.1>;tag=gwb\r\n"
        b"From: <sip:bot@bot.example.com>;tag=bot1\r\n"
        b"Call-ID: leg-b-1@10.0.0.1\r\n"
        b"CSeq: 5 REFER\r\n"
        b"Contact: <sip:gw@10.0.0.1:5060>\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    assert first is not None
    request, hop = first
    assert hop == parse_uri("sip:bot@192.0.2.7:5070")
    request.headers.set("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKn1")  # deterministic
    assert bytes(request) == (
        b"NOTIFY sip:bot@192.0.2.7:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKn1\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: <sip:bot@bot.example.com>;tag=bot1\r\n"
        b"From: <sip:gw@10.0.0.1>;tag=gwb\r\n"
        b"Call-ID: leg-b-1@10.0.0.1\r\n"
        b"CSeq: 11 NOTIFY\r\n"
        b"Contact: <sip:gw@10.0.0.1:5060>\r\n"
        b"Event: refer;id=5\r\n"
        b"Subscription-State: active;expires=180\r\n"
        b"Content-Type: message/sipfrag;version=2.0\r\n"
        b"Content-Length: 20\r\n"
        b"\r\n"
        b"SIP/2.0 100 Trying\r\n"
    )
    incoming.receive_notify_response(ok_for(request))
    ringing = incoming.notify(180, T0 + 2.5)
    assert ringing is not None
    assert ringing[0].headers.get("subscription-state") == "active;expires=178"
    assert ringing[0].body == b"SIP/2.0 180 Ringing\r\n" and ringing[0].cseq.seq == 12
    final = incoming.notify(200, T0 + 6)
    assert final is not None
    assert final[0].headers.get("subscription-state") == "terminated;reason=noresource"
    assert final[0].headers.get("event") == "refer;id=5"
    assert final[0].body == b"SIP/2.0 200 OK\r\n"
    # the 200 for the 180 NOTIFY arrives late: still waiting for the final's answer
    incoming.receive_notify_response(ok_for(ringing[0]))
    assert incoming.state is NotifierState.TERMINATING and not incoming.subscription_over
    incoming.receive_notify_response(ok_for(final[0]))
    assert incoming.subscription_over  # now the bot leg may be BYE'd
    assert incoming.notify(200, T0 + 7) is None
    bye, _ = dialog.create_request("BYE")
    assert bye.cseq.seq == 14


def test_referee_refer_sub_false_sends_no_notify() -> None:
    _, _, incoming = bot_refer(BOT_REFER.replace("Content-Length: 0", "Refer-Sub: false\nRequire: norefersub\nContent-Length: 0"))
    assert incoming.refer.refer_sub is False
    response, first = incoming.accept(T0)
    assert response.status == 202 and response.headers.get("refer-sub") == "false"
    assert first is None
    assert incoming.notify(180, T0 + 1) is None and incoming.notify(200, T0 + 2) is None
    assert incoming.subscription_over and incoming.get_timer() is None


def test_referee_failure_is_reported_and_policy_reject() -> None:
    _, _, incoming = bot_refer()
    incoming.accept(T0)
    final = incoming.notify(486, T0 + 3)
    assert final is not None and final[0].body == b"SIP/2.0 486 Busy Here\r\n"
    # policy: the engine refuses the target before accepting
    _, _, other = bot_refer()
    response = other.reject(403, "Forbidden (target not allowed)")
    assert response.status == 403 and other.subscription_over
    with pytest.raises(ProtocolViolation):
        other.notify(100, T0)


def test_referee_subscription_expiry_and_a_gone_subscriber() -> None:
    _, _, incoming = bot_refer()
    incoming.accept(T0)
    incoming.notify(180, T0 + 1)
    assert incoming.get_timer() == T0 + 180
    assert incoming.handle_timer(T0 + 179) is None
    expired = incoming.handle_timer(T0 + 180)
    assert expired is not None
    assert expired[0].headers.get("subscription-state") == "terminated;reason=timeout"
    assert expired[0].body == b"SIP/2.0 180 Ringing\r\n"
    assert incoming.notify(200, T0 + 181) is None
    # a 481 to a NOTIFY: the subscriber is gone, nothing more is sent
    _, _, gone = bot_refer()
    _, first = gone.accept(T0)
    assert first is not None
    gone.receive_notify_response(ok_for(first[0], "481 Call/Transaction Does Not Exist"))
    assert gone.subscription_over and gone.notify(200, T0 + 1) is None


@pytest.mark.parametrize("change, status", [
    (("Refer-To: <sip:+4930123@trunk.example?User-to-User=c0ffee%3Bencoding%3Dhex>\n", ""), 400),
    (("Referred-By", "Refer-To: <sip:x@y>\nReferred-By"), 400),
    (("Refer-To: <sip:+4930123@trunk.example?User-to-User=c0ffee%3Bencoding%3Dhex>",
      "Refer-To: <sip:a@b>, <sip:c@d>"), 400),
    (("<sip:+4930123@trunk.example?User-to-User=c0ffee%3Bencoding%3Dhex>", "<http://example.com/>"), 416),
    (("<sip:+4930123@trunk.example?", "<sip:+4930123@trunk.example;method=BYE?"), 501),
    (("Content-Length: 0", "Require: norefersub, foo\nContent-Length: 0"), 420),
    (("Content-Length: 0", "Refer-Sub: maybe\nContent-Length: 0"), 400),
])
def test_referee_rejects_bad_refers(change: tuple[str, str], status: int) -> None:
    text = BOT_REFER.replace(*change)
    assert text != BOT_REFER
    with pytest.raises(SipError) as info:
        bot_refer(text)
    assert info.value.status == status


def test_malformed_referred_by_is_ignored() -> None:
    _, _, incoming = bot_refer(BOT_REFER.replace("Referred-By: <sip:bot@bot.example.com>", "Referred-By: <<junk"))
    assert incoming.refer.referred_by is None


@pytest.mark.parametrize("state", list(NotifierState))
@pytest.mark.parametrize("event", list(NotifierInput))
def test_notifier_table_rows_apply_and_others_are_caller_bugs(state: NotifierState, event: NotifierInput) -> None:
    _, _, incoming = bot_refer()
    incoming.state = state
    incoming._expires_at = T0 + 180
    if (state, event) in NOTIFIER_TABLE:
        incoming._apply(event, T0)
        assert incoming.state is NOTIFIER_TABLE[(state, event)][1]
    else:
        with pytest.raises(ProtocolViolation):
            incoming._apply(event, T0)
        assert incoming.state is state


# =====================================================================================
# Both sides: voicegw's referrer against voicegw's referee, over bytes
# =====================================================================================


def test_referrer_and_referee_talk() -> None:
    # the two ends of one dialog: "a" refers, "b" is referred
    a = bot_leg()
    at_b = req(INVITE_OUT)
    ok = make_dialog_response(at_b, 200, local_tag="bot1", contact="<sip:bot@192.0.2.7:5070>")
    b = Dialog.from_uas_response(at_b, ok, local_via="SIP/2.0/UDP 192.0.2.7:5070")
    refers = ReferSubscriptions(a)
    refer, _, _ = refers.refer("sip:agent@pbx.example", T0, embedded_headers=[("X-Ctx", "a b")])
    arrived = reparse(refer)
    assert isinstance(arrived, Request)
    b.receive_request(arrived)
    incoming = IncomingRefer.receive(arrived, b)
    assert incoming.refer.embedded_headers == (("X-Ctx", "a b"),)
    response, first = incoming.accept(T0)
    refers.receive_response(reparse(response), T0)  # type: ignore[arg-type]
    sent = [first, incoming.notify(180, T0 + 1), incoming.notify(200, T0 + 2)]
    for item in sent:
        assert item is not None
        notify_at_a = reparse(item[0])
        assert isinstance(notify_at_a, Request)
        a.receive_request(notify_at_a)
        answer_at_b = reparse(refers.receive_notify(notify_at_a, T0 + 3))
        assert isinstance(answer_at_b, Response) and answer_at_b.status == 200
        b.receive_response(answer_at_b)
        incoming.receive_notify_response(answer_at_b)
    events = []
    while (e := refers.next_event()) is not None:
        events.append(e)
    assert events == [
        ReferAccepted(refer.cseq.seq, 202, True),
        ReferProgressed(refer.cseq.seq, 100, "Trying"),
        ReferProgressed(refer.cseq.seq, 180, "Ringing"),
        ReferSucceeded(refer.cseq.seq, 200, "OK", True),
    ]
    assert incoming.subscription_over
