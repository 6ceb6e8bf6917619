"""Carrier gateway health over the wire (issue 12 item 5): a carrier profile's
``health:`` pings a sipp gateway with OPTIONS; the gateway is up while it answers,
goes down after ``down_after`` misses once sipp is stopped, and comes back up after
``up_after`` answers when it runs again. Asserted on the OPTIONS sipp received, in
``GET /trunks``, ``voicegw trunks``, /metrics (voicegw_trunk_up) and the log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from peers.daemon import wait_until
from peers.ops import OpsDaemon, Sipp
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]


def gateways(ops: OpsDaemon) -> list[dict]:
    return ops.http("GET", "/trunks").json()["gateways"]


def trunk_up(ops: OpsDaemon) -> str | None:
    found = re.search(r'^voicegw_trunk_up\{trunk="pbx"\} (\S+)$', ops.http("GET", "/metrics").text, re.MULTILINE)
    return found.group(1) if found else None


def test_a_gateway_goes_down_when_it_falls_silent_and_up_when_it_answers_again(tmp_path: Path) -> None:
    gateway = Sipp(tmp_path, "gateway", "gateway_options.xml", calls=10_000, timeout=120).start()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "pbx.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"], "trunk": f"sip:{{number}}@127.0.0.1:{gateway.port}",
        "health": {"interval": 0.5, "timeout": 1.0, "down_after": 2, "up_after": 2}}))
    ops = OpsDaemon(tmp_path / "daemon", config={"profiles_dir": str(profiles)})
    again = None
    try:
        ops.start()
        assert wait_until(lambda: ops.logged("gateway.up"), 15), ops.daemon.lines[-20:]
        (row,) = gateways(ops)
        assert (row["trunk"], row["target"], row["gateway"], row["state"], row["last_status"]) == (
            "pbx", f"sip:127.0.0.1:{gateway.port}", f"udp:127.0.0.1:{gateway.port}", "up", 200)
        assert row["pings"] >= 2 and row["last_rtt_ms"] is not None
        assert trunk_up(ops) == "1.0"
        assert re.search(r"pbx\s+udp:127\.0\.0\.1:\d+\s+up\s+200", ops.cli("trunks").stdout)

        gateway.stop()  # silent: its port refuses, pings miss
        assert wait_until(lambda: ops.logged("gateway.down"), 15), ops.daemon.lines[-20:]
        (row,) = gateways(ops)
        assert row["state"] == "down" and row["last_status"] in ("timeout", "transport")
        assert trunk_up(ops) == "0.0"
        assert re.search(r"pbx\s+udp:127\.0\.0\.1:\d+\s+down", ops.cli("trunks").stdout)

        again = Sipp(tmp_path, "gateway_again", "gateway_options.xml", calls=10_000, timeout=120,
                     port=gateway.port).start()
        assert wait_until(lambda: len(ops.logged("gateway.up")) >= 2, 15), ops.daemon.lines[-20:]
        (row,) = gateways(ops)
        assert (row["state"], row["last_status"]) == ("up", 200)
        assert trunk_up(ops) == "1.0"
        (event,) = ops.logged("gateway.down")
        assert event["was"] == "up" and event["trunk"] == "pbx"
    finally:
        gateway.stop()
        if again is not None:
            again.stop()
        ops.daemon.kill()
    log = gateway.output().replace("\r", "")
    pings = re.findall(r"^OPTIONS (\S+) SIP/2\.0\n(.*?)\n\n", log, re.MULTILINE | re.DOTALL)
    assert len(pings) >= 2
    for uri, headers in pings:
        assert uri == f"sip:127.0.0.1:{gateway.port}"
        assert "\nCSeq: 1 OPTIONS" in "\n" + headers and "\nMax-Forwards: 70" in "\n" + headers
    assert len({re.search(r"Call-ID: (\S+)", h).group(1) for _, h in pings}) == len(pings)  # type: ignore[union-attr]
