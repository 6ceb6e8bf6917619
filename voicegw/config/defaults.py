"""The daemon's plain config, and the embedded default ``voicegw run`` uses with no
config file.

Plain frozen dataclasses (DESIGN.md: config reaches the core as plain dataclasses).
A config file is read by loader.py into the pydantic models of models.py and
converted to these by convert.py; ``from_mapping`` applies a small mapping over one
(the command line's flags, cli/main.py) and names the field when a value is wrong.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..settings import WarmSettings
from ..sip.advertise import AddressPolicy
from ..sip.gateway_health import TrunkHealthConfig
from ..sip.keepalive import KeepaliveConfig
from ..sip.registration import RegistrationConfig
from ..transport.dns import DnsSettings
from ..transport.guard import GuardConfig
from ..transport.limits import TransportLimits
from ..transport.tls import TlsConfig, TlsConfigError
from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class SipConfig:
    host: str = "127.0.0.1"
    """Address the SIP sockets bind to and put in Via/Contact."""
    udp_port: int | None = 5060
    """UDP port; None: no UDP listener."""
    tcp_port: int | None = 5060
    """TCP port; None: no TCP listener."""
    external_host: str | None = None
    """NAT: the public SIP address told to peers outside ``local_nets``."""
    local_nets: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """NAT: CIDRs of peers that are told the private addresses."""
    media_host: str | None = None
    """RTP's bind address (``media.host``); None: ``host``."""
    media_external_host: str | None = None
    """NAT: the public RTP address (``media.external_host``); None: ``external_host``."""

    def addresses(self) -> AddressPolicy:
        """Which addresses each peer is told (sip/advertise.py)."""
        return AddressPolicy(self.host, self.media_host, self.external_host, self.media_external_host,
                             self.local_nets)


@dataclass(frozen=True, slots=True)
class CallConfig:
    """How calls are handled: where the bot is, media ports, who may call."""

    bot_uri: str | None = None
    """The bot's SIP URI (host an IP literal); None runs the built-in demo flow."""
    rtp_port_min: int = 20000
    rtp_port_max: int = 21998
    media_inactivity_timeout: float = 60.0
    """``media.inactivity_timeout``: seconds without RTP before a call ends; 0: never."""
    media_hold_timeout: float = 600.0
    """``media.hold_timeout``: the same while a leg is on hold; 0: never."""
    trusted_sources: tuple[str, ...] = ("127.0.0.0/8",)
    """Carriers/SBCs allowed to place calls (CIDRs); others get 403, or a digest
    challenge when ``auth_users`` is set."""
    auth_users: dict[str, str] = field(default_factory=dict)
    """Digest credentials (user: password) for sources outside trusted_sources."""
    auth_realm: str = "voicegw"
    bot_answer_timeout: float = 30.0
    tts_cache_dir: str = "var/tts"
    agent_uri: str | None = None
    """The demo flow's agent: DTMF 0 transfers the caller there by INVITE."""
    transfer_allow: tuple[str, ...] = ()
    """Allow-list of transfer targets (patterns over E.164 numbers and SIP URIs)."""
    trunk: str | None = None
    """Carrier trunk URI template for phone-number targets, e.g. sip:{number}@192.0.2.1."""
    country_code: str = ""
    ring_timeout: float = 30.0
    bot_listens: bool = False
    """After an INVITE transfer the bot stays, muted, hearing caller and agent (for
    transcription); otherwise it gets BYE."""
    transfer_methods: tuple[str, ...] = ()
    """Methods to try in order for a bot's REFER (e.g. [refer, invite]: REFER the
    carrier, and if that fails bridge by INVITE); empty: transfer_method alone."""
    transfer_method: str = "invite"
    """How the demo flow's agent node and a bot's REFER are carried out: invite | refer | bye."""
    refer_sub: bool = True
    refer_timeout: float = 32.0
    notify_timeout: float = 60.0
    warm: dict[str, Any] = field(default_factory=dict)
    """Warm transfer settings (voicegw.settings.WarmSettings fields): hold, hold_text,
    hold_file, briefing_text, briefing_file, confirm, accept_digit, decline_digit,
    confirm_timeout, auto_complete, complete_by (bridge | refer)."""


# --- operations: control API and lifecycle (owned by the API/CLI work) -----------------
@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The control API (``voicegw status`` and friends talk to it)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """Loopback by default: the API can hang up and transfer calls."""
    port: int = 5080
    token: str | None = None
    """The bearer token; None: read ``token_file`` (created with a random token at
    first start, mode 0600)."""
    token_file: str = "var/api.token"
    public_url: str | None = None
    """Base URL agents reach the transcript links at; default http://host:port."""
    transcript_max_uses: int = 10
    transcript_ttl: float = 24 * 3600.0
    """Seconds a transcript link works."""
    trace_per_call: int = 100
    """SIP messages kept per Call-ID for ``voicegw call show`` (the ladder)."""


