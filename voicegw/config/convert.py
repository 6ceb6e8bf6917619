"""From the validated config models to the plain dataclasses the daemon and the
engine read (DESIGN.md: no pydantic past config/).

- :func:`daemon_config`: ``DaemonConfig`` (config/defaults.py) for the daemon;
  ``calls.*`` carries the default carrier's trunk, numbers, REFER settings and the
  allow-list, so a file without flows works as before.
- :func:`engine_config`: the engine's ``EngineConfig`` (voicegw/settings.py) from a
  ``DaemonConfig``, with or without files: the one place it is built.
- :func:`build_flow`: a ``flow.runner.Flow``; agent_transfer nodes carry their
  ``FallbackPolicy`` and ordered attempts (flow/fallback_policy.py).

Loading and checking in one call is :mod:`voicegw.config.load`. Nothing here imports
the engine: the plain settings live in voicegw/settings.py.

Agent-transfer settings are layered: the node's fields, then its integration's
(the node's ``integration``, else the call's channel's (``routes:``), else the
flow's, else ``default_integration``). A flow is built once per integration a
channel gives it (:func:`router`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..flow import runner
from ..flow.fallback_policy import DEFAULT_MATCH, FallbackConfigError, FallbackPolicy, FallbackRule
from ..flow.fallback_policy import Prompt as PlainPrompt
from ..flow.router import DEFAULT_CHANNEL, Channel, ChannelTransfer, Route, Router, compile_pattern
from ..numbers import is_number, normalise_number
from ..settings import (
    EngineConfig,
    LegPolicy,
    PeerPolicies,
    PeerPolicy,
    TransferConfig,
    WarmSettings,
)
from ..sip.caller_id import CallerIdPolicy
from ..sip.digest_client import Account
from ..sip.gateway_health import HealthSettings, TrunkHealthConfig
from ..sip.gateway_list import GatewaySpec, parse_gateway
from ..sip.keepalive import KeepaliveConfig
from ..sip.registration import RegistrationConfig, line_token
from ..sip.uri import parse_uri
from .defaults import CallConfig, DaemonConfig, MediaPlaneConfig, SipConfig, StoreConfig
from .errors import ConfigError, Problem
from .loader import Document, LoadedConfig, Source
from .models import (
    PASS_THROUGH,
    AgentProfile,
    AgentTransferNode,
    Auth,
    BotNode,
    BotProfile,
    CallerId,
    CarrierProfile,
    CollectNode,
    FlowFile,
    GotoNode,
    HangupNode,
    MessageNode,
    Prompt,
    RuleBody,
)
from .models import Route as RouteModel

DEFAULT_ERROR_PROMPT = "Sorry, we could not connect you to an agent."


# ------------------------------------------------------------------------------ profiles


def profiles_of(config: LoadedConfig, kind: type) -> dict[str, Any]:
    return {n: s.model for n, s in config.profiles.items() if isinstance(s.model, kind)}


def default_carrier(config: LoadedConfig) -> CarrierProfile | None:
    """``calls.carrier``, else the only carrier profile, else None."""
    name = config.daemon.calls.carrier
    carriers = profiles_of(config, CarrierProfile)
    if name is not None:
        return carriers.get(name)
    return next(iter(carriers.values())) if len(carriers) == 1 else None


def country_code(config: LoadedConfig) -> str:
    """The country code national numbers are dialled in: the default carrier's, else
    ``calls.country_code`` (the check at load and the engine use the same one)."""
    carrier = default_carrier(config)
    return (carrier.numbers.country_code if carrier is not None else "") or config.daemon.calls.country_code


def trusted_sources(config: LoadedConfig) -> tuple[str, ...]:
    found = list(config.daemon.calls.trusted_sources)
    for carrier in profiles_of(config, CarrierProfile).values():
        found += [c for c in carrier.addresses if c not in found]
    return tuple(found)


def allow_list(config: LoadedConfig, agent_uri: str | None = None) -> tuple[str, ...]:
    """Every pattern of ``calls.transfer_allow`` and the profiles, plus the agent
    profiles' URIs (an agent profile is an allowed target by being configured)."""
    found = list(config.daemon.calls.transfer_allow)
    for source in config.profiles.values():
        found += [p for p in source.model.transfer_allow if p not in found]
        if isinstance(source.model, AgentProfile) and source.model.uri not in found:
            found.append(source.model.uri)
    if agent_uri and agent_uri not in found:
        found.append(agent_uri)
    return tuple(found)


# ------------------------------------------------------------------------------ daemon


