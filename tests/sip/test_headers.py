"""Structured header values (name-addr, Via, CSeq) and the Headers multi-map."""

from __future__ import annotations

import pytest

from voicegw.sip.errors import ParseError
from voicegw.sip.grammar import header_key, parse_params, split_quoted, unquote
from voicegw.sip.headers import (
    CSEQ_MAX,
    CSeq,
    NameAddr,
    Via,
    parse_int,
    parse_name_addr_list,
    parse_token_list,
    parse_via_list,
)
from voicegw.sip.message import Headers
from voicegw.sip.uri import SipUri

# --- grammar helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [("v", "via"), ("V", "via"), ("f", "from"), ("t", "to"), ("i", "call-id"), ("m", "contact"),
     ("l", "content-length"), ("c", "content-type"), ("k", "supported"), ("s", "subject"),
     ("o", "event"), ("r", "refer-to"), ("u", "allow-events"), ("x", "session-expires"),
     ("CALL-ID", "call-id"), ("X-Custom", "x-custom")],
)
def test_header_key_expands_compact_forms(name: str, key: str) -> None:
    assert header_key(name) == key


def test_split_quoted_respects_quotes_escapes_and_angles() -> None:
    text = '"a, \\"b,c\\"" <sip:x@h;p=1,2>;q=1, <sip:y@h>'
    assert split_quoted(text, ",") == ['"a, \\"b,c\\"" <sip:x@h;p=1,2>;q=1', " <sip:y@h>"]
    assert split_quoted("a,b", ",") == ["a", "b"]
    with pytest.raises(ParseError):
        split_quoted('"unterminated, x', ",")
    with pytest.raises(ParseError):
        split_quoted('"ends in backslash\\', ",")


def test_parse_params() -> None:
    assert parse_params(" Tag = abc ; lr ;q=0.5") == {"tag": "abc", "lr": None, "q": "0.5"}
    assert parse_params('x="a;b=c"') == {"x": '"a;b=c"'}
    assert parse_params("") == {}
    for bad in (";", "a;;b", "=x", "a=", 'x="abc', "a b=c"):
        with pytest.raises(ParseError):
            parse_params(bad)


def test_unquote() -> None:
    assert unquote('"a \\"b\\" \\\\ c"') == 'a "b" \\ c'
    assert unquote("plain") == "plain"


# --- name-addr ---------------------------------------------------------------------


def test_name_addr_with_quoted_display_name_and_tag() -> None:
    na = NameAddr.parse('"Alice \\"A\\", Esq." <sip:alice@atlanta.com>;tag=1928301774')
    assert na.display_name == 'Alice "A", Esq.'
    assert isinstance(na.uri, SipUri) and na.uri.user == "alice"
    assert na.tag == "1928301774"
    assert str(na) == '"Alice \\"A\\", Esq." <sip:alice@atlanta.com>;tag=1928301774'
    assert NameAddr.parse(str(na)) == na


def test_name_addr_token_display_name_without_space() -> None:
    na = NameAddr.parse("caller<sip:caller@example.com>;tag=323")
    assert na.display_name == "caller" and na.tag == "323"


def test_name_addr_param_ownership() -> None:
    # Inside <>, ';transport' belongs to the URI; after '>', ';tag' to the header.
    na = NameAddr.parse("<sip:bob@biloxi.com;transport=tcp;lr>;tag=7;expires=60")
    assert isinstance(na.uri, SipUri)
    assert na.uri.params == {"transport": "tcp", "lr": None}
    assert na.params == {"tag": "7", "expires": "60"}
    # Without <>, every ';' parameter is a header parameter (20.10).
    spec = NameAddr.parse("sip:bob@biloxi.com;transport=tcp;tag=7")
    assert isinstance(spec.uri, SipUri)
    assert spec.uri.params == {} and spec.params == {"transport": "tcp", "tag": "7"}
    assert not spec.angle and str(spec) == "sip:bob@biloxi.com;transport=tcp;tag=7"


def test_name_addr_tag_inside_uri_is_not_the_tag() -> None:
    na = NameAddr.parse("<sip:a@h;tag=uri>")
    assert na.tag is None