@dataclass(frozen=True, slots=True)
class DeskConfig:
    """The WebRTC agent desk at ``/desk`` on the control API's server (voicegw/desk/,
    docs/security.md). Off by default."""

    enabled: bool = False
    agents: dict[str, str] = field(default_factory=dict)
    """Agent name -> scrypt hash of the password (``voicegw desk-password`` makes one);
    a ``desk:NAME`` target rings that agent."""
    queues: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Queue name -> agent names in ring order; ``desk:QUEUE`` rings the first available."""
    session_ttl: float = 8 * 3600.0
    """Seconds a sign-in lasts (one shift); then the page asks again."""
    sign_in_limit: int = 5
    """Failed sign-ins per minute per source address and per agent before 429."""
    ice_host: str | None = None
    """The address of the desk's ICE host candidates (what browsers send media to);
    None: the media host (media.host)."""
    codecs: tuple[str, ...] = ("opus", "PCMU", "PCMA")
    """The browser leg's codecs in order of preference."""
    hold_file: str | None = None
    """Music on hold (a WAV, relative to voicegw.yaml) the caller hears while the agent
    holds the call from the page; None: the periodic hold beep."""
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    """A certificate and key for the control API's server: required when the desk is
    on and the API listens outside loopback (browsers only give a microphone to a
    secure context, and the sign-in cookie must not cross the network in clear)."""

    def check(self) -> None:
        """ValueError naming what is wrong (config/checks.py locates it)."""
        from ..desk.passwords import well_formed

        for name, stored in self.agents.items():
            if not well_formed(stored):
                raise ValueError(f"agents.{name}: not a scrypt hash (make one with voicegw desk-password)")
        for queue, members in self.queues.items():
            if queue in self.agents:
                raise ValueError(f"queues.{queue}: also an agent's name")
            for member in members:
                if member not in self.agents:
                    raise ValueError(f"queues.{queue}: {member!r} is not an agent")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        for codec in self.codecs:
            if codec.lower() not in ("opus", "pcmu", "pcma"):
                raise ValueError(f"codecs: {codec!r} is not opus, PCMU or PCMA")


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    drain_deadline: float = 30.0
    """SIGTERM: seconds active calls may go on before the rest are hung up (new
    INVITEs meanwhile get 503 with Retry-After)."""
    gc_interval: float = 60.0
    """Seconds between full garbage collections (memory.py); 0: none (tests that must
    see reference cycles per call)."""


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the call and transfer records live (voicegw/store/, docs/configuration.md)."""

    backend: str = "sqlite"
    """``sqlite`` (embedded, one file) or ``postgres`` (workers sharing one database)."""
    path: str | None = None
    """sqlite: the database file; None: ``voicegw.db`` in ``paths.records_dir``."""
    synchronous: str | None = None
    """sqlite: ``normal`` (None: the default) or ``full``: whether each commit also
    fsyncs (store/sqlite.py: Durability; docs/configuration.md says the trade-off)."""
    dsn: str | None = field(default=None, repr=False)
    """postgres: a libpq connection string or URI (may hold a password: prefer ``dsn_file``)."""
    dsn_file: str | None = None
    """postgres: a file whose first line is the DSN (relative to the config file)."""
    pool_size: int = 4
    """postgres: connections the queries (API, CLI) may use at once; the writer has its own."""
    worker_id: str | None = None
    """The name this process's runs and calls carry (``$VOICEGW_WORKER_ID`` overrides):
    which worker owns a call; None: not named."""


@dataclass(frozen=True, slots=True)
class MediaPlaneConfig:
    """Which media backend carries RTP (``media.backend``, media/plane.py)."""

    backend: str = "relay"
    """relay (in-process, the default) or rtpengine."""
    rtpengine_ng: tuple[str, int] = ("127.0.0.1", 2223)
    rtpengine_dtmf: tuple[str, int] | None = None
    """Where voicegw listens for rtpengine's DTMF log (``--dtmf-log-dest``)."""
    rtpengine_files: str = "var/rtpengine"


