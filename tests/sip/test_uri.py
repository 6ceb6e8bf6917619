"""SIP, SIPS, tel and other URIs: parsing, escaping, IPv6 (RFC 5118), comparison (19.1.4)."""

from __future__ import annotations

import pytest

from voicegw.sip.errors import ParseError
from voicegw.sip.uri import AbsoluteUri, TelUri, parse_sip_uri, parse_uri


def test_full_sip_uri() -> None:
    uri = parse_sip_uri("sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=x")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "atlanta.example.com", 5061)
    assert uri.params == {"transport": "tcp", "lr": None}
    assert uri.transport == "tcp"
    assert uri.headers == "subject=x"
    assert str(uri) == "sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=x"


def test_scheme_is_case_insensitive_and_param_names_fold() -> None:
    uri = parse_sip_uri("SIP:Bob@Biloxi.example.com;Transport=TCP")
    assert uri.scheme == "sip"
    assert uri.user == "Bob"  # userinfo keeps its case
    assert uri.params == {"transport": "TCP"}
    assert uri.transport == "tcp"


def test_escaped_user_kept_escaped_and_unescaped_on_demand() -> None:
    uri = parse_sip_uri("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips%3Auser%40example.com"
    assert uri.user_unescaped == "sips:user@example.com"
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net"


def test_escaped_utf8_user() -> None:
    assert parse_sip_uri("sip:%C3%A9t%C3%A9@h").user_unescaped == "été"


def test_escaped_null() -> None:
    assert parse_sip_uri("sip:null-%00-null@example.com").user_unescaped == "null-\x00-null"


@pytest.mark.parametrize("text", ["sip:a%2@h", "sip:a%zz@h", "sip:%@h"])
def test_bad_escape_in_user(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sip_uri(text)


def test_semicolon_in_user_part() -> None:
    uri = parse_sip_uri("sip:user;par=u%40example.net@example.com")
    assert uri.user_unescaped == "user;par=u@example.net"
    assert uri.params == {}


def test_telephone_subscriber_user() -> None:
    uri = parse_sip_uri("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert uri.user == "+1-212-555-1212" and uri.password == "1234"
    assert uri.params == {"user": "phone"}


# --- IPv6 references (RFC 5118) ----------------------------------------------------


def test_ipv6_reference() -> None:
    uri = parse_sip_uri("sip:[2001:db8::10]")
    assert uri.host == "[2001:db8::10]" and uri.port is None
    assert str(uri) == "sip:[2001:db8::10]"


def test_ipv6_reference_with_port() -> None:
    uri = parse_sip_uri("sip:user@[2001:db8::10]:5070;transport=udp")
    assert (uri.host, uri.port) == ("[2001:db8::10]", 5070)


def test_ipv6_port_ambiguity() -> None:
    # RFC 5118 4.3: inside the brackets, ':5070' is part of the address
    uri = parse_sip_uri("sip:[2001:db8::10:5070]")
    assert (uri.host, uri.port) == ("[2001:db8::10:5070]", None)


def test_ipv4_mapped_ipv6() -> None:
    assert parse_sip_uri("sip:[::ffff:192.0.2.2]:19823").host == "[::ffff:192.0.2.2]"


@pytest.mark.parametrize(
    "text",
    [
        "sip:2001:db8::10",  # RFC 5118 4.2: brackets are required
        "sip:[2001:db8::10",
        "sip:[2001:db8::10]x",
        "sip:[2001:db8::g]",
        "sip:[1.2.3.4]",
        "sip:[]",
    ],
)
def test_bad_ipv6(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sip_uri(text)


@pytest.mark.parametrize(
    "text",
    ["sip:h:0", "sip:h:65536", "sip:h:", "sip:h:x", "sip:h:123456", "sip:256.1.1.1", "sip:", "sip:@h",
     "sip:a@", "sip:h;", "sip:h;=x", "sip:h; lr", "sip:-h", "sip:h..com", "sip:a b@h"],
)
def test_bad_sip_uris(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sip_uri(text)


def test_non_ascii_digits_are_not_a_port() -> None:
    # str.isdigit() accepts '²' and '١'; the grammar's DIGIT does not.
    for text in ("sip:h:²", "sip:h:١٢", "sip:١.١.١.١"):
        with pytest.raises(ParseError):
            parse_sip_uri(text)


# --- other schemes --------------------------------------------------------------


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert isinstance(uri, TelUri)
    assert uri.is_global and uri.digits == "+12015550123"
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


def test_absolute_uri_is_opaque() -> None:
    uri = parse_uri("soap.beep://192.0.2.103:3002")
    assert uri == AbsoluteUri("soap.beep", "//192.0.2.103:3002")
    assert str(uri) == "soap.beep://192.0.2.103:3002"


@pytest.mark.parametrize("text", ["", "sip", "1sip:x", "<sip:a@b>", "http:", "x:a b", "x:<a>"])
def test_bad_uris(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


def test_parse_sip_uri_rejects_other_schemes_with_416() -> None:
    with pytest.raises(ParseError) as info:
        parse_sip_uri("tel:+1234")
    assert info.value.status == 416


def test_copy() -> None:
    uri = parse_sip_uri("sip:a@h;lr")
    other = uri.copy(port=5080)
    assert str(other) == "sip:a@h:5080;lr"
    other.params["x"] = "1"
    assert "x" not in uri.params


# --- RFC 3261 19.1.4: the examples of the section -----------------------------------

EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]

NOT_EQUIVALENT = [
    # different usernames
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    # can resolve to different ports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    # can resolve to different transports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    # different port and transport
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    # different header component
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    # even though that's what phone21.boxesbybob.com resolves to
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_rfc3261_equivalent_uris(a: str, b: str) -> None:
    ua, ub = parse_sip_uri(a), parse_sip_uri(b)
    assert ua == ub and ub == ua
    assert hash(ua) == hash(ub)


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_rfc3261_non_equivalent_uris(a: str, b: str) -> None:
    ua, ub = parse_sip_uri(a), parse_sip_uri(b)
    assert ua != ub and ub != ua


def test_equality_is_not_transitive() -> None:
    # 19.1.4: "equality is not transitive"
    plain = parse_sip_uri("sip:carol@chicago.com")
    on = parse_sip_uri("sip:carol@chicago.com;security=on")
    off = parse_sip_uri("sip:carol@chicago.com;security=off")
    assert plain == on and plain == off and on != off


def test_maddr_user_method_ttl_must_match_when_present() -> None:
    for param in ("maddr=192.0.2.1", "user=phone", "method=INVITE", "ttl=1"):
        assert parse_sip_uri("sip:a@h") != parse_sip_uri(f"sip:a@h;{param}")
    assert parse_sip_uri("sip:a@h;user=Phone") == parse_sip_uri("sip:a@h;USER=phone")


def test_sip_and_sips_differ() -> None:
    assert parse_sip_uri("sip:a@h") != parse_sip_uri("sips:a@h")


def test_password_compared_case_sensitively() -> None:
    assert parse_sip_uri("sip:a:pw@h") != parse_sip_uri("sip:a:PW@h")
    assert parse_sip_uri("sip:a:p%77@h") == parse_sip_uri("sip:a:pw@h")


def test_comparison_with_non_uri() -> None:
    assert parse_sip_uri("sip:a@h") != "sip:a@h"


@pytest.mark.parametrize(
    "text",
    ["sip:a:%zz@h", "sip:a:%4@h", "sip:h;transport=%zz", "sip:h;x%=1", "sip:h?subject=%g1", "sip:h?%=1"],
)
def test_bad_escapes_anywhere_are_parse_errors(text: str) -> None:
    # Caught at parse time, so comparing or hashing a parsed URI never raises.
    with pytest.raises(ParseError):
        parse_sip_uri(text)


def test_comparison_never_raises_on_escapes() -> None:
    a = parse_sip_uri("sip:a:p%41@h;transport=t%43p?x=%41")
    b = parse_sip_uri("sip:a:pA@h;transport=tCp?x=A")
    assert a == b


def test_ipv6_three_colons_before_ipv4_tolerated() -> None:
    # RFC 5118 4.10: the RFC 3261 ABNF bug; robust parsers accept both forms
    assert parse_sip_uri("sip:user@[2001:db8:::192.0.2.1]").host == "[2001:db8:::192.0.2.1]"
    assert parse_sip_uri("sip:user@[2001:db8::192.0.2.1]").host == "[2001:db8::192.0.2.1]"
    for bad in ("sip:[2001:db8:::1]", "sip:[2001:::db8:::192.0.2.1]", "sip:[:::192.0.2.999]"):
        with pytest.raises(ParseError):
            parse_sip_uri(bad)


def test_ipv6_zone_index_rejected() -> None:
    with pytest.raises(ParseError):
        parse_sip_uri("sip:[fe80::1%eth0]")


@pytest.mark.parametrize("host", ["0.0.0.0", "255.255.255.255", "010.001.000.099", "192.0.2.1"])
def test_ipv4_octets_in_range(host: str) -> None:
    assert parse_sip_uri(f"sip:{host}").host == host


@pytest.mark.parametrize("host", ["256.0.0.1", "1.300.0.1", "1.2.3.999", "1.2.3.260"])
def test_ipv4_octets_out_of_range(host: str) -> None:
    with pytest.raises(ParseError):
        parse_sip_uri(f"sip:{host}")
