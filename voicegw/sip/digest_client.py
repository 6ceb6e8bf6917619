"""Answering a server's digest challenge for our own requests (RFC 3261 22.2, 22.3;
RFC 7616; RFC 8760), sans-I/O: the INVITE session's challenge-retry hook, and the same
for any other request a trunk challenges (REFER, BYE, OPTIONS, REGISTER...).

How it decides, given the request that was challenged and the 401/407:
- the challenges it can answer (``WWW-Authenticate`` for a 401, ``Proxy-Authenticate``
  for a 407), one per realm, the server's first choice first (RFC 8760 2.4): MD5 or
  SHA-256 with ``qop=auth`` or with no qop (RFC 2069 servers); ``auth-int`` alone, an
  unknown algorithm or a challenge without a nonce cannot be answered;
- a realm the account is not for (``realm`` set and different) is not answered;
- if the challenged request already carried our answer for that realm, the server
  refused it: a new nonce with ``stale=true`` is answered once more (the password was
  right, the nonce had expired, RFC 7616 3.3); otherwise it is a failure, never a loop;
- ``uri`` is exactly the Request-URI (22.4), ``nc`` counts the uses of one nonce
  (RFC 7616 3.4: the server checks it grows), ``cnonce`` comes from an injected source.

A refusal says why in :attr:`Refused.reason`: the engine logs it and reports the
attempt as failed with status ``auth``. The password never leaves this module: not in a
reason, not in a repr.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from .digest import Challenge, Credentials, authorize
from .errors import SipError
from .message import Request, Response

HeaderList = list[tuple[str, str]]

#: nonces whose count we remember (oldest forgotten first): a bound, not a policy
MAX_NONCES = 4096


@dataclass(frozen=True)
class Account:
    """Credentials for one trunk: profile ``auth: {username, password, realm}``."""

    username: str
    password: str = field(repr=False)
    realm: str | None = None
    """Answer only challenges of this realm; None: any realm the trunk names."""


@dataclass(frozen=True, slots=True)
class Authorized:
    headers: HeaderList
    """``Authorization`` / ``Proxy-Authorization`` fields to resend the request with."""
    challenges: tuple[Challenge, ...] = ()
    """The challenges answered, in the order of ``headers`` (kept by
    :class:`~voicegw.sip.request_auth.RequestAuth` to answer later requests of the dialog)."""


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


class DigestClient:
    """Answers challenges for one :class:`Account`; see the module docstring."""

    def __init__(self, account: Account, cnonce: Callable[[], str]) -> None:
        self.account = account
        self._cnonce = cnonce
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()  # (realm, nonce) -> nc

    def answer(self, request: Request, response: Response, *,
               guessed: Collection[str] = ()) -> Authorized | Refused:
        """``guessed``: credentials values the request carried unasked (sent ahead for a
        nonce of an earlier challenge): a challenge to them is answered like a first one."""
        if response.status == 401:
            asked, answer_name = "www-authenticate", "Authorization"
        elif response.status == 407:
            asked, answer_name = "proxy-authenticate", "Proxy-Authorization"
        else:
            return Refused(f"{response.status} is not a challenge")
        challenges, unusable = _challenges(response.headers.get_all(asked))
        if self.account.realm is not None:
            challenges = [c for c in challenges if c.realm == self.account.realm]
        if not challenges:
            return Refused(unusable or f"no challenge for realm {self.account.realm!r}")
        sent = _sent_realms(v for v in request.headers.get_all(answer_name.lower()) if v not in guessed)
        headers: HeaderList = []
        for challenge in challenges:
            previous = sent.get(challenge.realm)
            if previous is not None and not (challenge.stale and previous != challenge.nonce):
                return Refused(f"credentials refused by realm {challenge.realm!r}")
            headers.append((answer_name, str(self.credentials(request, challenge))))
        return Authorized(headers, tuple(challenges))

    def __call__(self, request: Request, challenge: Response) -> HeaderList | None:
        """The INVITE session's Authorizer hook (sip/invite_session_io.Authorizer)."""
        result = self.answer(request, challenge)
        return result.headers if isinstance(result, Authorized) else None

    def credentials(self, request: Request, challenge: Challenge) -> Credentials:
        """The answer to ``challenge`` for ``request``: the nonce's next ``nc``."""
        key = (challenge.realm, challenge.nonce)
        nc = self._counts.pop(key, 0) + 1
        self._counts[key] = nc
        while len(self._counts) > MAX_NONCES:
            self._counts.popitem(last=False)
        return authorize(challenge, method=request.method, uri=request.uri,
                         username=self.account.username, password=self.account.password,
                         cnonce=self._cnonce() if challenge.qop else None, nc=nc)


def _challenges(values: list[str]) -> tuple[list[Challenge], str]:
    """The answerable challenges, one per realm in the server's order, and why the
    others were not (the last reason, for the log; empty when all were usable)."""
    usable: dict[str, Challenge] = {}
    reason = "" if values else "no challenge in the response"
    for value in values:
        try:
            challenge = Challenge.parse(value)
        except SipError as error:
            reason = f"bad challenge: {error.reason}"
            continue
        if challenge.scheme.lower() != "digest":
            reason = f"unsupported scheme {challenge.scheme}"
            continue
        offered = {q.lower() for q in challenge.qop}
        if not challenge.supported or (offered and "auth" not in offered):
            reason = (f"unsupported challenge (algorithm {challenge.algorithm_name}, "
                      f"qop {','.join(challenge.qop) or 'none'})")
            continue
        usable.setdefault(challenge.realm, challenge)
    return list(usable.values()), reason


def _sent_realms(values: Iterable[str]) -> dict[str, str]:
    """realm -> nonce of the credentials the challenged request carried."""
    sent: dict[str, str] = {}
    for value in values:
        try:
            credentials = Credentials.parse(value)
        except SipError:
            continue
        sent[credentials.realm] = credentials.nonce
    return sent


__all__ = ["Account", "Authorized", "DigestClient", "Refused"]