# -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DaemonConfig:
    sip: SipConfig = field(default_factory=SipConfig)
    calls: CallConfig = field(default_factory=CallConfig)
    limits: TransportLimits = field(default_factory=TransportLimits)
    guard: GuardConfig = field(default_factory=GuardConfig)
    """Rate limits, bans, scanner filter, overload control (docs/security.md)."""
    log_level: str = "info"
    user_agent: str = "voicegw/0.1.0"
    api: ApiConfig = field(default_factory=ApiConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    desk: DeskConfig = field(default_factory=DeskConfig)
    """The WebRTC agent desk (off by default)."""
    tls: TlsConfig = field(default_factory=TlsConfig)
    """SIP over TLS (sips): listener, certificates, peer checks (transport/tls.py)."""
    dns: DnsSettings = field(default_factory=DnsSettings)
    """How names in targets, trunks and proxies are resolved (RFC 3263,
    transport/dns.py): ``servers`` (empty: the system's resolver), ``port``, ``timeout``."""
    records_dir: str | None = None
    """Folder of the records database (``voicegw.db``), from ``paths.records_dir``; None:
    ``./var`` under the working directory (store/sqlite.store_path)."""
    store: StoreConfig = field(default_factory=StoreConfig)
    """The records' backend (store/backend.py); ``store.path`` is resolved here."""
    registrations: tuple[RegistrationConfig, ...] = ()
    """The carrier profiles' ``register:`` (voicegw/registrar.py keeps them up)."""
    health_checks: tuple[TrunkHealthConfig, ...] = ()
    """The carrier profiles' ``health:`` (voicegw/gateways.py pings their gateways)."""
    media_plane: MediaPlaneConfig = field(default_factory=MediaPlaneConfig)
    """The media backend (``media.backend`` and ``media.rtpengine``)."""
    keepalives: tuple[KeepaliveConfig, ...] = ()
    """The profiles' ``keepalive:`` (voicegw/keepalives.py)."""
    source: Any = field(default=None, compare=False)
    """The loaded files (config.loader.LoadedConfig) this came from: flows and profiles
    for the engine. None for the embedded default."""


DEFAULT = DaemonConfig()

_SIP_KEYS = {"host", "port", "udp_port", "tcp_port"}
_LIMIT_KEYS = set(TransportLimits.__dataclass_fields__)


def from_mapping(data: Any, base: DaemonConfig = DEFAULT) -> DaemonConfig:
    """Apply ``{sip: {host, port, udp_port, tcp_port}, limits: {...}, log_level}``.

    ``sip.port`` sets both ports; ``udp_port``/``tcp_port`` (null: disabled) override it.
    """
    if data is None:
        return base
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping")
    unknown = set(data) - {"sip", "limits", "log_level", "calls", "api", "lifecycle", "guard",
                           "tls"}
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(sorted(map(str, unknown)))}")
    config = base
    sip = data.get("sip") or {}
    _check_keys("sip", sip, _SIP_KEYS)
    changes: dict[str, Any] = {}
    if "host" in sip:
        if not isinstance(sip["host"], str) or not sip["host"]:
            raise ConfigError("sip.host: must be an address")
        changes["host"] = sip["host"]
    if "port" in sip:
        port = _port("sip.port", sip["port"], allow_none=False)
        changes["udp_port"] = changes["tcp_port"] = port
    for key in ("udp_port", "tcp_port"):
        if key in sip:
            changes[key] = _port(f"sip.{key}", sip[key], allow_none=True)
    config = replace(config, sip=replace(config.sip, **changes))
    limits = data.get("limits") or {}
    _check_keys("limits", limits, _LIMIT_KEYS)
    for key, value in limits.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"limits.{key}: must be a positive number")
    config = replace(config, limits=replace(config.limits, **limits))
    config = replace(config, calls=_calls(data.get("calls") or {}, config.calls))
    config = replace(config, guard=_guard(data.get("guard") or {}, config.guard))
    if "log_level" in data:
        if data["log_level"] not in ("debug", "info", "warning", "error"):
            raise ConfigError("log_level: must be debug, info, warning or error")
        config = replace(config, log_level=data["log_level"])
    config = replace(config, api=_section("api", data.get("api"), config.api))
    config = replace(config, lifecycle=_section("lifecycle", data.get("lifecycle"), config.lifecycle))
    config = replace(config, tls=_tls(data.get("tls"), config.tls))
    return config


# --- operations sections (api, lifecycle) ------------------------------------------------
_SECTION_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "api": {"enabled": (bool,), "host": (str,), "port": (int,), "token": (str, type(None)),
            "token_file": (str,), "public_url": (str, type(None)), "transcript_max_uses": (int,),
            "transcript_ttl": (int, float), "trace_per_call": (int,)},
    "lifecycle": {"drain_deadline": (int, float), "gc_interval": (int, float)},
}


