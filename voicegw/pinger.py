"""Out-of-dialog OPTIONS pings (RFC 3261 11) on the daemon's SIP endpoint, each with its
own deadline: what the keep-alives (keepalives.py) and the carrier gateways' health
(gateways.py) both send and wait for.

:meth:`OptionsPinger.ping` sends one OPTIONS and calls its ``done`` exactly once with
a :class:`PingResult`: the final answer (any status: the peer is there), or a miss
(``transport``: not sent or the transport failed; ``timeout``: no final answer within
``timeout`` seconds). The answers come back through :meth:`OptionsPinger.tap`, which the
daemon asks before the engine; a late answer to a ping given up on is taken and dropped
(the transaction itself is left to the core's timer F, 17.1.2.2).

A ping with ``auth`` (the profile's account: a carrier that demands digest auth on
OPTIONS, RFC 3261 22.2, issue 12) carries the credentials of the last challenge ahead
(22.3, the nonce's next count) and answers a 401/407: the challenge itself is the
ping's result (an answer: the peer's stack is alive, whatever it thinks of us), and
the OPTIONS goes again with CSeq+1 and the answer, as such a carrier expects; at most
two challenges per ping (sip/request_auth.py). What comes back to a retry is dropped,
but a refusal (credentials refused, a challenge we cannot answer) is logged once per
run of refusals for the target (``options.auth_refused``, with the reason, never the
credentials) and its end once (``options.auth_accepted``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from .sip.build import new_call_id, new_tag
from .sip.digest_client import Account, DigestClient, Refused
from .sip.events import Address, Event, ResponseReceived, TransactionTimedOut
from .sip.message import Headers, Request, Response
from .sip.request_auth import RequestAuth

log = structlog.get_logger("voicegw.pinger")

#: late answers remembered at most: past it, the oldest reach the engine (which drops
#: responses of no call)
GIVEN_UP_MAX = 10_000


@dataclass(frozen=True, slots=True)
class PingResult:
    status: int | None
    """The final answer's status; None for a miss."""
    reason: str = ""
    """Why it missed: ``transport`` or ``timeout``."""
    rtt_ms: float | None = None
    """From sending to the final answer, in milliseconds (the loop's clock)."""

    @property
    def answered(self) -> bool:
        return self.status is not None


@dataclass(slots=True)
class _Pending:
    done: Callable[[PingResult], None] | None
    """None for a retry with credentials: its answer is not the ping's result."""
    sent_at: float
    request: Request
    address: Address
    auth: RequestAuth | None = None
    deadline: asyncio.TimerHandle | None = None


def ping_auth(account: Account | None) -> RequestAuth | None:
    """The challenge answers for one ping target's ``auth`` (None: none)."""
    return RequestAuth(DigestClient(account, lambda: secrets.token_hex(8))) if account is not None else None


class OptionsPinger:
    def __init__(self, endpoint: Any, sip: Any) -> None:
        self.endpoint = endpoint
        self.sip = sip
        self.loop = asyncio.get_running_loop()
        self._pending: dict[str, _Pending] = {}
        self._given_up: set[str] = set()
        self._refused: set[str] = set()  # targets whose last retry was refused (logged once)

    def ping(self, target: str, address: Address, timeout: float, done: Callable[[PingResult], None],
             extra: tuple[tuple[str, str], ...] = (), auth: RequestAuth | None = None) -> None:
        """OPTIONS ``target`` at ``address``; ``done`` gets the result (at once when it
        could not be sent). ``auth``: the target's challenge answers (one per target,
        so its cached challenge is sent ahead on the next ping)."""
        host = self.sip.addresses().advertised(address.host).sip_host
        request = Request("OPTIONS", target, Headers([
            ("From", f"<sip:voicegw@{host}>;tag={new_tag()}"),
            ("To", f"<{target}>"),
            ("Call-ID", new_call_id(host)),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
            *extra,
        ]))
        if auth is not None:
            auth.preload(request)  # 22.3: the realm's last challenge, answered ahead
        transaction = self.endpoint.send_request(request, address)
        if not transaction:
            done(PingResult(None, "transport"))
            return
        pending = _Pending(done, self.loop.time(), request, address, auth)
        pending.deadline = self.loop.call_later(timeout, self._timed_out, transaction)
        self._pending[transaction] = pending

    def tap(self, event: Event) -> bool:
        """Take the answers to our pings (the daemon asks before the engine)."""
        if not isinstance(event, (ResponseReceived, TransactionTimedOut)):
            return False
        transaction = event.transaction_id
        if isinstance(event, ResponseReceived) and event.response.status < 200:
            return transaction in self._pending
        pending = self._pending.pop(transaction, None)
        if pending is None:
            if transaction in self._given_up:
                self._given_up.discard(transaction)
                return True
            return False
        if pending.deadline is not None:
            pending.deadline.cancel()
        if isinstance(event, ResponseReceived):
            rtt = round((self.loop.time() - pending.sent_at) * 1000, 1)
            if pending.done is not None:
                pending.done(PingResult(event.response.status, "", rtt))
            if pending.auth is not None:
                self._answered(pending, event.response)
        elif pending.done is not None:
            pending.done(PingResult(None, "transport" if event.timer == "transport" else "timeout"))
        return True

    def _answered(self, pending: _Pending, response: Response) -> None:
        """A final answer to a ping of a target with credentials: a challenge is answered
        (22.2, a new transaction: CSeq+1, new branch); the outcome of a retry is logged
        when it changes (refused / accepted)."""
        assert pending.auth is not None
        target = pending.request.uri
        if response.status not in (401, 407):
            if target in self._refused:
                self._refused.discard(target)
                log.info("options.auth_accepted", target=target, status=response.status)
            return
        again = pending.auth.retry(pending.request, response, pending.request.cseq.seq + 1)
        if isinstance(again, Refused):
            if target not in self._refused:
                self._refused.add(target)
                log.warning("options.auth_refused", target=target, status=response.status, reason=again.reason)
            return
        transaction = self.endpoint.send_request(again, pending.address)
        if transaction:  # its answer is taken by tap(); none: timer F's time-out is
            self._pending[transaction] = _Pending(None, self.loop.time(), again, pending.address, pending.auth)

    def _timed_out(self, transaction: str) -> None:
        pending = self._pending.pop(transaction, None)
        if pending is None:
            return
        self._given_up.add(transaction)  # its late answer is ours to drop
        if len(self._given_up) > GIVEN_UP_MAX:
            self._given_up.clear()
        if pending.done is not None:
            pending.done(PingResult(None, "timeout"))

    def stop(self) -> None:
        """Forget every ping in flight (their ``done`` is not called)."""
        for pending in self._pending.values():
            if pending.deadline is not None:
                pending.deadline.cancel()
        self._pending.clear()


__all__ = ["OptionsPinger", "PingResult", "ping_auth"]
