"""Keep-alives toward the profiles that ask for them (``keepalive: {interval}``), on the
daemon's SIP endpoint; what to send and what to log is sip/keepalive.py's.

One task per profile: every ``interval`` it locates the target (an IP literal as it is,
a name by RFC 3263 through transport/dns.py: the first address) and sends a CRLF ping
on TCP/TLS or an OPTIONS on UDP. An OPTIONS answered (any final status: the peer is
there) within ``timeout`` is a success; none, or a transport error, is a failure; a
CRLF ping whose connection is gone by ``timeout`` is a failure. A run of failures is
logged once (``keepalive.failed``, a warning with the reason) and its end once
(``keepalive.recovered``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import Any

import structlog

from .sip.build import new_call_id, new_tag
from .sip.events import Address, Event, ResponseReceived, TransactionTimedOut
from .sip.keepalive import CRLF_PING, KeepaliveConfig, KeepaliveState, Kind, Report, kind_for
from .sip.message import Headers, Request
from .sip.uri import SipUri, parse_uri
from .transport.dns import DnsError, DnsSettings, Resolver

log = structlog.get_logger("voicegw.keepalives")


@dataclass(slots=True)
class _Pending:
    config: KeepaliveConfig
    address: Address
    deadline: asyncio.TimerHandle | None = None


class Keepalives:
    def __init__(self, endpoint: Any, sip: Any, configs: tuple[KeepaliveConfig, ...],
                 dns: DnsSettings | None = None) -> None:
        self.endpoint = endpoint
        self.sip = sip
        self.configs = configs
        self.loop = asyncio.get_running_loop()
        self.resolver = Resolver(dns or DnsSettings(), self.loop.time)
        self.states: dict[str, KeepaliveState] = {c.profile: KeepaliveState() for c in configs}
        self._pending: dict[str, _Pending] = {}
        self._given_up: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._checks: set[asyncio.TimerHandle] = set()

    def start(self) -> None:
        for config in self.configs:
            self._tasks.append(self.loop.create_task(self._run(config)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        for handle in [*self._checks, *(p.deadline for p in self._pending.values() if p.deadline)]:
            handle.cancel()
        self._checks.clear()
        self._pending.clear()

    async def _run(self, config: KeepaliveConfig) -> None:
        while True:
            address = await self._locate(config)
            if address is None:
                self._outcome(config, None, False, "dns")
            elif kind_for(address.transport) is Kind.CRLF:
                self._crlf(config, address)
            else:
                self._options(config, address)
            await asyncio.sleep(config.interval)

    # --- TCP/TLS: RFC 5626 3.5.1 ---------------------------------------------------------
    def _crlf(self, config: KeepaliveConfig, address: Address) -> None:
        if not self.endpoint.send_ping(CRLF_PING, address):
            self._outcome(config, address, False, f"no {address.transport} transport")
            return

        def check() -> None:
            self._checks.discard(handle)
            if self.endpoint.connected(address):
                self._outcome(config, address, True, "")
            else:
                self._outcome(config, address, False, "connection failed")

        handle = self.loop.call_later(config.timeout, check)
        self._checks.add(handle)

    # --- UDP: OPTIONS ----------------------------------------------------------------------
    def _options(self, config: KeepaliveConfig, address: Address) -> None:
        host = self.sip.addresses().advertised(address.host).sip_host
        request = Request("OPTIONS", config.target, Headers([
            ("From", f"<sip:voicegw@{host}>;tag={new_tag()}"),
            ("To", f"<{config.target}>"),
            ("Call-ID", new_call_id(host)),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
        ]))
        transaction = self.endpoint.send_request(request, address)
        if not transaction:
            self._outcome(config, address, False, "transport")
            return
        pending = _Pending(config, address)
        pending.deadline = self.loop.call_later(config.timeout, self._timed_out, transaction)
        self._pending[transaction] = pending

    def tap(self, event: Event) -> bool:
        """Take the answers to our OPTIONS (the daemon asks before the engine)."""
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
            self._outcome(pending.config, pending.address, True, "")
        else:
            self._outcome(pending.config, pending.address, False,
                          "transport" if event.timer == "transport" else "timeout")
        return True

    def _timed_out(self, transaction: str) -> None:
        pending = self._pending.pop(transaction, None)
        if pending is None:
            return
        self._given_up.add(transaction)
        if len(self._given_up) > 10_000:
            self._given_up.clear()
        self._outcome(pending.config, pending.address, False, "timeout")

    def _outcome(self, config: KeepaliveConfig, address: Address | None, ok: bool, reason: str) -> None:
        state = self.states[config.profile]
        report = state.answered() if ok else state.failed()
        where = str(address) if address is not None else config.target
        if report is Report.FAILING:
            log.warning("keepalive.failed", profile=config.profile, peer=where, reason=reason)
        elif report is Report.RECOVERED:
            log.info("keepalive.recovered", profile=config.profile, peer=where)

    async def _locate(self, config: KeepaliveConfig) -> Address | None:
        uri = parse_uri(config.target)
        assert isinstance(uri, SipUri)
        host = uri.host.strip("[]")
        default_port = 5061 if config.transport == "tls" else 5060
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return Address(config.transport, host, uri.port or default_port)
        try:
            targets = await self.resolver.locate(uri, (config.transport,))
        except DnsError:
            return None
        first = targets[0]
        return Address(first.transport, first.address, first.port, name=uri.host)  # name: TLS SNI


__all__ = ["Keepalives"]
