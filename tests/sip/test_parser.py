"""Message parsing and serialisation, datagram and stream framing, salvage, responses."""

from __future__ import annotations

import pytest

from voicegw.sip.build import make_response, new_branch, new_call_id, new_tag, reason_phrase
from voicegw.sip.errors import ParseError, ProtocolViolation, SipError
from voicegw.sip.message import Headers, Request, Response
from voicegw.sip.parser import (
    MAX_MESSAGE_SIZE,
    StreamFramer,
    is_keepalive,
    parse_message,
    parse_start_line,
    salvage,
)
from voicegw.sip.validate import check_request

INVITE = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def _req(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def test_parse_invite() -> None:
    m = _req(INVITE)
    assert (m.method, m.uri, m.version) == ("INVITE", "sip:bob@biloxi.com", "SIP/2.0")
    assert m.body == b"v=0\n"
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert m.cseq.seq == 314159 and m.cseq.method == "INVITE"
    assert m.from_.tag == "1928301774" and m.to.tag is None
    assert m.top_via.branch == "z9hG4bK776asdhds"
    assert m.max_forwards == 70
    assert m.content_type == "application/sdp"
    assert bytes(m) == INVITE
    check_request(m)


def test_parse_response() -> None:
    data = INVITE.replace(b"INVITE sip:bob@biloxi.com SIP/2.0", b"SIP/2.0 180 Ringing")
    m = parse_message(data)
    assert isinstance(m, Response)
    assert (m.status, m.reason, m.is_provisional, m.is_success) == (180, "Ringing", True, False)
    assert bytes(m) == data


def test_compact_forms() -> None:
    data = (
        b"OPTIONS sip:a@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:b@h>;tag=1\r\n"
        b"t: <sip:a@h>\r\ni: cid\r\nCSeq: 1 OPTIONS\r\nm: <sip:b@h>\r\nk: timer\r\nl: 0\r\n\r\n"
    )
    m = _req(data)
    assert m.headers.get("via") == "SIP/2.0/UDP h;branch=z9hG4bK1"
    assert m.from_.tag == "1" and m.call_id == "cid"
    assert m.headers.values("supported") == ["timer"]
    assert len(m.contacts) == 1
    check_request(m)
    assert bytes(m) == data  # compact names kept as sent


def test_folding_unfolds_to_one_space() -> None:
    data = INVITE.replace(
        b"Max-Forwards: 70\r\n", b"Subject: I know you're there,\r\n   pick up the phone\r\n\tand talk\r\nMax-Forwards: 70\r\n"
    )
    m = _req(data)
    assert m.headers.get("subject") == "I know you're there, pick up the phone and talk"
    check_request(m)


def test_folded_value_starting_on_next_line() -> None:
    m = _req(INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq:\r\n 314159\r\n  INVITE"))
    assert m.cseq.seq == 314159


def test_continuation_before_any_header_rejected() -> None:
    with pytest.raises(ParseError):
        parse_message(b"OPTIONS sip:a@h SIP/2.0\r\n continued: x\r\n\r\n")


def test_multi_value_headers_split_on_commas() -> None:
    data = INVITE.replace(
        b"Contact: <sip:alice@pc33.atlanta.com>\r\n",
        b'Contact: "A, B" <sip:a@h>;q=0.5, <sip:b@h>\r\nContact: sip:c@h\r\n'
        b"Via: SIP/2.0/UDP p2;branch=z9hG4bK2, SIP/2.0/TCP p3;branch=z9hG4bK3\r\n",
    )
    m = _req(data)
    assert [c.display_name for c in m.contacts] == ["A, B", None, None]
    assert [v.host for v in m.vias] == ["pc33.atlanta.com", "p2", "p3"]
    assert m.headers.values("via")[1:] == ["SIP/2.0/UDP p2;branch=z9hG4bK2", "SIP/2.0/TCP p3;branch=z9hG4bK3"]


def test_quoted_string_with_escapes_and_commas_in_header() -> None:
    m = _req(INVITE.replace(b"To: Bob <sip:bob@biloxi.com>", b'To: "Bob \\"The, Builder\\" \\\\" <sip:bob@biloxi.com>'))
    assert m.to.display_name == 'Bob "The, Builder" \\'
    check_request(m)


def test_escaped_request_uri() -> None:
    m = _req(INVITE.replace(b"sip:bob@biloxi.com SIP", b"sip:sips%3Auser%40example.com@example.net SIP"))
    uri = m.request_uri()
    assert uri.user_unescaped == "sips:user@example.com"  # type: ignore[union-attr]


def test_ipv6_request_uri_and_via() -> None:
    data = (
        b"REGISTER sip:[2001:db8::10] SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3;"
        b"received=[2001:db8::9:255]\r\nMax-Forwards: 70\r\nFrom: <sip:user@[2001:db8::10]>;tag=1\r\n"
        b"To: <sip:user@[2001:db8::10]>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    m = _req(data)
    check_request(m)
    assert m.request_uri().host == "[2001:db8::10]"  # type: ignore[union-attr]
    assert m.top_via.host == "[2001:db8::9:1]"


def test_leading_crlf_ignored_and_bare_lf_accepted() -> None:
    assert _req(b"\r\n\r\n" + INVITE) == _req(INVITE)
    lf = INVITE.replace(b"\r\n", b"\n")
    m = _req(lf)
    assert m.cseq.seq == 314159 and m.body == b"v=0\n"


def test_header_name_may_have_space_before_colon() -> None:
    assert _req(INVITE.replace(b"Max-Forwards:", b"Max-Forwards \t:")).max_forwards == 70


@pytest.mark.parametrize(
    "bad",
    [b"", b"\r\n", b"INVITE sip:a@h SIP/2.0\r\n", b"INVITE sip:a@h SIP/2.0\r\nVia x\r\n\r\n",
     b"INVITE sip:a@h SIP/2.0\r\nBad Name: x\r\n\r\n", b"INVITE sip:a@h SIP/2.0\r\n: x\r\n\r\n",
     b"INVITE  sip:a@h SIP/2.0\r\n\r\n", b"INVITE sip:a@h SIP/2.0 \r\n\r\n", b"INVITE sip:a@h\r\n\r\n",
     b"IN<VITE sip:a@h SIP/2.0\r\n\r\n", b"SIP/2.0 99 Low\r\n\r\n", b"SIP/2.0 4294967301 x\r\n\r\n",
     b"SIP/2.0 200\r\n\r\n", b"INVITE sip:a@h HTTP/1.1\r\n\r\n"],
)
def test_malformed_messages(bad: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(bad)
    assert info.value.status == 400


def test_bad_version_is_505() -> None:
    for line in (b"OPTIONS sip:a@h SIP/7.0", b"SIP/3.0 200 OK", b"OPTIONS sip:a@h SIP/2.1"):
        with pytest.raises(ParseError) as info:
            parse_message(line + b"\r\nCall-ID: x\r\n\r\n")
        assert info.value.status == 505
    assert parse_start_line("OPTIONS sip:a@h sip/2.0") == ("OPTIONS", "sip:a@h", "SIP/2.0")
    assert parse_start_line("SIP/2.0 100 ") == ("SIP/2.0", 100, "")


# --- Content-Length over UDP ---------------------------------------------------------


def test_udp_extra_bytes_after_content_length_dropped() -> None:
    m = _req(INVITE + b"trailing junk INVITE sip:x SIP/2.0\r\n\r\n")
    assert m.body == b"v=0\n"


def test_udp_short_body_rejected() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(INVITE[:-2])
    assert info.value.status == 400


@pytest.mark.parametrize("length", [b"5", b"99999", b"999999999"])
def test_udp_body_shorter_than_content_length_is_400_whatever_the_length(length: bytes) -> None:
    """RFC 3261 18.3: a datagram that ends before its body is a 400, not 513, even when the
    length it announces is larger than any datagram."""
    with pytest.raises(ParseError) as info:
        parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: " + length))
    assert info.value.status == 400


def test_udp_without_content_length_body_runs_to_end() -> None:
    m = _req(INVITE.replace(b"Content-Length: 4\r\n", b"") + b"more")
    assert m.body == b"v=0\nmore"


@pytest.mark.parametrize("value", [b"-999", b"abc", b"1 2", b"+4", b"\xc2\xb2", b"\xd9\xa1", b"1234567890"])
def test_bad_content_length(value: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: " + value))


def test_two_content_lengths_rejected() -> None:
    with pytest.raises(ParseError):
        parse_message(INVITE.replace(b"Content-Length: 4\r\n", b"Content-Length: 4\r\nl: 4\r\n"))


def test_oversize_datagram_is_513() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(INVITE + b"x" * MAX_MESSAGE_SIZE)
    assert info.value.status == 513
    # a Content-Length past the datagram is a short body, 400 (RFC 3261 18.3), not a 513:
    # see test_udp_body_shorter_than_content_length_is_400_whatever_the_length


def test_too_many_headers() -> None:
    with pytest.raises(ParseError):
        parse_message(INVITE.replace(b"Max-Forwards: 70\r\n", b"X-A: 1\r\n" * 300))


def test_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n") and is_keepalive(b"")
    assert not is_keepalive(INVITE)


# --- request checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        (b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE", 400),
        (b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n", b"", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: 70\r\nMax-Forwards: 69", 400),
        (b"To: Bob <sip:bob@biloxi.com>", b"To: Bob <sip:bob@biloxi.com>\r\nt: <sip:x@h>", 400),
        (b"Content-Type: application/sdp\r\n", b"", 400),
        (b"Call-ID: a84b4c76e66710@pc33.atlanta.com", b"Call-ID: a b", 400),
        (b"sip:bob@biloxi.com SIP", b"urn:service:sos SIP", 416),
        (b"sip:bob@biloxi.com SIP", b"<sip:bob@biloxi.com> SIP", 400),
        (b"CSeq: 314159 INVITE", b"CSeq: 2147483648 INVITE", 400),
    ],
)
def test_check_request(old: bytes, new: bytes, status: int) -> None:
    m = _req(INVITE.replace(old, new))
    with pytest.raises(SipError) as info:
        check_request(m)
    assert info.value.status == status


def test_cseq_mismatch_is_protocol_violation() -> None:
    with pytest.raises(ProtocolViolation):
        check_request(_req(INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 1 ACK")))


def test_missing_max_forwards_tolerated() -> None:
    check_request(_req(INVITE.replace(b"Max-Forwards: 70\r\n", b"")))  # RFC 2543 peers


# --- salvage ---------------------------------------------------------------------------


def test_salvage_broken_request() -> None:
    broken = INVITE.replace(b"INVITE sip:bob@biloxi.com SIP/2.0", b"INVITE <sip:bob> SIP/2.0 x")
    broken = broken.replace(b"Max-Forwards: 70", b"Max Forwards 70").replace(b"Content-Length: 4", b"Content-Length: 999")
    with pytest.raises(ParseError):
        parse_message(broken)
    is_request, headers = salvage(broken)
    assert is_request
    assert headers.get("via") == "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds"
    assert headers.get("call-id") == "a84b4c76e66710@pc33.atlanta.com"
    assert headers.get("cseq") == "314159 INVITE"
    assert "max-forwards" not in headers


def test_salvage_never_raises() -> None:
    for data in (b"", b"\xff\xfe", b"SIP/2.0 200 OK\r\nVia: x\r\n", b"\r\n\r\n", b":::\r\n\r\n",
                 b"X\r\n folded\r\nv: y\r\n  z"):
        salvage(data)
    assert salvage(b"SIP/2.0 200 OK\r\nVia: x\r\n")[0] is False
    assert salvage(b"X\r\nv: y\r\n  z")[1].get("via") == "y z"


def test_response_to_salvaged_request() -> None:
    _, headers = salvage(b"INVITE sip:x SIP/9.9\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKq\r\nCSeq: 1 INVITE\r\n")
    resp = make_response(Request("INVITE", "sip:x", headers), 400, "Bad Request")
    assert resp.headers.get("via") == "SIP/2.0/UDP h;branch=z9hG4bKq"
    assert resp.headers.get("content-length") == "0"


# --- StreamFramer ------------------------------------------------------------------


def test_framer_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(INVITE)):
        out.extend(framer.feed(INVITE[i : i + 1]))
    assert out == [INVITE] and framer.buffered == 0


def test_framer_pipelined_messages_and_keepalives() -> None:
    framer = StreamFramer()
    out = framer.feed(b"\r\n\r\n" + INVITE + INVITE + b"\r\n\r\n" + INVITE[:50])
    assert out == [INVITE, INVITE]
    assert framer.pings == 2
    assert framer.feed(INVITE[50:]) == [INVITE]


def test_framer_counts_ping_split_inside_a_crlf() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == []
    assert framer.feed(b"\n") == []
    assert framer.pings == 1
    framer.feed(b"\r")
    framer.feed(b"\n\r\n")
    assert framer.pings == 2
    framer.feed(b"\r\n\r\n\r\n\r\n")
    assert (framer.pings, framer.pongs) == (4, 0)


def test_framer_two_pongs_in_a_row_are_not_a_ping() -> None:
    # RFC 5626 4.4.1: a pong is one CRLF; two reads of one CRLF each are two pongs
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r\n") == []
    assert (framer.pings, framer.pongs) == (0, 2)
    framer.feed(b"\r\n\r\n\r\n")  # a ping then a pong in one read
    assert (framer.pings, framer.pongs) == (1, 3)
    assert framer.feed(b"\r\n" + INVITE) == [INVITE]  # a pong before a message
    assert (framer.pings, framer.pongs) == (1, 4) and framer.buffered == 0


def test_framer_missing_content_length() -> None:
    with pytest.raises(ParseError) as info:
        StreamFramer().feed(INVITE.replace(b"Content-Length: 4\r\n", b""))
    assert info.value.status == 400


def test_framer_oversize_is_513() -> None:
    with pytest.raises(ParseError) as info:
        StreamFramer(max_message_size=100).feed(INVITE)
    assert info.value.status == 513
    framer = StreamFramer(max_message_size=1000)
    with pytest.raises(ParseError) as info:
        framer.feed(b"INVITE sip:a@h SIP/2.0\r\nX: " + b"y" * 1000)
    assert info.value.status == 513


def test_framer_large_body_trickled() -> None:
    body = b"x" * 20000
    msg = INVITE.replace(b"Content-Length: 4", b"Content-Length: 20000")[:-4] + body
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(0, len(msg), 7):
        out.extend(framer.feed(msg[i : i + 7]))
    assert out == [msg]


# --- make_response --------------------------------------------------------------------

RR_INVITE = INVITE.replace(
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n",
    b"Via: SIP/2.0/UDP p1;branch=z9hG4bK1, SIP/2.0/UDP p2;branch=z9hG4bK2\r\n"
    b"Record-Route: <sip:p1;lr>\r\n"
    b"v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;received=192.0.2.9;rport=5066\r\n"
    b"Record-Route: <sip:p2;lr>\r\nTimestamp: 54\r\n",
)


def test_make_response_copies_and_tags() -> None:
    req = _req(RR_INVITE)
    resp = make_response(req, 200, to_tag="abc")
    assert resp.reason == "OK"
    assert resp.to.tag == "abc"
    assert resp.headers.get_all("via") == req.headers.get_all("via")  # order kept
    assert [v.host for v in resp.vias] == ["p1", "p2", "pc33.atlanta.com"]
    assert resp.top_via.params == {"branch": "z9hG4bK1"}
    assert resp.vias[2].params["rport"] == "5066"
    assert resp.from_ == req.from_ and resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.headers.get_all("record-route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert "contact" not in resp.headers and "max-forwards" not in resp.headers
    assert resp.headers.get("content-length") == "0"
    assert parse_message(bytes(resp)) == resp


def test_make_response_record_route_only_on_dialog_establishing() -> None:
    req = _req(RR_INVITE)
    # 12.1.1: copied into responses that can establish a dialog (18x with a tag, 2xx)
    assert make_response(req, 180, to_tag="t").headers.count("record-route") == 2
    for status in (100, 300, 404, 486, 503, 603):
        assert "record-route" not in make_response(req, status, to_tag="t").headers


def test_make_response_100_has_no_to_tag_and_keeps_timestamp() -> None:
    req = _req(RR_INVITE)
    trying = make_response(req, 100, to_tag="abc")
    assert trying.to.tag is None and trying.reason == "Trying"
    assert trying.headers.get("timestamp") == "54"
    assert "timestamp" not in make_response(req, 180, to_tag="abc").headers


def test_make_response_keeps_existing_to_tag() -> None:
    req = _req(INVITE.replace(b"To: Bob <sip:bob@biloxi.com>", b"To: Bob <sip:bob@biloxi.com>;tag=old"))
    assert make_response(req, 200, to_tag="new").to.tag == "old"


def test_make_response_tag_in_uri_or_display_name_is_not_a_to_tag() -> None:
    for to in (b"To: <sip:bob@biloxi.com;tag=uri>", b'To: "x;tag=y" <sip:bob@biloxi.com>'):
        req = _req(INVITE.replace(b"To: Bob <sip:bob@biloxi.com>", to))
        assert make_response(req, 200, to_tag="new").to.tag == "new"


def test_make_response_extra_headers_and_reason() -> None:
    req = _req(INVITE)
    extra = Headers([("Allow", "INVITE, ACK"), ("Content-Length", "0")])
    resp = make_response(req, 405, headers=extra)
    assert resp.reason == "Method Not Allowed"
    assert resp.headers.get("allow") == "INVITE, ACK" and resp.headers.count("content-length") == 1
    assert make_response(req, 499, "Custom").reason == "Custom"


def test_reason_phrase() -> None:
    assert reason_phrase(486) == "Busy Here"
    assert reason_phrase(299) == "OK" and reason_phrase(499) == "Error"
    assert reason_phrase(400, "bad\r\nVia: x") == "Bad Request (badVia: x)"


def test_identifiers() -> None:
    assert new_branch().startswith("z9hG4bK") and new_branch() != new_branch()
    assert new_tag() != new_tag()
    assert new_call_id("h").endswith("@h")


@pytest.mark.parametrize(
    "header",
    [b"Subject: a\rVia: SIP/2.0/UDP evil", b"Subject: a\nVia: SIP/2.0/UDP evil", b"Subject: a\r"],
)
def test_bare_cr_or_lf_inside_a_line_rejected(header: bytes) -> None:
    # Neither may appear in a header value (TEXT-UTF8 / LWS); relaying one lets a
    # peer that ends lines on a bare CR or LF see an injected header field.
    with pytest.raises(ParseError):
        parse_message(INVITE.replace(b"Max-Forwards: 70", header))


def test_bare_cr_in_lf_only_message_rejected() -> None:
    with pytest.raises(ParseError):
        parse_message(INVITE.replace(b"\r\n", b"\n").replace(b"Max-Forwards: 70", b"Subject: a\rb"))


def test_bare_cr_in_request_line_rejected() -> None:
    with pytest.raises(ParseError):
        parse_message(INVITE.replace(b"sip:bob@biloxi.com SIP", b"sip:bob@bil\roxi.com SIP"))


def test_framing_error_keeps_the_good_messages_framed_before_it() -> None:
    from voicegw.sip.parser import FramingError

    good = (b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:b@h>;tag=1\r\n"
            b"To: <sip:a@h>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    bad = b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nCall-ID: y\r\n\r\n"
    framer = StreamFramer()
    with pytest.raises(FramingError) as caught:
        framer.feed(good + bad)
    assert caught.value.messages == [good]
    assert caught.value.data == bad and caught.value.status == 400
