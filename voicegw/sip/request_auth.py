"""Challenge retry for every request voicegw sends on a leg (RFC 3261 22.2, 8.1.3.5;
RFC 7616; RFC 8760), sans-I/O: the one authorizer the INVITE session (INVITE,
re-INVITE, UPDATE, BYE) and the engine's other requests (REFER, NOTIFY) share.

How to read it: :class:`RequestAuth` wraps the account's
:class:`~voicegw.sip.digest_client.DigestClient` (which picks the challenge and
computes the answer) and adds what is per leg:

- **the retry decision** (:meth:`RequestAuth.answer`): a 401/407 to a request is
  answered when the digest client can answer it and the request's chain of challenges
  is short: at most :data:`MAX_CHALLENGES` answered per request (22.2: a UAC must not
  loop on refused credentials; issue 12: a third challenge is the failure ``auth``).
  The chain is followed through the credentials we sent, so it needs no CSeq
  bookkeeping: the retried request carries the answer to the last challenge;
- **the retried request** (:func:`resend`): 8.1.3.5 and 22.2 - a new transaction
  (CSeq given by the caller: the dialog's next one in a dialog, 12.2.1.1; a new branch)
  with the same Call-ID, tags, Request-URI and body (a re-INVITE keeps its offer), and
  the new credentials in place of those of the same header name. Credentials for
  another realm (a proxy's 407 answered before a UAS's 401) stay (22.3);
- **credentials sent ahead** (:meth:`RequestAuth.preload`): once a realm challenged a
  request of the leg, later requests of the same dialog carry an answer to that
  challenge with the nonce's next count (RFC 7616 3.4: nc "counts the number of
  requests ... sent with the nonce value"; RFC 3261 22.3: credentials are cached for the
  realm and reused). Only with ``qop=auth``: without qop there is no count, and the
  same response again would be a replay a server may refuse. A server that does not
  take the reused nonce challenges again, and that challenge is answered like a first
  one.

A refusal says why in :attr:`RequestAuth.refused` (and :class:`Refused`); the password
never leaves the digest client.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from .build import new_branch
from .digest import Challenge
from .digest_client import Authorized, DigestClient, HeaderList, Refused
from .message import Headers, Request, Response

#: Challenges answered per request (22.2: never loop; a third one is a failure)
MAX_CHALLENGES = 2
#: Credentials values remembered to follow chains (oldest forgotten first): a bound
MAX_REMEMBERED = 256

_ANSWER_NAMES = {401: "Authorization", 407: "Proxy-Authorization"}
_BRANCH_RE = re.compile(r";[ \t]*branch[ \t]*=[ \t]*[^;, \t]+", re.IGNORECASE)


class RequestAuth:
    """One leg's challenge answers for one account; see the module docstring."""

    def __init__(self, client: DigestClient) -> None:
        self.client = client
        self.refused = ""
        """Why the last challenge was not answered ("" when every one was)."""
        self.answered = 0
        """Challenges answered so far."""
        # credentials value we sent -> challenges answered in its request's chain
        # (0 for credentials sent ahead, unasked)
        self._chains: OrderedDict[str, int] = OrderedDict()
        # realm -> (header name, challenge): what later requests are answered ahead for
        self._cached: dict[str, tuple[str, Challenge]] = {}

    # ------------------------------------------------------------------ the decision
    def answer(self, request: Request, response: Response) -> Authorized | Refused:
        """The credentials to send ``request`` again with after its 401/407, or why not."""
        sent = [*request.headers.get_all("authorization"), *request.headers.get_all("proxy-authorization")]
        chain = max((self._chains.get(value, 0) for value in sent), default=0)
        if response.status in _ANSWER_NAMES and chain >= MAX_CHALLENGES:
            return self._refuse(f"challenged again after {chain} answered challenges")
        guessed = {value for value in sent if self._chains.get(value) == 0}
        result = self.client.answer(request, response, guessed=guessed)
        if isinstance(result, Refused):
            return self._refuse(result.reason)
        self.answered += 1
        for (name, value), challenge in zip(result.headers, result.challenges):
            self._remember(value, chain + 1)
            self._cached[challenge.realm] = (name, challenge)
        return result

    def __call__(self, request: Request, challenge: Response) -> HeaderList | None:
        """The INVITE session's Authorizer hook (sip/invite_session_io.Authorizer)."""
        result = self.answer(request, challenge)
        return result.headers if isinstance(result, Authorized) else None

    def retry(self, request: Request, response: Response, cseq: int) -> Request | Refused:
        """``request`` again with the answer to ``response`` (CSeq ``cseq``), or why not."""
        result = self.answer(request, response)
        if isinstance(result, Refused):
            return result
        return resend(request, result.headers, cseq)

    # ------------------------------------------------------------------ ahead of a challenge
    def preload(self, request: Request) -> HeaderList:
        """Credentials for a new request of the dialog, for the realms that challenged
        an earlier one with ``qop=auth`` (the nonce's next ``nc``); also added to it."""
        headers: list[tuple[str, str]] = []
        for name, challenge in self._cached.values():
            if "auth" not in {q.lower() for q in challenge.qop} or name.lower() in request.headers:
                continue
            value = str(self.client.credentials(request, challenge))
            self._remember(value, 0)
            request.headers.add(name, value)
            headers.append((name, value))
        return headers

    def _remember(self, value: str, chain: int) -> None:
        self._chains[value] = chain
        self._chains.move_to_end(value)
        while len(self._chains) > MAX_REMEMBERED:
            self._chains.popitem(last=False)

    def _refuse(self, reason: str) -> Refused:
        self.refused = reason
        return Refused(reason)


def resend(request: Request, credentials: HeaderList, cseq: int) -> Request:
    """``request`` as a new transaction carrying ``credentials``: CSeq ``cseq`` (same
    method), a new branch in the top Via, the fields named in ``credentials`` replaced,
    everything else (Call-ID, From/To tags, Route, Request-URI, body) the same (22.2)."""
    replaced = {name.lower() for name, _ in credentials}
    headers = Headers()
    via_done = False
    for name, value in request.headers:
        key = name.lower()
        if key in replaced or key == "content-length":
            continue
        if key in ("via", "v") and not via_done:
            via_done = True
            branch = f";branch={new_branch()}"
            value = _BRANCH_RE.sub(branch, value, count=1) if _BRANCH_RE.search(value) else value + branch
        elif key == "cseq":
            value = f"{cseq} {request.method}"
        headers.add(name, value)
    for name, value in credentials:
        headers.add(name, value)
    again = Request(request.method, request.uri, headers)
    again.set_body(request.body, request.content_type)
    return again


__all__ = ["MAX_CHALLENGES", "RequestAuth", "resend"]
