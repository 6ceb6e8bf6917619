"""Fuzz targets: one function per parser that untrusted bytes reach.

Each target takes bytes and raises only when it found a bug:

- anything but ``SipError`` escaping a parser (DESIGN.md: "nothing above sees a raw
  ValueError, IndexError or UnicodeDecodeError");
- anything at all escaping the UA core's ``receive_datagram`` (it answers or drops);
- a round trip that changes what was parsed (``X.parse(bytes(X.parse(data)))`` must
  equal ``X.parse(data)`` where the module promises it).

The same functions run under atheris (``scripts/fuzz/run.py``, ``make fuzz``) and
under hypothesis in CI (``tests/sip/test_fuzz.py``, a fixed number of examples).
"""

from __future__ import annotations

from collections.abc import Callable

from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.digest import Challenge, Credentials, DigestServer
from voicegw.sip.errors import SipError
from voicegw.sip.events import Address
from voicegw.sip.headers import NameAddr, Via
from voicegw.sip.message import Request
from voicegw.sip.offer_answer import make_answer
from voicegw.sip.parser import StreamFramer, parse_message, salvage
from voicegw.sip.sdp import SessionDescription
from voicegw.sip.sdp_fields import Origin
from voicegw.sip.sipfrag import SipFrag
from voicegw.sip.uri import parse_uri
from voicegw.sip.validate import check_request

SOURCE = Address("udp", "192.0.2.9", 5060)
_ORIGIN = Origin("voicegw", 1, 1, "IN", "IP4", "192.0.2.1")


class RoundTripError(AssertionError):
    """bytes() of a parsed object did not parse back to the same object."""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# --- SIP messages -------------------------------------------------------------------------
def parser(data: bytes) -> None:
    """parse_message, every accessor, check_request; and the bytes round trip."""
    salvage(data)  # never raises at all
    try:
        message = parse_message(data)
    except SipError:
        return
    for accessor in ("vias", "top_via", "from_", "to", "contacts", "cseq", "call_id",
                     "max_forwards", "content_type"):
        try:
            getattr(message, accessor)
        except SipError:
            pass
    if isinstance(message, Request):
        try:
            message.request_uri()
            check_request(message)
        except SipError:
            pass
    again = parse_message(bytes(message))  # what we write, we must read
    if bytes(again) != bytes(message):
        raise RoundTripError(f"{bytes(message)!r} -> {bytes(again)!r}")


_core = UserAgentCore(CoreConfig(host="192.0.2.1"))
_now = [0.0]


def core(data: bytes) -> None:
    """The whole receive path: the core answers or drops, and never raises."""
    _now[0] += 0.01
    _core.receive_datagram(data, SOURCE, _now[0])
    _core.datagrams_to_send(_now[0])
    while _core.next_event() is not None:
        pass
    if len(_core._server) > 10_000:  # keep one long run's memory flat
        _core.handle_timer(_now[0] + 64.0)


def framer(data: bytes) -> None:
    """StreamFramer fed in pieces (cut points from the first byte) equals one feed."""
    if not data:
        return
    step = data[0] % 64 + 1
    whole, pieces = StreamFramer(), StreamFramer()
    try:
        expected = whole.feed(data[1:])
    except SipError:
        expected = None
    got: list[bytes] = []
    try:
        for i in range(1, len(data), step):
            got += pieces.feed(data[i:i + step])
    except SipError:
        got = None  # type: ignore[assignment]
    if expected is not None and got is not None and got != expected:
        raise RoundTripError(f"framed differently in pieces: {expected!r} vs {got!r}")


# --- bodies and header values ---------------------------------------------------------------
def sdp(data: bytes) -> None:
    """SessionDescription.parse, round trip, and answering it as the engine does."""
    try:
        offer = SessionDescription.parse(data)
    except SipError:
        return
    again = SessionDescription.parse(bytes(offer))
    if bytes(again) != bytes(offer):
        raise RoundTripError(f"{bytes(offer)!r} -> {bytes(again)!r}")
    try:
        make_answer(offer, origin=_ORIGIN, address="192.0.2.1", port=20000)
    except SipError:
        pass