def daemon_config(config: LoadedConfig) -> DaemonConfig:
    """The daemon's plain config (the command line's flags are applied over it by
    cli/main.py, with ``defaults.from_mapping``)."""
    d = config.daemon
    port = d.sip.port
    udp = d.sip.udp_port if d.sip.udp_port is not None else port
    tcp = d.sip.tcp_port if d.sip.tcp_port is not None else port
    sip = SipConfig(
        host=d.sip.host,
        udp_port=udp if "udp" in d.sip.transports else None,
        tcp_port=tcp if "tcp" in d.sip.transports else None,
        external_host=d.sip.external_host,
        local_nets=tuple(d.local_nets),
        media_host=d.media.host,
        media_external_host=d.media.external_host,
    )
    carrier = default_carrier(config)
    calls = d.calls
    rtp = (d.media.rtp_port_min, d.media.rtp_port_max)
    bot_uri = calls.bot_uri or _flow_bot_uri(config)
    agent_uri = calls.agent_uri
    values: dict[str, Any] = {
        **{k: (tuple(v) if isinstance(v, list) else v) for k, v in calls.model_dump().items()},
        "bot_uri": bot_uri,
        "agent_uri": agent_uri,
        "rtp_port_min": rtp[0],
        "rtp_port_max": rtp[1],
        "media_inactivity_timeout": d.media.inactivity_timeout,
        "media_hold_timeout": d.media.hold_timeout,
        "tts_cache_dir": str(resolve(config, d.paths.tts_cache)),
        "trusted_sources": trusted_sources(config),
        "transfer_allow": allow_list(config, agent_uri) if agent_uri else allow_list(config),
    }
    if carrier is not None:
        values.update(
            trunk=carrier.trunk or calls.trunk,
            country_code=country_code(config),
            refer_sub=carrier.refer_sub,
            refer_timeout=carrier.timeouts.refer_response,
            notify_timeout=carrier.timeouts.notify_final,
            ring_timeout=carrier.timeouts.ring,
        )
    bot = _bot_profile(config, bot_uri)
    if bot is not None:
        values["bot_answer_timeout"] = bot.timeouts.answer
    call_config = CallConfig(**{k: v for k, v in values.items() if k in CallConfig.__dataclass_fields__})
    # paths.records_dir only when the file sets it (relative to the file's folder, like
    # every path in it); otherwise the records stay in ./var under the working directory
    records_dir = (str(resolve(config, d.paths.records_dir))
                   if "records_dir" in d.paths.model_fields_set else None)
    built = replace(
        DaemonConfig(), sip=sip, calls=call_config, log_level=d.log_level,
        user_agent=d.user_agent, limits=_plain(DaemonConfig().limits, d.limits),
        records_dir=records_dir, store=store_config(config), registrations=registrations(config),
        health_checks=health_checks(config),
        media_plane=media_plane(config), keepalives=keepalives(config),
    )
    fields = DaemonConfig.__dataclass_fields__
    for name in PASS_THROUGH:
        built = replace(built, **{name: _plain(getattr(built, name), getattr(d, name))})
    if "tls" in fields and hasattr(d, "tls"):  # certificate files relative to the config file
        tls = _plain(built.tls, d.tls)
        files = {k: str(resolve(config, v)) for k in ("cert_file", "key_file", "ca_file")
                 if (v := getattr(tls, k))}
        built = replace(built, tls=replace(tls, **files))
    if "api" in fields and built.api.token_file:
        built = replace(built, api=replace(built.api, token_file=str(resolve(config, built.api.token_file))))
    if "desk" in fields:  # queues as tuples; the files relative to the config file
        queues = {name: tuple(members) for name, members in built.desk.queues.items()}
        built = replace(built, desk=replace(built.desk, queues=queues))
        files = {k: str(resolve(config, v)) for k in ("tls_cert_file", "tls_key_file", "hold_file")
                 if (v := getattr(built.desk, k))}
        built = replace(built, desk=replace(built.desk, **files))
    # hand-over for the daemon (see the module docstring of daemon.engine_config)
    if "source" in fields:
        built = replace(built, source=config)  # type: ignore[call-arg]
    return built


def store_config(config: LoadedConfig) -> StoreConfig:
    """store: with its files (path, dsn_file) relative to the config file's folder."""
    section = config.daemon.store
    files = {k: str(resolve(config, v)) for k in ("path", "dsn_file") if (v := getattr(section, k))}
    return StoreConfig(**{**section.model_dump(), **files})


def account(config: LoadedConfig, name: str, auth: Auth | None) -> Account | None:
    """A profile's ``auth`` with its password read (``password_file``: its first line,
    relative to the profile's folder). The password goes nowhere else."""
    if auth is None:
        return None
    password = auth.password
    if password is None:
        assert auth.password_file is not None
        source = config.profiles[name].document.path
        path = Path(auth.password_file)
        path = path if path.is_absolute() else source.parent / path
        try:
            password = path.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as error:
            raise ConfigError([Problem(str(source), None, "auth.password_file",
                                       f"cannot read a password from {path}: "
                                       f"{getattr(error, 'strerror', None) or 'empty file'}")]) from None
    return Account(auth.username, password, auth.realm)