def test_addr_spec_with_uri_headers_or_spaces_rejected() -> None:
    for bad in ("sip:user@example.com?Route=%3Csip:example.com%3E", "sip:a@h x", ""):
        with pytest.raises(ParseError):
            NameAddr.parse(bad)


@pytest.mark.parametrize(
    "bad",
    ['"Mr. J. User <sip:j.user@example.com>', "Bell, Alexander <sip:a.g.bell@bell-tel.com>",
     '"Watson" < sip:t.watson@example.org >', "<sip:a@h", "<sip:a@h> junk", '"x" sip:a@h',
     "<sip:a@h>;", ("<sip:a@h>;tag"  "="), "<>"],
)
def test_bad_name_addrs(bad: str) -> None:
    with pytest.raises(ParseError):
        NameAddr.parse(bad)


def test_name_addr_list_with_commas_in_quotes() -> None:
    items = parse_name_addr_list('"Doe, John" <sip:j@h>;q=0.7, <sip:k@h>, sip:l@h;expires=5')
    assert [i.display_name for i in items] == ["Doe, John", None, None]
    assert items[2].params == {"expires": "5"}
    with pytest.raises(ParseError):
        parse_name_addr_list("*")


def test_name_addr_other_schemes() -> None:
    assert str(NameAddr.parse("<tel:+1234>").uri) == "tel:+1234"
    assert str(NameAddr.parse("<http://example.com/x>").uri) == "http://example.com/x"


# --- Via ---------------------------------------------------------------------------


def test_via_with_received_and_rport() -> None:
    via = Via.parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776;received=192.0.2.1;rport=5066")
    assert (via.transport, via.host, via.port) == ("UDP", "pc33.atlanta.com", 5066)
    assert via.branch == "z9hG4bK776"
    assert via.params["received"] == "192.0.2.1" and via.params["rport"] == "5066"
    assert str(via) == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776;received=192.0.2.1;rport=5066"


def test_via_rport_without_value() -> None:
    via = Via.parse("SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bKx")
    assert via.params == {"rport": None, "branch": "z9hG4bKx"}
    assert str(via) == "SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bKx"


def test_via_lws_everywhere() -> None:
    via = Via.parse("SIP  / 2.0  / tcp     spindle.example.com   ;\tbranch  =   z9hG4bK9ikj8")
    assert (via.protocol, via.transport, via.host, via.branch) == (
        "SIP/2.0", "TCP", "spindle.example.com", "z9hG4bK9ikj8")


def test_via_ipv6() -> None:
    via = Via.parse("SIP/2.0/UDP [2001:db8::9:1]:5070;received=2001:db8::9:255;branch=z9hG4bKa")
    assert (via.host, via.port) == ("[2001:db8::9:1]", 5070)
    via = Via.parse("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKa")
    assert via.params["received"] == "[2001:db8::9:255]"


@pytest.mark.parametrize(
    "bad",
    ["", "SIP/2.0/UDP", "SIP/2.0 h", "SIP/2.0/UDP h;", "SIP/2.0/UDP h;branch", "SIP/2.0/UDP h;received=",
     "SIP/2.0/UDP h;received=x..y", "SIP/2.0/UDP h;rport=0", "SIP/2.0/UDP h;rport=70000",
     "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h;;branch=z9hG4bKx", "SIP/2.0/UDP [::1",
     "SIP/2.0/UDP h;rport=²"],
)
def test_bad_vias(bad: str) -> None:
    with pytest.raises(ParseError):
        Via.parse(bad)


def test_via_list() -> None:
    vias = parse_via_list("SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b:5061;branch=z9hG4bK2")
    assert [v.host for v in vias] == ["a", "b"]
    with pytest.raises(ParseError):
        parse_via_list("SIP/2.0/UDP a;branch=z9hG4bK1,,SIP/2.0/UDP b")


# --- CSeq and integers ----------------------------------------------------------------


def test_cseq() -> None:
    assert CSeq.parse("314159 INVITE") == CSeq(314159, "INVITE")
    assert CSeq.parse(" 0009 \t INVITE ") == CSeq(9, "INVITE")
    assert str(CSeq(1, "BYE")) == "1 BYE"


