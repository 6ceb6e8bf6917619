"""The UA core: the sans-I/O heart of voicegw's SIP stack.

Four entry points, as aioquic's ``QuicConnection`` has them:

- ``receive_datagram(data, addr, now)``: one whole message in (a UDP datagram, or a
  message a stream transport framed);
- ``datagrams_to_send(now)``: the bytes to send and where;
- ``get_timer()`` / ``handle_timer(now)``: the one timer the caller arms;

plus ``next_event()`` for what the application must act on. The caller owns the
clock; nothing here reads one.

The core answers what needs no application (RFC 3261 8.2): malformed requests
(400 naming the problem), unknown methods (501), methods we do not serve (405),
unknown extensions (420), unacceptable bodies (415/406), Max-Forwards exhausted
(483), CANCEL (200 + 487 left to the application, 9.2), requests for dialogs it
does not know (481) and out-of-dialog OPTIONS (200). Responses nobody waits for
are dropped, never answered.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .ack_store import AckStore
from .advertise import AddressPolicy
from .build import make_response, new_branch, new_tag, reason_phrase
from .errors import ParseError, SipError
from .events import (
    Address,
    CancelReceived,
    Event,
    MessageRejected,
    RequestReceived,
    TransactionTerminated,
)
from .grammar import split_quoted
from .headers import MAGIC_COOKIE, Via
from .message import Headers, Request, Response
from .parser import is_keepalive, parse_message, salvage
from .refusal import Cause, Refused, refusal_response
from .transaction import ClientTransaction, ServerTransaction, State, Transaction
from .validate import check_request

#: Methods the core hands to the application.
ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY", "PRACK")
#: Methods we know but do not serve: 405 with Allow (8.2.1); anything else is 501.
KNOWN_METHODS = frozenset(ALLOWED_METHODS) | {"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE"}
#: Methods that only make sense inside a dialog: outside one they get 481.
_IN_DIALOG_ONLY = frozenset({"BYE", "INFO", "UPDATE", "NOTIFY", "PRACK"})
_SDP_TYPES = ("application/sdp",)
_ACCEPT_SDP = ("application/sdp", "application/*", "*/*")


@dataclass
class CoreConfig:
    host: str = "127.0.0.1"
    """The address put in Via and Contact."""
    addresses: AddressPolicy | None = None
    """Behind a NAT: the address each destination is told in Via (sip/advertise.py);
    None: ``host`` for every destination."""
    udp_port: int = 5060
    tcp_port: int = 5060
    tls_port: int = 5061
    """The port put in Via for requests sent over TLS (RFC 3261 26.2: 5061 for sips)."""
    user_agent: str = "voicegw"
    force_rport: bool = True
    """Answer UDP requests at their source address and port, as if every Via had
    ``rport`` (RFC 3581 symmetric response routing): what carriers behind NAT and
    SBCs need. False: strict RFC 3261 18.2.2 (received address, sent-by port)."""
    supported: tuple[str, ...] = ()
    """Option tags we implement (Supported; anything else in Require gets 420)."""
    max_transactions: int = 20_000
    """Transactions still waiting for a final response (ours or the peer's); past this,
    new requests get 503 (Retry-After). Completed ones that only absorb retransmissions
    (Timer J/K/D/I) do not count: at 1,000 requests/s they alone would be 32,000."""


@dataclass
class CoreStatistics:
    requests_received: int = 0
    responses_received: int = 0
    messages_sent: int = 0
    rejected: int = 0
    dropped: int = 0
    stray_responses: int = 0
    server_transactions: int = 0
    client_transactions: int = 0
    pending_transactions: int = 0
    """Transactions with no final response yet (what ``max_transactions`` bounds)."""
    dialogs: int = 0
    accepted: int = 0
    """2xx responses to INVITEs waiting for their ACK (matched by dialog, 17.1.1.3)."""
    timer_entries: int = 0
    """Entries in the timer heap (stale ones are dropped lazily, when they come due)."""
    acks_kept: int = 0
    """ACKs of 2xx responses to our INVITEs, kept 64*T1 to answer the 2xx's copies."""
    acks_resent: int = 0
    """Copies of a 2xx the core ACKed again itself (13.2.2.4)."""


DialogKey = tuple[str, str, str]  # (Call-ID, local tag, remote tag)

_PENDING_STATES = frozenset({State.TRYING, State.CALLING, State.PROCEEDING})


@dataclass
class _Timers:
    """Earliest-deadline heap over transactions, with lazy deletion."""

    heap: list[tuple[float, int, str]] = field(default_factory=list)
    seq: int = 0

    def push(self, due: float | None, tx_id: str) -> None:
        if due is not None:
            self.seq += 1
            heapq.heappush(self.heap, (due, self.seq, tx_id))


class UserAgentCore:
    def __init__(self, config: CoreConfig | None = None) -> None:
        self.config = config or CoreConfig()
        self._server: dict[str, ServerTransaction] = {}
        self._client: dict[str, ClientTransaction] = {}
        self._pending: set[str] = set()  # transactions with no final response yet
        # ACKs for 2xx carry a new branch (17.1.1.3); find the INVITE by dialog instead.
        self._accepted: dict[tuple[str, int, str], str] = {}
        self._dialogs: set[DialogKey] = set()
        # Dialogs we sent BYE in, until our BYE's final response: the peer's BYE
        # crossing ours still names a dialog that exists (15.1.1: it ends with our BYE's
        # final response) and gets 200 (15.1.2; RFC 5407's crossing BYEs), even when the
        # application has forgotten the call meanwhile
        self._closing: dict[DialogKey, str] = {}
        self._closing_by_tx: dict[str, DialogKey] = {}
        # ACKs of 2xx to our INVITEs: the core re-ACKs a 2xx's copies itself (13.2.2.4),
        # so the application may forget an ended call at once (sip/ack_store.py)
        self._acks = AckStore()
        self._out: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        self._timers = _Timers()
        self.stats = CoreStatistics()
        self.allow_header = ", ".join(ALLOWED_METHODS)
        self.admission: Callable[[Request, Address, float], SipError | None] | None = None
        """Asked for each new INVITE outside a dialog (the transport guard's overload and
        per-source call limits); an error it returns is answered statelessly, before any
        transaction exists (a :class:`Refused` with its Reason and Retry-After)."""
        self.ready = True
        """Whether we take calls: False while the daemon starts (its control API is not up
        yet) and once it drains. An out-of-dialog OPTIONS is then answered 503, so a
        dispatcher that pings (Kamailio's, 2xx = up) sends its calls elsewhere."""

    # ------------------------------------------------------------------ entry points
    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if is_keepalive(data):
            return
        try:
            message = parse_message(data)
        except SipError as error:
            self.receive_invalid(data, addr, error, now)
            return
        if isinstance(message, Response):
            self._receive_response(message, addr, now)
        else:
            self._receive_request(message, addr, now)

    def receive_invalid(self, data: bytes, addr: Address, error: SipError, now: float) -> None:
        """Answer bytes that did not parse: a 400 (or the error's status) built from
        whatever headers can be read, sent back to the source; responses are dropped."""
        is_request, headers = salvage(data)
        needed = ("via", "from", "to", "call-id", "cseq")
        if not is_request or not all(key in headers for key in needed):
            self.stats.dropped += 1
            self._events.append(MessageRejected(addr, None, error.reason))
            return
        request = Request("UNKNOWN", "sip:invalid", headers)
        try:
            self._stamp_via(request, addr)
        except SipError:
            pass  # unusable Via: the answer goes back to the source address
        response = make_response(request, error.status, _reason(error), to_tag=new_tag())
        self._queue(bytes(response), self._response_address(request, addr))
        self.stats.rejected += 1
        self._events.append(MessageRejected(addr, error.status, error.reason))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        expiry = self._acks.next_expiry()
        heap = self._timers.heap
        while heap:
            due, _, tx_id = heap[0]
            tx = self._server.get(tx_id) or self._client.get(tx_id)
            if tx is not None and tx.get_timer() == due:
                return due if expiry is None else min(due, expiry)
            heapq.heappop(heap)  # stale: the transaction moved on or is gone
        return expiry

    def handle_timer(self, now: float) -> None:
        self._acks.expire(now)
        heap = self._timers.heap
        while heap and heap[0][0] <= now:
            due, _, tx_id = heapq.heappop(heap)
            tx = self._server.get(tx_id) or self._client.get(tx_id)
            if tx is None or tx.get_timer() != due:
                continue
            tx.handle_timer(now)
            self._collect(tx)

    def transport_failed(self, destination: Address, now: float) -> None:
        """The transport could not reach ``destination`` (a TCP or TLS connection
        could not be opened). Each client transaction waiting on it ends now: "the
        client transaction SHOULD inform the TU that a transport failure has occurred"
        (17.1.4), as ``TransactionTimedOut(timer="transport")``, which the TU treats as
        a 503 (8.1.3.1) rather than waiting out Timer B/F."""
        for tx in [tx for tx in self._client.values() if tx.peer == destination]:
            tx.transport_error(now)
            self._collect(tx)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------ application API
    def send_response(self, transaction_id: str, response: Response, now: float) -> bool:
        """Send ``response`` on a server transaction; False if it is gone or already final."""
        tx = self._server.get(transaction_id)
        if tx is None:
            return False
        if self.config.user_agent and "server" not in response.headers:
            response.headers.add("Server", self.config.user_agent)
        sent = tx.send_response(response, now)
        if sent and tx.is_invite and response.status > 100:
            tx.to_tag = response.to.tag  # the CANCEL's 200 reuses it (9.2)
            if response.status < 300:
                self._accepted[(tx.call_id, tx.cseq, tx.to_tag or "")] = tx.id
        self._collect(tx)
        return sent

    def send_request(self, request: Request, destination: Address, now: float) -> str:
        """Send a request. ACK for a 2xx goes out at once, with no transaction ("" returned),
        and the core keeps it 64*T1 to send it again for each copy of that 2xx;
        anything else starts a client transaction whose id is returned."""
        via = request.headers.get("via")
        if via is None:
            branch = new_branch()
            request.headers.insert_first("Via", self.via_value(destination.transport, branch, destination.host))
        else:
            branch = Via.parse(split_quoted(via, ",")[0]).branch or ""
        if "max-forwards" not in request.headers:
            request.headers.add("Max-Forwards", "70")
        if "content-length" not in request.headers:
            request.headers.add("Content-Length", str(len(request.body)))
        if request.method == "ACK":  # of a 2xx: a non-2xx's is its transaction's (17.1.1.3)
            data = bytes(request)
            self._queue(data, destination)
            self._acks.remember(request, data, destination, now)
            return ""
        tx_id = f"{branch}|{request.method}"
        tx = ClientTransaction(tx_id, request, destination, now, reliable=destination.transport != "udp")
        if request.method == "BYE":
            key = (request.call_id, request.from_.tag or "", request.to.tag or "")
            self._closing[key] = tx_id
            self._closing_by_tx[tx_id] = key
        self._client[tx_id] = tx
        self._pending.add(tx_id)
        self._collect(tx)
        if request.method == "CANCEL":  # 9.1: the INVITE it cancels waits 64*T1 at most
            invite = self._client.get(f"{branch}|INVITE")
            if invite is not None:
                invite.cancel_sent(now)
                self._collect(invite)
        return tx_id

    def via_value(self, transport: str, branch: str, peer_host: str = "") -> str:
        config = self.config
        port = (config.udp_port if transport == "udp"
                else config.tls_port if transport == "tls" else config.tcp_port)
        host = config.addresses.advertised(peer_host).sip_host if config.addresses else config.host
        return f"SIP/2.0/{transport.upper()} {host}:{port};branch={branch};rport"

    def register_dialog(self, call_id: str, local_tag: str, remote_tag: str) -> None:
        """In-dialog requests for a registered dialog reach the application; others get 481."""
        self._dialogs.add((call_id, local_tag, remote_tag))

    def forget_dialog(self, call_id: str, local_tag: str, remote_tag: str) -> None:
        self._dialogs.discard((call_id, local_tag, remote_tag))

    def statistics(self) -> CoreStatistics:
        self.stats.server_transactions = len(self._server)
        self.stats.client_transactions = len(self._client)
        self.stats.pending_transactions = len(self._pending)
        self.stats.dialogs = len(self._dialogs)
        self.stats.accepted = len(self._accepted)
        self.stats.timer_entries = len(self._timers.heap)
        self.stats.acks_kept = len(self._acks)
        return CoreStatistics(**vars(self.stats))

    # ------------------------------------------------------------------ internals
    def _receive_response(self, response: Response, addr: Address, now: float) -> None:
        self.stats.responses_received += 1
        try:
            branch = response.top_via.branch or ""
            method = response.cseq.method
        except SipError:
            self.stats.dropped += 1
            return
        try:
            kept = self._acks.match(response, now)
        except SipError:
            kept = None  # no From or To tag to match by: not a copy of any 2xx we ACKed
        if kept is not None:  # a copy of a 2xx we ACKed: its ACK was lost (13.2.2.4)
            self._queue(kept.data, kept.destination)
            self.stats.acks_resent += 1
            return
        tx = self._client.get(f"{branch}|{method}")
        if tx is None:
            self.stats.stray_responses += 1  # 17.1.3: no match -> the core drops it
            return
        tx.receive_response(response, now)
        self._collect(tx)

    def _receive_request(self, request: Request, addr: Address, now: float) -> None:
        self.stats.requests_received += 1
        try:
            via = self._stamp_via(request, addr)
            check_request(request)
            tx_id = self._server_key(request, via)
        except SipError as error:
            self._reject_stateless(request, addr, error)
            return

        tx = self._server.get(tx_id)
        if tx is not None:  # retransmission, or ACK of a non-2xx final
            tx.receive_request(request, now)
            self._collect(tx)
            return
        if request.method == "ACK":
            self._receive_ack(request, addr, now)
            return
        if request.method == "CANCEL":
            self._receive_cancel(request, addr, tx_id, now)
            return
        if len(self._pending) >= self.config.max_transactions:
            self._reject_stateless(request, addr, Refused(Cause.TRANSACTION_LIMIT))
            return
        if self.admission is not None and request.method == "INVITE" and request.to.tag is None:
            refused = self.admission(request, addr, now)
            if refused is not None:
                self._reject_stateless(request, addr, refused)
                return

        tx = ServerTransaction(tx_id, request, self._response_address(request, addr, via), now,
                               reliable=addr.transport != "udp")
        self._server[tx_id] = tx
        self._pending.add(tx_id)
        if request.method == "INVITE":
            tx.send_response(make_response(request, 100), now)  # 17.2.1: at once
        status, detail, extra = self._policy(request)
        if status:
            response = make_response(request, status, _phrase(status, detail), to_tag=new_tag(), headers=extra)
            self.send_response(tx_id, response, now)
            if status >= 300:
                self.stats.rejected += 1
            return
        self._collect(tx)
        self._events.append(RequestReceived(request, tx_id, addr))

    def _policy(self, request: Request) -> tuple[int, str | None, Headers | None]:
        """What the core answers itself, or (0, None, None) to hand the request on."""
        method = request.method
        allow = Headers([("Allow", self.allow_header)])
        if method not in KNOWN_METHODS:
            return 501, None, allow
        if method not in ALLOWED_METHODS:
            return 405, None, allow
        required = [
            tag for value in request.headers.values("require") for tag in value.split(",") if tag.strip()
        ]
        unsupported = [tag.strip() for tag in required if tag.strip() not in self.config.supported]
        if unsupported:  # 8.2.2.3
            return 420, None, Headers([("Unsupported", ", ".join(unsupported))])
        to_tag = request.to.tag
        if to_tag is not None:
            key = (request.call_id, to_tag, request.from_.tag or "")
            if key not in self._dialogs:
                if method == "BYE" and key in self._closing:
                    return 200, None, None  # a BYE crossing ours (see _closing)
                return 481, None, None  # 12.2.2
            return 0, None, None
        if method == "OPTIONS":
            if not self.ready:  # 21.5.4: temporarily unable; Retry-After (20.33) when to ask again
                return 503, "not ready", Headers([("Retry-After", "1")])
            return 200, None, self._capabilities()
        if request.max_forwards == 0:
            return 483, None, None  # 8.2.2.1... a UAS that would route on; we are the target
        if method in _IN_DIALOG_ONLY:
            return 481, None, None
        if method == "INVITE":
            accept = request.headers.values("accept")
            if accept and not any(a.split(";")[0].strip().lower() in _ACCEPT_SDP for a in accept):
                return 406, "we answer with application/sdp", Headers([("Accept", "application/sdp")])
            if request.body and request.content_type not in _SDP_TYPES:
                return 415, None, Headers([("Accept", "application/sdp")])
        return 0, None, None

    def _capabilities(self) -> Headers:
        return Headers(
            [
                ("Allow", self.allow_header),
                ("Accept", "application/sdp"),
                ("Supported", ", ".join(self.config.supported)),
                ("Accept-Language", "en"),
            ]
        )

    def _receive_ack(self, ack: Request, addr: Address, now: float) -> None:
        to_tag = ack.to.tag or ""
        tx_id = self._accepted.pop((ack.call_id, ack.cseq.seq, to_tag), None)
        tx = self._server.get(tx_id) if tx_id else None
        if tx is not None:
            tx.receive_request(ack, now)  # stops the 2xx retransmissions (13.3.1.4)
            self._collect(tx)
        if tx is not None or (ack.call_id, to_tag, ack.from_.tag or "") in self._dialogs:
            self._events.append(RequestReceived(ack, "", addr))
        else:
            self.stats.dropped += 1  # an ACK matching nothing is absorbed (17.2.3)

    def _receive_cancel(self, cancel: Request, addr: Address, tx_id: str, now: float) -> None:
        # 9.2: the CANCEL matches the INVITE whose transaction has the same key
        invite_id = tx_id.rsplit("|", 1)[0] + "|INVITE"
        invite = self._server.get(invite_id)
        tx = ServerTransaction(tx_id, cancel, self._response_address(cancel, addr), now,
                               reliable=addr.transport != "udp")
        self._server[tx_id] = tx
        if invite is None:
            response = make_response(cancel, 481, to_tag=new_tag())
        else:
            # 9.2: "the To tag of the response to the CANCEL and the response to the
            # original request SHOULD be the same"
            response = make_response(cancel, 200, to_tag=invite.to_tag or new_tag())
        tx.send_response(response, now)
        self._collect(tx)
        if invite is not None and not invite.final_sent:
            self._events.append(CancelReceived(invite_id, cancel))

    def _reject_stateless(self, request: Request, addr: Address, error: SipError) -> None:
        if request.method == "ACK":
            self.stats.dropped += 1  # never answer an ACK (17.2.1)
            self._events.append(MessageRejected(addr, None, error.reason))
            return
        cause = error.cause if isinstance(error, Refused) else None
        if cause is not None:  # Reason and Retry-After say why (RFC 3326, 21.5.4)
            response = refusal_response(request, cause, to_tag=new_tag(), detail=error.reason)
        else:
            response = make_response(request, error.status, _reason(error), to_tag=new_tag())
        self._queue(bytes(response), self._response_address(request, addr))
        self.stats.rejected += 1
        self._events.append(MessageRejected(addr, error.status, error.reason, cause.value if cause else None,
                                            request.method, request.headers.get("call-id")))

    def _server_key(self, request: Request, via: Via) -> str:
        """17.2.3 matching key; the RFC 2543 fallback when the branch lacks the cookie."""
        method = "INVITE" if request.method == "ACK" else request.method
        branch = via.branch or ""
        if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
            return f"{branch}|{via.host}:{via.port or ''}|{method}"
        # RFC 2543: Request-URI, From tag, Call-ID, CSeq number and top Via identify it
        # (the To tag is left out so that the ACK, which has it, matches the INVITE).
        return "|".join(
            ("2543", request.uri, request.from_.tag or "",
             request.call_id, str(request.cseq.seq), str(via), method)
        )

    def _stamp_via(self, request: Request, addr: Address) -> Via:
        """RFC 3261 18.2.1 ``received`` and RFC 3581 ``rport`` on the top Via; returns it."""
        for index, (key, name, value) in enumerate(request.headers._fields):
            if key != "via":
                continue
            parts = split_quoted(value, ",")
            via = Via.parse(parts[0])
            if via.host.strip("[]") != addr.host:
                via.params["received"] = addr.host
            if "rport" in via.params:
                via.params["rport"] = str(addr.port)
                via.params.setdefault("received", addr.host)
            parts[0] = str(via)
            stamped = ",".join(parts)
            request.headers._fields[index] = (key, name, stamped)
            if len(parts) == 1:
                # check_request parses every Via next: this one is parsed (and valid)
                request.headers._parsed[("vias", stamped)] = [via]
            return via
        raise ParseError("missing Via")

    def _response_address(self, request: Request, addr: Address, via: Via | None = None) -> Address:
        """18.2.2: streams answer on the connection; UDP to received/rport or sent-by."""
        if addr.transport != "udp" or self.config.force_rport:
            return addr
        if via is None:
            try:
                via = request.top_via
            except SipError:
                return addr
        rport = via.params.get("rport")
        if rport:
            return Address("udp", addr.host, int(rport))
        host = via.params.get("received") or via.host
        return Address("udp", host.strip("[]"), via.port or 5060)

    def _queue(self, data: bytes, addr: Address) -> None:
        self._out.append((data, addr))
        self.stats.messages_sent += 1

    def _collect(self, tx: Transaction) -> None:
        """Move a transaction's output to the core's queues and re-index its timer."""
        if tx.outbox:
            peer = tx.peer  # for a server transaction, its response address (18.2.2)
            for data in tx.outbox:
                self._queue(data, peer)
            tx.outbox.clear()
        if tx.events:
            for event in tx.events:
                if not isinstance(event, TransactionTerminated):
                    self._events.append(event)
            tx.events.clear()
        if tx.state not in _PENDING_STATES:
            self._pending.discard(tx.id)
            if tx.method == "BYE" and self._closing_by_tx:  # our BYE's final: the dialog is over
                key = self._closing_by_tx.pop(tx.id, None)
                if key is not None and self._closing.get(key) == tx.id:
                    del self._closing[key]
        if tx.terminated:
            if isinstance(tx, ServerTransaction):
                self._server.pop(tx.id, None)
                if tx.is_invite and tx.to_tag is not None:
                    # a 2xx whose ACK never came (Timer L/H): nothing waits for it now
                    self._accepted.pop((tx.call_id, tx.cseq, tx.to_tag), None)
            else:
                self._client.pop(tx.id, None)
        else:
            self._timers.push(tx.get_timer(), tx.id)


def _reason(error: SipError) -> str:
    return _phrase(error.status, error.reason)


def _phrase(status: int, detail: str | None) -> str:
    return reason_phrase(status, detail)


__all__ = ["CoreConfig", "CoreStatistics", "UserAgentCore"]