def registrations(config: LoadedConfig) -> tuple[RegistrationConfig, ...]:
    """Every carrier profile's ``register:``, plain (sip/registration.py)."""
    found = []
    for name, carrier in sorted(profiles_of(config, CarrierProfile).items()):
        register = carrier.registration
        if register is None:
            continue
        credentials = account(config, name, carrier.auth)
        user = register.contact or (credentials.username if credentials else "voicegw")
        registrar = parse_uri(register.registrar)
        aor = register.aor or f"sip:{credentials.username if credentials else user}@{registrar.host}"
        found.append(RegistrationConfig(
            trunk=name, registrar=register.registrar, aor=aor, contact_user=user,
            expires=register.expires, refresh_margin=register.refresh_margin,
            retry_min=register.retry_min, retry_max=register.retry_max,
            timeout=register.timeout, transport=carrier.transport, account=credentials,
            line=line_token(name, aor, register.registrar, credentials.password if credentials else "")))
    return tuple(found)


def peer_policies(config: LoadedConfig) -> PeerPolicies:
    """Per dialled host (and port): the ``auth``, ``outbound_proxy`` and gateway health
    of the profile that names it (an agent's or bot's ``uri``, a carrier's ``trunk``;
    the default carrier's trunk may be ``calls.trunk``). The first profile wins."""
    found: dict[tuple[str, int | None], PeerPolicy] = {}
    carrier = default_carrier(config)
    for name, profile in config.profiles.items():
        model = profile.model
        listed: tuple[GatewaySpec, ...] = ()
        if isinstance(model, CarrierProfile):
            uri = model.trunk or (config.daemon.calls.trunk if model is carrier else None)
            gateways = name if model.health is not None else None
            listed = gateway_specs(model)
        else:
            uri, gateways = model.uri, None
        if uri is None or (model.auth is None and model.outbound_proxy is None and gateways is None
                           and not listed):
            continue
        found.setdefault(PeerPolicies.key(uri), PeerPolicy(
            account=account(config, name, model.auth), outbound_proxy=model.outbound_proxy,
            gateways=gateways, gateway_list=listed))
    by_source = []
    carriers = []
    accounts = {}
    for name, carrier_model in profiles_of(config, CarrierProfile).items():
        credentials = account(config, name, carrier_model.auth)
        carriers += [(ipaddress.ip_network(c, strict=False), name) for c in carrier_model.addresses]
        if credentials is not None:
            accounts[name] = credentials
            by_source += [(ipaddress.ip_network(c, strict=False), credentials) for c in carrier_model.addresses]
    lines = {r.line: r.trunk for r in registrations(config) if r.line}
    return PeerPolicies(found, tuple(by_source), lines=lines, carriers=tuple(carriers), accounts=accounts)


def gateway_specs(carrier: CarrierProfile) -> tuple[GatewaySpec, ...]:
    """A carrier's ``gateways:``, plain: each over its own transport, else the profile's."""
    return tuple(replace(parse_gateway(g.address, g.transport or carrier.transport),
                         priority=g.priority, weight=g.weight) for g in carrier.gateways)


def keepalives(config: LoadedConfig) -> tuple[KeepaliveConfig, ...]:
    """Every profile's ``keepalive:``, plain, with its target: an agent's or bot's
    ``uri``; a carrier's trunk host (else its registrar, else its health target)."""
    found = []
    for name, loaded in sorted(config.profiles.items()):
        profile = loaded.model
        if profile.keepalive is None:
            continue
        if isinstance(profile, CarrierProfile):
            target = _carrier_target(profile)
            if target is None:
                raise ConfigError([Problem(str(loaded.document.path), None, "keepalive",
                                           "keep-alives need a trunk, register or health target")])
        else:
            target = profile.uri
        uri = parse_uri(target)
        transport = "tls" if getattr(uri, "scheme", "sip") == "sips" else (
            getattr(uri, "transport", None) or profile.transport)
        found.append(KeepaliveConfig(profile=name, target=target, transport=transport,
                                     interval=profile.keepalive.interval, timeout=profile.keepalive.timeout,
                                     account=account(config, name, profile.auth)))
    return tuple(found)


