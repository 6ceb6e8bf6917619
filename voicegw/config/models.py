"""The config files as pydantic models: ``voicegw.yaml``, ``sip_profiles/*.yaml`` and
``flows/*.yaml`` (docs/configuration.md describes every field).

Strict: an unknown key is an error, and a value is never coerced from another type
(``port: "5060"`` is refused). These models check each file on its own; what needs
several files at once (a flow naming a profile, an integration naming a target, a
goto cycle) is checked by :mod:`voicegw.config.checks`. Nothing outside config/
sees these classes: :mod:`voicegw.config.convert` turns them into the engine's plain
dataclasses.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)

from ..sip.errors import SipError
from ..sip.gateway_list import named_transport, typed_uri
from ..sip.uri import SipUri, parse_uri
from ..transport.limits import TransportLimits
from ..transport.tls import TlsConfig, TlsConfigError
from .defaults import CallConfig, DaemonConfig
from .types import (
    Cidr,
    ContextKey,
    Digits,
    DtmfKey,
    FailureKey,
    HeaderName,
    IpAddress,
    MatchKey,
    Name,
    Pattern,
    Port,
    RoutePattern,
    Seconds,
    SipUriText,
    Target,
    TrunkTemplate,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Method = Literal["invite", "refer", "bye", "warm"]

# =====================================================================================
# Prompts and fallback rules (shared by flows, integrations and profiles)
# =====================================================================================


class Prompt(Strict):
    """Audio for the caller: ``text`` for the TTS engine or a WAV ``file``; a plain
    string is text."""

    text: str | None = None
    file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_of(self) -> Prompt:
        if (self.text is None) == (self.file is None):
            raise ValueError("a prompt has exactly one of text or file")
        if not (self.text or self.file or "").strip():
            raise ValueError("a prompt cannot be empty")
        if self.file is not None and not self.file.lower().endswith(".wav"):
            raise ValueError(f"{self.file!r}: prompt files are WAV (.wav)")
        return self


class RuleBody(Strict):
    """What to do about a failure: optionally a prompt, then the action."""

    action: Literal["goto", "end", "retry", "next"]
    node: Name | None = None
    """The flow node for ``goto``."""
    prompt: Prompt | None = None
    end_message: Prompt | None = None
    """For ``end``: played after ``prompt``, just before the BYE."""
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 1
    """For ``retry``/``next``: new attempts this rule may start."""

    @model_validator(mode="after")
    def _consistent(self) -> RuleBody:
        if self.action == "goto" and self.node is None:
            raise ValueError("goto needs a node")
        if self.action != "goto" and self.node is not None:
            raise ValueError(f"node is only for goto, not {self.action}")
        if self.end_message is not None and self.action != "end":
            raise ValueError("end_message is only for end")
        return self


class Rule(RuleBody):
    match: Annotated[list[MatchKey], Field(min_length=1)]
    """One status or a list: ``486``, ``4xx``, ``timeout``, ``[405, 501]``."""

    @field_validator("match", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return value if isinstance(value, list) else [value]


class Fallback(Strict):
    """A fallback policy (TRANSFERS.md): rules by the most specific match."""

    rules: list[Rule] = []
    default: RuleBody | None = None
    """When no rule matches; omitted: the error prompt, then end the call."""
    max_total_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    on_exhausted: RuleBody | None = None
    """When a retry/next is over a limit: goto or end (default: the default rule)."""


class Attempt(Strict):
    method: Method
    target: Target | None = None
    """Default: the transfer's target."""


class TransferSettings(Strict):
    """Agent-transfer settings: an integration's, overridden field by field by a node."""

    method: Method | None = None
    """invite (bridge, default), refer (hand-off on the caller's leg) or bye (hand-back)."""
    target: Target | None = None
    """An agent profile name, a phone number or a SIP URI."""
    destination: str | None = None
    """For bye: the value of the destination header (default: the target's URI)."""
    headers: dict[HeaderName, str] | None = None
    """Fixed headers added to the transfer request."""
    error_prompt: Prompt | None = None
    """Played when the transfer fails, before the on_failure node."""
    on_failure: dict[FailureKey, Name] | None = None
    """Shorthand fallback: status (code, 4xx, timeout...) or default -> node."""
    fallback: Fallback | None = None
    attempts: Annotated[list[Attempt], Field(min_length=1, max_length=10)] | None = None
    """Methods/targets in order, for ``next`` rules (REFER first, then INVITE)."""


