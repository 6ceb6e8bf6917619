"""What goes into an INVITE session and what comes out: small frozen dataclasses.

Inputs are of two kinds. Commands from the session's user (the engine) are in the
imperative (:class:`Invite`, :class:`Accept`, :class:`Bye`...); what arrived from the
network is named by where it came from (:class:`IncomingRequest`,
:class:`IncomingResponse`, :class:`IncomingCancel`, :class:`RequestTimedOut`); the
executor turns the UA core's events into these. Timers are not inputs of this module:
the session's ``get_timer()``/``handle_timer(now)`` run them.

Outputs are either wire actions (:class:`SendRequest`, :class:`SendResponse`,
:class:`RetransmitResponse`), which the executor hands to the UA core, or events in
the past tense, which the controller reacts to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .invite_session_table import Cause, State
from .message import Request, Response
from .offer_answer import NegotiatedMedia
from .sdp import SessionDescription
from .uri import Uri

HeaderList = Sequence[tuple[str, str]]


# --------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Invite:
    """UAC: send the dialog-creating INVITE (its body, if any, is our offer).

    The session adds a Via (with a fresh branch) when there is none, and the
    session-timer header fields when its config asks for a timer (RFC 4028 7.1).

    An INVITE without a body is a delayed offer (RFC 3261 13.2.1): the peer's offer
    comes in its 2xx (or a reliable 1xx, RFC 3262 5) and ``answerer`` gives our answer,
    which goes in the ACK (or the PRACK) - None from it: the offer is unusable (the 2xx
    is ACKed, then BYE, 488)."""

    request: Request
    answerer: Answerer | None = None


@dataclass(frozen=True)
class Progress:
    """UAS: a provisional response; ``sdp`` is an early answer (183 with media)."""

    status: int = 180
    sdp: SessionDescription | None = None
    reason: str | None = None
    headers: HeaderList = ()


@dataclass(frozen=True)
class Accept:
    """A 2xx: to the INVITE (UAS) or to the peer's re-INVITE/UPDATE (either role).

    ``sdp`` is our answer when the request had an offer, our offer when it had none;
    None reuses the SDP of our last provisional response."""

    sdp: SessionDescription | None = None
    headers: HeaderList = ()


@dataclass(frozen=True)
class Reject:
    """A 300-699: to the INVITE (UAS) or to the peer's re-INVITE/UPDATE."""

    status: int
    reason: str | None = None
    headers: HeaderList = ()


@dataclass(frozen=True)
class Cancel:
    """UAC: give up on the INVITE (9.1); held until a provisional response came."""

    headers: HeaderList = ()


@dataclass(frozen=True)
class Bye:
    """End a confirmed session (15). A UAS whose 2xx is not ACKed yet waits for it."""

    headers: HeaderList = ()


@dataclass(frozen=True)
class Modify:
    """A re-INVITE (with our offer) or an UPDATE (offer, or none: a refresh)."""

    sdp: SessionDescription | None
    method: str = "INVITE"
    headers: HeaderList = ()


# ---------------------------------------------------------------- from the network
@dataclass(frozen=True)
class IncomingRequest:
    """A request of this session: the INVITE (UAS), ACK, BYE, re-INVITE or UPDATE."""

    request: Request
    transaction_id: str
    """The server transaction to answer on ("" for ACK)."""


@dataclass(frozen=True)
class IncomingResponse:
    """A response to a request this session sent."""

    response: Response


@dataclass(frozen=True)
class IncomingCancel:
    """The core answered a CANCEL 200 (9.2); this is the INVITE's transaction."""

    transaction_id: str


@dataclass(frozen=True)
class RequestTimedOut:
    """A request of ours got no final response: Timer B or F fired (the core's
    ``TransactionTimedOut``), or the transport failed (its ``timer="transport"``)."""

    method: str
    seq: int
    """Its CSeq number."""
    status: int = 408
    """408 for a timeout; 503 for a transport failure, which the TU treats as a 503
    response (RFC 3261 8.1.3.1)."""


Command = Invite | Progress | Accept | Reject | Cancel | Bye | Modify
Received = IncomingRequest | IncomingResponse | IncomingCancel | RequestTimedOut
SessionInput = Command | Received