def test_cseq_bounds() -> None:
    # 8.1.1.5: "MUST be expressible as a 32-bit unsigned integer", "less than 2**31"
    assert CSeq.parse(f"{CSEQ_MAX} ACK").seq == 2**31 - 1
    assert CSeq.parse("0 ACK").seq == 0
    for bad in (f"{2**31} ACK", "36893488147419103232 REGISTER", "-1 ACK", "+1 ACK", "1.0 ACK"):
        with pytest.raises(ParseError):
            CSeq.parse(bad)


@pytest.mark.parametrize("bad", ["", "1", "INVITE", "1 INVITE x", "1 IN/VITE", "1²  INVITE",
                                 "²  INVITE", "١ INVITE", "1\xa0INVITE"])
def test_bad_cseq(bad: str) -> None:
    with pytest.raises(ParseError):
        CSeq.parse(bad)


def test_parse_int() -> None:
    assert parse_int(" 70 ", "Max-Forwards", 255) == 70
    for bad in ("256", "-1", "", "7 0", "²", "١"):
        with pytest.raises(ParseError):
            parse_int(bad, "Max-Forwards", 255)


def test_token_list() -> None:
    assert parse_token_list("100rel, timer ,replaces,") == ["100rel", "timer", "replaces"]
    with pytest.raises(ParseError):
        parse_token_list("a b")


# --- Headers ---------------------------------------------------------------------


def test_headers_lookup_is_case_insensitive_and_compact_aware() -> None:
    h = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("Call-ID", "x")])
    assert h.get("Via") == "SIP/2.0/UDP a"
    assert h.get_all("v") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert h.count("via") == 2 and "i" in h and "CALL-id" in h
    assert h.get("missing") is None and h.get("missing", "d") == "d"


def test_headers_values_split_list_headers_only() -> None:
    h = Headers([
        ("Contact", '"Doe, J" <sip:a@h>, <sip:b@h>'),
        ("m", "<sip:c@h>"),
        ("Supported", "timer, 100rel"),
        ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ("WWW-Authenticate", 'Digest realm="a", nonce="b"'),
    ])
    assert h.values("contact") == ['"Doe, J" <sip:a@h>', "<sip:b@h>", "<sip:c@h>"]
    assert h.values("k") == ["timer", "100rel"]
    assert h.values("date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert h.values("www-authenticate") == ['Digest realm="a", nonce="b"']


def test_headers_mutation() -> None:
    h = Headers([("Via", "a"), ("To", "t"), ("Via", "b, c")])
    h.insert_first("Via", "z")
    assert h.get_all("via") == ["z", "a", "b, c"]
    assert h.pop_first("via") == "z"
    assert h.pop_first("via") == "a"
    assert h.pop_first("via") == "b"
    assert h.get_all("via") == ["c"]
    h.set("To", "u")
    h.add("X-A", "1")
    h.add("x-a", "2")
    h.set("X-A", "3")
    assert list(h) == [("To", "u"), ("Via", "c"), ("X-A", "3")]
    assert h.remove("x-a") == 1 and h.remove("x-a") == 0
    assert h.pop_first("nothing") is None
    copy = h.copy()
    copy.add("New", "1")
    assert "new" not in h
    assert h.encode() == b"To: u\r\nVia: c\r\n"
    h.insert_first("Record-Route", "<sip:p>")
    assert list(h)[-1] == ("Record-Route", "<sip:p>")


def test_headers_equality_ignores_name_spelling_not_values() -> None:
    assert Headers([("v", "x")]) == Headers([("Via", "x")])
    assert Headers([("v", "x")]) != Headers([("Via", "y")])
    assert Headers([("A", "1"), ("B", "2")]) != Headers([("B", "2"), ("A", "1")])


def test_headers_keys_and_count() -> None:
    h = Headers([("v", "a"), ("Via", "b"), ("To", "t")])
    assert h.keys() == ["via", "via", "to"]
    assert h.count("V") == 2 and h.count("to") == 1 and h.count("x") == 0