class Integration(TransferSettings):
    """A named agent-transfer channel in voicegw.yaml."""

    description: str | None = None


class RouteMatch(Strict):
    """A route's conditions, every one given must match (flow/router.py); none: every
    call (the default route)."""

    called: RoutePattern | None = None
    """The Request-URI's user (or tel: number): the number the carrier routed."""
    to: RoutePattern | None = None
    """The To URI's user: the number as the caller dialled it."""
    carrier: Name | None = None
    """A carrier profile: the call came from one of its ``addresses``."""
    headers: dict[HeaderName, RoutePattern] = {}
    """Header name -> pattern a line of that header must match."""


class Route(Strict):
    """One entry of ``routes:``: calls that match go to ``channel``."""

    channel: Name
    """The channel's name: on the call, in the records, the metrics and the report."""
    match: RouteMatch = RouteMatch()
    flow: Name | None = None
    """The flow the channel's calls run; null: ``default_flow``."""
    integration: Name | None = None
    """Agent-transfer settings for the channel's calls: wins over the flow's
    ``integration`` and ``default_integration``; a node's own ``integration`` and
    fields win over it."""
    description: str | None = None


# =====================================================================================
# voicegw.yaml
# =====================================================================================


class SipSection(Strict):
    host: IpAddress = "127.0.0.1"
    port: Port = 5060
    transports: Annotated[list[Literal["udp", "tcp"]], Field(min_length=1)] = ["udp", "tcp"]
    udp_port: Port | None = None
    """Overrides ``port`` for UDP."""
    tcp_port: Port | None = None
    external_host: IpAddress | None = None
    """NAT: the public address put in Contact and Via (and Record-Route, none added
    yet) towards peers outside ``local_nets``; null: no NAT."""

    @field_validator("transports")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a transport is listed twice")
        return value


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    ipaddress.ip_address(host.strip("[]"))
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]


class RtpengineSection(Strict):
    """rtpengine as the media plane (``media.backend: rtpengine``; docs/scaling.md)."""

    ng: HostPort = "127.0.0.1:2223"
    """rtpengine's ng control port (its ``--listen-ng``)."""
    dtmf_listen: HostPort | None = None
    """Where voicegw hears rtpengine's DTMF events (its ``--dtmf-log-dest``); None: no
    DTMF from callers (flows that wait for digits time out)."""
    files: str = "var/rtpengine"
    """Folder of the WAV files rtpengine plays (prompts, TTS, ringback, hold):
    rtpengine must be able to read it (same host)."""


class MediaSection(Strict):
    backend: Literal["relay", "rtpengine"] = "relay"
    """relay: RTP through voicegw's own process; rtpengine: through rtpengine."""
    rtpengine: RtpengineSection = RtpengineSection()
    host: IpAddress | None = None
    """RTP bind address; default: sip.host."""
    external_host: IpAddress | None = None
    """NAT: the public address in SDP o=/c= towards peers outside ``local_nets``;
    default: sip.external_host."""
    rtp_port_min: Annotated[int, Field(ge=1024, le=65535)] = 20000
    rtp_port_max: Annotated[int, Field(ge=1024, le=65535)] = 21998
    inactivity_timeout: Annotated[float, Field(ge=0)] = 60.0
    """Seconds without RTP from a leg that should be sending before the call ends with
    cause media_timeout (Asterisk's rtptimeout, rtpengine's timeout); 0: never."""
    hold_timeout: Annotated[float, Field(ge=0)] = 600.0
    """The same while a leg is on hold (sendonly/inactive); 0: never."""

    @model_validator(mode="after")
    def _range(self) -> MediaSection:
        if self.rtp_port_max - self.rtp_port_min < 2:
            raise ValueError(
                f"rtp_port_min {self.rtp_port_min} must be below rtp_port_max {self.rtp_port_max} "
                "by 2 at least (one RTP + RTCP pair)"
            )
        return self


