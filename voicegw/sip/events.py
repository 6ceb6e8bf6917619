"""What the UA core tells its user: small frozen dataclasses, named in the past tense.

The engine reacts to them, the store records them, the API shows them: one
vocabulary across the layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .message import Request, Response


@dataclass(frozen=True, slots=True)
class Address:
    """A transport address: where bytes came from or go to."""

    transport: str
    """``"udp"``, ``"tcp"`` or ``"tls"`` (lower case)."""
    host: str
    """IP address or host name, IPv6 without brackets."""
    port: int
    name: str | None = field(default=None, compare=False)
    """The host name this address was located from (RFC 3263), when there was one: TLS
    sends it as SNI and checks the peer's certificate against it (RFC 5922 4). Not part
    of the address's identity: a connection is still keyed by (host, port)."""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request the core did not answer itself; the user must answer it."""

    request: Request
    """The request, its top Via already stamped with received/rport."""
    transaction_id: str
    """Pass it to ``UserAgentCore.send_response``. Empty for ACK (no transaction)."""
    source: Address
    """Where it came from."""


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response to a request the user sent with ``send_request``."""

    response: Response
    transaction_id: str
    """The client transaction the response belongs to."""


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched a pending INVITE; the core already answered it 200 (9.2)."""

    transaction_id: str
    """The INVITE's server transaction: answer it 487 (Request Terminated)."""
    request: Request
    """The CANCEL."""


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B/F (client) or H (server, no ACK) fired, or the transport failed."""

    transaction_id: str
    method: str
    """The method of the transaction's request."""
    timer: str
    """Which timer: ``"B"``, ``"F"`` or ``"H"``; ``"transport"`` when the transport
    could not reach the peer (RFC 3261 17.1.4; the TU treats it as a 503, 8.1.3.1)."""


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """A transaction ended and was forgotten (its resources are free)."""

    transaction_id: str


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """Bad input: answered with an error, or dropped when no answer is possible."""

    source: Address
    status: int | None
    """The status sent back, or None when the message was dropped."""
    reason: str
    """What was wrong, e.g. ``"missing Call-ID"``."""
    cause: str | None = None
    """For a refusal (voicegw's own state, not the message, was the problem): its
    :class:`voicegw.sip.refusal.Cause` value, e.g. ``"overload"``. None otherwise."""
    method: str | None = None
    """The request's method, when it parsed."""
    call_id: str | None = None


Event = (
    RequestReceived
    | ResponseReceived
    | CancelReceived
    | TransactionTimedOut
    | TransactionTerminated
    | MessageRejected
)
