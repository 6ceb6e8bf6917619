"""HTTP Digest for SIP (voicegw.sip.digest)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicegw.sip.digest import (
    MAX_VALUE_LENGTH,
    Challenge,
    Credentials,
    DigestServer,
    Verdict,
    authorize,
    compute_ha1,
    compute_response,
    select_challenges,
)
from voicegw.sip.errors import ParseError, ProtocolViolation

# RFC 2617 section 3.5.
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_RESPONSE = "6629fae49393a05397450978507c4ef1"

# RFC 7616 section 3.9.1.
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def test_rfc2617_example() -> None:
    challenge = Challenge.parse(RFC2617_CHALLENGE)
    assert challenge == Challenge(
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop=("auth", "auth-int"),
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )
    creds = authorize(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    assert creds.response == RFC2617_RESPONSE
    assert (creds.qop, creds.nc, creds.opaque) == ("auth", "00000001", challenge.opaque)
    assert str(creds) == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
        'response="6629fae49393a05397450978507c4ef1", cnonce="0a4f113b", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001'
    )
    assert Credentials.parse(str(creds)) == creds


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_examples(algorithm: str) -> None:
    challenge = Challenge.parse(
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    assert challenge.qop == ("auth", "auth-int")
    creds = authorize(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=RFC7616_CNONCE,
    )
    assert creds.response == RFC7616_RESPONSES[algorithm]
    assert creds.algorithm == algorithm
    # The RFC's Authorization header, as the RFC writes it, parses to the same thing.
    written = Credentials.parse(
        f'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f"algorithm={algorithm}, nonce=\"{RFC7616_NONCE}\", nc=00000001, "
        f'cnonce="{RFC7616_CNONCE}", qop=auth, response="{RFC7616_RESPONSES[algorithm]}", '
        f'opaque="{RFC7616_OPAQUE}"'
    )
    assert written == creds


def test_rfc2069_form_without_qop() -> None:
    # RFC 2069 / RFC 3261 22.4: response = H(H(A1) ":" nonce ":" H(A2))
    challenge = Challenge(realm="biloxi.com", nonce="abc")
    creds = authorize(
        challenge, method="REGISTER", uri="sip:biloxi.com", username="bob", password="zanzibar"
    )
    assert creds.qop is None and creds.cnonce is None and creds.nc is None
    import hashlib

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    expected = md5(f"{md5('bob:biloxi.com:zanzibar')}:abc:{md5('REGISTER:sip:biloxi.com')}")
    assert creds.response == expected


def test_sess_and_auth_int() -> None:
    import hashlib

    def sha(s: str | bytes) -> str:
        return hashlib.sha256(s if isinstance(s, bytes) else s.encode()).hexdigest()

    challenge = Challenge(realm="r", nonce="n", algorithm="SHA-256-sess", qop=("auth-int",))
    creds = authorize(
        challenge,
        method="INVITE",
        uri="sip:a@b",
        username="u",
        password="p",
        cnonce="c",
        nc=2,
        body=b"v=0\r\n",
    )
    ha1 = sha(f"{sha('u:r:p')}:n:c")
    ha2 = sha(f"INVITE:sip:a@b:{sha(b'v=0' + bytes([13, 10]))}")
    assert creds.qop == "auth-int" and creds.nc == "00000002"
    assert creds.response == sha(f"{ha1}:n:00000002:c:auth-int:{ha2}")


def test_parse_details() -> None:
    challenge = Challenge.parse(
        'digest  REALM = "a \\"quoted\\" realm\\\\" ,nonce=tok.en,stale=TRUE,'
        'algorithm=md5-sess, domain="sip:a sip:b", x-extra="1 2", y=z'
    )
    assert challenge.realm == 'a "quoted" realm\\'
    assert challenge.nonce == "tok.en" and challenge.stale and challenge.scheme == "digest"
    assert challenge.algorithm_name == "MD5-SESS" and challenge.qop == ()
    assert challenge.params == (("x-extra", "1 2"), ("y", "z"))
    assert Challenge.parse(str(challenge)) == challenge
    assert Challenge.parse('Digest realm="é", nonce="n"').realm == "é"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        'Basic realm="x"',
        'Bearer token="x"',
        'Digest realm="x"',  # no nonce
        'Digest nonce="x"',  # no realm
        'Digest realm="x", nonce="y", realm="z"',
        'Digest realm="x" nonce="y"',
        'Digest realm="x", nonce="y",',
        'Digest realm="x, nonce="y"',
        'Digest realm=x y, nonce="y"',
        'Digest realm="a\rb", nonce="y"',
        'Digest realm="x", nonce=',
        'Digest realm="x", nonce="y", ' + ", ".join(f"p{i}=v" for i in range(40)),
        'Digest realm="' + "x" * MAX_VALUE_LENGTH + '", nonce="y"',
    ],
)
def test_bad_challenges(value: str) -> None:
    with pytest.raises(ParseError):
        Challenge.parse(value)


@pytest.mark.parametrize(
    "value",
    [
        'Digest username="u", realm="r", nonce="n", uri="sip:x"',  # no response
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="0", qop=auth',
        ('Digest username="u", realm="r", nonce="n", uri="sip:x", response="0", qop=auth, '
        'cnonce="c", nc=1'),
        'Basic dXNlcjpwYXNz',
    ],
)
def test_bad_credentials(value: str) -> None:
    with pytest.raises(ParseError):
        Credentials.parse(value)


def test_unanswerable_challenges() -> None:
    with pytest.raises(ProtocolViolation):
        authorize(Challenge("r", "n", algorithm="SHA-512-256"), method="A", uri="u",
                  username="u", password="p")
    with pytest.raises(ProtocolViolation):
        authorize(Challenge("r", "n", qop=("auth-conf",)), method="A", uri="u",
                  username="u", password="p", cnonce="c")
    with pytest.raises(ProtocolViolation):  # qop needs the caller's cnonce
        authorize(Challenge("r", "n", qop=("auth",)), method="A", uri="u",
                  username="u", password="p")
    with pytest.raises(ProtocolViolation):
        authorize(Challenge("r", "n", algorithm="MD5-sess"), method="A", uri="u",
                  username="u", password="p", cnonce="c")
    with pytest.raises(ProtocolViolation):  # no header injection through our own values
        str(Challenge("r\r\nVia: x", "n"))


def test_select_challenges() -> None:
    a_sha = Challenge("a", "1", algorithm="SHA-256", qop=("auth",))
    a_md5 = Challenge("a", "1", qop=("auth",))
    b_new = Challenge("b", "2", algorithm="SHA-512-256")
    b_md5 = Challenge("b", "2")
    assert select_challenges([a_sha, a_md5, b_new, b_md5]) == [a_sha, b_md5]
    assert select_challenges([b_new]) == []


# -- server ------------------------------------------------------------------------------

SECRET = b"0123456789abcdef"


def _answer(challenge: Challenge, password: str = "secret", **kw: object) -> Credentials:
    args: dict[str, object] = {
        'method': "INVITE", 'uri': "sip:bob@example.com", 'username': "alice", 'password': password,
        'cnonce': "c0ffee",
    }
    args.update(kw)
    return authorize(challenge, **args)  # type: ignore[arg-type]


def test_server_round_trip_and_staleness() -> None:
    server = DigestServer("example.com", SECRET, opaque="op")
    sha, md5 = server.challenges(now=1000.0)
    assert (sha.algorithm, md5.algorithm) == ("SHA-256", "MD5")
    assert sha.nonce == md5.nonce and sha.qop == ("auth",) and sha.opaque == "op"
    parsed = Challenge.parse(str(sha))  # over the wire and back
    creds = Credentials.parse(str(_answer(parsed)))
    verify = {'method': "INVITE", 'password': "secret"}
    assert server.verify(creds, now=1010.0, **verify) is Verdict.OK  # type: ignore[arg-type]
    assert server.verify(creds, now=1300.0, **verify) is Verdict.OK  # type: ignore[arg-type]
    assert server.verify(creds, now=1301.0, **verify) is Verdict.STALE  # type: ignore[arg-type]
    assert server.verify(_answer(md5), now=1010.0, **verify) is Verdict.OK  # type: ignore[arg-type]
    # A stale nonce with a wrong password is bad, not stale.
    wrong = _answer(sha, password="guess")
    assert server.verify(wrong, now=5000.0, **verify) is Verdict.BAD  # type: ignore[arg-type]
    # Stored HA1 instead of the password.
    stored = compute_ha1("SHA-256", "alice", "example.com", "secret")
    assert server.verify(creds, method="INVITE", ha1=stored, now=1010.0) is Verdict.OK
    again = server.challenges(now=1301.0, stale=True)[0]
    assert again.stale and "stale=true" in str(again)


@pytest.mark.parametrize(
    "tamper",
    [
        {"realm": "other.com"},
        {"nonce": "1000.0123456789abcdef0123456789abcdef"},  # forged MAC
        {"nonce": "junk"},
        {"uri": "sip:carol@example.com"},  # response computed over another uri
        {"response": "0" * 64},
        {"response": "ü" * 64},
        {"opaque": None},
        {"algorithm": "SHA-256-sess"},  # not offered
        {"qop": None, "cnonce": None, "nc": None},  # downgrade to RFC 2069
        {"qop": "auth-int"},  # not offered
        {"nc": "00000002"},
    ],
)
def test_server_rejects_tampering(tamper: dict[str, object]) -> None:
    server = DigestServer("example.com", SECRET, opaque="op")
    creds = replace(_answer(server.challenges(now=1000.0)[0]), **tamper)
    assert server.verify(creds, method="INVITE", password="secret", now=1000.0) is Verdict.BAD


def test_server_checks_method_and_request_uri() -> None:
    server = DigestServer("example.com", SECRET)
    creds = _answer(server.challenges(now=0.0)[0])
    assert server.verify(creds, method="BYE", password="secret", now=0.0) is Verdict.BAD
    ok = server.verify(creds, method="INVITE", password="secret", now=0.0, uri=creds.uri)
    assert ok is Verdict.OK
    other = server.verify(creds, method="INVITE", password="secret", now=0.0, uri="sip:x@y")
    assert other is Verdict.BAD


def test_server_with_caller_nonce_and_rfc2069() -> None:
    server = DigestServer("example.com", SECRET, algorithms=("MD5",), qop=())
    (challenge,) = server.challenges(nonce="caller-nonce")
    assert challenge.qop == () and "qop" not in str(challenge)
    creds = _answer(challenge)
    assert creds.qop is None
    assert server.verify(creds, method="INVITE", password="secret", nonce="caller-nonce") is Verdict.OK
    assert server.verify(creds, method="INVITE", password="secret", nonce="another") is Verdict.BAD
    with_qop = replace(creds, qop="auth", cnonce="c", nc="00000001")
    assert server.verify(with_qop, method="INVITE", password="secret", nonce="caller-nonce") is Verdict.BAD


def test_server_misuse() -> None:
    with pytest.raises(ProtocolViolation):
        DigestServer("r", SECRET, algorithms=("SHA-1",))
    server = DigestServer("r", SECRET)
    with pytest.raises(ProtocolViolation):
        server.challenges()
    creds = _answer(server.challenges(now=0.0)[0])
    with pytest.raises(ProtocolViolation):
        server.verify(creds, method="INVITE", now=0.0)  # neither password nor ha1


def test_compute_response_needs_cnonce_for_qop() -> None:
    with pytest.raises(ProtocolViolation):
        compute_response(algorithm="MD5", ha1="x", method="A", uri="u", nonce="n", qop="auth")


# -- properties ----------------------------------------------------------------------

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(
    realm=texts,
    nonce=texts,
    opaque=st.none() | texts,
    username=texts,
    password=texts,
    cnonce=st.text(alphabet="abcdef0123456789/+=", min_size=1, max_size=16),
    nc=st.integers(1, 0xFFFFFFFF),
    algorithm=st.sampled_from(["MD5", "MD5-sess", "SHA-256", "sha-256-SESS"]),
)
def test_serialise_parse_verify_property(
    realm: str,
    nonce: str,
    opaque: str | None,
    username: str,
    password: str,
    cnonce: str,
    nc: int,
    algorithm: str,
) -> None:
    challenge = Challenge(realm, nonce, algorithm=algorithm, qop=("auth",), opaque=opaque)
    assert Challenge.parse(str(challenge)) == challenge
    creds = authorize(
        challenge, method="INVITE", uri="sip:x@y", username=username, password=password,
        cnonce=cnonce, nc=nc,
    )
    assert Credentials.parse(str(creds)) == creds
    server = DigestServer(realm, SECRET, algorithms=(algorithm,))
    assert server.verify(creds, method="INVITE", password=password, nonce=nonce) is Verdict.OK


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parsers_raise_only_parse_error(value: str) -> None:
    for parser in (Challenge.parse, Credentials.parse):
        try:
            parser(value)
        except ParseError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_headers_raise_only_parse_error(data: st.DataObject) -> None:
    value = list(RFC2617_CHALLENGE)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(value) - 1))
        value[pos : pos + 1] = data.draw(st.text(max_size=2))
    try:
        parsed = Challenge.parse("".join(value))
    except ParseError:
        return
    assert Challenge.parse(str(parsed)) == parsed
