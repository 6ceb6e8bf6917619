"""Which channel a new call belongs to, and so which flow it runs: a pure router.

How to read it: the daemon's ``routes:`` (docs/configuration.md) become an ordered
tuple of :class:`Route`; :meth:`Router.route` takes what the caller's INVITE says
(:class:`CallFacts`) and returns the :class:`Channel` of the first route that
matches. A route matches when every condition it has matches; a route with no
condition matches every call, so it is the default. Without one the router's
``default`` (channel ``default``: the default flow) takes what no route matched.

Conditions, each a Python regular expression matched against the *whole* value
(``re.fullmatch``: ``\\+4930.*`` matches ``+49301234``, ``4930`` does not):

- ``called``: the Request-URI's user (sip:) or number (tel:): who was called
  (RFC 3261 8.1.1.1: the Request-URI names the called party, and a proxy may
  rewrite it, so it is what the carrier routed on);
- ``to``: the user of the To URI (RFC 3261 8.1.1.2: the logical recipient, as
  the caller dialled it; the Request-URI may differ after retargeting);
- ``headers``: header name -> pattern; any line of that header matching counts,
  a missing header never matches;
- ``carrier``: not a pattern but a carrier profile's name; the call matches when
  it was sent to the binding that profile registered (its Request-URI's ``line``,
  sip/registration.py), else when its source address is in the profile's ``addresses``.

No I/O and no clock: the config builds the routes once (config/convert.py), the
engine asks for each new call (engine/b2bua.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..sip.errors import SipError
from ..sip.message import Request
from ..sip.uri import SipUri, TelUri
from .runner import Flow

DEFAULT_CHANNEL = "default"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ChannelTransfer:
    """A channel integration's settings for the transfers no flow node describes: a
    bot's REFER and an operator's (API) transfer. The target is theirs; the rest is
    the integration's (a flow's agent_transfer nodes have it built in already)."""

    methods: tuple[str, ...] = ()
    """The integration's ``method``, or its ``attempts``' methods in order: what a bot's
    REFER tries, each with the bot's target; empty: the engine's
    (``calls.bot_refer_methods``)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Fixed headers for the transfer request, besides the context headers."""
    destination: str | None = None
    """For a hand-back by BYE: the destination header's value."""


@dataclass(frozen=True)
class Channel:
    """Where a call goes: its flow, or straight to a bot."""

    name: str
    """Shown on the call (CallStarted.channel), in the records and the metrics."""
    flow: Flow
    """The flow the call runs (its agent_transfer nodes built with the channel's
    integration)."""
    bot_uri: str | None = None
    """Not None: the call goes straight to this bot (the flow starts with a bot node,
    or ``calls.bot_uri``) and the engine bridges it before answering the caller."""
    integration: str | None = None
    """The channel's agent-transfer integration (for display; already in ``flow``)."""
    transfer: ChannelTransfer | None = None
    """The integration's settings for a bot's REFER and API transfers; None: none."""


@dataclass(frozen=True)
class CallFacts:
    """What a new call says about itself, as the routes read it."""

    called: str
    """The Request-URI's user (sip:/sips:) or number (tel:); "" when it has none."""
    to: str
    """The To URI's user; "" when it has none."""
    source: str
    """The IP address the INVITE came from."""
    header: Callable[[str], list[str]] = field(default=lambda name: [])
    """Every line of the named header (case-insensitive; compact forms too)."""
    line: str | None = None
    """The carrier whose registered binding the INVITE was sent to (its Request-URI's
    ``line``); None for a call matched by its source address."""

    @classmethod
    def of(cls, invite: Request, source_host: str, line: str | None = None) -> CallFacts:
        try:
            called = _user(invite.request_uri())
        except SipError:  # the UA core checked it; a URI we cannot read routes as ""
            called = ""
        return cls(called, _user(invite.to.uri), source_host, invite.headers.get_all, line)


def _user(uri: Any) -> str:
    if isinstance(uri, TelUri):
        return uri.number
    if isinstance(uri, SipUri):
        return uri.user_unescaped or ""
    return ""


@dataclass(frozen=True)
class Route:
    """One entry of ``routes:``; every condition given must match."""

    channel: Channel
    called: re.Pattern[str] | None = None
    to: re.Pattern[str] | None = None
    headers: tuple[tuple[str, re.Pattern[str]], ...] = ()
    carrier: str | None = None
    """A carrier profile's name (for display); its ``networks`` decide."""
    networks: tuple[Network, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.called is None and self.to is None and not self.headers and self.carrier is None

    def matches(self, facts: CallFacts) -> bool:
        if self.called is not None and self.called.fullmatch(facts.called) is None:
            return False
        if self.to is not None and self.to.fullmatch(facts.to) is None:
            return False
        for name, pattern in self.headers:
            if not any(pattern.fullmatch(value) for value in facts.header(name)):
                return False
        if self.carrier is None:
            return True
        if facts.line is not None:  # sent to a carrier's registered binding: that carrier's
            return facts.line == self.carrier
        return _within(facts.source, self.networks)


def _within(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # not an IP literal: no carrier profile lists it
        return False
    return any(address in network for network in networks)


@dataclass(frozen=True)
class Router:
    """The routes in order, first match wins; ``default`` when none matches."""

    default: Channel
    routes: tuple[Route, ...] = ()

    def route(self, facts: CallFacts) -> Channel:
        for route in self.routes:
            if route.matches(facts):
                return route.channel
        return self.default

    def channels(self) -> list[Channel]:
        """Every channel a call can land in, each once, in route order."""
        seen: dict[str, Channel] = {}
        for channel in [*(r.channel for r in self.routes), self.default]:
            seen.setdefault(channel.name, channel)
        return list(seen.values())


def compile_pattern(text: str) -> re.Pattern[str]:
    """A route's pattern, compiled; ``re.error`` says what is wrong with it."""
    return re.compile(text)


__all__ = ["DEFAULT_CHANNEL", "CallFacts", "Channel", "Route", "Router", "compile_pattern"]