def sipfrag(data: bytes) -> None:
    """SipFrag.parse; bytes(frag) parses back to an equal frag (sipfrag.py promises it)."""
    try:
        frag = SipFrag.parse(data)
    except SipError:
        return
    again = SipFrag.parse(bytes(frag))
    if again != frag:
        raise RoundTripError(f"{frag!r} -> {bytes(frag)!r} -> {again!r}")


_server = DigestServer("voicegw", b"fuzz-secret", algorithms=("SHA-256", "MD5"))


def digest(data: bytes) -> None:
    """Challenge/Credentials parsing, their round trip, and verifying the credentials."""
    text = _text(data)
    for cls in (Challenge, Credentials):
        try:
            value = cls.parse(text)
        except SipError:
            continue
        again = cls.parse(str(value))
        if again != value:
            raise RoundTripError(f"{value!r} -> {str(value)!r} -> {again!r}")
        if cls is Credentials:
            try:
                _server.verify(value, method="INVITE", password="secret", now=1000.0)
            except SipError:
                pass


def headers(data: bytes) -> None:
    """URIs, name-addr and Via values from untrusted header text."""
    text = _text(data)
    for parse in (parse_uri, NameAddr.parse, Via.parse):
        try:
            value = parse(text)
        except SipError:
            continue
        str(value)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "parser": parser,
    "core": core,
    "framer": framer,
    "sdp": sdp,
    "sipfrag": sipfrag,
    "digest": digest,
    "headers": headers,
}


def everything(data: bytes) -> None:
    """One target for a single fuzzing process: the first byte picks the target."""
    if not data:
        return
    names = list(TARGETS)
    TARGETS[names[data[0] % len(names)]](data[1:])


# --- seeds ------------------------------------------------------------------------------------
INVITE = (
    b"INVITE sip:bob@192.0.2.1:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\nTo: \"Bob\" <sip:bob@192.0.2.1>\r\n"
    b"From: Alice <sip:alice@192.0.2.9>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.9\r\nCSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.9>\r\nSupported: timer\r\nSession-Expires: 1800\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: 142\r\n\r\n"
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\n"
    b"t=0 0\r\nm=audio 49170 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)
SDP = INVITE.split(b"\r\n\r\n", 1)[1] + b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
SEEDS: dict[str, list[bytes]] = {
    "parser": [
        INVITE,
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"OPTIONS sip:[2001:db8::10]:5060 SIP/2.0\r\nv: SIP/2.0/TCP [2001:db8::9];branch=z9hG4bKy\r\n"
        b"f: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: y\r\nCSeq: 2 OPTIONS\r\nl: 0\r\n\r\n",
    ],
    "sdp": [SDP],
    "sipfrag": [b"SIP/2.0 200 OK\r\n", b"SIP/2.0 100 Trying\r\nContent-Type: text/plain\r\n\r\nhi",
                b"sip/2.0   180\n"],
    "digest": [
        b'Digest realm="voicegw", nonce="1000.abc", algorithm=SHA-256, qop="auth,auth-int", opaque="x"',
        b'Digest username="100", realm="voicegw", nonce="1000.abc", uri="sip:100@192.0.2.1", '
        b'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"',
    ],
    "headers": [b"sip:alice:secret@atlanta.com;transport=tcp?subject=project%20x",
                b'"A. G. Bell" <sip:agb@bell-telephone.com> ;tag=a48s',
                b"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1;rport=5060",
                b"tel:+1-201-555-0123;phone-context=example.com"],
}
SEEDS["core"] = SEEDS["parser"]
SEEDS["framer"] = [bytes([7]) + INVITE + SEEDS["parser"][1], bytes([0]) + b"\r\n\r\n" + INVITE]