class StoreSection(Strict):
    """store: the records' backend (config/defaults.StoreConfig says each field)."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: NonEmpty | None = None
    synchronous: Literal["normal", "full"] | None = None
    dsn: NonEmpty | None = Field(default=None, repr=False)
    dsn_file: NonEmpty | None = None
    pool_size: Annotated[int, Field(ge=1, le=100)] = 4
    worker_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")] | None = None

    @model_validator(mode="after")
    def _backend(self) -> StoreSection:
        if self.backend == "sqlite":
            if self.dsn is not None or self.dsn_file is not None:
                raise ValueError("dsn and dsn_file are for backend: postgres (sqlite uses path)")
            return self
        if self.path is not None:
            raise ValueError("path is for backend: sqlite (postgres uses dsn or dsn_file)")
        if self.synchronous is not None:
            raise ValueError("synchronous is for backend: sqlite (postgres: the server's synchronous_commit)")
        if (self.dsn is None) == (self.dsn_file is None):
            raise ValueError("backend postgres needs one of dsn or dsn_file")
        if self.dsn is not None:
            from ..store.postgres import check_dsn

            if (problem := check_dsn(self.dsn)) is not None:
                raise ValueError(f"dsn is not a PostgreSQL connection string: {problem}")
        return self


class PathsSection(Strict):
    records_dir: str = "var"
    tts_cache: str = "var/tts"


def _section(cls: type, name: str, special: dict[str, Any], exclude: tuple[str, ...] = (),
             extra: dict[str, Any] | None = None) -> type[BaseModel]:
    """A strict section model with the fields of the dataclass ``cls`` (the plain
    config the daemon reads, config/defaults.py): same names and defaults, so a field
    added there is configurable here at once. ``special`` gives a field a checked
    type; others get one from their annotation (numbers >= 0, tuples as lists)."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = ...
        if isinstance(default, tuple):
            default = list(default)
        fields[f.name] = (special.get(f.name, _annotation(hints[f.name])), default)
    fields.update(extra or {})
    return create_model(name, __base__=Strict, **fields)


def _annotation(hint: Any) -> Any:
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return _annotation(rest[0]) | None
    if hint is bool:
        return bool
    if hint is int:
        return Annotated[int, Field(ge=0)]
    if hint is float:
        return Annotated[float, Field(ge=0)]
    if typing.get_origin(hint) is tuple:
        return list[_annotation(args[0])]  # type: ignore[misc]
    return hint


def _address_or_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or CIDR network") from None
    return value


NonEmpty = Annotated[str, Field(min_length=1)]
#: calls: settings that have moved to another section.
MOVED = {"rtp_port_min": "media.rtp_port_min", "rtp_port_max": "media.rtp_port_max",
         "tts_cache_dir": "paths.tts_cache", "media_inactivity_timeout": "media.inactivity_timeout",
         "media_hold_timeout": "media.hold_timeout"}

CallsSection = _section(CallConfig, "CallsSection", {
    "bot_uri": SipUriText | None,
    "agent_uri": SipUriText | None,
    "trusted_sources": list[Cidr],
    "bot_answer_timeout": Seconds,
    "transfer_allow": list[Pattern],
    "trunk": TrunkTemplate | None,
    "country_code": Digits,
    "ring_timeout": Seconds,
    "transfer_method": Method,
    "refer_timeout": Seconds,
    "notify_timeout": Seconds,
}, exclude=tuple(MOVED), extra={
    "carrier": (Name | None, None),
    "ringback": (Literal["ringback", "hold", "silence"], "ringback"),
})
"""calls: who may call, the bot, and the quick transfer settings (without profiles)."""

LimitsSection = _section(TransportLimits, "LimitsSection", {
    f.name: Annotated[int if f.type in (int, "int") else float, Field(gt=0)]
    for f in dataclasses.fields(TransportLimits)
})

# --- tls: SIP over TLS (transport/tls.py; owned by the TLS/SRTP work) --------------------
_TlsFields = _section(TlsConfig, "_TlsFields", {
    "port": Port,
    "cert_file": NonEmpty | None, "key_file": NonEmpty | None, "ca_file": NonEmpty | None,
    "verify_client": Literal["none", "optional", "required"],
    "min_version": Literal["1.2", "1.3"],
    "ciphers": NonEmpty | None,
    "server_names": dict[IpAddress, NonEmpty],
    "handshake_timeout": Annotated[float, Field(gt=0)],
})


