"""Checks that need more than one field or file: every node named exists, profiles
named exist and have the right kind, no goto cycle without a prompt or a wait, the
chosen carrier and flow exist, prompt files exist, ports do not collide. Then each
flow is converted for real (:func:`convert.build_flow`), which checks transfer
targets against the allow-list and the fallback rules. Each problem is located."""

from __future__ import annotations

from typing import Any

from .convert import _plain, build_flow, default_carrier, gateway_specs, resolve
from .defaults import DaemonConfig
from .errors import Problem
from .loader import LoadedConfig, Source
from .models import (
    PASS_THROUGH,
    AgentTransferNode,
    BotNode,
    BotProfile,
    CarrierProfile,
    CollectNode,
    FlowFile,
    GotoNode,
    MessageNode,
)


def check_all(config: LoadedConfig) -> list[Problem]:
    problems = _daemon(config)
    for source in config.profiles.values():
        problems += _profile(source)
        problems += _gateways(config, source)
    broken: set[str] = set()
    for source in config.flows.values():
        found = _flow(config, source)
        problems += found
        if not found:
            before = len(problems)
            build_flow(config, source.model.name, problems)
            if len(problems) > before:
                broken.add(source.model.name)
        else:
            broken.add(source.model.name)
    problems += _routes(config, broken)
    for source, path, file in _prompt_files(config):
        if not resolve(config, file).is_file():
            problems.append(source.document.problem(path, f"prompt file {file!r} not found "
                                                    f"(relative to {config.base_dir})"))
    return problems


def _daemon(config: LoadedConfig) -> list[Problem]:
    d = config.daemon
    doc = config.settings.document
    problems: list[Problem] = []
    if d.api.enabled and d.api.host == d.sip.host and "tcp" in d.sip.transports:
        tcp = d.sip.tcp_port if d.sip.tcp_port is not None else d.sip.port
        if d.api.port == tcp and tcp != 0:
            problems.append(doc.problem(("api", "port"), f"{d.api.port} is also the SIP TCP port"))
    if d.desk.enabled and not d.api.enabled:
        problems.append(doc.problem(("desk", "enabled"), "the desk is served by the control API: api.enabled"))
    if d.desk.enabled and not _loopback(d.api.host) and d.desk.tls_cert_file is None:
        problems.append(doc.problem(("desk", "tls_cert_file"), "the desk needs TLS when the API listens "
                                    f"outside loopback ({d.api.host}): tls_cert_file and tls_key_file"))
    problems += _rtpengine(config)
    for name in PASS_THROUGH:  # a section's own check (tls: cert_file with key_file...)
        plain = _plain(getattr(DaemonConfig(), name), getattr(d, name))
        checker = getattr(plain, "check", None)
        if callable(checker):
            try:
                checker()
            except Exception as error:  # noqa: BLE001 - the section's message, located
                problems.append(doc.problem((name,), str(error)))
    carriers = [n for n, s in config.profiles.items() if isinstance(s.model, CarrierProfile)]
    if d.calls.carrier is not None:
        if d.calls.carrier not in carriers:
            problems.append(doc.problem(("calls", "carrier"), _unknown("carrier profile", d.calls.carrier, carriers)))
    elif len(carriers) > 1:
        problems.append(doc.problem(("calls",), f"several carrier profiles ({', '.join(sorted(carriers))}): "
                                    "set calls.carrier to the one for phone numbers and REFER"))
    if d.default_flow is not None and d.default_flow not in config.flows:
        problems.append(doc.problem(("default_flow",), _unknown("flow", d.default_flow, list(config.flows))))
    if d.default_integration is not None and d.default_integration not in d.integrations:
        problems.append(doc.problem(("default_integration",),
                                    _unknown("integration", d.default_integration, list(d.integrations))))
    return problems


def _rtpengine(config: LoadedConfig) -> list[Problem]:
    """What ``media.backend: rtpengine`` cannot carry (docs/scaling.md, Media plane): a
    refusal now rather than calls that go wrong later."""
    d = config.daemon
    doc = config.settings.document
    if d.media.backend != "rtpengine":
        return []
    problems: list[Problem] = []
    if d.calls.bot_listens:
        problems.append(doc.problem(("calls", "bot_listens"), "the bot cannot listen to a transfer with "
                                    "media.backend: rtpengine (the mix of caller and agent is made in "
                                    "voicegw's own relay): set it false, or media.backend: relay"))
    if d.desk.enabled:
        problems.append(doc.problem(("desk", "enabled"), "desk agents' WebRTC legs join through voicegw's "
                                    "own relay: media.backend: relay for the desk"))
    return problems