# --------------------------------------------------------------------- wire actions
@dataclass(frozen=True)
class SendRequest:
    """Send a request (a new client transaction, or an ACK without one)."""

    request: Request
    next_hop: Uri | None
    """Where an in-dialog request goes (8.1.2); None: where the INVITE went."""


@dataclass(frozen=True)
class SendResponse:
    transaction_id: str
    response: Response


@dataclass(frozen=True)
class RetransmitResponse:
    """The 2xx to an INVITE again, until its ACK comes (13.3.1.4)."""

    transaction_id: str
    response: Response


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class StateChanged:
    previous: State
    state: State


@dataclass(frozen=True)
class ProgressReceived:
    """UAC: a 101-199 to our INVITE."""

    response: Response
    early_media: NegotiatedMedia | None
    """What its SDP (an early answer) settles, if it has one we can use."""


@dataclass(frozen=True)
class MediaUpdated:
    """An offer/answer exchange completed (the INVITE's, or a re-INVITE's/UPDATE's)."""

    media: NegotiatedMedia


@dataclass(frozen=True)
class ModifyReceived:
    """The peer's re-INVITE or UPDATE waits for :class:`Accept` or :class:`Reject`."""

    request: Request
    offer: SessionDescription | None
    """None: a re-INVITE without offer, to be answered with ours (the ACK answers)."""


@dataclass(frozen=True)
class ModifyCompleted:
    """Our re-INVITE/UPDATE got its 2xx."""

    media: NegotiatedMedia | None


@dataclass(frozen=True)
class ModifyFailed:
    """Our re-INVITE/UPDATE failed; the session is as it was before it (14.1)."""

    status: int
    reason: str


@dataclass(frozen=True)
class ByeFailed:
    """Our BYE got no 2xx: a final error, a challenge not answered (RFC 3261 22.2), or
    no response. The session ended when the BYE left (15); this says why the peer
    may not know."""

    status: int
    reason: str


@dataclass(frozen=True)
class SessionRefreshed:
    """A session timer was (re)started by a 2xx (RFC 4028 10)."""

    interval: int
    we_refresh: bool


@dataclass(frozen=True)
class Terminated:
    """The session is over; no timer of it remains."""

    cause: Cause
    status: int | None
    """The SIP status that ended it, where there was one (the INVITE's final response,
    ours or the peer's; 408 for a timeout)."""
    reason: str


Output = (
    SendRequest | SendResponse | RetransmitResponse | StateChanged | ProgressReceived
    | MediaUpdated | ModifyReceived | ModifyCompleted | ModifyFailed | SessionRefreshed
    | Terminated | ByeFailed
)


class Authorizer(Protocol):
    """The challenge-retry hook (RFC 3261 22.2, 22.3): given a request of ours (the
    INVITE, a re-INVITE, an UPDATE, the BYE) and the 401 or 407 it got, the
    Authorization / Proxy-Authorization header fields to send it again with, or None to
    give up (the request then fails with that status). The session resends (a new CSeq,
    same Call-ID and tags, new branch, the same body) when it gets fields, at most
    ``MAX_AUTH_RETRIES`` times per request. Production sessions get a
    :class:`~voicegw.sip.request_auth.RequestAuth`, which also sends credentials ahead
    on the dialog's later requests; a session without one fails every challenge.
    """

    def __call__(self, request: Request, challenge: Response) -> HeaderList | None: ...


class Answerer(Protocol):
    """The delayed-offer hook (RFC 3261 13.2.1): our answer to the offer the peer put
    in the 2xx (or reliable 1xx) to our INVITE without SDP; None when we cannot use it."""

    def __call__(self, offer: SessionDescription) -> SessionDescription | None: ...


__all__ = [
    "Accept", "Answerer", "Authorizer", "Bye", "ByeFailed", "Cancel", "Command", "HeaderList", "IncomingCancel",
    "IncomingRequest", "IncomingResponse", "Invite", "MediaUpdated", "Modify",
    "ModifyCompleted", "ModifyFailed", "ModifyReceived", "Output", "Progress",
    "ProgressReceived", "Received", "Reject", "RequestTimedOut", "RetransmitResponse",
    "SendRequest", "SendResponse", "SessionInput", "SessionRefreshed", "StateChanged",
    "Terminated",
]
