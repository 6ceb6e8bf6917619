"""The daemon's trunk registrations: the asyncio side of sip/registration.py.

One :class:`Registrations` per daemon keeps every carrier profile's ``register:`` up on
the daemon's SIP endpoint: it sends what each machine asks for, hands the machine the
answers of its own transactions (a tap on the daemon's events, like the carrier
probe's), arms the one timer each machine asks for on the loop's clock, and gives up on
a REGISTER after ``timeout`` seconds. At shutdown :meth:`Registrations.stop` removes
every binding (Expires: 0) and waits for the answers, bounded.

The registrar's name is located as every SIP target is (RFC 3263, transport/dns.py);
Contact carries the address the registrar should reach us at (sip/advertise.py: the
external host unless the registrar is in ``local_nets``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import asdict
from typing import Any

import structlog

from .sip.events import Address, Event, ResponseReceived, TransactionTimedOut
from .sip.message import Request
from .sip.registration import Registration, RegistrationConfig, RegState
from .sip.uri import SipUri, parse_uri
from .transport.dns import DnsError, DnsSettings, Resolver

log = structlog.get_logger("voicegw.registrar")

#: how long the un-REGISTERs at shutdown may take in all (a dead registrar must not
#: hold the stop)
STOP_WAIT = 2.0


class _Entry:
    """One registration and its I/O state."""

    def __init__(self, config: RegistrationConfig) -> None:
        self.config = config
        self.machine: Registration | None = None
        self.peer: Address | None = None
        self.transaction: str | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.last_rtt_ms: float | None = None
        self.sent_at = 0.0


class Registrations:
    """See the module docstring. ``endpoint`` is the daemon's SipEndpoint."""

    def __init__(self, endpoint: Any, sip: Any, configs: tuple[RegistrationConfig, ...],
                 dns: DnsSettings | None = None) -> None:
        self.endpoint = endpoint
        self.sip = sip
        self.loop = asyncio.get_running_loop()
        self.entries = [_Entry(c) for c in configs]
        self.resolver = Resolver(dns or DnsSettings(), self.loop.time)
        self._by_transaction: dict[str, _Entry] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        for entry in self.entries:
            self._spawn(self._start(entry))

    async def _start(self, entry: _Entry) -> None:
        peer = await self._locate(entry)
        host = (self.sip.addresses().advertised(peer.host).sip_host if peer is not None
                else self.sip.external_host or self.sip.host)
        transport = entry.config.transport
        bound = {"tcp": self.endpoint.tcp_address, "tls": self.endpoint.tls_address}.get(
            transport, self.endpoint.udp_address)
        port = bound.port if bound is not None else 5060
        line = f";line={entry.config.line}" if entry.config.line else ""  # calls to it are this trunk's
        entry.machine = Registration(entry.config, f"sip:{entry.config.contact_user}@{host}:{port}{line}", host)
        log.info("register.start", trunk=entry.config.trunk, registrar=entry.config.registrar,
                 aor=entry.config.aor, expires=entry.config.expires)
        await self._send(entry, entry.machine.start(self.loop.time()))

    async def stop(self) -> None:
        """Remove every binding (Expires: 0), waiting at most STOP_WAIT for the answers."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        now = self.loop.time()
        for entry in self.entries:
            if entry.timer is not None:
                entry.timer.cancel()
            if entry.machine is not None:
                requests = entry.machine.stop(now)
                if requests:
                    log.info("register.remove", trunk=entry.config.trunk)
                self._send_now(entry, requests)
        until = now + STOP_WAIT
        while self.loop.time() < until and any(
                e.machine is not None and e.machine.state is RegState.UNREGISTERING for e in self.entries):
            await asyncio.sleep(0.05)
        for entry in self.entries:
            if entry.deadline is not None:
                entry.deadline.cancel()

    # --- the daemon's events -------------------------------------------------------------
    def tap(self, event: Event) -> bool:
        """Take the answers to our REGISTERs (the daemon asks before the engine)."""
        if not isinstance(event, (ResponseReceived, TransactionTimedOut)):
            return False
        entry = self._by_transaction.get(event.transaction_id)
        if entry is None:
            return False
        machine = entry.machine
        assert machine is not None
        now = self.loop.time()
        if isinstance(event, ResponseReceived):
            if event.response.status < 200:
                return True
            del self._by_transaction[event.transaction_id]
            if event.transaction_id != entry.transaction:
                return True  # an answer to a REGISTER we already gave up on
            entry.last_rtt_ms = round((now - entry.sent_at) * 1000, 1)
            requests = machine.received(event.response, now)
        else:
            self._by_transaction.pop(event.transaction_id, None)
            if event.transaction_id != entry.transaction:
                return True
            requests = machine.timed_out(now, "transport" if event.timer == "transport" else "timeout")
        self._after(entry, requests)
        return True

    # --- sending and timers --------------------------------------------------------------
    def _after(self, entry: _Entry, requests: list[Request]) -> None:
        if requests:
            self._spawn(self._send(entry, requests))
        else:
            entry.transaction = None
            if entry.deadline is not None:
                entry.deadline.cancel()
            self._report(entry)
            self._arm(entry)

    async def _send(self, entry: _Entry, requests: list[Request]) -> None:
        if not requests:
            self._report(entry)
            self._arm(entry)
            return
        if entry.peer is None or not self._is_ip(entry):
            entry.peer = await self._locate(entry)
        if entry.peer is None:  # the name did not resolve: a failure like no answer
            assert entry.machine is not None
            self._after(entry, entry.machine.timed_out(self.loop.time(), "dns"))
            return
        self._send_now(entry, requests)

    def _send_now(self, entry: _Entry, requests: list[Request]) -> None:
        if not requests or entry.peer is None:
            return
        request = requests[0]
        transaction = self.endpoint.send_request(request, entry.peer)
        entry.transaction = transaction or None
        entry.sent_at = self.loop.time()
        if transaction:
            self._by_transaction[transaction] = entry
        if entry.deadline is not None:
            entry.deadline.cancel()
        entry.deadline = self.loop.call_later(entry.config.timeout, self._no_answer, entry, transaction)
        log.debug("register.sent", trunk=entry.config.trunk, cseq=request.headers.get("cseq"),
                  expires=request.headers.get("expires"),
                  authorized="authorization" in request.headers or "proxy-authorization" in request.headers)

    def _no_answer(self, entry: _Entry, transaction: str) -> None:
        if entry.transaction != transaction or entry.machine is None:
            return
        self._by_transaction.pop(transaction, None)
        self._after(entry, entry.machine.timed_out(self.loop.time(), "timeout"))

    def _arm(self, entry: _Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        machine = entry.machine
        if machine is None or self._stopping or (when := machine.get_timer()) is None:
            return
        entry.timer = self.loop.call_at(when, self._fire, entry)

    def _fire(self, entry: _Entry) -> None:
        entry.timer = None
        assert entry.machine is not None
        requests = entry.machine.handle_timer(self.loop.time())
        if requests:
            self._spawn(self._send(entry, requests))
        else:
            self._arm(entry)

    def _report(self, entry: _Entry) -> None:
        machine = entry.machine
        assert machine is not None
        status = machine.status()
        if machine.state is RegState.REGISTERED:
            log.info("register.registered", trunk=status.trunk, expires=status.expires,
                     refresh_in=round((status.refresh_at or 0) - self.loop.time(), 1))
        elif machine.state is RegState.FAILED:
            log.warning("register.failed", trunk=status.trunk, status=status.last_status,
                        reason=status.reason, failures=status.failures,
                        retry_in=round((status.retry_at or 0) - self.loop.time(), 1))
        elif machine.state is RegState.UNREGISTERED:
            log.info("register.removed", trunk=status.trunk, status=status.last_status)

    # --- locating the registrar ----------------------------------------------------------
    def _is_ip(self, entry: _Entry) -> bool:
        uri = parse_uri(entry.config.registrar)
        try:
            ipaddress.ip_address(getattr(uri, "host", "").strip("[]"))
        except ValueError:
            return False
        return True

    async def _locate(self, entry: _Entry) -> Address | None:
        uri = parse_uri(entry.config.registrar)
        assert isinstance(uri, SipUri)
        try:  # the first target (RFC 3263; an IP literal as it is), its name kept for TLS SNI
            return (await self.resolver.addresses(uri, entry.config.transport))[0]
        except DnsError as error:
            log.warning("register.dns_failed", trunk=entry.config.trunk, reason=error.reason)
            return None

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- for the API ---------------------------------------------------------------------
    def statuses(self) -> list[dict[str, Any]]:
        """One row per registration; times in seconds from now (the loop's clock)."""
        now = self.loop.time()
        rows = []
        for entry in self.entries:
            if entry.machine is None:
                rows.append({"trunk": entry.config.trunk, "registrar": entry.config.registrar,
                             "aor": entry.config.aor, "state": "unregistered", "expires": None,
                             "refresh_in": None, "retry_in": None, "registered_for": None,
                             "last_status": None, "reason": "", "failures": 0, "last_rtt_ms": None})
                continue
            status = asdict(entry.machine.status())
            for key, out in (("refresh_at", "refresh_in"), ("retry_at", "retry_in")):
                at = status.pop(key)
                status[out] = None if at is None else round(max(0.0, at - now), 1)
            since = status.pop("registered_at")
            status["registered_for"] = None if since is None else round(now - since, 1)
            status["last_rtt_ms"] = entry.last_rtt_ms
            rows.append(status)
        return rows


__all__ = ["Registrations"]