def _carrier_target(carrier: CarrierProfile) -> str | None:
    if carrier.gateways:  # where its calls go: the first listed gateway, over its transport
        first = gateway_specs(carrier)[0]
        plain = first.uri.startswith("sips:") or first.transport == "udp"
        return first.uri if plain else f"{first.uri};transport={first.transport}"
    if carrier.trunk is not None:
        uri = parse_uri(str(carrier.trunk).replace("{number}", "x"))
        port = f":{uri.port}" if getattr(uri, "port", None) else ""
        return f"{getattr(uri, 'scheme', 'sip')}:{uri.host}{port}"  # type: ignore[union-attr]
    if carrier.registration is not None:
        return carrier.registration.registrar
    if carrier.health is not None and carrier.health.target is not None:
        return carrier.health.target
    return None


def health_checks(config: LoadedConfig) -> tuple[TrunkHealthConfig, ...]:
    """Every carrier profile's ``health:``, plain; the target defaults to the trunk's host."""
    found = []
    for name, carrier in sorted(profiles_of(config, CarrierProfile).items()):
        health = carrier.health
        if health is None:
            continue
        target = health.target
        listed = gateway_specs(carrier)
        if listed:
            target = listed[0].uri  # for display; each listed gateway is pinged at its own
        elif target is None:
            trunk = carrier.trunk or config.daemon.calls.trunk
            if trunk is None:
                raise ConfigError([Problem(str(config.profiles[name].document.path), None, "health.target",
                                           "health checks need a target (or the profile's trunk)")])
            uri = parse_uri(trunk.replace("{number}", "x"))
            port = f":{uri.port}" if getattr(uri, "port", None) else ""
            target = f"{getattr(uri, 'scheme', 'sip')}:{uri.host}{port}"  # type: ignore[union-attr]
        found.append(TrunkHealthConfig(
            trunk=name, target=target, transport=carrier.transport, gateways=listed,
            settings=HealthSettings(interval=health.interval, timeout=health.timeout,
                                    down_after=health.down_after, up_after=health.up_after),
            account=account(config, name, carrier.auth)))
    return tuple(found)


def _plain(base: Any, model: Any) -> Any:
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in model.model_dump().items()}
    return replace(base, **{k: v for k, v in values.items() if k in base.__dataclass_fields__})


def resolve(config: LoadedConfig, path: str) -> Path:
    """A path from the config: relative ones are relative to the config file's folder."""
    p = Path(path)
    return p if p.is_absolute() else config.base_dir / p


def _flow_bot_uri(config: LoadedConfig, name: str | None = None) -> str | None:
    """The engine bridges a call straight to a bot (``bot_uri``) or runs its flow: a
    flow (the default one unless named) whose first node is a bot node means the former."""
    name = name or config.daemon.default_flow
    if name is None or name not in config.flows:
        return None
    flow: FlowFile = config.flows[name].model
    node = flow.nodes[flow.start or next(iter(flow.nodes))]
    if isinstance(node, BotNode):
        profile = config.profiles.get(node.profile)
        return profile.model.uri if profile is not None else None
    return None


def _bot_profile(config: LoadedConfig, uri: str | None) -> BotProfile | None:
    return next((b for b in profiles_of(config, BotProfile).values() if b.uri == uri), None)


def engine_config(daemon: DaemonConfig) -> EngineConfig:
    """The engine's settings, built here and nowhere else (at start and for each
    reload): ``daemon`` (flags applied) gives addresses, ports and ``calls.*``; the
    files it came from (``daemon.source``; None for the embedded default) give the
    flow and what the profiles say. Without files the engine runs the demo flow."""
    config: LoadedConfig | None = daemon.source
    calls = daemon.calls
    transfer: dict[str, Any] = {
        "allow": calls.transfer_allow, "trunk": calls.trunk, "country_code": calls.country_code,
        "ring_timeout": calls.ring_timeout, "refer_sub": calls.refer_sub,
        "refer_timeout": calls.refer_timeout, "notify_timeout": calls.notify_timeout,
        "bot_refer_method": calls.transfer_method,
        "bot_refer_methods": calls.transfer_methods,
        "bot_listens": calls.bot_listens,
        "warm": WarmSettings(**calls.warm),
    }
    if calls.agent_uri and calls.agent_uri not in transfer["allow"]:
        transfer["allow"] = (*transfer["allow"], calls.agent_uri)  # the operator named it
    name = config.daemon.default_flow if config is not None else None
    flow = build_flow(config, name) if config is not None and name else runner.demo_flow(
        calls.agent_uri, calls.transfer_method)
    channels = router(config, flow, calls.bot_uri) if config is not None else None
    if config is not None:
        transfer["ringback"] = config.daemon.calls.ringback
        bot = _bot_profile(config, calls.bot_uri)
        if bot is not None:
            transfer["bot_refer_method"] = bot.refer_method
        transfer["legs"] = {
            str(parse_uri(profile.uri)): leg_policy(profile)
            for profile in (*profiles_of(config, AgentProfile).values(), *profiles_of(config, BotProfile).values())
            if leg_policy(profile) != LegPolicy()}
        transfer["agent_context_headers"] = {
            str(parse_uri(agent.uri)): tuple(agent.context_headers.items())
            for agent in profiles_of(config, AgentProfile).values() if agent.context_headers}
        carrier = default_carrier(config)
        if carrier is not None:
            transfer["bye_destination_header"] = carrier.bye_destination_header
            if carrier.context_headers:
                transfer["context_headers"] = dict(carrier.context_headers)
            transfer["caller_id"] = caller_id_policy(carrier.caller_id, carrier.auth)
            transfer["trunk_legs"] = leg_policy(carrier)
    known = {f.name for f in dataclasses.fields(TransferConfig)}
    return EngineConfig(
        host=daemon.sip.host,
        addresses=daemon.sip.addresses(),
        sip_port=daemon.sip.udp_port or daemon.sip.tcp_port or 5060,
        tls_port=daemon.tls.port,
        rtp_port_min=calls.rtp_port_min,
        rtp_port_max=calls.rtp_port_max,
        trusted_sources=calls.trusted_sources,
        auth_users=dict(calls.auth_users),
        auth_realm=calls.auth_realm,
        bot_uri=calls.bot_uri,
        bot_answer_timeout=calls.bot_answer_timeout,
        media_inactivity_timeout=calls.media_inactivity_timeout,
        media_hold_timeout=calls.media_hold_timeout,
        tts_cache_dir=calls.tts_cache_dir,
        flow=flow,
        router=channels,
        transfer=TransferConfig(**{k: v for k, v in transfer.items() if k in known}),
        peers=peer_policies(config) if config is not None else PeerPolicies(),
        dns=daemon.dns,
    )


