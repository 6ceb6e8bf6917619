"""Carrier gateway health: OPTIONS pings (RFC 3261 11) on the daemon's SIP endpoint, and
the one place that knows which gateways are up (sip/gateway_health.py decides).

For each carrier profile with ``health:`` a task locates its gateways every ``interval``
seconds and sends one OPTIONS to each (pinger.py): the entries of its ``gateways:``
list, each located on its own and pinged with its own URI, else the addresses of the
health target (RFC 3263 through transport/dns.py: each address of the answer, in its
order, is a gateway; an IP target is one gateway). A final answer within ``timeout`` is
an answer, none is a miss (the pending transaction is left to the core's timer F; its
late answer is ignored). The dial path reads the verdicts through
:class:`GatewayStates` and skips the gateways marked down (engine/destinations.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import structlog

from .pinger import OptionsPinger, PingResult, ping_auth
from .sip.events import Address, Event
from .sip.gateway_health import GatewayHealth, Health, TrunkHealthConfig
from .sip.request_auth import RequestAuth
from .sip.uri import SipUri, parse_uri
from .transport.dns import DnsError, DnsSettings, Resolver

log = structlog.get_logger("voicegw.gateways")


class GatewayStates(Protocol):
    """Read-only: what the dial path may ask about a trunk's gateways."""

    def usable(self, trunk: str) -> list[Address]:
        """The trunk's gateways not known to be down, in the resolver's order."""
        ...

    def state(self, trunk: str, address: Address) -> Health:
        """One gateway's verdict (UNKNOWN for one never pinged)."""
        ...


class Gateways:
    """See the module docstring; implements :class:`GatewayStates`."""

    def __init__(self, endpoint: Any, sip: Any, configs: tuple[TrunkHealthConfig, ...],
                 dns: DnsSettings | None = None) -> None:
        self.endpoint = endpoint
        self.sip = sip
        self.configs = configs
        self.loop = asyncio.get_running_loop()
        self.resolver = Resolver(dns or DnsSettings(), self.loop.time)
        self.health: dict[str, dict[Address, GatewayHealth]] = {c.trunk: {} for c in configs}
        self.order: dict[str, list[Address]] = {c.trunk: [] for c in configs}
        self.uris: dict[tuple[str, Address], str] = {}
        """The OPTIONS Request-URI of each gateway (a listed gateway's own)."""
        self.dns_error: dict[str, str] = {}
        self.pinger = OptionsPinger(endpoint, sip)
        self.auths: dict[tuple[str, Address], RequestAuth | None] = {}
        """Each gateway's challenge answers (its own nonce to answer ahead)."""
        self._tasks: list[asyncio.Task[None]] = []

    # --- GatewayStates -------------------------------------------------------------------
    def usable(self, trunk: str) -> list[Address]:
        gateways = self.health.get(trunk, {})
        return [a for a in self.order.get(trunk, []) if a in gateways and gateways[a].usable]

    def state(self, trunk: str, address: Address) -> Health:
        found = self.health.get(trunk, {}).get(address)
        return found.state if found is not None else Health.UNKNOWN

    def trunk_up(self, trunk: str) -> bool:
        """At least one gateway answers (the metric ``voicegw_trunk_up``)."""
        return any(g.state is Health.UP for g in self.health.get(trunk, {}).values())

    # --- lifecycle -----------------------------------------------------------------------
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
        self.pinger.stop()

    async def _run(self, config: TrunkHealthConfig) -> None:
        while True:
            found = await self._locate(config)
            if found is not None:
                self.order[config.trunk] = [address for address, _ in found]
                gateways = self.health[config.trunk]
                for address, target in found:
                    gateways.setdefault(address, GatewayHealth(config.settings))
                    self.uris[config.trunk, address] = target
                    self._ping(config, address, target)
            await asyncio.sleep(config.settings.interval)

    # --- pings ---------------------------------------------------------------------------
    def _ping(self, config: TrunkHealthConfig, address: Address, target: str) -> None:
        def done(result: PingResult) -> None:
            if result.status is None:
                self._missed(config.trunk, address, result.reason)
            else:
                gateway = self.health[config.trunk][address]
                self._log(config.trunk, address, gateway.answered(result.status, result.rtt_ms))

        self.pinger.ping(target, address, config.settings.timeout, done,
                         extra=(("Accept", "application/sdp"),), auth=self._auth(config, address))

    def _auth(self, config: TrunkHealthConfig, address: Address) -> RequestAuth | None:
        key = (config.trunk, address)
        if key not in self.auths:
            self.auths[key] = ping_auth(config.account)
        return self.auths[key]

    def tap(self, event: Event) -> bool:
        """Take the answers to our OPTIONS (the daemon asks before the engine)."""
        return self.pinger.tap(event)

    def _missed(self, trunk: str, address: Address, why: str) -> None:
        self._log(trunk, address, self.health[trunk][address].missed(why))

    def _log(self, trunk: str, address: Address, changed: Any) -> None:
        if changed is None:
            return
        gateway = self.health[trunk][address]
        log.info("gateway.up" if changed.after is Health.UP else "gateway.down", trunk=trunk,
                 gateway=str(address), was=changed.before.value, last_status=gateway.last_status)

    # --- locating ------------------------------------------------------------------------
    async def _locate(self, config: TrunkHealthConfig) -> list[tuple[Address, str]] | None:
        """Each gateway with the Request-URI of its OPTIONS: the listed gateways' own
        (each located on its own), else every address of ``target``. None when nothing
        resolves (logged once per reason)."""
        if config.gateways:
            found: list[tuple[Address, str]] = []
            failed: list[str] = []
            for spec in config.gateways:
                try:
                    addresses = await self.resolver.addresses(spec.sip_uri, spec.transport)
                except DnsError as error:
                    failed.append(str(error))
                    continue
                found += [(a, spec.uri) for a in addresses if a not in (f for f, _ in found)]
            self._dns_failed(config.trunk, "; ".join(failed))
            return found or None
        uri = parse_uri(config.target)
        assert isinstance(uri, SipUri)
        try:
            targets = await self.resolver.addresses(uri, config.transport)
        except DnsError as error:
            self._dns_failed(config.trunk, error.reason)
            return None
        self._dns_failed(config.trunk, "")
        return [(a, config.target) for a in targets]

    def _dns_failed(self, trunk: str, reason: str) -> None:
        if not reason:
            self.dns_error.pop(trunk, None)
            return
        if self.dns_error.get(trunk) != reason:
            log.warning("gateway.dns_failed", trunk=trunk, reason=reason)
        self.dns_error[trunk] = reason

    # --- for the API and the metrics -----------------------------------------------------
    def statuses(self) -> list[dict[str, Any]]:
        rows = []
        for config in self.configs:
            gateways = self.health[config.trunk]
            for address in self.order[config.trunk] or list(gateways):
                gateway = gateways.get(address)
                if gateway is None:
                    continue
                rows.append({"trunk": config.trunk, "target": self.uris.get((config.trunk, address), config.target),
                             "gateway": str(address),
                             "state": gateway.state.value, "last_status": gateway.last_status,
                             "last_rtt_ms": gateway.last_rtt_ms, "pings": gateway.pings,
                             "dns_error": self.dns_error.get(config.trunk, "")})
            if not gateways and config.trunk in self.dns_error:
                rows.append({"trunk": config.trunk, "target": config.target, "gateway": "",
                             "state": "unknown", "last_status": "dns", "last_rtt_ms": None, "pings": 0,
                             "dns_error": self.dns_error[config.trunk]})
        return rows


__all__ = ["GatewayStates", "Gateways"]
