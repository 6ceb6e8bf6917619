"""HTTP Digest authentication for SIP (RFC 3261 22, RFC 2617, RFC 7616, RFC 8760).

Header values in, header values out: ``Challenge`` is a WWW-Authenticate or
Proxy-Authenticate value, ``Credentials`` an Authorization or Proxy-Authorization
value; each pairs ``X.parse(value)`` with ``str(x)``. Only the Digest scheme exists in
SIP (RFC 3261 22.1 forbids Basic); any other scheme is a ``ParseError``.

Algorithms: MD5, MD5-sess, SHA-256 and SHA-256-sess (RFC 8760); qop auth and
auth-int, and the RFC 2069 form without qop that RFC 3261 22.4 still requires a UAC to
answer. Hashes are hex strings throughout, including the inner H() of the -sess A1
(RFC 7616 3.4.2; the RFC 2617 sample code that hashed the raw bytes was an erratum).

Nothing here reads a clock or a random source. A UAC passes its cnonce and nonce
count in; ``DigestServer`` derives nonces from an HMAC of a secret over the ``now``
the caller passes, so it can tell a stale nonce from a forged one without keeping
state, and compares responses with ``hmac.compare_digest``. It does not track nonce
counts: replay within a nonce's lifetime is not detected here.

Limits: a header value longer than ``MAX_VALUE_LENGTH`` characters or with more than
``MAX_PARAMS`` parameters is a ``ParseError``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from voicegw.sip.errors import ParseError, ProtocolViolation
from voicegw.sip.grammar import TOKEN

MAX_VALUE_LENGTH = 8192
MAX_PARAMS = 32

#: Algorithm name (upper case) -> (hash function, is a -sess variant). RFC 8760.
ALGORITHMS: dict[str, tuple[Callable[[bytes], Any], bool]] = {
    "MD5": (hashlib.md5, False),
    "MD5-SESS": (hashlib.md5, True),
    "SHA-256": (hashlib.sha256, False),
    "SHA-256-SESS": (hashlib.sha256, True),
}

# challenge   = ("Digest" LWS digest-cln *(COMMA digest-cln)) / other-challenge
# credentials = ("Digest" LWS digest-response) / other-response
# (header values arrive unfolded, so LWS is 1*WSP)
_SCHEME_RE = re.compile(rf"[ \t]*({TOKEN})[ \t]+")
# auth-param    = auth-param-name EQUAL ( token / quoted-string )
# EQUAL         = SWS "=" SWS
# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext        = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair   = "\" (%x00-09 / %x0B-0C / %x0E-7F)
_PARAM_RE = re.compile(
    rf"({TOKEN})[ \t]*=[ \t]*(?:({TOKEN})|"
    r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)")'
)
# COMMA = SWS "," SWS
_COMMA_RE = re.compile(r"[ \t]*,[ \t]*")
_TOKEN_RE = re.compile(TOKEN)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
# nonce-count = "nc" EQUAL nc-value ; nc-value = 8LHEX
_NC_RE = re.compile(r"[0-9a-fA-F]{8}")
_NEEDS_ESCAPE_RE = re.compile(r'[\\"\x01-\x08\x0b\x0c\x0e-\x1f\x7f]')


def _parse_params(value: str) -> tuple[str, dict[str, str]]:
    """Scheme and auth-params (names lower-cased, quoted-pairs resolved)."""
    if len(value) > MAX_VALUE_LENGTH:
        raise ParseError("authentication header too long")
    m = _SCHEME_RE.match(value)
    if m is None:
        raise ParseError("bad authentication header")
    scheme = m.group(1)
    if scheme.lower() != "digest":
        raise ParseError("unsupported authentication scheme")
    params: dict[str, str] = {}
    pos, end = m.end(), len(value.rstrip(" \t"))
    while True:
        p = _PARAM_RE.match(value, pos)
        if p is None:
            raise ParseError("bad authentication parameter")
        name = p.group(1).lower()
        if name in params:
            raise ParseError("repeated authentication parameter")
        if len(params) >= MAX_PARAMS:
            raise ParseError("too many authentication parameters")
        token, quoted = p.group(2), p.group(3)
        params[name] = token if token is not None else _QUOTED_PAIR_RE.sub(r"\1", quoted)
        pos = p.end()
        if pos >= end:
            return scheme, params
        comma = _COMMA_RE.match(value, pos)
        if comma is None:
            raise ParseError("bad authentication parameter list")
        pos = comma.end()


def _quote(value: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        # Would break the header (and could inject one): a bug on our side.
        raise ProtocolViolation("value cannot be quoted", status=500)
    # Characters that are not qdtext go out as quoted-pairs.
    return '"' + _NEEDS_ESCAPE_RE.sub(r"\\\g<0>", value) + '"'


def _token_or_quote(value: str) -> str:
    return value if _TOKEN_RE.fullmatch(value) else _quote(value)


def _format(scheme: str, params: Iterable[tuple[str, str | None, bool]]) -> str:
    parts = [
        f"{name}={_quote(value) if quoted else _token_or_quote(value)}"
        for name, value, quoted in params
        if value is not None
    ]
    return f"{scheme} " + ", ".join(parts)


def _required(params: dict[str, str], name: str) -> str:
    value = params.pop(name, None)
    if value is None:
        raise ParseError(f"digest {name} missing")
    return value


@dataclass(frozen=True)
class Challenge:
    """A Digest challenge (RFC 3261 25.1 ``challenge``; RFC 7616 3.3)."""

    realm: str
    nonce: str
    #: None when absent, which means MD5 (RFC 7616 3.3).
    algorithm: str | None = None
    #: qop-options, e.g. ("auth",); empty when absent (an RFC 2069 challenge).
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    #: Other auth-params, in order.
    params: tuple[tuple[str, str], ...] = ()
    scheme: str = "Digest"

    @classmethod
    def parse(cls, value: str) -> Challenge:
        scheme, params = _parse_params(value)
        realm, nonce = _required(params, "realm"), _required(params, "nonce")
        qop = params.pop("qop", None)
        stale = params.pop("stale", None)
        return cls(
            realm=realm,
            nonce=nonce,
            algorithm=params.pop("algorithm", None),
            qop=tuple(q.strip() for q in qop.split(",") if q.strip()) if qop is not None else (),
            opaque=params.pop("opaque", None),
            stale=stale is not None and stale.lower() == "true",
            domain=params.pop("domain", None),
            params=tuple(params.items()),
            scheme=scheme,
        )

    @property
    def algorithm_name(self) -> str:
        return (self.algorithm or "MD5").upper()

    @property
    def supported(self) -> bool:
        """Whether ``authorize`` can answer it."""
        return self.algorithm_name in ALGORITHMS and (
            not self.qop or bool({"auth", "auth-int"} & {q.lower() for q in self.qop})
        )

    def __str__(self) -> str:
        return _format(
            self.scheme,
            [
                ("realm", self.realm, True),
                ("domain", self.domain, True),
                ("nonce", self.nonce, True),
                ("opaque", self.opaque, True),
                ("stale", "true" if self.stale else None, False),
                ("algorithm", self.algorithm, False),
                ("qop", ",".join(self.qop) if self.qop else None, True),
                *((name, value, False) for name, value in self.params),
            ],
        )

    def __bytes__(self) -> bytes:
        return str(self).encode()


@dataclass(frozen=True)
class Credentials:
    """A Digest response (RFC 3261 25.1 ``digest-response``; RFC 7616 3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    #: nonce-count as sent: 8 hex digits.
    nc: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    scheme: str = "Digest"

    @classmethod
    def parse(cls, value: str) -> Credentials:
        scheme, params = _parse_params(value)
        creds = cls(
            username=_required(params, "username"),
            realm=_required(params, "realm"),
            nonce=_required(params, "nonce"),
            uri=_required(params, "uri"),
            response=_required(params, "response"),
            algorithm=params.pop("algorithm", None),
            cnonce=params.pop("cnonce", None),
            opaque=params.pop("opaque", None),
            qop=params.pop("qop", None),
            nc=params.pop("nc", None),
            params=tuple(params.items()),
            scheme=scheme,
        )
        # RFC 2617 3.2.2: cnonce and nc "MUST be specified if a qop directive is sent".
        if creds.qop is not None and (creds.cnonce is None or creds.nc is None):
            raise ParseError("digest qop without cnonce and nc")
        if creds.nc is not None and _NC_RE.fullmatch(creds.nc) is None:
            raise ParseError("bad digest nonce count")
        return creds

    @property
    def algorithm_name(self) -> str:
        return (self.algorithm or "MD5").upper()

    def __str__(self) -> str:
        return _format(
            self.scheme,
            [
                ("username", self.username, True),
                ("realm", self.realm, True),
                ("nonce", self.nonce, True),
                ("uri", self.uri, True),
                ("response", self.response, True),
                ("algorithm", self.algorithm, False),
                ("cnonce", self.cnonce, True),
                ("opaque", self.opaque, True),
                ("qop", self.qop, False),
                ("nc", self.nc, False),
                *((name, value, False) for name, value in self.params),
            ],
        )

    def __bytes__(self) -> bytes:
        return str(self).encode()


# -- the computation (RFC 7616 3.4.1-3.4.3) ---------------------------------------------


def _hasher(algorithm: str) -> tuple[Callable[[str], str], bool]:
    entry = ALGORITHMS.get(algorithm.upper())
    if entry is None:
        raise ProtocolViolation("unsupported digest algorithm")
    fn, sess = entry
    return (lambda data: fn(data.encode("utf-8")).hexdigest()), sess


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username ":" realm ":" passwd): what a server may store instead of passwords.
    (For the -sess algorithms this is the inner hash, before nonce and cnonce.)"""
    h, _ = _hasher(algorithm)
    return h(f"{username}:{realm}:{password}")


def compute_response(
    *,
    algorithm: str,
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    cnonce: str | None = None,
    nc: str | None = None,
    body: bytes = b"",
) -> str:
    """request-digest, from the H(A1) of ``compute_ha1()``.

    A1 = H(username:realm:passwd) [":" nonce ":" cnonce for -sess]
    A2 = Method ":" request-uri [":" H(entity-body) for qop=auth-int]
    response = H(H(A1) ":" nonce ":" nc ":" cnonce ":" qop ":" H(A2))   with qop
    response = H(H(A1) ":" nonce ":" H(A2))                             RFC 2069 form
    """
    h, sess = _hasher(algorithm)
    if sess:
        if cnonce is None:
            raise ProtocolViolation("-sess digest needs a cnonce")
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop is not None and qop.lower() == "auth-int":
        a2 += ":" + _body_hash(algorithm, body)
    if qop is None:
        return h(f"{ha1}:{nonce}:{h(a2)}")
    if cnonce is None or nc is None:
        raise ProtocolViolation("qop digest needs a cnonce and nonce count")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{h(a2)}")


def _body_hash(algorithm: str, body: bytes) -> str:
    fn, _ = ALGORITHMS[algorithm.upper()]
    return fn(body).hexdigest()


# -- client side --------------------------------------------------------------------------


def select_challenges(challenges: Sequence[Challenge]) -> list[Challenge]:
    """For each realm, the first challenge we can answer: a UAS lists its challenges
    in order of preference and the UAC uses the topmost one it supports (RFC 8760).
    Several realms happen when a request forked through proxies."""
    chosen: dict[str, Challenge] = {}
    for challenge in challenges:
        if challenge.supported and challenge.realm not in chosen:
            chosen[challenge.realm] = challenge
    return list(chosen.values())


def authorize(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str | None = None,
    nc: int = 1,
    body: bytes = b"",
) -> Credentials:
    """The credentials answering ``challenge`` for a request ``method`` to ``uri``.

    With qop, auth is preferred to auth-int; ``cnonce`` (from the caller's random
    source) and ``nc`` (1 for a fresh nonce, then counting up) are then required.
    Raises ``ProtocolViolation`` for a challenge that cannot be answered.
    """
    if not challenge.supported:
        raise ProtocolViolation("unsupported digest challenge")
    qop: str | None = None
    if challenge.qop:
        offered = {q.lower() for q in challenge.qop}
        qop = "auth" if "auth" in offered else "auth-int"
        if cnonce is None:
            raise ProtocolViolation("qop digest needs a cnonce")
        if not 1 <= nc <= 0xFFFFFFFF:
            raise ProtocolViolation("nonce count out of range")
    algorithm = challenge.algorithm_name
    if ALGORITHMS[algorithm][1] and qop is None:
        raise ProtocolViolation("-sess digest without qop is undefined")
    nc_value = f"{nc:08x}" if qop is not None else None
    response = compute_response(
        algorithm=algorithm,
        ha1=compute_ha1(algorithm, username, challenge.realm, password),
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        cnonce=cnonce if qop is not None else None,
        nc=nc_value,
        body=body,
    )
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        cnonce=cnonce if qop is not None else None,
        opaque=challenge.opaque,
        qop=qop,
        nc=nc_value,
    )


# -- server side --------------------------------------------------------------------------


class Verdict(Enum):
    OK = "ok"
    #: The response was right but the nonce has expired: challenge again with
    #: stale=true, and the UAC retries without asking its user (RFC 7616 3.3).
    STALE = "stale"
    BAD = "bad"


# nonce = <issue time in whole seconds> "." <32 hex digits of HMAC-SHA256>
_NONCE_RE = re.compile(r"(-?[0-9]{1,20})\.([0-9a-f]{32})")


class DigestServer:
    """Challenges and checks Digest credentials for one realm.

    Nonces are ``"<time>.<mac>"`` with mac = HMAC-SHA256(secret, time ":" realm): any
    node holding ``secret`` recognises them, a forged one fails the MAC, and one older
    than ``nonce_lifetime`` seconds (by the ``now`` passed to ``verify``) is stale.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        qop: Sequence[str] = ("auth",),
        nonce_lifetime: float = 300.0,
        opaque: str | None = None,
    ) -> None:
        for algorithm in algorithms:
            _hasher(algorithm)
        self.realm = realm
        self.secret = secret
        self.algorithms = tuple(algorithms)
        self.qop = tuple(qop)
        self.nonce_lifetime = nonce_lifetime
        self.opaque = opaque

    def _mac(self, issued: int) -> str:
        msg = f"{issued}:{self.realm}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()[:32]

    def make_nonce(self, now: float) -> str:
        issued = int(now)
        return f"{issued}.{self._mac(issued)}"

    def challenges(
        self, *, now: float | None = None, nonce: str | None = None, stale: bool = False
    ) -> list[Challenge]:
        """One challenge per algorithm, most preferred first (RFC 8760): send each
        as its own WWW-Authenticate / Proxy-Authenticate header field. Give ``now``
        for an HMAC nonce, or ``nonce`` for one of your own."""
        if nonce is None:
            if now is None:
                raise ProtocolViolation("a challenge needs now or a nonce")
            nonce = self.make_nonce(now)
        return [
            Challenge(
                realm=self.realm,
                nonce=nonce,
                algorithm=algorithm,
                qop=self.qop,
                opaque=self.opaque,
                stale=stale,
            )
            for algorithm in self.algorithms
        ]

    def verify(
        self,
        credentials: Credentials,
        *,
        method: str,
        password: str | None = None,
        ha1: str | None = None,
        now: float | None = None,
        nonce: str | None = None,
        uri: str | None = None,
        body: bytes = b"",
    ) -> Verdict:
        """Check ``credentials`` for a request ``method`` against ``password`` (or the
        stored ``ha1`` for the credentials' algorithm).

        The nonce must be one of ours by HMAC, checked against ``now``; or, when the
        caller issued its own, equal to ``nonce``. ``uri``, when given, must equal the
        credentials' uri (the server checks that the digest names this request, RFC 7616).
        """
        if credentials.realm != self.realm:
            return Verdict.BAD
        algorithm = credentials.algorithm_name
        if algorithm not in {a.upper() for a in self.algorithms}:
            return Verdict.BAD
        qop = credentials.qop.lower() if credentials.qop is not None else None
        if self.qop and qop not in {q.lower() for q in self.qop}:
            return Verdict.BAD  # no downgrade to the RFC 2069 form we did not offer
        if not self.qop and qop is not None:
            return Verdict.BAD
        if uri is not None and credentials.uri != uri:
            return Verdict.BAD
        if self.opaque is not None and credentials.opaque != self.opaque:
            return Verdict.BAD
        fresh = self._check_nonce(credentials.nonce, now=now, nonce=nonce)
        if fresh is None:
            return Verdict.BAD
        if ha1 is None:
            if password is None:
                raise ProtocolViolation("verify needs a password or ha1")
            ha1 = compute_ha1(algorithm, credentials.username, self.realm, password)
        try:
            expected = compute_response(
                algorithm=algorithm,
                ha1=ha1,
                method=method,
                uri=credentials.uri,
                nonce=credentials.nonce,
                qop=credentials.qop,
                cnonce=credentials.cnonce,
                nc=credentials.nc,
                body=body,
            )
        except ProtocolViolation:
            return Verdict.BAD
        if not _same(expected, credentials.response.lower()):
            return Verdict.BAD
        return Verdict.OK if fresh else Verdict.STALE

    def _check_nonce(self, value: str, *, now: float | None, nonce: str | None) -> bool | None:
        """True for a fresh nonce of ours, False for a stale one, None for a bad one."""
        if nonce is not None:
            return True if _same(value, nonce) else None
        m = _NONCE_RE.fullmatch(value)
        if m is None:
            return None
        issued = int(m.group(1))
        if not _same(m.group(2), self._mac(issued)):
            return None
        if now is None:
            raise ProtocolViolation("verify needs now for HMAC nonces")
        return abs(now - issued) <= self.nonce_lifetime



def _same(a: str, b: str) -> bool:
    """Constant-time equality of two strings, whatever characters they hold."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))