class TlsSection(_TlsFields):  # type: ignore[valid-type,misc]
    """tls: the sips listener, its certificate files (relative to this file) and the
    checks on peers' certificates."""

    @model_validator(mode="after")
    def _usable(self) -> TlsSection:
        try:
            TlsConfig(**self.model_dump()).check()
        except TlsConfigError as error:  # the loader names the section already
            message = str(error)
            raise ValueError(message.removeprefix("tls: ").removeprefix("tls.")) from None
        return self
# ------------------------------------------------------------------------------------------


#: Checked types for fields of the pass-through sections, by section.
SECTION_TYPES: dict[str, dict[str, Any]] = {
    "api": {"host": IpAddress, "port": Port, "token": NonEmpty | None,
            "public_url": Annotated[str, Field(pattern=r"^https?://")] | None},
    "guard": {"whitelist": list[Annotated[str, AfterValidator(_address_or_cidr)]] | None},
    "desk": {"queues": dict[str, list[str]]},  # YAML lists (the dataclass keeps tuples)
    "dns": {"servers": list[IpAddress], "port": Port, "timeout": Annotated[float, Field(gt=0, le=60)]},
}
_OWN_SECTIONS = ("sip", "calls", "limits", "tls", "store", "media_plane")  # tls, store: their
# sections above; media_plane: from the media section (MediaSection, convert.media_plane)
_DAEMON_HINTS = typing.get_type_hints(DaemonConfig)
PASS_THROUGH: dict[str, type[BaseModel]] = {
    f.name: _section(_DAEMON_HINTS[f.name], f"{f.name.title()}Section", SECTION_TYPES.get(f.name, {}))
    for f in dataclasses.fields(DaemonConfig)
    if f.name not in _OWN_SECTIONS and dataclasses.is_dataclass(_DAEMON_HINTS[f.name])
}
"""Sections that are a dataclass of config/defaults.py field for field (api, lifecycle,
guard, tls...): a section added there is accepted here with no change."""


class _DaemonSettings(Strict):
    sip: SipSection = SipSection()
    media: MediaSection = MediaSection()
    calls: CallsSection = CallsSection()  # type: ignore[valid-type]
    paths: PathsSection = PathsSection()
    store: StoreSection = StoreSection()
    limits: LimitsSection = LimitsSection()  # type: ignore[valid-type]
    tls: TlsSection = TlsSection()
    local_nets: list[Cidr] = ["127.0.0.0/8", "::1/128"]
    """NAT: peers in these networks are told the private (bind) addresses."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    user_agent: NonEmpty = "voicegw/0.1.0"
    profiles_dir: str | None = "sip_profiles"
    """Relative to this file; null: no profiles."""
    flows_dir: str | None = "flows"
    default_flow: Name | None = None
    """The flow calls run; null: the built-in demo flow."""
    integrations: dict[Name, Integration] = {}
    default_integration: Name | None = None
    """For agent_transfer nodes whose flow names none."""
    routes: list[Route] = []
    """Ordered, the first matching route wins; empty or no default route: the
    ``default`` channel runs ``default_flow``."""


DaemonSettings = create_model(
    "DaemonSettings", __base__=_DaemonSettings,
    **{name: (model, model()) for name, model in PASS_THROUGH.items()},  # type: ignore[misc]
)
DaemonSettings.__doc__ = "voicegw.yaml."


# =====================================================================================
# sip_profiles/*.yaml
# =====================================================================================


class Numbers(Strict):
    country_code: Digits = ""
    """Makes national numbers E.164: 030 1234 -> +49301234 with 49."""
    national_prefix: Digits = "0"
    international_prefix: Digits = "00"


class Timeouts(Strict):
    ring: Seconds = 30.0
    """An agent's INVITE with no final answer."""
    refer_response: Seconds = 32.0
    """A REFER with no final response (no 202)."""
    notify_final: Seconds = 60.0
    """From the 202 to the final NOTIFY."""
    answer: Seconds = 30.0
    """A bot's INVITE with no answer."""


