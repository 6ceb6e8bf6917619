"""Out-of-dialog OPTIONS pings (RFC 3261 11) on the daemon's SIP endpoint, each with its
own deadline: what the keep-alives (keepalives.py) and the carrier gateways' health
(gateways.py) both send and wait for.

:meth:`OptionsPinger.ping` sends one OPTIONS and calls its ``done`` exactly once with
a :class:`PingResult`: the final answer (any status: the peer is there), or a miss
(``transport``: not sent or the transport failed; ``timeout``: no final answer within
``timeout`` seconds). The answers come back through :meth:`OptionsPinger.tap`, which the
daemon asks before the engine; a late answer to a ping given up on is taken and dropped
(the transaction itself is left to the core's timer F, 17.1.2.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .sip.build import new_call_id, new_tag
from .sip.events import Address, Event, ResponseReceived, TransactionTimedOut
from .sip.message import Headers, Request

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
    done: Callable[[PingResult], None]
    sent_at: float
    deadline: asyncio.TimerHandle | None = None


class OptionsPinger:
    def __init__(self, endpoint: Any, sip: Any) -> None:
        self.endpoint = endpoint
        self.sip = sip
        self.loop = asyncio.get_running_loop()
        self._pending: dict[str, _Pending] = {}
        self._given_up: set[str] = set()

    def ping(self, target: str, address: Address, timeout: float, done: Callable[[PingResult], None],
             extra: tuple[tuple[str, str], ...] = ()) -> None:
        """OPTIONS ``target`` at ``address``; ``done`` gets the result (at once when it
        could not be sent)."""
        host = self.sip.addresses().advertised(address.host).sip_host
        request = Request("OPTIONS", target, Headers([
            ("From", f"<sip:voicegw@{host}>;tag={new_tag()}"),
            ("To", f"<{target}>"),
            ("Call-ID", new_call_id(host)),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
            *extra,
        ]))
        transaction = self.endpoint.send_request(request, address)
        if not transaction:
            done(PingResult(None, "transport"))
            return
        pending = _Pending(done, self.loop.time())
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
            pending.done(PingResult(event.response.status, "", rtt))
        else:
            pending.done(PingResult(None, "transport" if event.timer == "transport" else "timeout"))
        return True

    def _timed_out(self, transaction: str) -> None:
        pending = self._pending.pop(transaction, None)
        if pending is None:
            return
        self._given_up.add(transaction)  # its late answer is ours to drop
        if len(self._given_up) > GIVEN_UP_MAX:
            self._given_up.clear()
        pending.done(PingResult(None, "timeout"))

    def stop(self) -> None:
        """Forget every ping in flight (their ``done`` is not called)."""
        for pending in self._pending.values():
            if pending.deadline is not None:
                pending.deadline.cancel()
        self._pending.clear()


__all__ = ["OptionsPinger", "PingResult"]
