"""message/sipfrag (RFC 3420) as REFER NOTIFY bodies carry it (RFC 3515)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicegw.sip.build import REASON_PHRASES
from voicegw.sip.errors import ParseError, ProtocolViolation
from voicegw.sip.sipfrag import SipFrag


def test_status_line_builder() -> None:
    assert bytes(SipFrag.status_line(180)) == b"SIP/2.0 180 Ringing\r\n"
    assert bytes(SipFrag.status_line(100)) == b"SIP/2.0 100 Trying\r\n"
    assert bytes(SipFrag.status_line(503, "Service Unavailable")) == (
        b"SIP/2.0 503 Service Unavailable\r\n"
    )
    # a reason cannot smuggle in header lines
    assert bytes(SipFrag.status_line(200, "OK\r\nEvil: 1")) == b"SIP/2.0 200 OKEvil: 1\r\n"
    with pytest.raises(ProtocolViolation):
        SipFrag.status_line(99)
    with pytest.raises(ProtocolViolation):
        SipFrag.status_line(700)


def test_rfc3515_example_bodies() -> None:
    frag = SipFrag.parse(b"SIP/2.0 100 Trying\r\n")
    assert (frag.status, frag.reason, frag.version) == (100, "Trying", "SIP/2.0")
    assert frag.is_response and not frag.is_request and not frag.is_final
    assert len(frag.headers) == 0 and frag.body == b""
    assert SipFrag.parse(b"SIP/2.0 200 OK\r\n").is_final


@pytest.mark.parametrize(
    "data",
    [
        b"SIP/2.0 200 OK\r\n",
        b"SIP/2.0 200 OK\n",  # LF alone
        b"SIP/2.0 200 OK",  # no line end at all
        b"SIP/2.0 200 OK   \r\n",  # trailing whitespace
        b"SIP/2.0 200 OK \t",
        b"SIP/2.0 200 OK\r\n\r\n",  # an empty line and no body
        b"SIP/2.0 200 OK\r\n   \r\n",
        b"\r\nSIP/2.0 200 OK\r\n",  # leading CRLF
        b"sip/2.0 200 OK\r\n",  # lower-case version
        b"SIP/2.0  200  OK\r\n",  # runs of spaces
    ],
)
def test_real_world_variants_of_200_ok(data: bytes) -> None:
    frag = SipFrag.parse(data)
    assert (frag.status, frag.reason, frag.version) == (200, "OK", "SIP/2.0")
    assert frag.body == b"" and len(frag.headers) == 0
    assert bytes(frag) == b"SIP/2.0 200 OK\r\n"


def test_status_line_without_reason_phrase() -> None:
    frag = SipFrag.parse(b"SIP/2.0 183\r\n")
    assert (frag.status, frag.reason) == (183, "")
    assert SipFrag.parse(bytes(frag)) == frag


def test_status_line_with_headers() -> None:
    data = (
        b"SIP/2.0 200 OK\r\n"
        b"From: <sip:agent@pbx.example>;tag=a1\r\n"
        b"To: <sip:gw@10.0.0.1>;tag=b2\r\n"
        b"Call-ID: transfer-7@10.0.0.1\r\n"
        b"CSeq: 1 INVITE\r\n"
    )
    frag = SipFrag.parse(data)
    assert frag.status == 200
    assert frag.headers.get("call-id") == "transfer-7@10.0.0.1"
    assert frag.headers.get("cseq") == "1 INVITE"
    assert bytes(frag) == data


def test_headers_with_lf_line_ends_and_folding() -> None:
    frag = SipFrag.parse(b"SIP/2.0 486 Busy Here\nReason: SIP;cause=486;\n text=\"busy\"\n")
    assert frag.status == 486 and frag.reason == "Busy Here"
    assert frag.headers.get("reason") == 'SIP;cause=486; text="busy"'


def test_request_line_with_headers_and_body() -> None:
    data = (
        b"INVITE sip:alice@atlanta.example.com SIP/2.0\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: 11\r\n"
        b"\r\n"
        b"hello world"
    )
    frag = SipFrag.parse(data)
    assert (frag.method, frag.uri) == ("INVITE", "sip:alice@atlanta.example.com")
    assert frag.version == "SIP/2.0"
    assert frag.is_request and not frag.is_response
    assert frag.body == b"hello world"
    assert bytes(frag) == data


def test_headers_only_fragment() -> None:
    # RFC 3420: the start line is optional
    frag = SipFrag.parse(b"From: <sip:a@b.example>\r\nTo: <sip:c@d.example>\r\n")
    assert frag.status is None and frag.method is None
    assert frag.headers.get("to") == "<sip:c@d.example>"
    assert bytes(frag) == b"From: <sip:a@b.example>\r\nTo: <sip:c@d.example>\r\n"


def test_compact_header_forms_are_understood() -> None:
    frag = SipFrag.parse(b"SIP/2.0 180 Ringing\r\ni: x@y\r\n")
    assert frag.headers.get("call-id") == "x@y"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"   ",
        b"  \n      z\n",  # whitespace-only first line (fuzzer finding)
        b" \t\r\nSIP/2.0 200 OK\r\n",
        b"SIP/2.0 OK\r\n",  # no status code
        b"SIP/2.0 20 OK\r\n",
        b"SIP/2.0 700 Weird\r\n",
        "SIP/2.0 \u0662\u0660\u0660 OK\r\n".encode(),  # non-ASCII digits are not DIGIT
        b"SIP/2.0 2000 OK\r\n",
        b"SIP/3.0 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"hello\r\n",
        b"SIP/2.0 200 OK\r\n bad continuation\r\n",
        b"SIP/2.0 200 OK\r\nno colon here\r\n",
        b"INVITE sip:a@b SIP/2.0 extra\r\n",
    ],
)
def test_invalid_fragments_raise_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        SipFrag.parse(data)


def test_version_3_is_a_505() -> None:
    with pytest.raises(ParseError) as info:
        SipFrag.parse(b"SIP/3.0 200 OK\r\n")
    assert info.value.status == 505


def test_non_utf8_reason_survives() -> None:
    data = b"SIP/2.0 480 Nicht verf\xfcgbar\r\n"
    frag = SipFrag.parse(data)
    assert frag.status == 480
    assert bytes(frag) == data


def test_with_headers_copies() -> None:
    frag = SipFrag.status_line(200)
    more = frag.with_headers([("Contact", "<sip:agent@pbx.example>")])
    assert bytes(frag) == b"SIP/2.0 200 OK\r\n"
    assert bytes(more) == b"SIP/2.0 200 OK\r\nContact: <sip:agent@pbx.example>\r\n"


# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
reasons = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=100, max_value=699), st.one_of(st.none(), reasons))
def test_status_line_round_trip(status: int, reason: str | None) -> None:
    frag = SipFrag.status_line(status, reason)
    data = bytes(frag)
    assert data.startswith(f"SIP/2.0 {status} ".encode()) and data.endswith(b"\r\n")
    again = SipFrag.parse(data)
    assert again == frag
    assert again.status == status
    if reason is None:
        assert again.reason == REASON_PHRASES.get(status, again.reason)
    # and the sloppy spellings of it parse to the same thing
    assert SipFrag.parse(data.rstrip(b"\r\n")) == frag
    assert SipFrag.parse(data.replace(b"\r\n", b"\n")) == frag
    assert SipFrag.parse(b"sip" + data[3:]) == frag


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=100, max_value=699),
    st.lists(
        st.tuples(
            st.sampled_from(["Call-ID", "CSeq", "X-Leg", "Contact", "Reason"]),
            st.text(alphabet="abcdefghij0123456789@.;=<>: ", min_size=1, max_size=20).map(
                str.strip
            ).filter(bool),
        ),
        max_size=5,
    ),
)
def test_round_trip_with_headers(status: int, fields: list[tuple[str, str]]) -> None:
    frag = SipFrag.status_line(status).with_headers(fields)
    assert SipFrag.parse(bytes(frag)) == frag