class CallerId(Strict):
    """Who an outgoing leg to this profile says is calling (sip/caller_id.py)."""

    number: Annotated[str, Field(pattern=r"^[A-Za-z0-9+\-_.!~*'()&=$,;?/]+$")] = "caller"
    """From user: ``caller`` (the caller's number), ``auth`` (the profile's auth
    username, as it is: no tech prefix, no '+' rule) or a fixed number."""
    display: Annotated[str, Field(min_length=1, max_length=64)] | None = "caller"
    """From display name: ``caller``, a fixed text, or null (none)."""
    identity: Literal["pai", "ppi", "none"] = "pai"
    """The caller's identity as P-Asserted-Identity, P-Preferred-Identity, or not at all."""
    diversion: bool = True
    """Diversion (RFC 5806) with the number the caller dialled."""
    plus: bool = True
    """Numbers with their leading '+' (E.164 as received); false: without."""
    tech_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9*#+\-_.]*$")] = ""
    """Put before the From user."""
    privacy: bool = True
    """Anonymous callers (From anonymous, or Privacy: id) stay anonymous: anonymous
    From, the identity header with Privacy: id."""


def _registrar_uri(value: str) -> str:
    """A sip:/sips: URI whose host may be a name (resolved by RFC 3263, transport/dns.py)."""
    try:
        uri = parse_uri(value)
    except SipError as error:
        raise ValueError(f"{value!r}: not a SIP URI ({error})") from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"{value!r}: expected a sip: or sips: URI")  # noqa: TRY004 - pydantic reports a ValueError
    return value


RegistrarUri = Annotated[str, AfterValidator(_registrar_uri)]
UserPart = Annotated[str, Field(pattern=r"^[A-Za-z0-9+\-_.!~*'()&=$,;?/%]+$", max_length=128)]


class Auth(Strict):
    """Digest credentials voicegw answers this carrier's 401/407 with (RFC 3261 22)."""

    username: Annotated[str, Field(min_length=1, max_length=128)]
    password: Annotated[str, Field(min_length=1)] | None = Field(default=None, repr=False)
    """The password itself; or ``password_file``: never both."""
    password_file: str | None = None
    """A file holding the password (its first line), relative to the profile's folder."""
    realm: Annotated[str, Field(min_length=1)] | None = None
    """Answer only challenges of this realm; unset: any realm the carrier names."""

    @model_validator(mode="after")
    def _one_password(self) -> Auth:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("auth needs exactly one of password or password_file")
        return self


class Register(Strict):
    """REGISTER this carrier profile's binding (RFC 3261 10), refreshed before expiry."""

    registrar: RegistrarUri
    """Request-URI of the REGISTER: ``sip:sip.carrier.example`` (a name or an address)."""
    aor: RegistrarUri | None = None
    """The address-of-record (To/From); default ``sip:USERNAME@REGISTRAR-HOST``."""
    contact: UserPart | None = None
    """User part of our Contact; default the auth username (else ``voicegw``)."""
    expires: Annotated[int, Field(ge=1, le=86400)] = 3600
    """The interval asked for; the registrar's grant (and a 423's Min-Expires) wins."""
    refresh_margin: Seconds = 30.0
    """Refresh this long before the grant expires (at half the grant when shorter)."""
    retry_min: Seconds = 5.0
    """The first wait after a failure; doubles on each failure in a row..."""
    retry_max: Seconds = 300.0
    """...up to this. A 503's Retry-After is honoured instead."""
    timeout: Seconds = 32.0
    """A REGISTER with no final answer by then is a failure (64*T1, timer F)."""


class HealthCheck(Strict):
    """OPTIONS pings to the carrier's gateways (voicegw/gateways.py)."""

    target: RegistrarUri | None = None
    """The OPTIONS Request-URI; default the host (and port) of ``trunk``."""
    interval: Seconds = 30.0
    """Seconds between two pings of a gateway."""
    timeout: Seconds = 5.0
    """A ping with no final answer by then is a miss."""
    down_after: Annotated[int, Field(ge=1, le=100)] = 3
    """Misses in a row that mark a gateway down."""
    up_after: Annotated[int, Field(ge=1, le=100)] = 2
    """Answers in a row that mark it up again."""


def _gateway_address(value: str) -> str:
    typed_uri(value)
    return value