def _routes(config: LoadedConfig, broken: set[str]) -> list[Problem]:
    """``routes:``: the flows, integrations and carrier profiles named exist, nothing
    follows a route that matches every call, and each flow a channel gives its own
    integration still builds (its nodes' targets then come from that integration)."""
    d = config.daemon
    doc = config.settings.document
    problems: list[Problem] = []
    carriers = [n for n, s in config.profiles.items() if isinstance(s.model, CarrierProfile)]
    default_at: int | None = None
    for index, route in enumerate(d.routes):
        at = ("routes", index)
        if default_at is not None:
            problems.append(doc.problem(at, f"never reached: routes.{default_at} (channel "
                                        f"{d.routes[default_at].channel!r}) has no match and takes every call"))
        elif _empty(route):
            default_at = index
        if route.flow is not None and route.flow not in config.flows:
            problems.append(doc.problem((*at, "flow"), _unknown("flow", route.flow, list(config.flows))))
        if route.integration is not None and route.integration not in d.integrations:
            problems.append(doc.problem((*at, "integration"),
                                        _unknown("integration", route.integration, list(d.integrations))))
        carrier = route.match.carrier
        if carrier is not None:
            profile = config.profiles.get(carrier)
            if profile is None:
                problems.append(doc.problem((*at, "match", "carrier"), _unknown("carrier profile", carrier, carriers)))
            elif not isinstance(profile.model, CarrierProfile):
                problems.append(doc.problem((*at, "match", "carrier"),
                                            f"profile {carrier!r} is not a carrier (kind: {profile.model.kind})"))
    if problems:
        return problems
    for route in d.routes:
        name = route.flow or d.default_flow
        if route.integration is None or name is None or name in broken:
            continue
        found: list[Problem] = []
        build_flow(config, name, found, channel_integration=route.integration)
        problems += [p for p in found if p not in problems]
    return problems


def _empty(route: Any) -> bool:
    match = route.match
    return match.called is None and match.to is None and match.carrier is None and not match.headers


def _profile(source: Source) -> list[Problem]:
    model = source.model
    problems: list[Problem] = []
    if isinstance(model, CarrierProfile):
        # voicegw/numbers.normalise_number knows these two prefixes only (for now)
        for key, default in (("national_prefix", "0"), ("international_prefix", "00")):
            if getattr(model.numbers, key) != default:
                problems.append(source.document.problem(
                    ("numbers", key), f"only {default!r} is supported by the engine for now"))
    return problems


def _gateways(config: LoadedConfig, source: Source) -> list[Problem]:
    """A carrier's ``gateways:`` replace locating its trunk's host: they need the trunk
    (its URI is the Request-URI) and exclude the other ways of saying where calls go."""
    model = source.model
    if not isinstance(model, CarrierProfile) or not model.gateways:
        return []
    doc = source.document
    problems: list[Problem] = []
    trunk = model.trunk or (config.daemon.calls.trunk if default_carrier(config) is model else None)
    if trunk is None:
        problems.append(doc.problem(("gateways",), "gateways need a trunk (sip:{number}@HOST): its URI is "
                                    "the Request-URI of the calls sent to them"))
    if model.outbound_proxy is not None:
        problems.append(doc.problem(("outbound_proxy",), "a carrier with gateways sends its calls to them: "
                                    "drop outbound_proxy, or list the proxy as the gateway"))
    if model.health is not None and model.health.target is not None:
        problems.append(doc.problem(("health", "target"), "the listed gateways are pinged, each at its "
                                    "own address: drop health.target"))
    seen: dict[tuple[str, str], int] = {}
    for index, spec in enumerate(gateway_specs(model)):
        key = (spec.uri.lower(), spec.transport)
        if key in seen:
            problems.append(doc.problem(("gateways", index, "address"),
                                        f"the same gateway as gateways[{seen[key]}]"))
        seen.setdefault(key, index)
    return problems


