"""The digest client (voicegw/sip/digest_client.py): answers to 401/407 challenges that
our own digest server (sip/digest.DigestServer) accepts, the RFC 8760 choice among
algorithms, the nonce count, stale nonces, and every challenge it must refuse cleanly
(no nonce, an unknown algorithm, auth-int only, another realm, credentials already
refused). The same client against Asterisk is a wire test of the trunk issue."""

from __future__ import annotations

import itertools

import pytest

from voicegw.sip.digest import Challenge, Credentials, DigestServer, Verdict
from voicegw.sip.digest_client import Account, Authorized, DigestClient, Refused
from voicegw.sip.message import Headers, Request, Response

NOW = 1_700_000_000.0
URI = "sip:+15551234@trunk.example.com;user=phone"
ACCOUNT = Account("voicegw", "s3cret-pw")


def request(method: str = "INVITE", *auth: tuple[str, str]) -> Request:
    headers = Headers([("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"),
                       ("From", "<sip:voicegw@127.0.0.1>;tag=a"), ("To", f"<{URI}>"),
                       ("Call-ID", "c1@127.0.0.1"), ("CSeq", f"1 {method}"), *auth])
    return Request(method, URI, headers, b"", "SIP/2.0")


def challenge(status: int, *values: str) -> Response:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return Response(status, "Unauthorized", Headers([(name, v) for v in values]), b"", "SIP/2.0")


def client() -> DigestClient:
    counter = itertools.count(1)
    return DigestClient(ACCOUNT, cnonce=lambda: f"cn{next(counter)}")


SERVER = DigestServer("trunk.example.com", b"k" * 32)


def server_challenges(**kw) -> list[str]:
    return [str(c) for c in SERVER.challenges(now=NOW, **kw)]


def test_the_answer_is_accepted_by_a_digest_server_with_uri_the_request_uri() -> None:
    result = client().answer(request(), challenge(401, *server_challenges()))
    assert isinstance(result, Authorized)
    [(name, value)] = result.headers
    credentials = Credentials.parse(value)
    assert name == "Authorization" and credentials.uri == URI and credentials.nc == "00000001"
    assert credentials.algorithm == "SHA-256"  # the server's first choice (RFC 8760)
    assert SERVER.verify(credentials, method="INVITE", password="s3cret-pw", now=NOW + 1, uri=URI) is Verdict.OK


def test_a_407_is_answered_with_proxy_authorization_and_md5_when_offered_alone() -> None:
    md5 = DigestServer("proxy", b"p" * 32, algorithms=("MD5",))
    result = client().answer(request("REFER"), challenge(407, *map(str, md5.challenges(now=NOW))))
    assert isinstance(result, Authorized) and result.headers[0][0] == "Proxy-Authorization"
    credentials = Credentials.parse(result.headers[0][1])
    assert md5.verify(credentials, method="REFER", password="s3cret-pw", now=NOW, uri=URI) is Verdict.OK


def test_the_nonce_count_grows_when_a_nonce_is_used_again() -> None:
    c = client()
    nonce = SERVER.make_nonce(NOW)
    values = [str(ch) for ch in SERVER.challenges(nonce=nonce)]
    counts = [Credentials.parse(c.answer(request(), challenge(401, *values)).headers[0][1]).nc  # type: ignore[union-attr]
              for _ in range(3)]
    assert counts == ["00000001", "00000002", "00000003"]


def test_a_stale_nonce_is_answered_again_a_refusal_is_not() -> None:
    c = client()
    first = c.answer(request(), challenge(401, *server_challenges()))
    assert isinstance(first, Authorized)
    sent = request("INVITE", *first.headers)
    stale = c.answer(sent, challenge(401, *[str(x) for x in SERVER.challenges(now=NOW + 400, stale=True)]))
    assert isinstance(stale, Authorized)
    refused = c.answer(sent, challenge(401, *server_challenges()))
    assert refused == Refused("credentials refused by realm 'trunk.example.com'")


@pytest.mark.parametrize(("value", "reason"), [
    ('Digest realm="r", algorithm=MD5, qop="auth"', "bad challenge"),  # no nonce
    ('Digest realm="r", nonce="n", algorithm=SHA-512-256, qop="auth"', "unsupported challenge (algorithm SHA-512-256"),
    ('Digest realm="r", nonce="n", qop="auth-int"', "unsupported challenge (algorithm MD5, qop auth-int)"),
    ('Basic realm="r"', "bad challenge"),
])
def test_challenges_it_cannot_answer_are_refused_with_the_reason(value: str, reason: str) -> None:
    result = client().answer(request(), challenge(401, value))
    assert isinstance(result, Refused) and result.reason.startswith(reason), result


def test_another_realm_is_not_answered_and_the_password_is_never_shown() -> None:
    c = DigestClient(Account("voicegw", "s3cret-pw", realm="other"), cnonce=lambda: "x")
    result = c.answer(request(), challenge(401, *server_challenges()))
    assert result == Refused("no challenge for realm 'other'")
    assert "s3cret-pw" not in repr(c.account) + repr(result)


def test_the_session_hook_gives_headers_or_none() -> None:
    c = client()
    assert c(request(), challenge(401, *server_challenges())) is not None
    assert c(request(), challenge(401, 'Digest realm="r", nonce="n", qop="auth-int"')) is None
    assert c(request(), Response(403, "Forbidden", Headers([]), b"", "SIP/2.0")) is None
    assert isinstance(Challenge.parse(server_challenges()[0]), Challenge)