# ------------------------------------------------------------------------------ channels


def router(config: LoadedConfig, default_flow: runner.Flow, default_bot_uri: str | None) -> Router:
    """``routes:`` as the engine's :class:`Router`. A route without ``flow`` runs
    what a call without routes runs (``default_flow``, or ``calls.bot_uri``); one
    with a flow runs it, or goes straight to its bot when the flow starts with a bot
    node. The first route without conditions is the default; with none, channel
    ``default`` is. Checked first (checks.py): names exist, patterns compile."""
    built: dict[tuple[str, str | None], runner.Flow] = {}

    def channel(route: RouteModel) -> Channel:
        integration = route.integration
        if route.flow is None and integration is None:
            return Channel(route.channel, default_flow, default_bot_uri)
        transfer = channel_transfer(config, integration)
        name = route.flow or config.daemon.default_flow
        if name is None:  # the demo flow: it takes no integration
            return Channel(route.channel, default_flow, default_bot_uri, integration, transfer)
        if (name, integration) not in built:
            built[name, integration] = build_flow(config, name, channel_integration=integration)
        bot_uri = _flow_bot_uri(config, name) if route.flow is not None else default_bot_uri
        return Channel(route.channel, built[name, integration], bot_uri, integration, transfer)

    carriers = profiles_of(config, CarrierProfile)
    routes: list[Route] = []
    for model in config.daemon.routes:
        match = model.match
        carrier = carriers.get(match.carrier) if match.carrier is not None else None
        route = Route(
            channel(model),
            called=compile_pattern(match.called) if match.called is not None else None,
            to=compile_pattern(match.to) if match.to is not None else None,
            headers=tuple((name, compile_pattern(p)) for name, p in match.headers.items()),
            carrier=match.carrier,
            networks=tuple(ipaddress.ip_network(c, strict=False) for c in carrier.addresses) if carrier else (),
        )
        if route.is_default:
            return Router(route.channel, tuple(routes))
        routes.append(route)
    return Router(Channel(DEFAULT_CHANNEL, default_flow, default_bot_uri), tuple(routes))


def channel_transfer(config: LoadedConfig, integration: str | None) -> ChannelTransfer | None:
    """What a channel's integration says about the transfers no flow node describes (a
    bot's REFER, an API transfer): its methods, headers and destination; its target
    and fallback are a flow node's business (a rule's goto names a node of the flow)."""
    model = config.daemon.integrations.get(integration) if integration is not None else None
    if model is None:
        return None
    methods = tuple(a.method for a in model.attempts) if model.attempts else (
        (model.method,) if model.method else ())
    return ChannelTransfer(methods, tuple((model.headers or {}).items()), model.destination)


# ------------------------------------------------------------------------------ flows


@dataclass
class _Layer:
    document: Document
    path: tuple[Any, ...]
    model: Any


