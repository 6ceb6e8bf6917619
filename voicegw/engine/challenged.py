"""A request the engine sends on a leg (REFER, NOTIFY), followed through digest
challenges: the adapter half of sip/request_auth.py, for the requests the INVITE
session does not own.

:class:`ChallengeRetry` stands in for the request's response handler. A 401/407 that
the leg's :class:`~voicegw.sip.request_auth.RequestAuth` answers (RFC 3261 22.2, at most
two per request) sends the request again as the dialog's next one (12.2.1.1: CSeq one
above the dialog's last; a new branch; the same Call-ID, tags and body) to the same
place, and the handler is told only of the retry's outcome; ``on_resent`` lets the
request's user follow the new CSeq (a REFER's id is the CSeq of the accepted one, RFC
3515 2.4.6). A challenge it does not answer reaches the handler as the final response
it is, and the leg's ``auth.refused`` says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..sip.events import Address, Event, ResponseReceived
from ..sip.message import Request

if TYPE_CHECKING:
    from .call import Leg

Resent = Callable[[Request, Request], None]
"""Told (the request challenged, the one sent again) when a challenge is answered."""


class ChallengeRetry:
    """The response handler of one request on ``leg``; see the module docstring."""

    def __init__(self, send: Callable[[Request, Address, Callable[[Event], None]], str], request: Request,
                 destination: Address, on_event: Callable[[Event], None], leg: Leg,
                 on_resent: Resent | None = None) -> None:
        self._send = send
        self.request = request
        self._destination = destination
        self._on_event = on_event
        self._leg = leg
        self._on_resent = on_resent

    def __call__(self, event: Event) -> None:
        auth = self._leg.auth
        if isinstance(event, ResponseReceived) and event.response.status in (401, 407) and auth is not None:
            dialog = self._leg.dialog
            last = dialog.local_seq if dialog is not None and dialog.local_seq is not None else 0
            seq = max(last, self.request.cseq.seq) + 1
            again = auth.retry(self.request, event.response, seq)
            if isinstance(again, Request):
                if dialog is not None:
                    dialog.local_seq = seq
                old, self.request = self.request, again
                if self._on_resent is not None:
                    self._on_resent(old, again)
                self._send(again, self._destination, self)
                return
        self._on_event(event)


def challenge_reason(leg: Leg, status: int) -> str:
    """Why a 401/407 to a request on ``leg`` was the end of it (for the record)."""
    if leg.auth is None:
        return f"{status} challenge, and the peer's profile has no auth"
    return f"{status} challenge not answered: {leg.auth.refused or 'refused'}"


def send_on_leg(send: Callable[[Request, Address, Callable[[Event], None]], str], request: Request,
                destination: Address, on_event: Callable[[Event], None], leg: Leg,
                on_resent: Resent | None = None) -> str:
    """Send ``request`` on ``leg`` with credentials ahead for a realm that challenged
    the dialog before (sip/request_auth.py ``preload``), its challenges answered."""
    if leg.auth is None:
        return send(request, destination, on_event)
    leg.auth.preload(request)
    return send(request, destination, ChallengeRetry(send, request, destination, on_event, leg, on_resent))


__all__ = ["ChallengeRetry", "Resent", "challenge_reason", "send_on_leg"]
