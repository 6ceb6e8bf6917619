"""Containment over the wire (issue 13 item 2): four calls through one flow, each ending
with its own disposition, read back through ``voicegw report --json``, ``/metrics``
and the stored records (``GET /records``, source ``store``).

One daemon (``voicegw run --config`` with a flow written here: a ``menu`` where ``9``
goes to a hangup node and ``1`` to an INVITE transfer whose every failure goes to the
hangup node). The caller is the scripted carrier (peers.agent.Carrier, it presses the
key as RFC 4733 events); the agent is a sipp UAS (tests/peers/scenarios/agent_*.xml):

==================================  ================  ===========================
call                                agent             disposition
==================================  ================  ===========================
``9``: the flow hangs up            none              contained
``1``: the agent answers            agent_answer      transferred (invite)
``1``: the agent is busy (486)      agent_busy        transfer_failed_contained
``1``: the caller hangs up while    agent_noanswer    abandoned (the agent gets
the agent rings                                       our CANCEL)
==================================  ================  ===========================
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from peers.agent import Carrier
from peers.calls import SIPP, SippPeer
from peers.daemon import wait_until
from peers.net import free_port
from peers.ops import OpsDaemon

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(120),
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]
SCENARIOS = Path(__file__).resolve().parents[1] / "peers" / "scenarios"
FLOW = "containment"


@dataclass
class Lab:
    ops: OpsDaemon
    agent_port: int
    workdir: Path


def _flow(agent: str) -> dict[str, Any]:
    return {
        "name": FLOW, "start": "menu",
        "nodes": {
            "menu": {"type": "collect", "routes": {"1": "agent", "9": "bye"}, "timeout": 60, "on_timeout": "bye"},
            "agent": {"type": "agent_transfer", "target": agent, "method": "invite",
                      "fallback": {"default": {"action": "goto", "node": "bye"}}},
            "bye": {"type": "hangup"},
        },
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("containment")
    flows = workdir / "flows"
    flows.mkdir()
    agent_port = free_port()
    agent = f"sip:agent@127.0.0.1:{agent_port}"
    (flows / f"{FLOW}.yaml").write_text(yaml.safe_dump(_flow(agent), sort_keys=False))
    ops = OpsDaemon(workdir / "daemon", config={
        "calls": {"transfer_allow": [agent], "ring_timeout": 30, "ringback": "silence"},
        "flows_dir": str(flows), "default_flow": FLOW,
    })
    with ops:
        yield Lab(ops, agent_port, workdir)


def agent(lab: Lab, scenario: str, *, rtp_echo: bool = False) -> SippPeer:
    return SippPeer(scenario.removesuffix(".xml"), SCENARIOS / scenario, lab.workdir, port=lab.agent_port, calls=1,
                    rtp_echo=rtp_echo, timeout=30).start()


def events(lab: Lab, caller: Carrier) -> list[str]:
    data = lab.ops.http("GET", f"/calls/{caller.call_id}").json()
    return [entry["event"] for entry in data.get("timeline", [])]


def dial(lab: Lab, key: str) -> Carrier:
    caller = Carrier(lab.ops.address)
    assert caller.invite().status == 200
    caller.listen(0.2)
    caller.send_dtmf(key)
    return caller


def done(caller: Carrier, peer: SippPeer | None) -> None:
    try:
        if peer is not None:
            assert peer.wait(20) == 0, peer.report()
    finally:
        if peer is not None:
            peer.stop()
        caller.hang_up_quietly()
        caller.close()


def test_each_disposition_reaches_the_report_the_metrics_and_the_records(lab: Lab) -> None:
    calls: dict[str, str] = {}

    # contained: the flow's hangup node ends it
    caller = dial(lab, "9")
    try:
        assert caller.listen(10, lambda: caller.got_request("BYE")), "the flow hangs up"
        calls["contained"] = caller.call_id
    finally:
        done(caller, None)

    # transferred by INVITE: the sipp agent answers, then the caller hangs up
    peer = agent(lab, "agent_answer.xml", rtp_echo=True)
    caller = dial(lab, "1")
    try:
        assert caller.listen(10, lambda: "transfer.succeeded" in events(lab, caller))
        assert caller.bye().status == 200
        calls["transferred"] = caller.call_id
    finally:
        done(caller, peer)

    # the agent is busy, the fallback sends the call to the hangup node
    peer = agent(lab, "agent_busy.xml")
    caller = dial(lab, "1")
    try:
        assert caller.listen(10, lambda: caller.got_request("BYE")), "the flow hangs up after the 486"
        assert "transfer.failed" in events(lab, caller)
        calls["transfer_failed_contained"] = caller.call_id
    finally:
        done(caller, peer)

    # the caller hangs up while the agent rings: voicegw CANCELs the agent (sipp checks it)
    peer = agent(lab, "agent_noanswer.xml")
    caller = dial(lab, "1")
    try:
        assert caller.listen(10, lambda: "transfer.progress" in events(lab, caller)), "the agent rings"
        assert caller.bye().status == 200
        calls["abandoned"] = caller.call_id
    finally:
        done(caller, peer)

    ops = lab.ops
    # the records: each call's row has its disposition, the method, and the flow
    def stored() -> dict[str, dict[str, Any]]:
        rows = ops.http("GET", "/records", params={"limit": 50}).json()
        assert rows["source"] == "store"
        return {r["call_id"]: r for r in rows["records"]}

    assert wait_until(lambda: all(stored().get(cid, {}).get("disposition") for cid in calls.values()), 10)
    records = stored()
    for disposition, call_id in calls.items():
        row = records[call_id]
        assert (row["disposition"], row["flow"], row["channel"]) == (disposition, FLOW, "default"), row
        assert row["transfer_method"] == ("invite" if disposition == "transferred" else None), row

    # voicegw report --json, through the control API
    result = ops.cli("report", "--since", "1h", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (group,) = [g for g in report["groups"] if g["flow"] == FLOW]
    assert group["channel"] == "default"  # no routes: every call is on the default channel
    assert group["dispositions"] == {"contained": 1, "transferred": 1, "transfer_failed_contained": 1,
                                     "abandoned": 1, "failed": 0}
    assert group["calls"] == group["reached"] == 4 and group["containment_rate"] == 0.25
    assert group["transferred_by_method"] == {"invite": 1}
    invite = group["transfers"]["invite"]
    assert (invite["started"], invite["succeeded"], invite["failed"]) == (3, 1, 2), invite
    assert invite["failed_by_status"] == {"486": 1, "call_ended": 1}
    table = ops.cli("report", "--since", "1h")
    assert table.returncode == 0 and FLOW in table.stdout and "25.0%" in table.stdout, table.stdout

    # /metrics
    metrics = ops.http("GET", "/metrics").text
    for disposition in calls:
        line = f'voicegw_calls_total{{channel="default",disposition="{disposition}",flow="{FLOW}"}} 1.0'
        assert line in metrics, [m for m in metrics.splitlines() if m.startswith("voicegw_calls_total")]

    # voicegw status: today's containment
    status = ops.http("GET", "/status").json()["containment"]
    assert (status["contained"], status["reached"], status["rate"]) == (1, 4, 0.25)
    shown = ops.cli("status")
    assert shown.returncode == 0 and "containment today" in shown.stdout and "25.0%" in shown.stdout, shown.stdout
