"""The four transaction state machines of RFC 3261 section 17 (with RFC 6026's Accepted).

How to read this module: each machine is a ``State`` enum and one ``TABLE`` that maps
``(state, input)`` to ``(actions, next state)``. An input that is not in a machine's
table is ignored (a late retransmission, a timer of a state already left): that is
exactly what the RFC figures say, since they draw only the arrows that exist.
Timers are inputs: the owner asks :meth:`Transaction.get_timer` when the next one
is due and calls :meth:`Transaction.handle_timer` with the current time. Nothing here
reads a clock or touches a socket; output accumulates in ``outbox`` (bytes for the
transaction's peer) and ``events`` (for the transaction user).

Timer values (17.1.1.1, Table 4 of appendix A): T1 = 500 ms (RTT estimate),
T2 = 4 s (cap on non-INVITE and 2xx retransmit intervals), T4 = 5 s (how long the
network keeps a message). Over reliable transports retransmission timers (A, E, G)
never start and the wait timers (D, I, J, K) are zero (17.1.1.2, 17.2.2).

Once a transaction has its final response it only absorbs retransmissions (Completed,
Accepted, Confirmed: up to 64*T1 = 32 s over UDP), so from then on it keeps what that
needs (its id, method, Call-ID and CSeq, the bytes of its last response or ACK, its
timers) and lets the parsed request go: at 100 calls/s some 3,000 calls' transactions
linger at once (issue 16).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .events import Address, Event, ResponseReceived, TransactionTerminated, TransactionTimedOut
from .message import Headers, Request, Response

T1 = 0.5
T2 = 4.0
T4 = 5.0


class State(enum.Enum):
    TRYING = "Trying"
    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"  # RFC 6026: 2xx to INVITE sent or received
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    # from the network
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST = "request retransmission"
    ACK = "ACK"
    # from the transaction user
    SEND_PROVISIONAL = "TU 1xx"
    SEND_SUCCESS = "TU 2xx"
    SEND_FAILURE = "TU 300-699"
    # timers
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TRANSPORT_ERROR = "transport error"
    # client INVITE: the TU sent a CANCEL for it, and its wait (9.1)
    CANCEL_SENT = "CANCEL sent"
    TIMER_CANCEL = "64*T1 after the CANCEL"


class Action(enum.Enum):
    PASS_TO_TU = enum.auto()  # hand the response to the TU
    SEND_ACK = enum.auto()  # client INVITE: ACK a 300-699 (17.1.1.3)
    RESEND_ACK = enum.auto()
    RETRANSMIT_REQUEST = enum.auto()  # timers A/E; E doubles up to T2
    SEND_RESPONSE = enum.auto()  # the TU's response, remembered for retransmission
    RESEND_RESPONSE = enum.auto()  # the last response, again
    RETRANSMIT_RESPONSE = enum.auto()  # timer G: doubles up to T2
    START_D = enum.auto()
    START_G_H = enum.auto()
    START_I = enum.auto()
    START_J = enum.auto()
    START_K = enum.auto()
    START_L = enum.auto()
    START_M = enum.auto()
    STOP_RETRANSMIT = enum.auto()
    TIMED_OUT = enum.auto()  # tell the TU (Timer B, F, H; L when no ACK came)
    E_TO_T2 = enum.auto()  # Proceeding: timer E fires every T2 from now on (17.1.2.2)
    START_CANCEL_WAIT = enum.auto()  # 64*T1 for the final response after a CANCEL (9.1)


A = Action
S = State
I = Input

Table = dict[tuple[State, Input], tuple[tuple[Action, ...], State]]

#: INVITE client transaction, Figure 5 with RFC 6026's Accepted state.
INVITE_CLIENT: Table = {
    (S.CALLING, I.TIMER_A): ((A.RETRANSMIT_REQUEST,), S.CALLING),
    (S.CALLING, I.TIMER_B): ((A.TIMED_OUT,), S.TERMINATED),
    (S.CALLING, I.PROVISIONAL): ((A.STOP_RETRANSMIT, A.PASS_TO_TU), S.PROCEEDING),
    (S.CALLING, I.SUCCESS): ((A.STOP_RETRANSMIT, A.PASS_TO_TU, A.START_M), S.ACCEPTED),
    (S.CALLING, I.FAILURE): ((A.STOP_RETRANSMIT, A.PASS_TO_TU, A.SEND_ACK, A.START_D), S.COMPLETED),
    (S.CALLING, I.TRANSPORT_ERROR): ((A.TIMED_OUT,), S.TERMINATED),
    (S.PROCEEDING, I.PROVISIONAL): ((A.PASS_TO_TU,), S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): ((A.PASS_TO_TU, A.START_M), S.ACCEPTED),
    (S.PROCEEDING, I.FAILURE): ((A.PASS_TO_TU, A.SEND_ACK, A.START_D), S.COMPLETED),
    # No Timer B in Proceeding: how long to let it ring is the TU's decision (it CANCELs).
    # 9.1: "If there is no final response for the original request in 64*T1 seconds"
    # after the CANCEL, the transaction is destroyed, as if it had timed out (408).
    (S.CALLING, I.CANCEL_SENT): ((A.START_CANCEL_WAIT,), S.CALLING),
    (S.CALLING, I.TIMER_CANCEL): ((A.TIMED_OUT,), S.TERMINATED),
    (S.PROCEEDING, I.CANCEL_SENT): ((A.START_CANCEL_WAIT,), S.PROCEEDING),
    (S.PROCEEDING, I.TIMER_CANCEL): ((A.TIMED_OUT,), S.TERMINATED),
    (S.ACCEPTED, I.SUCCESS): ((A.PASS_TO_TU,), S.ACCEPTED),  # 2xx retransmission: TU re-ACKs
    (S.ACCEPTED, I.TIMER_M): ((), S.TERMINATED),
    (S.COMPLETED, I.FAILURE): ((A.RESEND_ACK,), S.COMPLETED),
    (S.COMPLETED, I.TIMER_D): ((), S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((), S.TERMINATED),
}

#: Non-INVITE client transaction, Figure 6.
NON_INVITE_CLIENT: Table = {
    (S.TRYING, I.TIMER_E): ((A.RETRANSMIT_REQUEST,), S.TRYING),
    (S.TRYING, I.TIMER_F): ((A.TIMED_OUT,), S.TERMINATED),
    (S.TRYING, I.PROVISIONAL): ((A.PASS_TO_TU,), S.PROCEEDING),
    (S.TRYING, I.SUCCESS): ((A.STOP_RETRANSMIT, A.PASS_TO_TU, A.START_K), S.COMPLETED),
    (S.TRYING, I.FAILURE): ((A.STOP_RETRANSMIT, A.PASS_TO_TU, A.START_K), S.COMPLETED),
    (S.TRYING, I.TRANSPORT_ERROR): ((A.TIMED_OUT,), S.TERMINATED),
    (S.PROCEEDING, I.TIMER_E): ((A.RETRANSMIT_REQUEST, A.E_TO_T2), S.PROCEEDING),
    (S.PROCEEDING, I.TIMER_F): ((A.TIMED_OUT,), S.TERMINATED),
    (S.PROCEEDING, I.PROVISIONAL): ((A.PASS_TO_TU,), S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): ((A.STOP_RETRANSMIT, A.PASS_TO_TU, A.START_K), S.COMPLETED),
    (S.PROCEEDING, I.FAILURE): ((A.STOP_RETRANSMIT, A.PASS_TO_TU, A.START_K), S.COMPLETED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((A.TIMED_OUT,), S.TERMINATED),
    (S.COMPLETED, I.TIMER_K): ((), S.TERMINATED),
}

#: INVITE server transaction, Figure 7 with RFC 6026's Accepted state.
INVITE_SERVER: Table = {
    (S.PROCEEDING, I.REQUEST): ((A.RESEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.SEND_PROVISIONAL): ((A.SEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.SEND_SUCCESS): ((A.SEND_RESPONSE, A.START_L), S.ACCEPTED),
    (S.PROCEEDING, I.SEND_FAILURE): ((A.SEND_RESPONSE, A.START_G_H), S.COMPLETED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((), S.TERMINATED),
    # Accepted: the TU (the INVITE session, sip/invite_session.py) retransmits the 2xx
    # until the ACK (13.3.1.4) through SEND_SUCCESS; Timer L ends the wait (RFC 6026).
    (S.ACCEPTED, I.REQUEST): ((), S.ACCEPTED),  # INVITE retransmission: absorbed (RFC 6026 8.5)
    (S.ACCEPTED, I.SEND_SUCCESS): ((A.SEND_RESPONSE,), S.ACCEPTED),
    (S.ACCEPTED, I.ACK): ((A.STOP_RETRANSMIT,), S.CONFIRMED),  # timer L still runs
    (S.ACCEPTED, I.TIMER_L): ((A.TIMED_OUT,), S.TERMINATED),  # no ACK for the 2xx
    (S.COMPLETED, I.TIMER_G): ((A.RETRANSMIT_RESPONSE,), S.COMPLETED),
    (S.COMPLETED, I.REQUEST): ((A.RESEND_RESPONSE,), S.COMPLETED),
    (S.COMPLETED, I.ACK): ((A.STOP_RETRANSMIT, A.START_I), S.CONFIRMED),
    (S.COMPLETED, I.TIMER_H): ((A.TIMED_OUT,), S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((), S.TERMINATED),
    (S.CONFIRMED, I.ACK): ((), S.CONFIRMED),
    (S.CONFIRMED, I.TIMER_I): ((), S.TERMINATED),
    (S.CONFIRMED, I.TIMER_L): ((), S.TERMINATED),  # confirmed by the ACK of a 2xx
}

#: Non-INVITE server transaction, Figure 8.
NON_INVITE_SERVER: Table = {
    (S.TRYING, I.REQUEST): ((), S.TRYING),
    (S.TRYING, I.SEND_PROVISIONAL): ((A.SEND_RESPONSE,), S.PROCEEDING),
    (S.TRYING, I.SEND_SUCCESS): ((A.SEND_RESPONSE, A.START_J), S.COMPLETED),
    (S.TRYING, I.SEND_FAILURE): ((A.SEND_RESPONSE, A.START_J), S.COMPLETED),
    (S.PROCEEDING, I.REQUEST): ((A.RESEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.SEND_PROVISIONAL): ((A.SEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.SEND_SUCCESS): ((A.SEND_RESPONSE, A.START_J), S.COMPLETED),
    (S.PROCEEDING, I.SEND_FAILURE): ((A.SEND_RESPONSE, A.START_J), S.COMPLETED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((), S.TERMINATED),
    (S.COMPLETED, I.REQUEST): ((A.RESEND_RESPONSE,), S.COMPLETED),
    (S.COMPLETED, I.TIMER_J): ((), S.TERMINATED),
}

#: States in which the request may still be sent again (timers A and E) or answered
#: (a client INVITE's ACK for a 300-699 is built from it on the way out of these).
_REQUEST_NEEDED = frozenset({S.TRYING, S.CALLING, S.PROCEEDING})

_TIMER_INPUT = {name: Input[f"TIMER_{name}"] for name in (*"ABDEFGHIJKLM", "CANCEL")}


def _response_input(status: int, *, sending: bool) -> Input:
    if status < 200:
        return I.SEND_PROVISIONAL if sending else I.PROVISIONAL
    if status < 300:
        return I.SEND_SUCCESS if sending else I.SUCCESS
    return I.SEND_FAILURE if sending else I.FAILURE


@dataclass(eq=False, slots=True)  # thousands linger at once (Timers J, L, M: 32 s)
class Transaction:
    """What the four machines share: state, table, timers and output queues."""

    id: str
    request: Request | None
    """The request, until the final response: all a lingering transaction resends
    is ``_last_response``, so it does not keep the parsed message."""
    peer: Address
    table: Table
    state: State
    reliable: bool
    outbox: list[bytes] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    timers: dict[str, float] = field(default_factory=dict)
    _interval: float = T1
    _request_data: bytes | None = None
    """The request as first sent: Timers A and E send these same bytes again (17.1.1.2
    retransmits the request, not a new rendering of it; encoding once is also cheaper)."""
    _last_response: bytes | None = None
    to_tag: str | None = None
    """Server INVITE: the To tag of the responses sent (a CANCEL's 200 reuses it)."""
    method: str = ""
    call_id: str = ""
    cseq: int = 0
    """The request's method, Call-ID and CSeq number, kept after ``request`` is let go."""

    def __post_init__(self) -> None:
        assert self.request is not None
        self.method = self.request.method
        self.call_id = self.request.call_id
        self.cseq = self.request.cseq.seq

    @property
    def is_invite(self) -> bool:
        return self.method == "INVITE"

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def get_timer(self) -> float | None:
        return min(self.timers.values()) if self.timers else None

    def handle_timer(self, now: float) -> None:
        while self.timers and not self.terminated:
            name, due = min(self.timers.items(), key=lambda item: item[1])
            if due > now:
                return
            del self.timers[name]
            self._fire(_TIMER_INPUT[name], None, now)

    def transport_error(self, now: float) -> None:
        self._fire(I.TRANSPORT_ERROR, None, now)

    # --- the one place where the tables are applied -----------------------------
    def _fire(self, event: Input, message: Response | None, now: float) -> bool:
        """Apply ``event``; return False when the table has no such arrow."""
        entry = self.table.get((self.state, event))
        if entry is None:
            return False
        actions, next_state = entry
        for action in actions:
            self._perform(action, message, now, event)
        if next_state is not self.state:
            # A timer the new state has no arrow for can never matter again (Timer B
            # after a 1xx, Timer A after any response): drop it, so get_timer() is honest.
            self.timers = {
                name: due for name, due in self.timers.items()
                if (next_state, _TIMER_INPUT[name]) in self.table
            }
        self.state = next_state
        if next_state not in _REQUEST_NEEDED:
            self.request = None  # only retransmissions are left to absorb
            self._request_data = None
        if next_state is State.TERMINATED:
            self.events.append(TransactionTerminated(self.id))
        return True

    def _perform(self, action: Action, message: Response | None, now: float, event: Input) -> None:
        if action is A.PASS_TO_TU:
            assert message is not None
            self.events.append(ResponseReceived(message, self.id))
        elif action is A.RETRANSMIT_REQUEST:
            assert self._request_data is not None
            self.outbox.append(self._request_data)
            self._interval = self._interval * 2 if self.is_invite else min(self._interval * 2, T2)
            self.timers["A" if self.is_invite else "E"] = now + self._interval
        elif action is A.E_TO_T2:
            self._interval = T2
            self.timers["E"] = now + T2
        elif action is A.STOP_RETRANSMIT:
            for name in "AEG":
                self.timers.pop(name, None)
        elif action is A.TIMED_OUT:
            timer = event.name.removeprefix("TIMER_") if event.name.startswith("TIMER_") else "transport"
            self.events.append(TransactionTimedOut(self.id, self.method, timer))
        elif action is A.SEND_ACK:
            assert message is not None and self.request is not None
            self._last_response = bytes(build_non2xx_ack(self.request, message))
            self.outbox.append(self._last_response)
        elif action is A.RESEND_ACK:
            if self._last_response is not None:
                self.outbox.append(self._last_response)
        elif action is A.SEND_RESPONSE:
            assert message is not None
            self._last_response = bytes(message)
            self.outbox.append(self._last_response)
        elif action is A.RESEND_RESPONSE:
            if self._last_response is not None:
                self.outbox.append(self._last_response)
        elif action is A.RETRANSMIT_RESPONSE:
            if self._last_response is not None:
                self.outbox.append(self._last_response)
            self._interval = min(self._interval * 2, T2)
            self.timers["G"] = now + self._interval
        elif action is A.START_G_H or action is A.START_L:
            if not self.reliable and action is A.START_G_H:  # a 2xx is the TU's (13.3.1.4)
                self._interval = T1
                self.timers["G"] = now + T1
            self.timers["H" if action is A.START_G_H else "L"] = now + 64 * T1
        else:
            name, duration = _WAIT_TIMERS[action]
            self.timers[name] = now + (0.0 if self.reliable and name in _ZERO_WHEN_RELIABLE else duration)


#: Wait timers that only absorb retransmissions: zero over a reliable transport.
_ZERO_WHEN_RELIABLE = frozenset("DIJK")

_WAIT_TIMERS: dict[Action, tuple[str, float]] = {
    A.START_D: ("D", 32.0),  # at least 32 s for unreliable transports (17.1.1.2)
    A.START_I: ("I", T4),
    A.START_J: ("J", 64 * T1),
    A.START_K: ("K", T4),
    A.START_M: ("M", 64 * T1),
    A.START_CANCEL_WAIT: ("CANCEL", 64 * T1),
}


class ClientTransaction(Transaction):
    """INVITE (17.1.1) or non-INVITE (17.1.2) client transaction. Sends on creation."""

    __slots__ = ()

    def __init__(self, id: str, request: Request, peer: Address, now: float, *, reliable: bool) -> None:
        invite = request.method == "INVITE"
        super().__init__(
            id=id,
            request=request,
            peer=peer,
            table=INVITE_CLIENT if invite else NON_INVITE_CLIENT,
            state=State.CALLING if invite else State.TRYING,
            reliable=reliable,
        )
        self._request_data = bytes(request)
        self.outbox.append(self._request_data)
        if not reliable:
            self.timers["A" if invite else "E"] = now + T1
        self.timers["B" if invite else "F"] = now + 64 * T1

    def receive_response(self, response: Response, now: float) -> None:
        self._fire(_response_input(response.status, sending=False), response, now)

    def cancel_sent(self, now: float) -> None:
        """The TU sent a CANCEL for this INVITE: its final response gets 64*T1 (9.1)."""
        self._fire(I.CANCEL_SENT, None, now)


class ServerTransaction(Transaction):
    """INVITE (17.2.1) or non-INVITE (17.2.2) server transaction."""

    __slots__ = ()

    def __init__(self, id: str, request: Request, peer: Address, now: float, *, reliable: bool) -> None:
        invite = request.method == "INVITE"
        super().__init__(
            id=id,
            request=request,
            peer=peer,
            table=INVITE_SERVER if invite else NON_INVITE_SERVER,
            state=State.PROCEEDING if invite else State.TRYING,
            reliable=reliable,
        )

    def receive_request(self, request: Request, now: float) -> None:
        """A retransmission of our request, or (INVITE) the ACK for our final response."""
        self._fire(I.ACK if request.method == "ACK" else I.REQUEST, None, now)

    def send_response(self, response: Response, now: float) -> bool:
        """Send the TU's response; False when the state does not allow it (already final)."""
        return self._fire(_response_input(response.status, sending=True), response, now)

    @property
    def final_sent(self) -> bool:
        return self.state not in (State.TRYING, State.PROCEEDING)


def build_non2xx_ack(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 (17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and top Via (branch) as the INVITE,
    the To of the response (its tag), and the INVITE's Route headers.
    """
    headers = Headers()
    src = invite.headers
    top_via = src.values("via")[0]
    headers.add("Via", top_via)
    for name in ("max-forwards", "route"):
        for value in src.get_all(name):
            headers.add(name.title() if name != "max-forwards" else "Max-Forwards", value)
    headers.add("From", src.get("from") or "")
    headers.add("To", response.headers.get("to") or src.get("to") or "")
    headers.add("Call-ID", src.get("call-id") or "")
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    headers.add("Content-Length", "0")
    return Request("ACK", invite.uri, headers)
