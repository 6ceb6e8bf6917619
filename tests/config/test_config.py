"""The config loader: sample files load, every kind of error is located as
``file:line: field: message``, and the YAML demo flow is the built-in one."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from voicegw.config import convert
from voicegw.config.defaults import DEFAULT, from_mapping
from voicegw.config.errors import ConfigError
from voicegw.config.load import check, load_config, load_runtime
from voicegw.flow.fallback_policy import FallbackPolicy
from voicegw.flow.runner import (
    DEMO_FLOW,
    AgentTransferNode,
    CollectNode,
    Flow,
    FlowRunner,
    GotoNode,
    PlayPrompt,
    WaitForDigit,
    demo_flow,
)

ROOT = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(config: Path) -> list[str]:
    loaded, found = check(config)
    assert loaded is None, "expected problems"
    return [str(p) for p in found]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder with the repository's sample profiles and flows; paths in
    messages are relative because the tests run inside it."""
    monkeypatch.chdir(tmp_path)
    for folder in ("sip_profiles", "flows"):
        for sample in (ROOT / folder).glob("*.yaml"):
            write(tmp_path / folder, sample.name, sample.read_text())
    write(tmp_path, "voicegw.yaml", "log_level: info\n")
    return tmp_path


def test_the_samples_load(tree: Path) -> None:
    config = load_config(Path("voicegw.yaml"))
    assert set(config.profiles) == {"carrier-loopback", "agent-demo", "bot-demo"}
    assert set(config.flows) == {"demo", "support"}
    flow = convert.build_flow(config, "support")
    agent = flow.nodes["agent"]
    assert isinstance(agent, AgentTransferNode)
    assert (agent.method, agent.target) == ("refer", "sip:agent@127.0.0.1:5090")
    assert agent.more_attempts == (("invite", "sip:agent@127.0.0.1:5090"),)
    assert isinstance(agent.fallback, FallbackPolicy)
    assert agent.fallback.match(405)[0].action == "next"
    assert agent.fallback.match(486)[0].node == "menu"
    assert agent.fallback.default.node == "goodbye"
    assert flow.post_agent == "survey"


def test_the_repository_samples_check_without_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    config, found = check(None, profiles_dir=Path("sip_profiles"), flows_dir=Path("flows"))
    assert found == [] and config is not None


def test_demo_yaml_is_the_builtin_demo_flow(tree: Path) -> None:
    config = load_config(Path("voicegw.yaml"))
    flow = convert.build_flow(config, "demo")
    assert flow == demo_flow() == DEMO_FLOW


def test_no_file_is_the_embedded_default() -> None:
    config = convert.daemon_config(load_config(None))
    assert (config.sip.host, config.sip.udp_port, config.sip.tcp_port) == ("127.0.0.1", 5060, 5060)
    assert (config.api.host, config.api.port) == ("127.0.0.1", 5080)
    assert config.calls.tts_cache_dir == "var/tts"
    engine = convert.engine_config(config)
    assert engine.flow == DEMO_FLOW and engine.bot_uri is None


def test_the_test_lab_calls_section_still_works(tmp_path: Path) -> None:
    path = write(tmp_path, "voicegw.yaml", "calls: {bot_answer_timeout: 2}\n")
    config = load_runtime(path)
    # a flag over the file, as cli/main.py applies it
    config = replace(config, calls=from_mapping({"calls": {"bot_uri": "sip:bot@127.0.0.1:5072"}}, config).calls)
    assert config.calls.bot_answer_timeout == 2 and config.calls.bot_uri == "sip:bot@127.0.0.1:5072"


def test_an_agent_profiles_context_headers_reach_the_engine_by_its_uri(tree: Path) -> None:
    """For a bot's or the API's transfer to that URI (sip_profiles/agent-demo.yaml)."""
    write(tree, "voicegw.yaml", "sip: {port: 5099}\n")
    engine = convert.engine_config(convert.daemon_config(load_config(Path("voicegw.yaml"))))
    assert engine.transfer.agent_context_headers["sip:agent@127.0.0.1:5090"] == (
        ("X-VG-Caller", "caller"), ("X-VG-Summary", "summary"), ("X-VG-Transcript", "transcript_url"))