@dataclass
class _Settings:
    """An agent_transfer node's settings, layered over its integration's."""

    layers: list[_Layer]

    def get(self, name: str) -> tuple[Any, _Layer | None]:
        for layer in self.layers:
            value = getattr(layer.model, name)
            if value is not None:
                return value, layer
        return None, None

    def merged(self, name: str) -> list[tuple[Any, Any, _Layer]]:
        """A dict field across layers, the node's entries winning: (key, value, layer)."""
        seen: dict[Any, tuple[Any, Any, _Layer]] = {}
        for layer in reversed(self.layers):
            for key, value in (getattr(layer.model, name) or {}).items():
                seen[key] = (key, value, layer)
        return list(seen.values())


def build_flow(config: LoadedConfig, name: str, problems: list[Problem] | None = None,
               channel_integration: str | None = None) -> runner.Flow:
    """The flow ``name`` as the runner's dataclasses, its agent_transfer nodes with
    ``channel_integration`` (a route's) under their own settings. With ``problems``
    every problem found is appended there (``voicegw check``); without, they raise
    ConfigError."""
    found: list[Problem] = [] if problems is None else problems
    before = len(found)
    source = config.flows[name]
    model: FlowFile = source.model
    nodes: dict[str, runner.Node] = {}
    for node_name, node in model.nodes.items():
        if isinstance(node, MessageNode):
            nodes[node_name] = runner.MessageNode(node_name, node.text or "", node.next,
                                                  _file(config, node.file))
        elif isinstance(node, CollectNode):
            prompt = node.prompt
            nodes[node_name] = runner.CollectNode(
                node_name, dict(node.routes), node.timeout, node.on_timeout, node.on_invalid,
                prompt.text if prompt else None, _file(config, prompt.file) if prompt else None)
        elif isinstance(node, BotNode):
            profile = config.profiles.get(node.profile)
            bot = profile.model if profile is not None else None
            nodes[node_name] = runner.BotNode(
                node_name, bot.uri if isinstance(bot, BotProfile) else "", node.next, node.on_failure,
                bot.timeouts.answer if isinstance(bot, BotProfile) else 30.0, node.profile)
        elif isinstance(node, AgentTransferNode):
            built = _agent_transfer(config, source, node_name, node, found, channel_integration)
            if built is not None:
                nodes[node_name] = built
        elif isinstance(node, GotoNode):
            nodes[node_name] = runner.GotoNode(node_name, node.node)
        elif isinstance(node, HangupNode):
            nodes[node_name] = runner.HangupNode(node_name)
    if len(found) > before:
        if problems is None:
            raise ConfigError(found)
        return None  # type: ignore[return-value]
    start = model.start or next(iter(model.nodes))
    try:
        return runner.Flow(model.name, start, nodes, post_agent=model.post_agent.goto)
    except ValueError as error:  # checks.py reports unknown nodes first, located
        found.append(source.document.problem(("nodes",), str(error)))
        if problems is None:
            raise ConfigError(found) from None
        return None  # type: ignore[return-value]


def _file(config: LoadedConfig, name: str | None) -> str | None:
    return None if name is None else str(resolve(config, name))


def integration_of(config: LoadedConfig, flow: FlowFile, node: AgentTransferNode,
                   channel: str | None = None) -> str | None:
    """The integration an agent_transfer node takes its defaults from: its own, the
    channel's, the flow's, then ``default_integration``."""
    return node.integration or channel or flow.integration or config.daemon.default_integration


def _agent_transfer(config: LoadedConfig, source: Source, node_name: str, node: AgentTransferNode,
                    problems: list[Problem], channel: str | None = None) -> runner.AgentTransferNode | None:
    document = source.document
    layers = [_Layer(document, ("nodes", node_name), node)]
    integration = integration_of(config, source.model, node, channel)
    if integration is not None and integration in config.daemon.integrations:
        layers.append(_Layer(config.settings.document, ("integrations", integration),
                             config.daemon.integrations[integration]))
    settings = _Settings(layers)
    count = len(problems)
    target, target_layer = settings.get("target")
    if target is None:
        problems.append(document.problem(("nodes", node_name, "target"),
                                         "required (here or in the node's integration)"))
        return None
    method = settings.get("method")[0] or "invite"
    destination, dest_layer = settings.get("destination")
    if destination is not None and method != "bye":
        assert dest_layer is not None
        problems.append(dest_layer.document.problem((*dest_layer.path, "destination"),
                                                    f"destination is only for method bye, not {method}"))
    attempts_model, attempts_layer = settings.get("attempts")
    attempts: list[tuple[str, str, _Layer, tuple[Any, ...]]] = []
    if attempts_model:
        assert attempts_layer is not None
        for index, attempt in enumerate(attempts_model):
            path = (*attempts_layer.path, "attempts", index)
            if attempt.target is None:
                attempts.append((attempt.method, target, target_layer, (*target_layer.path, "target")))  # type: ignore[union-attr]
            else:
                attempts.append((attempt.method, attempt.target, attempts_layer, (*path, "target")))
    else:
        assert target_layer is not None
        attempts.append((method, target, target_layer, (*target_layer.path, "target")))
    resolved: list[tuple[str, str]] = []
    target_profile: AgentProfile | None = None
    for how, text, layer, path in attempts:
        uri, profile = _resolve_target(config, text, how, layer.document, path, problems)
        if uri is not None:
            resolved.append((how, uri))
            target_profile = target_profile or profile
    policy = _policy(config, source.model, settings, target_profile, problems)
    if len(problems) > count or not resolved:
        return None
    headers = [(k, v) for k, v, _ in settings.merged("headers")]
    first_method, first_target = resolved[0]
    return runner.AgentTransferNode(
        node_name, first_target, first_method, on_failure=None,
        more_attempts=tuple(resolved[1:]), fallback=policy, headers=tuple(headers),
        destination=destination,
        ring_timeout=target_profile.timeouts.ring if target_profile else None,
        context_headers=tuple(target_profile.context_headers.items())
        if target_profile and target_profile.context_headers else None,
        caller_id=caller_id_policy(target_profile.caller_id, getattr(target_profile, "auth", None))
        if target_profile and target_profile.caller_id else None,
    )