class Gateway(Strict):
    """One of a carrier's gateways (``gateways:``): where its INVITEs go, in SRV's
    order (RFC 2782)."""

    address: Annotated[str, AfterValidator(_gateway_address)]
    """As typed: ``203.0.113.10``, ``gw1.carrier.example:5080``, ``[2001:db8::1]``, or a
    URI ``sip:gw1.carrier.example;transport=tcp`` / ``sips:...``; a name is located by
    RFC 3263 (each of its addresses in DNS order)."""
    transport: Literal["udp", "tcp", "tls"] | None = None
    """Default: the address's own (``;transport=``, ``sips:``), else the profile's."""
    priority: Annotated[int, Field(ge=0, le=65535)] = 10
    """Lower first; a higher one only when every lower one failed or is down."""
    weight: Annotated[int, Field(ge=0, le=65535)] = 10
    """The share of calls among the gateways of one priority."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"address": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_transport(self) -> Gateway:
        named = named_transport(typed_uri(self.address)) if self.transport is not None else None
        if named is not None and named != self.transport:
            raise ValueError(f"{self.address!r} is reached over {named}, the entry says {self.transport}")
        return self


def _caller_id_auth(caller_id: CallerId | None, auth: Any) -> None:
    if caller_id is not None and caller_id.number == "auth" and auth is None:
        raise ValueError("caller_id.number auth needs the profile's auth: (its username is the From user)")


class Keepalive(Strict):
    """Keep-alives toward this profile's peer (voicegw/keepalives.py): a CRLF ping on
    TCP/TLS (RFC 5626 3.5.1), an OPTIONS on UDP."""

    interval: Annotated[float, Field(gt=0)]
    """Seconds between two keep-alives (a NAT's UDP binding often lasts 30 s)."""
    timeout: Seconds = 5.0
    """An OPTIONS unanswered, or a connection gone, by then is a failed keep-alive (logged)."""


class ProfileBase(Strict):
    name: Name
    """Default: the file name without .yaml."""
    description: str | None = None
    transport: Literal["udp", "tcp", "tls"] = "udp"
    """How voicegw's outgoing legs to this profile travel (its URI's own ``sips:`` or
    ``;transport=`` wins); ``tls`` needs the daemon's ``tls:`` section."""
    srtp: Literal["off", "optional", "required"] = "off"
    """voicegw's offers on legs to this profile: plain RTP, best-effort SRTP (RTP/AVP
    with a=crypto) or SRTP only (RTP/SAVP, SDES; a plain answer fails the leg, 488)."""
    delayed_offer: bool = False
    """voicegw's INVITEs to this profile carry no SDP (RFC 3261 13.2.1): the peer offers
    in its 200 (or a reliable 183) and voicegw answers in the ACK (or the PRACK)."""
    early_media: Literal["relay", "ringback"] = "relay"
    """While a transfer's leg to this profile rings: ``relay`` its early media (a 183
    with SDP: a carrier's announcement or ringback) to the caller instead of voicegw's
    ringback; ``ringback``: voicegw's waiting audio whatever the leg sends."""
    context_headers: dict[HeaderName, ContextKey] = {}
    """Header -> context key sent to the agent (X-headers, User-to-User)."""
    transfer_allow: list[Pattern] = []
    timeouts: Timeouts = Timeouts()
    fallback: Fallback | None = None
    """Default fallback for transfers to this profile."""
    auth: Auth | None = None
    """Digest credentials for this peer's challenges (RFC 3261 22.2): its 401/407 to our
    INVITEs and the requests of their dialogs, to our keep-alive and health OPTIONS
    (and, for a carrier, its REGISTER); at most two challenges per request, then the
    attempt fails with status ``auth``."""
    outbound_proxy: RegistrarUri | None = None
    """Send every INVITE to this peer through this proxy: a pre-loaded Route
    ``<proxy;lr>`` (RFC 3261 8.1.2, loose routing); the proxy's name is resolved by
    RFC 3263 instead of the target's."""
    keepalive: Keepalive | None = None
    """Keep-alives toward its peer (NAT bindings); none by default."""


class CarrierProfile(ProfileBase):
    kind: Literal["carrier"]
    addresses: Annotated[list[Cidr], Field(min_length=1)]
    """Where its calls come from: trusted to place calls."""
    trunk: TrunkTemplate | None = None
    numbers: Numbers = Numbers()
    refer: bool = True
    """Accepts REFER on the caller's leg."""
    refer_sub: bool = True
    """False: REFER with Refer-Sub: false (RFC 4488), no NOTIFYs."""
    bye_destination_header: HeaderName = "X-Transfer-Destination"
    caller_id: CallerId = CallerId()
    """Caller ID of transfers to numbers through this carrier (and to agents whose
    profile has none)."""
    gateways: Annotated[list[Gateway], Field(max_length=32)] = []
    """Where calls through the ``trunk`` go, instead of locating its host: several
    gateways with SRV priority and weight (RFC 2782); the trunk's URI stays the
    Request-URI."""
    health: HealthCheck | None = None
    """Ping the carrier's gateways; their state is in ``voicegw trunks`` and /metrics."""
    registration: Register | None = Field(default=None, alias="register")
    """``register:`` (named so here: ``register`` is a method of pydantic's metaclass).
    Register to the carrier (needs nothing else; uses ``auth`` when challenged)."""

    @model_validator(mode="after")
    def _auth_caller_id(self) -> CarrierProfile:
        _caller_id_auth(self.caller_id, getattr(self, "auth", None))
        return self


class AgentProfile(ProfileBase):
    kind: Literal["agent"]
    uri: SipUriText
    caller_id: CallerId | None = None
    """Caller ID of transfers to this agent; null: the carrier's (or the default)."""

    @model_validator(mode="after")
    def _auth_caller_id(self) -> AgentProfile:
        _caller_id_auth(self.caller_id, getattr(self, "auth", None))
        return self


class BotProfile(ProfileBase):
    kind: Literal["bot"]
    uri: SipUriText
    refer: bool = True
    """voicegw accepts the bot's REFER as a transfer request."""
    refer_method: Literal["invite", "refer"] = "invite"
    """How a bot's REFER is carried out."""


Profile = Annotated[CarrierProfile | AgentProfile | BotProfile, Field(discriminator="kind")]


# =====================================================================================
# flows/*.yaml
# =====================================================================================


class MessageNode(Strict):
    type: Literal["message"]
    text: str | None = None
    file: str | None = None
    next: Name | None = None
    """Null: end the call after the prompt."""

    @model_validator(mode="after")
    def _prompt(self) -> MessageNode:
        if (self.text is None) == (self.file is None):
            raise ValueError("a message has exactly one of text or file")
        if not (self.text or self.file or "").strip():
            raise ValueError("a message cannot be empty")
        if self.file is not None and not self.file.lower().endswith(".wav"):
            raise ValueError(f"{self.file!r}: prompt files are WAV (.wav)")
        return self


class CollectNode(Strict):
    type: Literal["collect"]
    prompt: Prompt | None = None
    routes: Annotated[dict[DtmfKey, Name], Field(min_length=1)]
    timeout: Seconds = 10.0
    on_timeout: Name | None = None
    """Null: end the call."""
    on_invalid: Name | None = None
    """Null: keep waiting."""


class BotNode(Strict):
    type: Literal["bot"]
    profile: Name
    next: Name | None = None
    """When the bot hangs up; null: end the call."""
    on_failure: Name | None = None
    """When the bot does not answer; null: end the call."""


class AgentTransferNode(TransferSettings):
    type: Literal["agent_transfer"]
    integration: Name | None = None


class GotoNode(Strict):
    type: Literal["goto"]
    node: Name


class HangupNode(Strict):
    type: Literal["hangup"]


FlowNode = Annotated[
    MessageNode | CollectNode | BotNode | AgentTransferNode | GotoNode | HangupNode,
    Field(discriminator="type"),
]


class PostAgent(Strict):
    goto: Name | None = None

    @model_validator(mode="before")
    @classmethod
    def _end(cls, value: Any) -> Any:
        return {"goto": None} if value == "end" else value


class FlowFile(Strict):
    name: Name
    """Default: the file name without .yaml."""
    description: str | None = None
    start: Name | None = None
    """Default: the first node."""
    integration: Name | None = None
    """Agent-transfer settings for this flow's agent_transfer nodes."""
    post_agent: PostAgent = PostAgent()
    """When the agent hangs up first: ``end`` or ``{goto: node}``."""
    nodes: Annotated[dict[Name, FlowNode], Field(min_length=1)]


NODE_TYPES = ("message", "collect", "bot", "agent_transfer", "goto", "hangup")
PROFILE_KINDS = ("carrier", "agent", "bot")