def test_a_default_flow_and_profiles_reach_the_engine(tree: Path) -> None:
    write(tree, "voicegw.yaml", "default_flow: support\nsip: {port: 5099, transports: [udp]}\n")
    config = load_config(Path("voicegw.yaml"))
    daemon = convert.daemon_config(config)
    assert (daemon.sip.host, daemon.sip.udp_port, daemon.sip.tcp_port) == ("127.0.0.1", 5099, None)
    assert daemon.calls.trunk == "sip:{number}@127.0.0.1:5070" and daemon.calls.country_code == "49"
    engine = convert.engine_config(daemon)
    assert isinstance(engine.flow, Flow) and engine.flow.name == "support"
    assert "+4930*" in engine.transfer.allow and "sip:agent@127.0.0.1:5090" in engine.transfer.allow
    assert engine.transfer.refer_timeout == 8


def test_goto_and_collect_prompts_run() -> None:
    menu = CollectNode("menu", {"1": "a"}, prompt="Press one.")
    flow = Flow("f", "a", {"a": GotoNode("a", "menu"), "menu": menu})
    runner = FlowRunner(flow)
    assert runner.start() == PlayPrompt("Press one.") and runner.current == "menu"
    assert runner.prompt_finished() == WaitForDigit(10.0)
    assert runner.digit("1") == PlayPrompt("Press one.")


# ----------------------------------------------------------------------------- errors
# Each case: files to write, then the exact messages expected.