def _flow(config: LoadedConfig, source: Source) -> list[Problem]:
    flow: FlowFile = source.model
    doc = source.document
    names = list(flow.nodes)
    problems: list[Problem] = []

    def ref(path: tuple[Any, ...], target: str | None) -> None:
        if target is not None and target not in flow.nodes:
            problems.append(doc.problem(path, _unknown("node", target, names)))

    ref(("start",), flow.start)
    ref(("post_agent", "goto"), flow.post_agent.goto)
    if flow.integration is not None and flow.integration not in config.daemon.integrations:
        problems.append(doc.problem(("integration",),
                                    _unknown("integration", flow.integration, list(config.daemon.integrations))))
    for name, node in flow.nodes.items():
        at = ("nodes", name)
        if isinstance(node, MessageNode):
            ref((*at, "next"), node.next)
        elif isinstance(node, CollectNode):
            for key, target in node.routes.items():
                ref((*at, "routes", key), target)
            ref((*at, "on_timeout"), node.on_timeout)
            ref((*at, "on_invalid"), node.on_invalid)
        elif isinstance(node, BotNode):
            ref((*at, "next"), node.next)
            ref((*at, "on_failure"), node.on_failure)
            profile = config.profiles.get(node.profile)
            bots = [n for n, s in config.profiles.items() if isinstance(s.model, BotProfile)]
            if profile is None:
                problems.append(doc.problem((*at, "profile"), _unknown("bot profile", node.profile, bots)))
            elif not isinstance(profile.model, BotProfile):
                problems.append(doc.problem((*at, "profile"),
                                            f"profile {node.profile!r} is a {profile.model.kind}, not a bot"))
        elif isinstance(node, GotoNode):
            ref((*at, "node"), node.node)
        elif isinstance(node, AgentTransferNode):
            for key, target in (node.on_failure or {}).items():
                ref((*at, "on_failure", key), target)
            if node.integration is not None and node.integration not in config.daemon.integrations:
                problems.append(doc.problem((*at, "integration"), _unknown(
                    "integration", node.integration, list(config.daemon.integrations))))
    if not problems:
        problems += _goto_cycles(source)
    return problems


def _goto_cycles(source: Source) -> list[Problem]:
    """A goto chain that comes back to itself never plays or waits: the call would
    spin until the runner's step limit, so the flow is refused."""
    flow: FlowFile = source.model
    problems: list[Problem] = []
    reported: set[str] = set()
    for start, node in flow.nodes.items():
        if not isinstance(node, GotoNode) or start in reported:
            continue
        chain = [start]
        current = node.node
        while isinstance(flow.nodes.get(current), GotoNode) and current not in chain:
            chain.append(current)
            current = flow.nodes[current].node  # type: ignore[union-attr]
        if current in chain:
            cycle = chain[chain.index(current):]
            reported.update(cycle)
            problems.append(source.document.problem(
                ("nodes", cycle[0], "node"),
                f"goto cycle {' -> '.join([*cycle, cycle[0]])} never plays a prompt or waits for input"))
    return problems


def _prompt_files(config: LoadedConfig) -> list[tuple[Source, tuple[Any, ...], str]]:
    files: list[tuple[Source, tuple[Any, ...], str]] = []
    for source in config.flows.values():
        for name, node in source.model.nodes.items():
            if isinstance(node, MessageNode) and node.file:
                files.append((source, ("nodes", name, "file"), node.file))
            elif isinstance(node, CollectNode) and node.prompt and node.prompt.file:
                files.append((source, ("nodes", name, "prompt", "file"), node.prompt.file))
            elif isinstance(node, AgentTransferNode) and node.error_prompt and node.error_prompt.file:
                files.append((source, ("nodes", name, "error_prompt", "file"), node.error_prompt.file))
    for name, integration in config.daemon.integrations.items():
        if integration.error_prompt and integration.error_prompt.file:
            files.append((config.settings, ("integrations", name, "error_prompt", "file"),
                          integration.error_prompt.file))
    return files


def _unknown(what: str, name: str, known: list[str]) -> str:
    listed = ", ".join(sorted(known)) if known else "none defined"
    return f"unknown {what} {name!r} (known: {listed})"


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
