"""``routes:`` in voicegw.yaml: loaded into the engine's router (which flow each
channel runs, with which integration, which bot), and every mistake reported as
``file:line: field: message`` by the loader and ``voicegw check``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicegw.config.convert import daemon_config, engine_config
from voicegw.config.errors import ConfigError
from voicegw.config.load import load_config
from voicegw.flow.router import CallFacts, Channel
from voicegw.flow.runner import AgentTransferNode
from voicegw.settings import EngineConfig

AGENTS = {n: f"sip:{n}@127.0.0.1:{p}" for n, p in (("flow_agents", 5071), ("web_agents", 5072),
                                                      ("own_agent", 5073), ("fallback_agents", 5074))}
ROUTES: list[dict[str, Any]] = [
    {"channel": "sales", "match": {"called": r"\+49305551\d{3}"}, "flow": "sales"},
    {"channel": "web", "match": {"headers": {"X-Channel": "web"}}, "flow": "support",
     "integration": "web_agents"},
    {"channel": "partner", "match": {"carrier": "partner"}, "flow": "bot_first"},
    {"channel": "plain", "match": {"to": "plain"}, "integration": "web_agents"},
]


def write(tmp_path: Path, routes: list[dict[str, Any]] | None = None, **extra: Any) -> Path:
    for folder in ("flows", "sip_profiles"):
        (tmp_path / folder).mkdir(exist_ok=True)
    profiles = {
        "partner": {"kind": "carrier", "addresses": ["192.0.2.0/28"]},
        "agent": {"kind": "agent", "uri": AGENTS["own_agent"]},
        "bot": {"kind": "bot", "uri": "sip:bot@127.0.0.1:5090"},
    }
    for name, profile in profiles.items():
        (tmp_path / "sip_profiles" / f"{name}.yaml").write_text(yaml.safe_dump(profile))
    flows = {
        "main": {"nodes": {"bye": {"type": "hangup"}}},
        "sales": {"nodes": {"agent": {"type": "agent_transfer", "target": "agent"}}},
        # no target of its own: the flow's integration gives one, a channel's wins over it
        "support": {"integration": "flow_agents", "nodes": {
            "agent": {"type": "agent_transfer"},
            "own": {"type": "agent_transfer", "integration": "fallback_agents"}}},
        "bot_first": {"nodes": {"bot": {"type": "bot", "profile": "bot"}}},
    }
    for name, flow in flows.items():
        (tmp_path / "flows" / f"{name}.yaml").write_text(yaml.safe_dump(flow))
    config = {  # routes first: the lines the tests expect count from the top
        "routes": ROUTES if routes is None else routes,
        "calls": {"transfer_allow": list(AGENTS.values())},
        "default_flow": "main",
        "integrations": {name: {"target": uri} for name, uri in AGENTS.items() if name != "own_agent"},
        **extra,
    }
    path = tmp_path / "voicegw.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def engine(path: Path) -> EngineConfig:
    return engine_config(daemon_config(load_config(path)))


def route(config: EngineConfig, called: str = "1", to: str = "x", source: str = "198.51.100.1",
          headers: dict[str, str] | None = None) -> Channel:
    found = headers or {}
    return config.channel_for(CallFacts(called, to, source, lambda name: [v for k, v in found.items()
                                                                         if k.lower() == name.lower()]))


def target(channel: Channel, node: str = "agent") -> str:
    built = channel.flow.nodes[node]
    assert isinstance(built, AgentTransferNode)
    return built.target


def test_each_route_leads_to_its_flow_and_the_rest_to_the_default_channel(tmp_path: Path) -> None:
    config = engine(write(tmp_path))
    sales = route(config, called="+49305551234")
    assert (sales.name, sales.flow.name, sales.bot_uri) == ("sales", "sales", None)
    assert target(sales) == AGENTS["own_agent"]  # the node's own target (an agent profile)
    partner = route(config, source="192.0.2.5")
    assert (partner.name, partner.bot_uri) == ("partner", "sip:bot@127.0.0.1:5090")  # a bot-first flow
    other = route(config, called="+49305551234999")
    assert (other.name, other.flow.name, other.bot_uri) == ("default", "main", None)


def test_a_channels_integration_sits_between_the_flows_and_a_nodes_own(tmp_path: Path) -> None:
    config = engine(write(tmp_path, ROUTES + [{"channel": "voice", "match": {"to": "voice"}, "flow": "support"}]))
    web = route(config, headers={"x-channel": "web"})
    assert (web.name, web.integration) == ("web", "web_agents")
    assert target(web) == AGENTS["web_agents"]  # the channel's integration over the flow's
    assert target(web, "own") == AGENTS["fallback_agents"]  # the node's own integration over the channel's
    voice = route(config, to="voice")
    assert target(voice) == AGENTS["flow_agents"]  # no channel integration: the flow's
    plain = route(config, to="plain")  # no flow named: the default flow, with the channel's integration
    assert (plain.name, plain.flow.name) == ("plain", "main")


def test_a_route_without_match_is_the_default_channel(tmp_path: Path) -> None:
    config = engine(write(tmp_path, [ROUTES[0], {"channel": "everyone", "flow": "support"}]))
    assert config.router is not None and [r.channel.name for r in config.router.routes] == ["sales"]
    channel = route(config, called="42")
    assert (channel.name, channel.flow.name) == ("everyone", "support")


def test_without_routes_the_default_channel_runs_the_default_flow(tmp_path: Path) -> None:
    config = engine(write(tmp_path, []))
    channel = route(config)
    assert (channel.name, channel.flow.name) == ("default", "main")


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return [str(p) for p in error.value.problems]


def test_a_bad_regular_expression_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, [{"channel": "sales", "match": {"called": "+4930("}}])
    (found,) = problems(path)
    assert found.startswith(f"{path}:4: routes.0.match.called: '+4930(' is not a valid regular expression"), found
    path = write(tmp_path, [{"channel": "web", "match": {"headers": {"X-Channel": ""}}}])
    assert problems(path) == [(f"{path}:5: routes.0.match.headers.X-Channel: an empty pattern: "
                               "leave the condition out to match every call")]


def test_unknown_names_and_unreachable_routes_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, [
        {"channel": "a", "match": {"called": "1"}, "flow": "nope"},
        {"channel": "b", "match": {"carrier": "ghost"}, "integration": "nobody"},
        {"channel": "c", "match": {"carrier": "agent"}},
        {"channel": "all"},
        {"channel": "late", "match": {"called": "2"}},
    ])
    assert problems(path) == [
        f"{path}:5: routes.0.flow: unknown flow 'nope' (known: bot_first, main, sales, support)",
        (f"{path}:9: routes.1.integration: unknown integration 'nobody' "
         "(known: fallback_agents, flow_agents, web_agents)"),
        f"{path}:8: routes.1.match.carrier: unknown carrier profile 'ghost' (known: partner)",
        f"{path}:12: routes.2.match.carrier: profile 'agent' is not a carrier (kind: agent)",
        f"{path}:14: routes.4: never reached: routes.3 (channel 'all') has no match and takes every call",
    ]


def test_an_unknown_field_and_a_missing_channel_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, [{"match": {"number": "1"}}])
    assert problems(path) == [f"{path}:2: routes.0.channel: required",
                              f"{path}:3: routes.0.match.number: unknown field"]


def test_a_channel_integration_without_a_target_fails_the_flow_it_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, [{"channel": "web", "match": {"to": "w"}, "flow": "support", "integration": "empty"}])
    config = yaml.safe_load(path.read_text())
    config["integrations"]["empty"] = {"method": "refer"}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    found = problems(path)
    assert any("support.yaml" in p and "nodes.agent.target: required" in p for p in found), found


def test_voicegw_check_lists_the_channels(tmp_path: Path) -> None:
    write(tmp_path)
    result = subprocess.run([sys.executable, "-m", "voicegw", "check", "--config", "voicegw.yaml", "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    channels = json.loads(result.stdout)["channels"]
    assert [(c["channel"], c["flow"], c["integration"]) for c in channels] == [
        ("sales", "sales", None), ("web", "support", "web_agents"), ("partner", "bot_first", None),
        ("plain", "main", "web_agents"), ("default", "main", None)]
    assert channels[1]["match"] == {"headers": {"X-Channel": "web"}}
    text = subprocess.run([sys.executable, "-m", "voicegw", "check", "--config", "voicegw.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert text.returncode == 0 and text.stdout.rstrip().endswith(
        "; channels: sales -> sales, web -> support [web_agents], partner -> bot_first, "
        "plain -> main [web_agents], default -> main"), text.stdout
