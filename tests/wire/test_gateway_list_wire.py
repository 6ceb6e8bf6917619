"""A carrier profile's own ``gateways:`` list over the wire (issue 12 item 5): three sipp
gateways on their own loopback addresses, gw1 (127.0.0.2, priority 10) before gw2 and
gw3 (127.0.0.3 and .4, priority 20, equal weights); the trunk's host is a name nobody
resolves (the list replaces locating it; it stays the Request-URI). ``health:`` pings
each listed gateway. Calls to a number go to gw1 while it is up (priority); once gw1
is stopped and its pings mark it down, calls go to gw2 and gw3, both of them (weight:
24 calls, each gets at least one unless one of 2**23 draws in a row misses it, about
1e-7), gw1 skipped and not tried; when gw1 answers again and is marked up, the next
call goes to gw1. Asserted on the INVITEs each gateway logged, GET /trunks, the
metrics and the daemon's gateway lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from peers.caller import Caller
from peers.daemon import wait_until
from peers.gateway import SippGateway
from peers.ops import OpsDaemon
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.timeout(300),
              pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]

REQUEST_LINE = "INVITE sip:+4930555@carrier.voicegw.test SIP/2.0"


def call(ops: OpsDaemon) -> None:
    """One call whose flow transfers it to +4930555 through the carrier; it succeeds."""
    caller = Caller(ops.address, request_user="+4930111")
    try:
        assert caller.invite().status == 200
        assert wait_until(lambda: [e for e in ops.daemon.events() if e.get("call_id") == caller.call_id
                                   and e.get("event") in ("transfer.succeeded", "transfer.failed")], 20), \
            "\n".join(ops.daemon.lines[-20:])
        assert ops.logged("transfer.succeeded", call_id=caller.call_id), "\n".join(ops.daemon.lines[-20:])
        assert caller.bye().status == 200
    finally:
        caller.close()


def marked(ops: OpsDaemon, event: str, gateway: SippGateway) -> int:
    return len(ops.logged(event, trunk="carrier", gateway=gateway.address))


def test_gateways_by_priority_and_weight_a_down_one_skipped_and_used_again_when_back(tmp_path: Path) -> None:
    gw1 = SippGateway(tmp_path, "gw1", REQUEST_LINE, host="127.0.0.2").start()
    gw2 = SippGateway(tmp_path, "gw2", REQUEST_LINE, host="127.0.0.3").start()
    gw3 = SippGateway(tmp_path, "gw3", REQUEST_LINE, host="127.0.0.4").start()
    profiles, flows = tmp_path / "profiles", tmp_path / "flows"
    profiles.mkdir()
    flows.mkdir()
    (profiles / "carrier.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"], "trunk": "sip:{number}@carrier.voicegw.test",
        "transfer_allow": ["+4930*"],
        "gateways": [{"address": f"{gw1.host}:{gw1.port}", "priority": 10},
                     {"address": f"sip:{gw2.host}:{gw2.port};transport=udp", "priority": 20, "weight": 10},
                     {"address": f"{gw3.host}:{gw3.port}", "priority": 20, "weight": 10}],
        # a loaded machine may answer a ping late: 2 s each, three misses in a row for down
        "health": {"interval": 0.5, "timeout": 2.0, "down_after": 3, "up_after": 2}}))
    (flows / "main.yaml").write_text(yaml.safe_dump({"start": "out", "nodes": {
        "out": {"type": "agent_transfer", "target": "+4930555", "fallback": {"default": {"action": "end"}}}}}))
    ops = OpsDaemon(tmp_path / "daemon", config={
        "profiles_dir": str(profiles), "flows_dir": str(flows), "default_flow": "main"})
    try:
        ops.start()
        assert wait_until(lambda: all(marked(ops, "gateway.up", g) for g in (gw1, gw2, gw3)), 20), \
            "\n".join(ops.daemon.lines[-20:])
        rows = {row["gateway"]: row for row in ops.http("GET", "/trunks").json()["gateways"]}
        assert {a: r["state"] for a, r in rows.items()} == {g.address: "up" for g in (gw1, gw2, gw3)}
        assert all(r["pings"] >= 2 and r["last_rtt_ms"] is not None for r in rows.values()), rows
        assert rows[gw2.address]["target"] == f"sip:{gw2.host}:{gw2.port}"
        metrics = ops.http("GET", "/metrics").text
        for g in (gw1, gw2, gw3):
            assert f'voicegw_gateway_up{{gateway="{g.address}",trunk="carrier"}} 1.0' in metrics, metrics

        for _ in range(2):
            call(ops)
        assert (gw1.invites(), gw2.invites(), gw3.invites()) == (2, 0, 0), "gw1 first: priority 10"

        gw1.stop()
        assert wait_until(lambda: marked(ops, "gateway.down", gw1), 15), "\n".join(ops.daemon.lines[-20:])
        assert wait_until(lambda: re.search(
            rf'voicegw_gateway_up{{gateway="{gw1.address}",trunk="carrier"}} 0.0',
            ops.http("GET", "/metrics").text), 5)
        for _ in range(24):
            call(ops)
        assert gw1.invites() == 2, "gw1 is skipped while down"
        assert gw2.invites() + gw3.invites() == 24
        assert gw2.invites() >= 1 and gw3.invites() >= 1, ("equal weights share the calls",
                                                             gw2.invites(), gw3.invites())
        assert not ops.logged("dial.failover"), "a gateway marked down is not tried"

        gw1.start()
        assert wait_until(lambda: marked(ops, "gateway.up", gw1) >= 2, 15), "\n".join(ops.daemon.lines[-20:])
        before = (gw2.invites(), gw3.invites())
        call(ops)
        assert gw1.invites() == 3 and (gw2.invites(), gw3.invites()) == before, "gw1 again once it is up"
        trunks = ops.cli("trunks")
        assert trunks.returncode == 0, trunks.stderr
        assert all(f"{g.host}:{g.port}" in trunks.stdout for g in (gw1, gw2, gw3)), trunks.stdout
    finally:
        for g in (gw1, gw2, gw3):
            g.stop()
        ops.daemon.terminate()
