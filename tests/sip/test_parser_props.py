"""Property tests of the SIP parser: round trips, robustness, stream framing.

(a) generated well-formed messages survive ``bytes -> parse -> bytes`` unchanged;
(b) no input, however broken, makes the parser (or the checks and accessors on
    what it accepts) raise anything but a ``SipError``;
(c) a stream of messages cut at arbitrary points comes out of StreamFramer whole.

Bounded for CI (a few hundred examples each, no deadline): the file runs in seconds.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicegw.sip.errors import SipError
from voicegw.sip.message import Headers, Request, Response
from voicegw.sip.parser import StreamFramer, parse_message, salvage
from voicegw.sip.validate import check_request

#: VOICEGW_FUZZ_SCALE=20 runs twenty times the examples, for a longer hunt off CI.
SCALE = int(os.environ.get("VOICEGW_FUZZ_SCALE", "1"))
SETTINGS = settings(
    max_examples=300 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- strategies -------------------------------------------------------------------

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
token = st.text(TOKEN_CHARS, min_size=1, max_size=12)
LOWER = "abcdefghijklmnopqrstuvwxyz"
label = st.tuples(st.sampled_from(LOWER), st.text(LOWER + "0123456789", max_size=6)).map("".join)
hostname = st.lists(label, min_size=1, max_size=3).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.sampled_from(
    ["[2001:db8::10]", "[::1]", "[::ffff:192.0.2.2]", "[fe80::1:2:3:4]", "[2001:db8::9:255]"]
)
host = st.one_of(hostname, ipv4, ipv6)
port = st.one_of(st.none(), st.integers(1, 65535))
user = st.tuples(
    st.text("abcXYZ019-_.!~*'()&=+$,", min_size=1, max_size=8),
    st.sampled_from(["", "%41", "%20", "%2C"]),
).map("".join)


@st.composite
def sip_uri(draw: st.DrawFn) -> str:
    u = draw(st.one_of(st.none(), user))
    h = draw(host)
    p = draw(port)
    text = "sip:" + (f"{u}@" if u else "") + h + (f":{p}" if p else "")
    for name in draw(st.lists(st.sampled_from(["lr", "transport=tcp", "user=phone", "x-y=1"]),
                              max_size=2, unique=True)):
        text += ";" + name
    return text


# qdtext without CR/LF, plus quoted-pairs, plus ',' ';' '<' to stress the splitters
quoted_string = st.lists(
    st.one_of(
        st.text(" !#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[]^_`abcxyz{|}~é", min_size=1, max_size=6),
        st.sampled_from(['\\"', "\\\\"]),
    ),
    max_size=4,
).map(lambda parts: '"' + "".join(parts) + '"')


@st.composite
def name_addr(draw: st.DrawFn) -> str:
    uri = draw(sip_uri())
    display = draw(st.one_of(st.none(), quoted_string, token))
    text = f"{display} <{uri}>" if display else f"<{uri}>"
    if draw(st.booleans()):
        text += ";tag=" + draw(token)
    return text


@st.composite
def via(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP"]))
    h = draw(host)
    p = draw(port)
    text = f"SIP/2.0/{transport} {h}" + (f":{p}" if p else "")
    text += ";branch=z9hG4bK" + draw(token)
    if draw(st.booleans()):
        text += ";received=" + draw(ipv4)
    if draw(st.booleans()):
        text += ";rport" + (f"={draw(st.integers(1, 65535))}" if draw(st.booleans()) else "")
    return text


# header values of unknown headers: printable, no leading/trailing space, no CR/LF
opaque_value = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.sampled_from(" é€"),
    min_size=1,
    max_size=30,
).map(str.strip).filter(bool)
unknown_name = st.text("abcXYZ019-", min_size=1, max_size=10).map(lambda s: "X-" + s)


@st.composite
def extra_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 4))
        if kind == 0:
            result.append((draw(unknown_name), draw(opaque_value)))
        elif kind == 1:
            result.append((draw(unknown_name), draw(quoted_string)))
        elif kind == 2:
            name = draw(st.sampled_from(["Contact", "m", "Route", "Record-Route"]))
            items = draw(st.lists(name_addr(), min_size=1, max_size=3))
            result.append((name, ", ".join(items)))
        elif kind == 3:
            name = draw(st.sampled_from(["Supported", "k", "Allow", "Require"]))
            result.append((name, ", ".join(draw(st.lists(token, min_size=1, max_size=4)))))
        else:
            result.append(("Subject" if draw(st.booleans()) else "s", draw(opaque_value)))
    return result


METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "REFER", "NOTIFY"]


@st.composite
def message(draw: st.DrawFn) -> Request | Response:
    compact = draw(st.booleans())
    method = draw(st.sampled_from(METHODS))
    fields: list[tuple[str, str]] = []
    for v in draw(st.lists(via(), min_size=1, max_size=3)):
        fields.append(("v" if compact else "Via", v))
    fields.append(("f" if compact else "From", draw(name_addr())))
    fields.append(("t" if compact else "To", draw(name_addr())))
    fields.append(("i" if compact else "Call-ID", draw(token) + "@" + draw(hostname)))
    fields.append(("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"))
    if draw(st.booleans()):
        fields.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    fields.extend(draw(extra_headers()))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=200)))
    if body:
        fields.append(("c" if compact else "Content-Type", "application/sdp"))
    fields.append(("l" if compact else "Content-Length", str(len(body))))
    headers = Headers(draw(st.permutations(fields)) if draw(st.booleans()) else fields)
    if draw(st.booleans()):
        return Request(method, draw(sip_uri()), headers, body)
    status = draw(st.integers(100, 699))
    reason = draw(st.sampled_from(["OK", "Ringing", "Not Found", "", "Très bien €"]))
    return Response(status, reason, headers, body)


# --- (a) round trip -----------------------------------------------------------------


@SETTINGS
@given(message())
def test_round_trip(m: Request | Response) -> None:
    data = bytes(m)
    parsed = parse_message(data)
    assert parsed == m
    assert bytes(parsed) == data


@SETTINGS
@given(message())
def test_generated_requests_pass_checks_and_accessors(m: Request | Response) -> None:
    parsed = parse_message(bytes(m))
    parsed.vias  # noqa: B018
    parsed.top_via  # noqa: B018
    parsed.from_  # noqa: B018
    parsed.to  # noqa: B018
    parsed.contacts  # noqa: B018
    parsed.cseq  # noqa: B018
    parsed.route_set()
    if isinstance(parsed, Request):
        parsed.request_uri()
        check_request(parsed)


# --- (b) robustness ----------------------------------------------------------------


def _exercise(data: bytes) -> None:
    """Everything a receiver does with untrusted bytes: only SipError may escape."""
    salvage(data)  # never raises at all
    try:
        m = parse_message(data)
    except SipError:
        return
    bytes(m)
    for accessor in ("vias", "top_via", "from_", "to", "contacts", "cseq", "call_id",
                     "max_forwards", "content_type"):
        try:
            getattr(m, accessor)
        except SipError:
            pass
    for call in (m.route_set, lambda: [m.headers.values(k) for k in ("via", "contact", "x")]):
        try:
            call()
        except SipError:
            pass
    if isinstance(m, Request):
        for call in (m.request_uri, lambda: check_request(m)):  # type: ignore[arg-type]
            try:
                call()
            except SipError:
                pass
        try:
            uri = m.request_uri()
            uri == uri  # noqa: B015, PLR0124 - comparison must not raise either
            hash(uri)
        except SipError:
            pass


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    _exercise(data)


SEED = (
    b"INVITE sip:bob@biloxi.example.com:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport=5060;"
    b"received=192.0.2.1\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob \\"B\\"" <sip:bob@biloxi.example.com>\r\n'
    b'From: Alice <sip:alice@[2001:db8::1]:5070;user=phone>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>, \"x,y\" <sip:z@h>;expires=60\r\n"
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 10\r\n\r\n"
    b"v=0\r\no=- 0"
)

INTERESTING = [b"\r", b"\n", b":", b"<", b'"', b">", b";", b",", b"\\", b" ", b"%", b"[", b"@",
               b"\x00", b"\xff", "²".encode(), "١".encode(), b"\r\n", b"\r\n\r\n", b"\r\n "]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([SEED, SEED.replace(b"\r\n", b"\n")])))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            del data[pos:]
        elif op == 2:
            data[pos:pos] = draw(st.sampled_from(INTERESTING))
        elif pos < len(data):
            del data[pos : pos + draw(st.integers(1, 10))]
    return bytes(data)


@settings(max_examples=1000 * SCALE, deadline=None)
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    _exercise(data)


@SETTINGS
@given(message(), st.data())
def test_mutated_generated_messages(m: Request | Response, data: st.DataObject) -> None:
    raw = bytearray(bytes(m))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw)))
        raw[pos:pos] = data.draw(st.sampled_from(INTERESTING))
    _exercise(bytes(raw))


# --- (c) stream framing -------------------------------------------------------------


@SETTINGS
@given(st.lists(message(), min_size=1, max_size=4), st.data())
def test_stream_framer_reassembles(msgs: list[Request | Response], data: st.DataObject) -> None:
    wires = [bytes(m) for m in msgs]
    stream = b""
    for wire in wires:
        stream += data.draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"])) + wire
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    framer = StreamFramer()
    out: list[bytes] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        out.extend(framer.feed(stream[last:cut]))
        last = cut
    assert out == wires
    assert framer.buffered == 0
    assert [parse_message(w) for w in out] == msgs
