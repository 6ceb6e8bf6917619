"""The plain settings the engine reads: built from the config in one place
(``config/convert.engine_config``), read by the engine (engine/b2bua.py,
transfer.py, warm.py). Neither side imports the other for them: config/ does not
import the engine, and the engine does not import config/ (DESIGN.md: config
reaches the core as plain dataclasses). Pure data: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from .flow.fallback_policy import FallbackPolicy
from .flow.router import DEFAULT_CHANNEL, CallFacts, Channel, Router
from .flow.runner import DEMO_FLOW, Flow
from .sip.advertise import AddressPolicy
from .sip.caller_id import CallerIdPolicy
from .sip.digest_client import Account
from .sip.gateway_list import GatewaySpec
from .sip.uri import SipUri, parse_uri
from .transport.dns import DnsSettings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PeerPolicy:
    """What one profile says about INVITEs to it."""

    account: Account | None = None
    """Digest credentials for its 401/407 (profile ``auth``)."""
    outbound_proxy: str | None = None
    """A SIP URI: pre-loaded as ``Route: <proxy;lr>`` and where the INVITE is sent."""
    gateways: str | None = None
    """The carrier profile whose gateway health filters the targets (``health:``)."""
    gateway_list: tuple[GatewaySpec, ...] = ()
    """The carrier's ``gateways:``: where its INVITEs go instead of the located URI."""

    def route(self) -> str | None:
        """The pre-loaded Route value (RFC 3261 8.1.2; ``lr``: loose routing, 16.12)."""
        if self.outbound_proxy is None:
            return None
        uri = self.outbound_proxy
        return f"<{uri}>" if ";lr" in uri else f"<{uri};lr>"


@dataclass(frozen=True)
class PeerPolicies:
    """Dialled URI host (lower case) and port (None: any port) -> policy."""

    by_host: Mapping[tuple[str, int | None], PeerPolicy] = field(default_factory=dict)
    by_source: tuple[tuple[IPNetwork, Account], ...] = ()
    """A carrier profile's ``addresses`` and ``auth``: the account that answers that
    carrier's challenges to our requests on the calls it sends us (BYE, REFER...)."""

    lines: Mapping[str, str] = field(default_factory=dict)
    """The ``line`` of each registration's Contact -> its carrier profile's name: a call
    whose Request-URI carries it arrived on that registered binding."""
    carriers: tuple[tuple[IPNetwork, str], ...] = ()
    """Each carrier profile's ``addresses`` -> its name, in profile order."""
    accounts: Mapping[str, Account] = field(default_factory=dict)
    """Carrier profile name -> its ``auth``."""

    def line_of(self, uri: object) -> str | None:
        """The carrier a Request-URI's ``line`` parameter names (a call to the binding
        it registered), or None."""
        params = getattr(uri, "params", None)
        token = params.get("line") if params else None
        return self.lines.get(token) if token else None

    def carrier_of(self, uri: object, host: str) -> str | None:
        """The carrier a new call belongs to: the one whose registered binding it was
        sent to, else the first whose ``addresses`` hold its source address."""
        by_line = self.line_of(uri)
        if by_line is not None:
            return by_line
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        return next((name for network, name in self.carriers if address in network), None)

    def for_uri(self, uri: SipUri) -> PeerPolicy | None:
        host = uri.host.strip("[]").lower()
        return self.by_host.get((host, uri.port)) or self.by_host.get((host, None))

    def for_source(self, host: str) -> Account | None:
        """The account of the carrier a call came from: the first carrier profile with
        ``auth`` whose ``addresses`` hold the call's source address."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        return next((account for network, account in self.by_source if address in network), None)

    @staticmethod
    def key(uri_text: str) -> tuple[str, int | None]:
        """The key of a profile's URI (a trunk template's ``{number}`` may be in it)."""
        uri = parse_uri(uri_text.replace("{number}", "0"))
        assert isinstance(uri, SipUri)
        return uri.host.strip("[]").lower(), uri.port


@dataclass
class WarmSettings:
    hold: str = "bot"
    """What the caller hears meanwhile: bot (stays with the bot), music, tts, silence."""
    hold_text: str = "Please hold while I connect you to an agent."
    hold_file: str | None = None
    briefing_text: str = "Incoming transfer. {summary}"
    """Spoken to the agent; ``{summary}`` and ``{caller}`` come from the call's context."""
    briefing_file: str | None = None
    bot_briefing_seconds: float = 0.0
    """> 0: after the prompts, bridge the bot and the agent for this long so the bot
    speaks the handover; the caller hears the hold audio (or silence) meanwhile."""
    confirm: bool = False
    """Wait for the agent's DTMF accept key before connecting."""
    accept_digit: str = "1"
    decline_digit: str = "2"
    confirm_timeout: float = 15.0
    auto_complete: bool = True
    """Connect as soon as the agent is briefed (and accepted, with ``confirm``);
    otherwise wait for an explicit complete (flow, API, CLI)."""
    complete_by: str = "bridge"
    """bridge: voicegw bridges caller and agent; refer: REFER with Replaces on the caller's leg."""


