"""Channels over the wire (issue 13 item 1): ``routes:`` send each call to its flow, a
channel's integration sends its transfers to that channel's agent, and the channel
shows in the API's call list, ``voicegw calls``, the records and ``/metrics``.

One daemon (``voicegw run --config``), four sipp agents (agent_hangup.xml: answer,
hang up after 1.5 s, so the flow ends the call and the caller gets voicegw's BYE),
five sipp callers (channel_caller.xml: the number dialled with ``-s``, an
``X-Channel`` header with ``-key channel``), all at once:

===========================  =============================  ==========  =============
caller                       route matched by               flow        agent
===========================  =============================  ==========  =============
+49305551234 from .0.1       called ``\\+49305551\\d{3}``     sales       sales (node)
2000 from .0.1               called ``2000``                support     support (the
                                                                        flow's
                                                                        integration)
2000, X-Channel: web         header X-Channel ``web``       support     web (the
                                                                        channel's
                                                                        integration)
2000 from 127.0.0.2          carrier ``partner``            support     partner (the
                                                                        channel's)
999                          none: channel ``default``      main        none (hangs up)
===========================  =============================  ==========  =============

Each agent takes exactly one call (sipp ``-m 1``) and its INVITE's ``X-VG-Call-ID``
names the caller whose call it got: what crossed the wire says which route won.
Then a reload with other routes changes where the next call goes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from peers.calls import SIPP, SippPeer
from peers.daemon import wait_until
from peers.net import free_port
from peers.ops import OpsDaemon

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(180),
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]
SCENARIOS = Path(__file__).resolve().parents[1] / "peers" / "scenarios"
PARTNER_HOST = "127.0.0.2"
AGENTS = ("sales", "support", "web", "partner")


@dataclass(frozen=True)
class Caller:
    number: str
    channel_header: str
    host: str
    channel: str
    flow: str
    agent: str | None


CALLERS = (
    Caller("+49305551234", "none", "127.0.0.1", "sales", "sales", "sales"),
    Caller("2000", "none", "127.0.0.1", "support", "support", "support"),
    Caller("2000", "web", "127.0.0.1", "web", "support", "web"),
    Caller("2000", "none", PARTNER_HOST, "partner", "support", "partner"),
    Caller("999", "none", "127.0.0.1", "default", "main", None),
)


@dataclass
class Lab:
    ops: OpsDaemon
    agent_ports: dict[str, int]
    workdir: Path


def _config(workdir: Path, agents: dict[str, str]) -> dict[str, Any]:
    flows = workdir / "flows"
    profiles = workdir / "sip_profiles"
    flows.mkdir()
    profiles.mkdir()
    (profiles / "partner.yaml").write_text(yaml.safe_dump({"kind": "carrier", "addresses": [f"{PARTNER_HOST}/32"]}))
    documents = {
        "sales": {"nodes": {"agent": {"type": "agent_transfer", "target": agents["sales"]}}},
        # no target of its own: the channel's integration, else the flow's
        "support": {"integration": "support_agents", "nodes": {"agent": {"type": "agent_transfer"}}},
        "main": {"nodes": {"bye": {"type": "hangup"}}},
    }
    for name, flow in documents.items():
        (flows / f"{name}.yaml").write_text(yaml.safe_dump(flow))
    return {
        "calls": {"transfer_allow": list(agents.values()), "ringback": "silence"},
        "profiles_dir": str(profiles), "flows_dir": str(flows), "default_flow": "main",
        "integrations": {f"{name}_agents": {"target": agents[name], "method": "invite"}
                         for name in ("support", "web", "partner")},
        "routes": [
            {"channel": "sales", "match": {"called": r"\+49305551\d{3}"}, "flow": "sales"},
            {"channel": "web", "match": {"headers": {"X-Channel": "web"}}, "flow": "support",
             "integration": "web_agents"},
            {"channel": "partner", "match": {"carrier": "partner"}, "flow": "support",
             "integration": "partner_agents"},
            {"channel": "support", "match": {"called": "2000"}, "flow": "support"},
        ],
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("channels")
    ports = {name: free_port() for name in AGENTS}
    agents = {name: f"sip:{name}@127.0.0.1:{port}" for name, port in ports.items()}
    ops = OpsDaemon(workdir / "daemon", config=_config(workdir, agents))
    with ops:
        yield Lab(ops, ports, workdir)


def invite_of(peer: SippPeer, direction: str) -> Any:
    return next(m for m in peer.messages() if m.direction == direction and m.method == "INVITE")


def test_routes_send_each_call_to_its_channels_flow_and_agent(lab: Lab) -> None:
    agents = {name: SippPeer(f"agent_{name}", SCENARIOS / "agent_hangup.xml", lab.workdir, port=port,
                             timeout=40).start() for name, port in lab.agent_ports.items()}
    callers: list[SippPeer] = []
    try:
        for index, caller in enumerate(CALLERS):
            callers.append(SippPeer(
                f"caller_{index}", SCENARIOS / "channel_caller.xml", lab.workdir, remote=lab.ops.address,
                host=caller.host, keys={"channel": caller.channel_header}, extra=("-s", caller.number),
                timeout=40).start())
        for peer in [*callers, *agents.values()]:
            assert peer.wait(50) == 0, peer.report()
    finally:
        for peer in [*callers, *agents.values()]:
            peer.stop()

    # what crossed the wire: each agent got the call of the caller its route names
    call_ids = [invite_of(peer, "out").header("Call-ID") for peer in callers]
    for caller, call_id in zip(CALLERS, call_ids):
        if caller.agent is not None:
            invite = invite_of(agents[caller.agent], "in")
            assert invite.header("X-VG-Call-ID") == call_id, (caller, invite.describe())

    ops = lab.ops
    # the API's call list (ended calls stay in memory a while) and voicegw calls
    listed = {c["id"]: c for c in ops.http("GET", "/calls", params={"state": "all"}).json()}
    for caller, call_id in zip(CALLERS, call_ids):
        assert (listed[call_id]["channel"], listed[call_id]["flow"]) == (caller.channel, caller.flow), caller
    detail = ops.http("GET", f"/calls/{call_ids[2]}").json()
    assert (detail["channel"], detail["flow"]) == ("web", "support")
    incoming = next(e for e in detail["timeline"] if e["event"] == "call.incoming")
    assert incoming["detail"]["channel"] == "web"
    shown = ops.cli("calls", "--all")
    assert shown.returncode == 0, shown.stderr
    for caller, call_id in zip(CALLERS, call_ids):
        (row,) = [line for line in shown.stdout.splitlines() if call_id[:12] in line]
        assert caller.channel in row, (caller, shown.stdout)
    show = ops.cli("call", "show", call_ids[3])
    assert show.returncode == 0 and "channel: partner  flow: support" in show.stdout, show.stdout

    # the records: each call's channel and flow
    def stored() -> dict[str, dict[str, Any]]:
        rows = ops.http("GET", "/records", params={"limit": 50}).json()
        assert rows["source"] == "store"
        return {r["call_id"]: r for r in rows["records"]}

    assert wait_until(lambda: all(stored().get(cid, {}).get("disposition") for cid in call_ids), 10)
    records = stored()
    for caller, call_id in zip(CALLERS, call_ids):
        row = records[call_id]
        assert (row["channel"], row["flow"]) == (caller.channel, caller.flow), row
        assert row["disposition"] == ("transferred" if caller.agent else "contained"), row

    # /metrics: one ended call per (flow, channel, disposition)
    metrics = ops.http("GET", "/metrics").text
    totals = [m for m in metrics.splitlines() if m.startswith("voicegw_calls_total")]
    for caller in CALLERS:
        disposition = "transferred" if caller.agent else "contained"
        line = (f'voicegw_calls_total{{channel="{caller.channel}",disposition="{disposition}",'
                f'flow="{caller.flow}"}} 1.0')
        assert line in totals, totals

    # a reload applies new routes to new calls: the sales number now runs the main flow
    config = {**ops.config, "routes": [{"channel": "hotline", "match": {"called": r"\+49305551\d{3}"},
                                        "flow": "main"}]}
    ops.write_config(config)
    reloaded = ops.cli("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    caller = SippPeer("caller_reloaded", SCENARIOS / "channel_caller.xml", lab.workdir, remote=ops.address,
                      keys={"channel": "none"}, extra=("-s", "+49305551234"), timeout=30).start()
    try:
        assert caller.wait(40) == 0, caller.report()  # the main flow hangs up: no agent involved
    finally:
        caller.stop()
    call_id = invite_of(caller, "out").header("Call-ID")
    call = ops.http("GET", f"/calls/{call_id}").json()
    assert (call["channel"], call["flow"]) == ("hotline", "main")