CASES = {
    "yaml syntax": (
        {"voicegw.yaml": "sip:\n  host: [1\n"},
        ["voicegw.yaml:3: not valid YAML: while parsing a flow sequence expected ',' or ']', but got '<stream end>'"],
    ),
    "unknown key": (
        {"voicegw.yaml": "sip:\n  host: 127.0.0.1\n  hots: 1\n"},
        ["voicegw.yaml:3: sip.hots: unknown field"],
    ),
    "duplicate key": (
        {"voicegw.yaml": "log_level: info\nsip: {}\nlog_level: debug\n"},
        ["voicegw.yaml:3: log_level: duplicate key (first on line 1)"],
    ),
    "bad port": (
        {"voicegw.yaml": "api:\n  port: 70000\n"},
        ["voicegw.yaml:2: api.port: input should be less than or equal to 65535 (got 70000)"],
    ),
    "string for a number": (
        {"voicegw.yaml": "sip:\n  port: '5060'\n"},
        ["voicegw.yaml:2: sip.port: must be a whole number, not '5060'"],
    ),
    "bad cidr": (
        {"voicegw.yaml": "calls:\n  trusted_sources:\n    - 10.0.0.0/8\n    - 10.0.0.1/8\n"},
        [("voicegw.yaml:4: calls.trusted_sources.1: '10.0.0.1/8' is not a CIDR network "
         "(10.0.0.1/8 has host bits set)")],
    ),
    "bad external host": (
        {"voicegw.yaml": "sip:\n  external_host: nat.example.com\n"},
        [("voicegw.yaml:2: sip.external_host: 'nat.example.com' is not an IP address "
         "(voicegw binds to addresses, not names)")],
    ),
    "bad local net": (
        {"voicegw.yaml": "local_nets:\n  - 10.0.0.0/8\n  - 192.168.1.1/24\n"},
        [("voicegw.yaml:3: local_nets.1: '192.168.1.1/24' is not a CIDR network "
         "(192.168.1.1/24 has host bits set)")],
    ),
    "moved key": (
        {"voicegw.yaml": "calls:\n  rtp_port_min: 30000\n"},
        ["voicegw.yaml:2: calls.rtp_port_min: has moved to media.rtp_port_min"],
    ),
    "rtp range": (
        {"voicegw.yaml": "media:\n  rtp_port_min: 30000\n  rtp_port_max: 20000\n"},
        [("voicegw.yaml:1: media: rtp_port_min 30000 must be below rtp_port_max 20000 by 2 at least "
         "(one RTP + RTCP pair)")],
    ),
    "unknown default flow": (
        {"voicegw.yaml": "flows_dir: flows\ndefault_flow: main\n", "flows/other.yaml": "nodes: {h: {type: hangup}}\n"},
        ["voicegw.yaml:2: default_flow: unknown flow 'main' (known: other)"],
    ),
    "unknown node": (
        {"flows/main.yaml": """
            nodes:
              menu:
                type: collect
                routes:
                  1: nowhere
              bye: {type: hangup}
            """},
        ["flows/main.yaml:5: nodes.menu.routes.1: unknown node 'nowhere' (known: bye, menu)"],
    ),
    "unknown node type": (
        {"flows/main.yaml": "nodes:\n  a:\n    type: mesage\n    text: hi\n"},
        [("flows/main.yaml:2: nodes.a: unknown type 'mesage' (expected 'message', 'collect', 'bot', "
         "'agent_transfer', 'goto', 'hangup')")],
    ),
    "missing field": (
        {"flows/main.yaml": "nodes:\n  a:\n    type: goto\n"},
        ["flows/main.yaml:2: nodes.a.node: required"],
    ),
    "bad dtmf key": (
        {"flows/main.yaml": "nodes:\n  a:\n    type: collect\n    routes: {x: a}\n"},
        ["flows/main.yaml:4: nodes.a.routes.x: 'x' is not a DTMF key (0-9, *, #, A-D)"],
    ),
    "goto cycle": (
        {"flows/main.yaml": """
            nodes:
              start: {type: message, text: hi, next: a}
              a: {type: goto, node: b}
              b: {type: goto, node: a}
            """},
        ["flows/main.yaml:3: nodes.a.node: goto cycle a -> b -> a never plays a prompt or waits for input"],
    ),
    "bot profile of the wrong kind": (
        {"flows/main.yaml": "nodes:\n  a:\n    type: bot\n    profile: agent-x\n",
         "sip_profiles/agent-x.yaml": "kind: agent\nuri: sip:a@127.0.0.1\n"},
        ["flows/main.yaml:4: nodes.a.profile: profile 'agent-x' is a agent, not a bot"],
    ),
    "profile: caller_id identity": (
        {"sip_profiles/agent-x.yaml": "kind: agent\nuri: sip:a@127.0.0.1\ncaller_id:\n  identity: pia\n"},
        ["sip_profiles/agent-x.yaml:4: caller_id.identity: must be one of 'pai', 'ppi' or 'none', not 'pia'"],
    ),
    "profile: caller_id number": (
        {"sip_profiles/agent-x.yaml": "kind: agent\nuri: sip:a@127.0.0.1\ncaller_id: {number: 'a b'}\n"},
        [("sip_profiles/agent-x.yaml:3: caller_id.number: string should match pattern "
         "'^[A-Za-z0-9+\\-_.!~*'()&=$,;?/]+$' (got 'a b')")],
    ),
    "profile: caller_id number auth without auth": (
        {"sip_profiles/agent-x.yaml": "kind: agent\nuri: sip:a@127.0.0.1\ncaller_id: {number: auth}\n"},
        ["sip_profiles/agent-x.yaml:1: caller_id.number auth needs the profile's auth: (its username is the From user)"],
    ),
    "profile: transport": (
        {"sip_profiles/agent-x.yaml": "kind: agent\nuri: sip:a@127.0.0.1\ntransport: sctp\n"},
        ["sip_profiles/agent-x.yaml:3: transport: must be one of 'udp', 'tcp' or 'tls', not 'sctp'"],
    ),
    "profile: bad uri host": (
        {"sip_profiles/bot.yaml": "kind: bot\nuri: sip:bot@bot..example.com\n"},
        ["sip_profiles/bot.yaml:2: uri: 'sip:bot@bot..example.com' is not a SIP URI (bad host)"],
    ),
    "profile: unknown kind": (
        {"sip_profiles/x.yaml": "kind: pbx\n"},
        ["sip_profiles/x.yaml:1: unknown kind 'pbx' (expected 'carrier', 'agent', 'bot')"],
    ),
    "profile: field of another kind": (
        {"sip_profiles/a.yaml": "kind: agent\nuri: sip:a@127.0.0.1\naddresses: [127.0.0.0/8]\n"},
        ["sip_profiles/a.yaml:3: addresses: unknown field"],
    ),
    "profile: pattern that allows everything": (
        {"sip_profiles/c.yaml": "kind: carrier\naddresses: [192.0.2.0/24]\ntransfer_allow:\n  - '+*'\n"},
        [("sip_profiles/c.yaml:4: transfer_allow.0: '+*': a number pattern starts with '+' and at least "
         "one digit (E.164, e.g. '+4930*')")],
    ),
    "profile: trunk template": (
        {"sip_profiles/c.yaml": "kind: carrier\naddresses: [192.0.2.0/24]\ntrunk: sip:{num}@192.0.2.1\n"},
        [("sip_profiles/c.yaml:3: trunk: 'sip:{num}@192.0.2.1': a trunk template has exactly one "
         "'{number}' and no other braces")],
    ),
    "profile: duplicate name": (
        {"sip_profiles/a.yaml": "kind: agent\nuri: sip:a@127.0.0.1\n",
         "sip_profiles/b.yaml": "name: a\nkind: agent\nuri: sip:b@127.0.0.1\n"},
        ["sip_profiles/b.yaml:1: name: profile name 'a' is also used by sip_profiles/a.yaml"],
    ),
    "transfer target off the allow-list": (
        {"flows/main.yaml": "nodes:\n  a:\n    type: agent_transfer\n    target: sip:x@192.0.2.9\n"},
        ["flows/main.yaml:4: nodes.a.target: sip:x@192.0.2.9 matches no transfer_allow pattern"],
    ),
    "phone number without a trunk": (
        {"flows/main.yaml": "nodes:\n  a:\n    type: agent_transfer\n    target: '+49301234'\n"},
        [("flows/main.yaml:4: nodes.a.target: '+49301234' is a phone number, and no carrier profile "
         "(or calls.trunk) gives a trunk to dial it")],
    ),
    "phone number that cannot be E.164": (
        {"sip_profiles/c.yaml": "kind: carrier\naddresses: [192.0.2.0/24]\ntrunk: sip:{number}@192.0.2.1\n",
         "flows/main.yaml": "nodes:\n  a:\n    type: agent_transfer\n    target: '+0301234'\n"},
        [("flows/main.yaml:4: nodes.a.target: '+0301234' is not a valid phone number (E.164: a country "
         "code not starting with 0, at most 15 digits)")],
    ),
    "fallback goto to an unknown node": (
        {"sip_profiles/ag.yaml": "kind: agent\nuri: sip:a@127.0.0.1\n",
         "flows/main.yaml": """
            nodes:
              a:
                type: agent_transfer
                target: ag
                fallback:
                  rules:
                    - match: 486
                      action: goto
                      node: nowhere
            """},
        ["flows/main.yaml:9: nodes.a.fallback.rules.0.node: unknown node 'nowhere' in flow 'main'"],
    ),
    "fallback rule inconsistent": (
        {"flows/main.yaml": """
            nodes:
              a:
                type: agent_transfer
                target: sip:a@127.0.0.1
                fallback:
                  default: {action: retry, node: a}
            """},
        ["flows/main.yaml:6: nodes.a.fallback.default: node is only for goto, not retry"],
    ),
    "fallback bad match key": (
        {"flows/main.yaml": """
            nodes:
              a:
                type: agent_transfer
                target: sip:a@127.0.0.1
                on_failure: {busy: a}
            """},
        [("flows/main.yaml:5: nodes.a.on_failure.busy: 'busy' is not a failure status (expected a SIP "
         "code 300-699, 4xx/5xx/6xx, timeout, policy, no_final, declined, no_answer, cancelled, auth, dns, no_agent)")],
    ),
    "fallback exhausted must end or goto": (
        {"sip_profiles/ag.yaml": "kind: agent\nuri: sip:a@127.0.0.1\n",
         "flows/main.yaml": """
            nodes:
              a:
                type: agent_transfer
                target: ag
                fallback:
                  default: {action: retry}
            """},
        [("flows/main.yaml:6: nodes.a.fallback.default.action: what to do when attempts run out must be "
         "goto or end (or set on_exhausted)")],
    ),
    "unknown integration": (
        {"flows/main.yaml": "integration: sales\nnodes:\n  a: {type: hangup}\n"},
        ["flows/main.yaml:1: integration: unknown integration 'sales' (known: none defined)"],
    ),
    "missing prompt file": (
        {"flows/main.yaml": "nodes:\n  a:\n    type: message\n    file: prompts/hello.wav\n"},
        ["flows/main.yaml:4: nodes.a.file: prompt file 'prompts/hello.wav' not found (relative to .)"],
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_error_is_located(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, expected = CASES[case]
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        write(tmp_path, name, text)
    if "voicegw.yaml" not in files:
        write(tmp_path, "voicegw.yaml", "calls: {trusted_sources: [127.0.0.0/8]}\n")
    assert problems(Path("voicegw.yaml")) == expected


def test_a_national_number_is_checked_in_the_country_the_engine_dials_it_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A carrier with no country code of its own: the engine dials national numbers
    with calls.country_code, so the check at load does too (it used the carrier's
    empty one, and refused '030 1234' against '+4930*')."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "sip_profiles/c.yaml", "kind: carrier\naddresses: [192.0.2.0/24]\n"
                                           "trunk: sip:{number}@192.0.2.1\n")
    write(tmp_path, "flows/main.yaml", "nodes:\n  a:\n    type: agent_transfer\n    target: '030 1234'\n")
    write(tmp_path, "voicegw.yaml", "default_flow: main\n"
                                    "calls: {country_code: '49', transfer_allow: ['+4930*']}\n")
    daemon = load_runtime(Path("voicegw.yaml"))
    assert daemon.calls.country_code == "49"
    engine = convert.engine_config(daemon)
    assert engine.transfer.country_code == "49" and engine.flow.nodes["a"].target == "030 1234"


def test_without_files_the_engine_runs_the_demo_flow_with_the_flags() -> None:
    """The embedded default (no --config) goes through the same engine_config."""
    daemon = replace(DEFAULT, calls=from_mapping(
        {"calls": {"agent_uri": "sip:agent@127.0.0.1:5090", "transfer_allow": ["+4930*"]}}).calls)
    engine = convert.engine_config(daemon)
    assert engine.flow == demo_flow("sip:agent@127.0.0.1:5090", "invite")
    assert engine.transfer.allow == ("+4930*", "sip:agent@127.0.0.1:5090")
    assert engine.transfer.ringback == "ringback" and engine.bot_uri is None
    assert (engine.host, engine.sip_port) == ("127.0.0.1", 5060)


def test_integration_settings_are_layered_under_the_node(tree: Path) -> None:
    write(tree, "voicegw.yaml", """
        default_integration: desk
        integrations:
          desk:
            method: invite
            target: agent-demo
            headers: {X-Queue: sales, X-Team: a}
            on_failure: {default: menu}
        """)
    write(tree, "flows/desk.yaml", """
        nodes:
          menu: {type: collect, routes: {0: agent}}
          agent:
            type: agent_transfer
            headers: {X-Team: b}
            on_failure: {486: menu}
        """)
    config = load_config(Path("voicegw.yaml"))
    node = convert.build_flow(config, "desk").nodes["agent"]
    assert isinstance(node, AgentTransferNode)
    assert node.target == "sip:agent@127.0.0.1:5090" and node.method == "invite"
    assert dict(node.headers) == {"X-Queue": "sales", "X-Team": "b"}
    assert node.fallback.match(486)[0].node == "menu" and node.fallback.default.node == "menu"


def test_config_error_lists_every_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "voicegw.yaml", "sip: {port: -1}\napi: {port: x}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(Path("voicegw.yaml"))
    assert [p.field for p in caught.value.problems] == ["sip.port", "api.port"]


def test_the_documented_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "docs" / "configuration.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    written = 0
    for block in blocks:
        first, _, body = block.partition("\n")
        if first.startswith("# file: "):
            write(tmp_path, first[len("# file: "):], body)
            written += 1
    assert written == 5
    config = load_config(Path("voicegw.yaml"))
    flow = convert.build_flow(config, "main")
    agent = flow.nodes["agent"]
    assert isinstance(agent, AgentTransferNode) and agent.method == "refer"
    assert agent.target == "sip:sales@203.0.113.20"
    assert convert.daemon_config(config).calls.trusted_sources == ("198.51.100.0/28",)