@dataclass(frozen=True)
class LegPolicy:
    """How voicegw places an outgoing leg to one profile (issue 12 item 7)."""

    transport: str | None = None
    """udp, tcp or tls when the URI names none (``sips:``/``;transport=`` win); None: UDP."""
    srtp: str = "off"
    """Our offers: ``off`` RTP/AVP; ``required`` RTP/SAVP with an SDES key (RFC 4568),
    a plain answer fails the leg (488); ``optional`` RTP/AVP with an ``a=crypto`` line
    (best-effort SRTP): SRTP if the answer keys it, else plain RTP."""
    delayed_offer: bool = False
    """Send the INVITE without SDP (RFC 3261 13.2.1): the peer offers in its 2xx (or a
    reliable 1xx) and voicegw answers in the ACK (or the PRACK)."""
    early_media: str = "relay"
    """``relay``: a 183 with SDP from an agent leg is relayed to the caller in place of
    voicegw's ringback (a carrier's announcement, its ringback); ``ringback``: the
    caller hears voicegw's waiting audio whatever the leg sends before it answers."""

    def __post_init__(self) -> None:
        if self.srtp not in ("off", "optional", "required"):
            raise ValueError(f"srtp {self.srtp!r}: off, optional or required")
        if self.early_media not in ("relay", "ringback"):
            raise ValueError(f"early_media {self.early_media!r}: relay or ringback")


@dataclass
class TransferConfig:
    allow: tuple[str, ...] = ()
    """Patterns (shell-style) a target must match, over the E.164 number ("+4930*")
    or the SIP URI ("sip:*@pbx.example.com"). Empty: no transfer is allowed."""
    trunk: str | None = None
    """Carrier trunk for phone numbers: a URI template with ``{number}``."""
    country_code: str = ""
    """Turns national numbers ("030 1234") into E.164 ("+49301234") when set ("49")."""
    ring_timeout: float = 30.0
    ringback: str = "ringback"
    """What the caller hears while the agent rings: ringback, hold or silence."""
    context_headers: dict[str, str] = field(default_factory=lambda: {
        "X-VG-Caller": "caller", "X-VG-Call-ID": "call_id",
    })
    """Header name -> context key (caller, call_id, bot_session, summary, transcript_url...)."""
    agent_context_headers: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    """Agent profile URI -> its context_headers: used for a bot's or the API's transfer
    to that URI (a flow node has them already); other targets get ``context_headers``."""
    legs: dict[str, LegPolicy] = field(default_factory=dict)
    """Agent or bot profile URI -> how voicegw's legs to that URI are placed (its
    profile's ``transport``, ``srtp``...), when not the default."""
    trunk_legs: LegPolicy = field(default_factory=lambda: LegPolicy())
    """The same for legs to phone numbers (``trunk``): the default carrier's."""
    bye_destination_header: str = "X-Transfer-Destination"
    """On a BYE hand-back, the header that names where the upstream should route."""
    refer_sub: bool = True
    """False: REFER with ``Refer-Sub: false`` (RFC 4488), the 2xx is all we learn."""
    refer_timeout: float = 32.0
    """A REFER with no final response in this time has failed (``timeout``)."""
    notify_timeout: float = 60.0
    """From the 202 to the final NOTIFY: covers the target ringing."""
    bot_refer_method: str = "invite"
    """How a REFER from the bot is carried out: invite (voicegw bridges) or refer."""
    bot_refer_methods: tuple[str, ...] = ()
    """Several methods to try in order for a bot's REFER (e.g. refer, invite); empty:
    ``bot_refer_method`` alone."""
    bot_fallback: FallbackPolicy | None = None
    """A FallbackPolicy for the bot's REFERs; None: the next method on any failure."""
    bot_listens: bool = False
    """After an INVITE transfer the bot stays on the call, muted, hearing caller and
    agent mixed (for transcription); otherwise it gets BYE."""
    refer_embedded_headers: tuple[str, ...] = ("User-to-User",)
    """Context headers sent inside the Refer-To URI of a REFER (so the carrier copies
    them into the INVITE it sends) rather than on the REFER itself."""
    retry_prompt: str | None = "Please hold while we connect you."
    """Played to the caller before the next method is tried."""
    warm: WarmSettings = field(default_factory=WarmSettings)
    """Hold audio, briefing, confirmation and completion of warm transfers."""
    caller_id: CallerIdPolicy = field(default_factory=CallerIdPolicy)
    """Who agent legs say is calling (the default carrier's ``caller_id``); an agent
    profile's own one wins (TransferOptions.caller_id)."""


