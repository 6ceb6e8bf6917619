"""Carrier gateways in the dial path over the wire (issue 12 item 5): a carrier
profile's trunk is a name whose SRV records (dnsmasq, peers.dnsmasq) list two sipp
gateways, gw1 first (priority 10) and gw2 (priority 20); ``health:`` pings both with
OPTIONS (sipp -aa answers them). Calls to a number go to gw1 while it is up; once gw1
is stopped and its pings mark it down, the next call goes straight to gw2 (gw1 is
skipped, not tried); when gw1 answers again and is marked up, calls go to gw1 again.
Asserted on the INVITEs each gateway logged and on the daemon's gateway lines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from peers.caller import Caller
from peers.daemon import DaemonProcess, wait_until
from peers.dnsmasq import DNSMASQ, Dnsmasq
from peers.gateway import SippGateway
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None or DNSMASQ is None,
                                                   reason="sipp or dnsmasq missing: run scripts/bootstrap")]

REQUEST_LINE = "INVITE sip:+4930555@gw.voicegw.test SIP/2.0"


def events(daemon: DaemonProcess, name: str) -> list[dict]:
    return [e for e in daemon.events() if e.get("event") == name]


def call(daemon: DaemonProcess) -> dict:
    caller = Caller(daemon.address, request_user="+4930111")
    try:
        before = len(events(daemon, "transfer.succeeded") + events(daemon, "transfer.failed"))
        assert caller.invite().status == 200
        assert wait_until(lambda: len(events(daemon, "transfer.succeeded") + events(daemon, "transfer.failed"))
                          > before, 20), "\n".join(daemon.lines[-20:])
        done = [e for e in daemon.events() if e.get("event") in ("transfer.succeeded", "transfer.failed")
                and e.get("call_id") == caller.call_id]
        assert caller.bye().status == 200
    finally:
        caller.close()
    return done[0]


def test_a_gateway_marked_down_is_skipped_and_used_again_when_it_is_back(tmp_path: Path) -> None:
    gw1 = SippGateway(tmp_path, "gw1", REQUEST_LINE, timeout="120s").start()
    gw2 = SippGateway(tmp_path, "gw2", REQUEST_LINE, timeout="120s").start()
    dns = Dnsmasq(tmp_path, [
        f"srv-host=_sip._udp.gw.voicegw.test,gw1.voicegw.test,{gw1.port},10,50",
        f"srv-host=_sip._udp.gw.voicegw.test,gw2.voicegw.test,{gw2.port},20,50",
        "host-record=gw1.voicegw.test,127.0.0.1",
        "host-record=gw2.voicegw.test,127.0.0.1",
    ], ttl=1).start()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "flows").mkdir()
    (tmp_path / "profiles" / "carrier.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"], "trunk": "sip:{number}@gw.voicegw.test",
        "transfer_allow": ["+4930*"],
        "health": {"interval": 0.5, "timeout": 1.0, "down_after": 2, "up_after": 2}}))
    (tmp_path / "flows" / "main.yaml").write_text(yaml.safe_dump({"start": "out", "nodes": {
        "out": {"type": "agent_transfer", "target": "+4930555", "fallback": {"default": {"action": "end"}}}}}))
    config = tmp_path / "voicegw.yaml"
    config.write_text(yaml.safe_dump({
        "profiles_dir": str(tmp_path / "profiles"), "flows_dir": str(tmp_path / "flows"),
        "default_flow": "main", "dns": {"servers": ["127.0.0.1"], "port": dns.port, "timeout": 2.0}}))
    daemon = DaemonProcess("127.0.0.1", None, "--config", str(config))
    try:
        daemon.start()
        assert wait_until(lambda: len(events(daemon, "gateway.up")) >= 2, 15), "\n".join(daemon.lines[-20:])
        assert call(daemon)["event"] == "transfer.succeeded"
        assert (gw1.invites(), gw2.invites()) == (1, 0), "gw1 first (SRV priority 10)"

        gw1.stop()
        assert wait_until(lambda: any(e["gateway"] == f"udp:127.0.0.1:{gw1.port}" for e in events(daemon, "gateway.down")),
                          15), "\n".join(daemon.lines[-20:])
        assert call(daemon)["event"] == "transfer.succeeded"
        assert (gw1.invites(), gw2.invites()) == (1, 1), "gw2 while gw1 is down"
        assert not events(daemon, "dial.failover"), "gw1 is skipped, not tried"

        gw1.start()
        assert wait_until(lambda: len([e for e in events(daemon, "gateway.up")
                                       if e["gateway"] == f"udp:127.0.0.1:{gw1.port}"]) >= 2, 15), \
            "\n".join(daemon.lines[-20:])
        assert call(daemon)["event"] == "transfer.succeeded"
        assert (gw1.invites(), gw2.invites()) == (2, 1), "gw1 again once it is back up"
    finally:
        gw1.stop()
        gw2.stop()
        dns.stop()
        daemon.terminate()
