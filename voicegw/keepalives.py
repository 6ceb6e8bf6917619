"""Keep-alives toward the profiles that ask for them (``keepalive: {interval}``), on the
daemon's SIP endpoint; what to send and what to log is sip/keepalive.py's.

One task per profile: every ``interval`` it locates the target (an IP literal as it is,
a name by RFC 3263 through transport/dns.py: the first address) and sends a CRLF ping
on TCP/TLS or an OPTIONS on UDP (pinger.py). An OPTIONS answered (any final status: the peer is
there) within ``timeout`` is a success; none, or a transport error, is a failure; a
CRLF ping whose connection is gone by ``timeout`` is a failure. A run of failures is
logged once (``keepalive.failed``, a warning with the reason) and its end once
(``keepalive.recovered``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from .pinger import OptionsPinger, ping_auth
from .sip.events import Address, Event
from .sip.keepalive import CRLF_PING, KeepaliveConfig, KeepaliveState, Kind, Report, kind_for
from .sip.uri import SipUri, parse_uri
from .transport.dns import DnsError, DnsSettings, Resolver

log = structlog.get_logger("voicegw.keepalives")


class Keepalives:
    def __init__(self, endpoint: Any, sip: Any, configs: tuple[KeepaliveConfig, ...],
                 dns: DnsSettings | None = None) -> None:
        self.endpoint = endpoint
        self.sip = sip
        self.configs = configs
        self.loop = asyncio.get_running_loop()
        self.resolver = Resolver(dns or DnsSettings(), self.loop.time)
        self.states: dict[str, KeepaliveState] = {c.profile: KeepaliveState() for c in configs}
        self.pinger = OptionsPinger(endpoint, sip)
        self.auths = {c.profile: ping_auth(c.account) for c in configs}
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
        for handle in self._checks:
            handle.cancel()
        self._checks.clear()
        self.pinger.stop()

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
        self.pinger.ping(config.target, address, config.timeout,
                         lambda result: self._outcome(config, address, result.answered, result.reason),
                         auth=self.auths[config.profile])

    def tap(self, event: Event) -> bool:
        """Take the answers to our OPTIONS (the daemon asks before the engine)."""
        return self.pinger.tap(event)

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
        try:
            return (await self.resolver.addresses(uri, config.transport))[0]
        except DnsError:
            return None


__all__ = ["Keepalives"]