@dataclass
class EngineConfig:
    host: str = "127.0.0.1"
    """The address SIP is bound to."""
    addresses: AddressPolicy | None = None
    """RTP's bind address and which addresses each peer is told (NAT); None: ``host``
    for everything (see :attr:`policy`)."""
    sip_port: int = 5060
    tls_port: int = 5061
    """Our SIP-over-TLS port, for Via on TLS legs."""
    rtp_port_min: int = 20000
    rtp_port_max: int = 21998
    trusted_sources: tuple[str, ...] = ("127.0.0.0/8",)
    """Carriers/SBCs allowed to place calls (CIDRs); others get 403."""
    transfer_id_prefix: str = ""
    """Put before every transfer id (``t1``, ``t2``...): a worker's name and a dash under
    ``--workers``, so the ids the one control API routes by are unique across workers."""
    auth_realm: str = "voicegw"
    auth_users: dict[str, str] = field(default_factory=dict)
    """Digest credentials (user -> password) that let a source outside
    ``trusted_sources`` place calls (RFC 3261 22, RFC 8760 SHA-256 then MD5). Empty:
    untrusted sources get 403."""
    bot_uri: str | None = None
    """The bot's SIP URI (host an IP literal); None runs ``flow`` locally."""
    bot_answer_timeout: float = 30.0
    media_inactivity_timeout: float = 60.0
    """Seconds without RTP from a leg that should be sending before the call ends
    (``media_timeout``); 0: never (engine/media_watch.py)."""
    media_hold_timeout: float = 600.0
    """The same while a leg is on hold (sendonly/inactive); 0: never."""
    flow: Flow = DEMO_FLOW
    router: Router | None = None
    """Picks each new call's channel (``routes:``); None: every call is on channel
    ``default`` with ``flow`` (or ``bot_uri``)."""
    tts_cache_dir: str = "var/tts"
    transfer: TransferConfig = field(default_factory=TransferConfig)
    peers: PeerPolicies = field(default_factory=PeerPolicies)
    """Per dialled host: the profile's digest account, outbound proxy and gateways
    (the dial path: engine/destinations.py)."""
    dns: DnsSettings = field(default_factory=DnsSettings)
    """The daemon's ``dns:`` section: how names in targets are resolved (RFC 3263)."""

    def channel_for(self, facts: CallFacts) -> Channel:
        """The channel a new call is on: the first route it matches (flow/router.py)."""
        if self.router is None:
            return Channel(DEFAULT_CHANNEL, self.flow, self.bot_uri)
        return self.router.route(facts)

    @property
    def policy(self) -> AddressPolicy:
        return self.addresses or AddressPolicy(self.host)


__all__ = ["EngineConfig", "TransferConfig", "WarmSettings"]
