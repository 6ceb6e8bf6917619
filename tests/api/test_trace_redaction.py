"""The API's SIP trace (voicegw/api/trace.py) keeps digest answers without their
response hash: Authorization and Proxy-Authorization lines, in any case, quoted or not;
everything else of the message is kept as it crossed the wire."""

from __future__ import annotations

from voicegw.api.trace import SipTrace
from voicegw.sip.events import Address

PEER = Address("udp", "127.0.0.1", 5060)


def kept(message: bytes) -> bytes:
    trace = SipTrace()
    trace("out", message, PEER, 1.0)
    ((_, entry),) = trace.messages_for(["c1"])
    return entry.data


def test_the_response_hash_of_authorization_and_proxy_authorization_is_redacted() -> None:
    message = (b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nCall-ID: c1\r\nCSeq: 2 INVITE\r\n"
               b'Authorization: Digest username="u", realm="r", nonce="n", uri="sip:a@127.0.0.1", '
               b'response="0123456789abcdef0123456789abcdef", qop=auth, nc=00000001, cnonce="c"\r\n'
               b"proxy-authorization: Digest username=\"u\", realm=\"p\", nonce=\"m\", "
               b"response=fedcba9876543210fedcba9876543210\r\nContent-Length: 0\r\n\r\n")
    data = kept(message)
    assert b"0123456789abcdef" not in data and b"fedcba9876543210" not in data
    assert data.count(b'response="redacted"') == 2
    assert b'username="u", realm="r", nonce="n"' in data and b"qop=auth, nc=00000001" in data
    assert data.startswith(b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nCall-ID: c1\r\n")


def test_a_message_without_credentials_is_kept_as_it_was() -> None:
    message = (b"SIP/2.0 401 Unauthorized\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
               b'WWW-Authenticate: Digest realm="r", nonce="n", qop="auth"\r\nContent-Length: 0\r\n\r\n')
    assert kept(message) == message
