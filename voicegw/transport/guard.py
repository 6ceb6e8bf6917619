"""The guard: what a message must get past before the UA core parses it.

A SIP port facing the Internet is scanned and flooded within minutes. The guard is
the cheap first line, consulted by the driver (``endpoint.py``) for every datagram
and every framed TCP message, before any parsing:

- **scanner user agents** (sipvicious' ``friendly-scanner``, ``sipcli``,
  ``VaxSIPUserAgent``...) are dropped silently, whatever the source: a scanner that
  gets no answer learns nothing, and moves on. The source is banned as well
  (``ban_scanners``), so a scanner that changes its User-Agent after the first probe
  stays unanswered.
- **per-source rate** (Kamailio's pike): a token bucket per source IP address holds
  ``rate_requests`` tokens and refills ``rate_requests`` per ``rate_window`` seconds;
  a message that finds it empty is dropped and the source is banned for
  ``ban_seconds``: everything it sends meanwhile is dropped unread. Sources in the
  ``whitelist`` (the trusted carriers) are never rate limited nor banned.
- **global overload** (``admit_call``, asked by the UA core for every new INVITE):
  503 + Retry-After while the event loop lags (``max_loop_lag``, measured by
  :class:`LoopLagProbe`), while ``max_calls`` calls are up, or while one
  non-whitelisted source already has ``max_calls_per_source``. In-dialog requests
  are never refused here: established calls always get their BYEs and re-INVITEs
  through. The core's own ``max_transactions`` 503 stays where it is.

The per-message cost is one dict look-up, a bounded regex search of the header
section and a few float operations; memory is bounded by ``max_sources`` entries
(idle ones are swept, then the oldest evicted). Everything takes ``now`` as an
argument: tests drive it with a virtual clock. Limits and defaults are documented
in docs/security.md and docs/limits.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from ..engine.events import CallEnded, CallEvent, CallStarted
from ..sip.events import Address
from ..sip.message import Request
from ..sip.refusal import Cause, Refused

log = structlog.get_logger("voicegw.guard")

#: User-Agent fragments of SIP scanners and war-dialers, matched case-insensitively
#: anywhere in the User-Agent value (Kamailio's sample config drops the first three).
SCANNER_USER_AGENTS: tuple[str, ...] = (
    "friendly-scanner",  # sipvicious svmap/svwar/svcrack default
    "friendly-request",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "vaxsipuseragent",
    "iwar",
    "sivus",
    "sundayddr",
    "siparmyknife",
    "pplsip",
)


@dataclass(frozen=True, slots=True)
class GuardConfig:
    enabled: bool = True
    """False: every message passes and ``admit_call`` admits every call."""
    rate_requests: int = 200
    """N: messages one source may send within ``rate_window`` (the bucket's size)."""
    rate_window: float = 2.0
    """T, seconds: the bucket refills ``rate_requests`` tokens per ``rate_window``
    (100 messages/s sustained by default, bursts up to 200)."""
    ban_seconds: float = 60.0
    """B, seconds: how long a source that emptied its bucket (or sent a scanner's
    User-Agent) is ignored. Not extended by what it sends meanwhile."""
    whitelist: tuple[str, ...] | None = None
    """Addresses/CIDRs never rate limited or banned (trusted carriers, the bot, the
    agents' PBX). None: the daemon uses ``calls.trusted_sources`` plus the bot's and
    the agent's hosts."""
    scanner_user_agents: tuple[str, ...] = SCANNER_USER_AGENTS
    """Lower-case User-Agent fragments dropped silently; () disables the check."""
    ban_scanners: bool = True
    """Also ban (for ``ban_seconds``) a non-whitelisted source that sent a scanner UA."""
    max_sources: int = 20_000
    """Source addresses tracked at once (about 200 bytes each)."""
    max_calls: int = 1_000
    """Calls up at once (setup or connected); past it new INVITEs get 503. 0: no limit."""
    max_calls_per_source: int = 20
    """Calls up at once from one non-whitelisted source address; past it 503. 0: no limit."""
    max_loop_lag: float = 0.25
    """Seconds the event loop may run late before new INVITEs get 503. 0: not checked."""
    overload_hold: float = 2.0
    """Seconds new INVITEs keep getting 503 after the last late loop tick."""


@dataclass(slots=True)
class GuardStatistics:
    """Counters for metrics and the daemon's stop line."""

    passed: int = 0
    dropped_scanner: int = 0
    dropped_rate: int = 0
    """Messages that found their source's bucket empty (each one starts a ban)."""
    dropped_banned: int = 0
    """Messages from a source while it was banned."""
    bans: int = 0
    evicted: int = 0
    """Source entries evicted (not swept idle) because ``max_sources`` was reached."""
    rejected_overload: int = 0
    rejected_max_calls: int = 0
    rejected_source_calls: int = 0
    sources: int = 0
    banned_now: int = 0
    calls: int = 0
    max_loop_lag_seen: float = 0.0
    overloaded: bool = False


class _Source:
    """One source address: its token bucket and its ban."""

    __slots__ = ("banned_until", "last", "tokens", "trusted")

    def __init__(self, tokens: float, now: float, trusted: bool) -> None:
        self.tokens = tokens
        self.last = now
        self.trusted = trusted
        self.banned_until = 0.0


class Guard:
    """The per-message filter and the new-call admission; plain, clock passed in."""

    def __init__(self, config: GuardConfig | None = None,
                 whitelist: Iterable[str] | None = None) -> None:
        """``whitelist`` (CIDRs) applies when ``config.whitelist`` is None."""
        self.config = config = config or GuardConfig()
        networks = config.whitelist if config.whitelist is not None else tuple(whitelist or ())
        self._whitelist = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._scanner = _scanner_pattern(config.scanner_user_agents)
        self._rate = config.rate_requests / config.rate_window
        self._sources: dict[str, _Source] = {}
        self._calls: dict[str, str] = {}  # call key -> caller's source host
        self._calls_per_source: dict[str, int] = {}
        self._overloaded_until = 0.0
        self.stats = GuardStatistics()

    # --- per message (the driver, before the core) -----------------------------------
    def check(self, data: bytes, host: str, now: float) -> bool:
        """True: hand ``data`` to the core; False: drop it silently."""
        config = self.config
        if not config.enabled:
            return True
        source = self._sources.get(host)
        if source is None:
            source = self._add(host, now)
        elif source.banned_until:
            if now < source.banned_until:
                self.stats.dropped_banned += 1
                return False
            source.banned_until = 0.0  # served its time: a full bucket again
            source.tokens = float(config.rate_requests)
            source.last = now
        if self._scanner is not None:
            end = data.find(b"\r\n\r\n", 0, 8192)
            if self._scanner.search(data, 0, end if end >= 0 else 8192) is not None:
                self.stats.dropped_scanner += 1
                if config.ban_scanners and not source.trusted:
                    self._ban(host, source, now, "scanner")
                return False
        if source.trusted:
            self.stats.passed += 1
            return True
        tokens = source.tokens + (now - source.last) * self._rate
        if tokens > config.rate_requests:
            tokens = float(config.rate_requests)
        source.last = now
        if tokens < 1.0:
            source.tokens = tokens
            self.stats.dropped_rate += 1
            self._ban(host, source, now, "rate")
            return False
        source.tokens = tokens - 1.0
        self.stats.passed += 1
        return True

    def banned(self, host: str, now: float) -> bool:
        source = self._sources.get(host)
        return source is not None and now < source.banned_until

    def is_whitelisted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self._whitelist)

    # --- new calls (the UA core, for each INVITE outside a dialog) ----------------------
    def admit_call(self, request: Request, source: Address, now: float) -> Refused | None:
        """None to let a new INVITE through; a refusal (503, its cause in the Reason
        header) for the core to answer."""
        config = self.config
        if not config.enabled:
            return None
        if now < self._overloaded_until:
            self.stats.rejected_overload += 1
            return Refused(Cause.OVERLOAD)
        if config.max_calls and len(self._calls) >= config.max_calls:
            self.stats.rejected_max_calls += 1
            return Refused(Cause.CALL_LIMIT)
        if (config.max_calls_per_source and not self._trusted(source.host)
                and self._calls_per_source.get(source.host, 0) >= config.max_calls_per_source):
            self.stats.rejected_source_calls += 1
            return Refused(Cause.SOURCE_LIMIT)
        return None

    def on_call_event(self, call: Any, now: float, event: CallEvent) -> None:
        """An engine timeline listener: counts the calls up, per caller source."""
        if isinstance(event, CallStarted):
            if call.key in self._calls:
                return
            host = call.caller.peer.host
            self._calls[call.key] = host
            self._calls_per_source[host] = self._calls_per_source.get(host, 0) + 1
        elif isinstance(event, CallEnded):
            host = self._calls.pop(call.key, None)
            if host is None:
                return
            left = self._calls_per_source.get(host, 1) - 1
            if left > 0:
                self._calls_per_source[host] = left
            else:
                self._calls_per_source.pop(host, None)

    def note_loop_lag(self, lag: float, now: float) -> None:
        """How late the loop ran a timer (from :class:`LoopLagProbe`)."""
        self.stats.max_loop_lag_seen = max(self.stats.max_loop_lag_seen, lag)
        limit = self.config.max_loop_lag
        if limit and lag > limit:
            if now >= self._overloaded_until:
                log.warning("guard.overloaded", loop_lag=round(lag, 3))
            self._overloaded_until = now + self.config.overload_hold

    def overloaded(self, now: float) -> bool:
        return now < self._overloaded_until

    def statistics(self, now: float | None = None) -> GuardStatistics:
        stats = self.stats
        stats.sources = len(self._sources)
        stats.calls = len(self._calls)
        if now is not None:
            stats.banned_now = sum(1 for s in self._sources.values() if now < s.banned_until)
            stats.overloaded = self.overloaded(now)
        return dataclasses.replace(stats)

    # --- internals -----------------------------------------------------------------------
    def _trusted(self, host: str) -> bool:
        source = self._sources.get(host)
        return source.trusted if source is not None else self.is_whitelisted(host)

    def _add(self, host: str, now: float) -> _Source:
        if len(self._sources) >= self.config.max_sources:
            self._sweep(now)
        source = _Source(float(self.config.rate_requests), now, self.is_whitelisted(host))
        self._sources[host] = source
        return source

    def _ban(self, host: str, source: _Source, now: float, reason: str) -> None:
        source.banned_until = now + self.config.ban_seconds
        self.stats.bans += 1
        # one line per ban, never per dropped message: a flood is not a log flood
        log.warning("guard.banned", source=host, reason=reason, seconds=self.config.ban_seconds)

    def _sweep(self, now: float) -> None:
        """Forget idle sources (bucket full again, no ban); if that frees less than an
        eighth of the table, evict the oldest entries, banned or not."""
        window = self.config.rate_window
        idle = [host for host, s in self._sources.items()
                if now >= s.banned_until and now - s.last >= window]
        for host in idle:
            del self._sources[host]
        target = self.config.max_sources - max(1, self.config.max_sources // 8)
        excess = len(self._sources) - target
        if excess <= 0:
            return
        # oldest first (dicts keep insertion order), bans last: a flood of new
        # (spoofed) addresses must not be a way to lift a ban
        unbanned = [h for h, s in self._sources.items() if now >= s.banned_until]
        victims = unbanned[:excess]
        if len(victims) < excess:
            victims += [h for h, s in self._sources.items() if now < s.banned_until][: excess - len(victims)]
        for host in victims:
            del self._sources[host]
        self.stats.evicted += len(victims)


def _scanner_pattern(fragments: tuple[str, ...]) -> re.Pattern[bytes] | None:
    """One regex over the header section: a User-Agent line naming a scanner.

    ``message-header = field-name HCOLON value`` with ``HCOLON = *( SP / HTAB ) ":" SWS``
    (RFC 3261 25.1): whitespace may precede the colon. User-Agent has no compact form.
    """
    if not fragments:
        return None
    names = b"|".join(re.escape(f.lower().encode()) for f in fragments)
    return re.compile(rb"\nuser-agent[ \t]*:[^\r\n]*?(?:" + names + rb")", re.IGNORECASE)


class LoopLagProbe:
    """Measures how late the event loop runs a timer and tells the guard.

    A timer every ``interval`` seconds; the lag is how far past its deadline it ran.
    Under CPU overload (or a long synchronous stall) the lag grows, and the guard
    answers new INVITEs 503 until it shrinks again.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, guard: Guard, interval: float = 0.1) -> None:
        self._loop = loop
        self._guard = guard
        self._interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        self._due = self._loop.time() + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._loop.time()
        self._guard.note_loop_lag(max(0.0, now - self._due), now)
        self._due = now + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)


def uri_hosts(uris: Iterable[str | None]) -> tuple[str, ...]:
    """The IP-literal hosts of SIP URIs (for the default whitelist: bot, agent)."""
    hosts: list[str] = []
    for uri in uris:
        if not uri:
            continue
        match = re.match(r"sips?:(?:[^@;>]*@)?(\[[^\]]+\]|[^:;>?]+)", uri)
        if match is None:
            continue
        host = match.group(1).strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        hosts.append(host)
    return tuple(hosts)