def _section(name: str, data: Any, base: Any) -> Any:
    if data is None:
        return base
    types = _SECTION_TYPES[name]
    _check_keys(name, data, types)
    for key, value in data.items():
        allowed = types[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ConfigError(f"{name}.{key}: must be {' or '.join(t.__name__ for t in allowed)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{name}.{key}: must not be negative")
    if name == "api" and "port" in data:
        _port("api.port", data["port"], allow_none=False)
    if name == "api" and data.get("token") == "":
        raise ConfigError("api.token: must not be empty")
    return replace(base, **data)


def _calls(data: Any, base: CallConfig) -> CallConfig:
    _check_keys("calls", data, CallConfig.__dataclass_fields__)
    changes = dict(data)
    for key in ("rtp_port_min", "rtp_port_max"):
        if key in changes:
            _port(f"calls.{key}", changes[key], allow_none=False)
    if "bot_uri" in changes and changes["bot_uri"] is not None and not str(changes["bot_uri"]).startswith("sip:"):
        raise ConfigError("calls.bot_uri: must be a sip: URI")
    for key in ("trusted_sources", "transfer_allow", "transfer_methods"):
        if key in changes:
            changes[key] = tuple(str(c) for c in changes[key])
    if "transfer_method" in changes and changes["transfer_method"] not in ("invite", "refer", "bye", "warm"):
        raise ConfigError("calls.transfer_method: must be invite, refer, bye or warm")
    bad = [m for m in changes.get("transfer_methods", ()) if m not in ("invite", "refer", "bye", "warm")]
    if bad:
        raise ConfigError(f"calls.transfer_methods: unknown method(s) {', '.join(map(str, bad))}")
    if "warm" in changes:
        known = set(WarmSettings.__dataclass_fields__)
        if not isinstance(changes["warm"], dict) or set(changes["warm"]) - known:
            raise ConfigError(f"calls.warm: a mapping of {', '.join(sorted(known))}")
    if "agent_uri" in changes and changes["agent_uri"] is not None and not str(changes["agent_uri"]).startswith("sip:"):
        raise ConfigError("calls.agent_uri: must be a sip: URI")
    return replace(base, **changes)


def _guard(data: Any, base: GuardConfig) -> GuardConfig:
    """``guard:``: GuardConfig's fields; lists of CIDRs/User-Agent fragments, numbers >= 0."""
    _check_keys("guard", data, GuardConfig.__dataclass_fields__)
    changes = dict(data)
    for key, value in data.items():
        default = getattr(base, key)
        if key == "whitelist" and value is None:
            continue
        if key in ("whitelist", "scanner_user_agents"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"guard.{key}: must be a list of strings")
            changes[key] = tuple(v.lower() if key == "scanner_user_agents" else v for v in value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"guard.{key}: must be true or false")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"guard.{key}: must be a number >= 0")
        elif key in ("rate_requests", "rate_window", "max_sources") and value <= 0:
            raise ConfigError(f"guard.{key}: must be positive")
    for cidr in changes.get("whitelist") or ():
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"guard.whitelist: not an address or CIDR: {cidr!r}") from None
    return replace(base, **changes)


def _check_keys(name: str, data: Any, known: Iterable[str]) -> None:
    """Section ``name`` must be a mapping whose keys are all in ``known``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: must be a mapping")
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{name}: unknown key(s): {', '.join(sorted(map(str, unknown)))}")


def _port(name: str, value: Any, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ConfigError(f"{name}: must be a port number 0-65535")
    return value


# --- tls: SIP over TLS (owned by the TLS/SRTP work; voicegw.yaml: models.TlsSection) ----
_TLS_TYPES: dict[str, tuple[type, ...]] = {
    "enabled": (bool,), "port": (int,), "cert_file": (str, type(None)),
    "key_file": (str, type(None)), "ca_file": (str, type(None)), "verify_client": (str,),
    "verify_server": (bool,), "min_version": (str,), "ciphers": (str, type(None)),
    "server_names": (dict,), "handshake_timeout": (int, float),
}


def _tls(data: Any, base: TlsConfig) -> TlsConfig:
    """``tls:``: TlsConfig's fields. Files are read when the daemon starts (a missing
    or mismatched certificate stops it there, naming the file), not here."""
    if data is None:
        return base
    _check_keys("tls", data, _TLS_TYPES)
    for key, value in data.items():
        allowed = _TLS_TYPES[key]
        if key == "min_version" and not isinstance(value, str):
            raise ConfigError('tls.min_version: must be "1.2" or "1.3" (quoted: 1.2 is a number)')
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ConfigError(f"tls.{key}: must be {' or '.join(t.__name__ for t in allowed)}")
    if "port" in data:
        _port("tls.port", data["port"], allow_none=False)
    names = data.get("server_names")
    if names is not None and not all(isinstance(k, str) and isinstance(v, str)
                                     for k, v in names.items()):
        raise ConfigError("tls.server_names: a mapping of peer IP address to host name")
    config = replace(base, **data)
    try:
        config.check()
    except TlsConfigError as error:
        raise ConfigError(str(error)) from None
    return config