def leg_policy(profile: Any) -> LegPolicy:
    """How voicegw places its legs to ``profile`` (transport, SRTP offer, delayed offer, early media)."""
    return LegPolicy(transport=None if profile.transport == "udp" else profile.transport, srtp=profile.srtp,
                     delayed_offer=profile.delayed_offer, early_media=profile.early_media)


def caller_id_policy(model: CallerId, auth: Any = None) -> CallerIdPolicy:
    """``auth``: the profile's ``auth:`` (its username is ``number: auth``'s From user)."""
    return CallerIdPolicy(**model.model_dump(), auth_user=auth.username if auth is not None else None)


def _resolve_target(config: LoadedConfig, text: str, method: str, document: Document,
                    path: tuple[Any, ...], problems: list[Problem]) -> tuple[str | None, AgentProfile | None]:
    """What the engine dials for ``text`` (an agent profile's URI, a number, a URI),
    and the profile; a target the allow-list refuses is a problem here, not a
    ``policy`` failure on every call."""
    if is_number(text):
        carrier = default_carrier(config)
        trunk = carrier.trunk if carrier is not None and carrier.trunk else config.daemon.calls.trunk
        if not trunk:
            problems.append(document.problem(path, f"{text!r} is a phone number, and no carrier "
                                             "profile (or calls.trunk) gives a trunk to dial it"))
            return None, None
        number = normalise_number(text, country_code(config))
        if number is None:
            problems.append(document.problem(path, f"{text!r} is not a valid phone number (E.164: "
                                             "a country code not starting with 0, at most 15 digits)"))
            return None, None
        if not _allowed(config, number):
            problems.append(document.problem(path, f"{number} matches no transfer_allow pattern"))
            return None, None
        return text, None
    if text.startswith("desk:"):  # the agent desk: never leaves the box, no allow-list
        desk = config.daemon.desk
        name = text[len("desk:"):]
        if name not in desk.agents and name not in desk.queues:
            problems.append(document.problem(path, f"{text}: no desk agent or queue {name!r} (desk.agents, desk.queues)"))
            return None, None
        return text, None
    if text.startswith(("sip:", "sips:")):
        if not _allowed(config, text):
            problems.append(document.problem(path, f"{text} matches no transfer_allow pattern"))
            return None, None
        return text, None
    source = config.profiles.get(text)
    if source is None:
        problems.append(document.problem(path, f"unknown profile {text!r} (not a number or SIP URI either)"))
        return None, None
    if not isinstance(source.model, AgentProfile):
        problems.append(document.problem(path, f"profile {text!r} is a {source.model.kind}, not an agent"))
        return None, None
    return source.model.uri, source.model


def _allowed(config: LoadedConfig, target: str) -> bool:
    return any(fnmatch.fnmatchcase(target, p) for p in allow_list(config))


@dataclass
class _RuleOrigin:
    layer: _Layer
    path: tuple[Any, ...]


@dataclass
class _Rules:
    rules: list[FallbackRule] = field(default_factory=list)
    origins: list[_RuleOrigin] = field(default_factory=list)


def _policy(config: LoadedConfig, flow: FlowFile, settings: _Settings, profile: AgentProfile | None,
            problems: list[Problem]) -> FallbackPolicy | None:
    """The node's fallback: its ``fallback`` (or its integration's, or the target
    profile's), plus ``on_failure`` shortcuts (goto rules), with ``error_prompt`` as
    the prompt of every goto/end rule that has none."""
    fallback, layer = settings.get("fallback")
    if fallback is None and profile is not None and profile.fallback is not None:
        source = config.profiles[profile.name]
        fallback, layer = profile.fallback, _Layer(source.document, (), profile)
    error_prompt_model, _ = settings.get("error_prompt")
    error_prompt = _prompt(config, error_prompt_model)
    collected = _Rules()
    if fallback is not None:
        assert layer is not None
        for index, rule in enumerate(fallback.rules):
            for key in rule.match:
                collected.rules.append(_rule(config, rule, key, error_prompt))
                collected.origins.append(_RuleOrigin(layer, (*layer.path, "fallback", "rules", index)))
    default: FallbackRule | None = None
    default_origin: _RuleOrigin | None = None
    for key, node, on_layer in settings.merged("on_failure"):
        path = (*on_layer.path, "on_failure", key)
        rule = FallbackRule(key, "goto", prompt=error_prompt, node=node)
        if key == DEFAULT_MATCH:
            default, default_origin = rule, _RuleOrigin(on_layer, path)
            continue
        clash = next((i for i, r in enumerate(collected.rules) if r.match == key), None)
        if clash is not None:
            where = collected.origins[clash]
            problems.append(on_layer.document.problem(
                path, f"{key!r} is also matched by {'.'.join(map(str, where.path))}"))
            continue
        collected.rules.append(rule)
        collected.origins.append(_RuleOrigin(on_layer, path))
    if fallback is not None and fallback.default is not None:
        assert layer is not None
        default = _rule(config, fallback.default, DEFAULT_MATCH, error_prompt)
        default_origin = _RuleOrigin(layer, (*layer.path, "fallback", "default"))
    if default is None:
        default = FallbackRule(DEFAULT_MATCH, "end", prompt=error_prompt or PlainPrompt(text=DEFAULT_ERROR_PROMPT))
    for rule, origin in [*zip(collected.rules, collected.origins), (default, default_origin)]:
        if rule.node is not None and rule.node not in flow.nodes and origin is not None:
            problems.append(origin.layer.document.problem(
                (*origin.path, "node") if "on_failure" not in origin.path else origin.path,
                f"unknown node {rule.node!r} in flow {flow.name!r}"))
    exhausted = None
    if fallback is not None and fallback.on_exhausted is not None:
        exhausted = _rule(config, fallback.on_exhausted, "exhausted", error_prompt)
    try:
        return FallbackPolicy(
            rules=tuple(collected.rules), default=default,
            max_total_attempts=fallback.max_total_attempts if fallback else 3,
            on_exhausted=exhausted,
        )
    except FallbackConfigError as error:
        problems.append(_fallback_problem(error, collected, layer, default_origin))
        return None


def _rule(config: LoadedConfig, body: RuleBody, match: str, error_prompt: PlainPrompt | None) -> FallbackRule:
    prompt = _prompt(config, body.prompt)
    if prompt is None and body.action in ("goto", "end"):
        prompt = error_prompt
    return FallbackRule(match, body.action, prompt=prompt, node=body.node,
                        max_attempts=body.max_attempts, end_message=_prompt(config, body.end_message))


def _prompt(config: LoadedConfig, prompt: Prompt | None) -> PlainPrompt | None:
    if prompt is None:
        return None
    return PlainPrompt(file=_file(config, prompt.file), text=prompt.text)


def _fallback_problem(error: FallbackConfigError, rules: _Rules, layer: _Layer | None,
                      default_origin: _RuleOrigin | None) -> Problem:
    """FallbackConfigError's ``rules[2].match`` as a located problem."""
    head, _, rest = error.path.partition(".")
    if head.startswith("rules[") and rules.origins:
        origin = rules.origins[int(head[6:-1])]
        path: Iterable[Any] = (*origin.path, *([rest] if rest else []))
        return origin.layer.document.problem(path, error.message)
    if layer is not None:
        return layer.document.problem((*layer.path, "fallback", *error.path.split(".")), error.message)
    if default_origin is not None:
        return default_origin.layer.document.problem(default_origin.path, error.message)
    return Problem("", None, error.path, error.message)


def _split(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def media_plane(config: LoadedConfig) -> MediaPlaneConfig:
    """``media.backend`` and ``media.rtpengine`` (its files folder relative to the config)."""
    media = config.daemon.media
    engine = media.rtpengine
    return MediaPlaneConfig(
        backend=media.backend, rtpengine_ng=_split(engine.ng),
        rtpengine_dtmf=_split(engine.dtmf_listen) if engine.dtmf_listen else None,
        rtpengine_files=str(resolve(config, engine.files)))


__all__ = [
    "allow_list", "build_flow", "country_code", "daemon_config", "default_carrier",
    "engine_config", "media_plane", "resolve", "router", "trusted_sources",
]

