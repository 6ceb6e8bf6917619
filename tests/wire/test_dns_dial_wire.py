"""Names in transfer targets over the wire (issue 12 item 2): a real DNS server
(dnsmasq on a free loopback port, peers.dnsmasq) serves SRV and A records for
``*.voicegw.test``; the daemon's ``dns: {servers, port, timeout}`` points at it and a
flow transfers each call by INVITE to an agent profile whose URI is a name.

- SRV failover: the first SRV target (priority 10) refuses TCP connections, the
  transfer moves on to the second (priority 20), a sipp agent, which answers; the
  INVITE's Request-URI keeps the name; a second call asks DNS nothing (the cache);
- NXDOMAIN fails the transfer with status ``dns`` (the fallback's ``dns`` rule runs,
  the caller stays);
- a server that never answers fails it with ``dns`` after ``dns.timeout``."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from peers.caller import Caller
from peers.daemon import DaemonProcess, wait_until
from peers.dnsmasq import DNSMASQ, Dnsmasq
from peers.flow_transfer import events, timeline, write_config
from peers.net import free_port
from peers.ports import free_block
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None or DNSMASQ is None,
                                                   reason="sipp or dnsmasq missing: run scripts/bootstrap")]


def daemon_for(tmp_path: Path, agent_uri: str, dns_port: int, timeout: float = 2.0) -> DaemonProcess:
    config = write_config(tmp_path, {"kind": "agent", "uri": agent_uri}, "dns",
                          dns={"servers": ["127.0.0.1"], "port": dns_port, "timeout": timeout})
    return DaemonProcess("127.0.0.1", None, "--config", str(config))


def one_call(daemon: DaemonProcess, wait: float = 20.0) -> tuple[dict, list[tuple[str, dict]]]:
    """A call that is transferred at once; the transfer's outcome and the timeline."""
    caller = Caller(daemon.address)
    try:
        before = len(events(daemon, "transfer.succeeded") + events(daemon, "transfer.failed"))
        assert caller.invite().status == 200
        assert wait_until(lambda: len(events(daemon, "transfer.succeeded") + events(daemon, "transfer.failed"))
                          > before, wait), "\n".join(daemon.lines[-20:])
        done = [e for e in daemon.events() if e.get("event") in ("transfer.succeeded", "transfer.failed")
                and e.get("call_id") == caller.call_id]
        if done[0]["event"] == "transfer.failed":
            assert wait_until(lambda: any(e == "transfer.fallback" for e, _ in timeline(daemon, caller.call_id)), 10)
            assert not caller.got_request("BYE"), "a failed transfer keeps the caller"
        story = timeline(daemon, caller.call_id)
        assert caller.bye().status == 200
    finally:
        caller.close()
    return done[0], story


def test_srv_failover_to_the_second_target_and_the_cache_the_second_time(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there over TCP: the connection is refused
    live = free_port()
    media = free_block(4)  # sipp's -mp: RTP and RTCP, leased (peers/ports.py)
    agent = subprocess.Popen(
        [SIPP, "-t", "t1", "-p", str(live), "-i", "127.0.0.1", "-mp", str(media), "-m", "2", "-nostdin",
         "-sn", "uas", "-trace_msg", "-message_file", str(tmp_path / "agent_msgs.log"), "-timeout", "60s"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dns = Dnsmasq(tmp_path, [
        f"srv-host=_sip._tcp.agents.voicegw.test,dead.voicegw.test,{dead},10,50",
        f"srv-host=_sip._tcp.agents.voicegw.test,live.voicegw.test,{live},20,50",
        "host-record=dead.voicegw.test,127.0.0.1",
        "host-record=live.voicegw.test,127.0.0.1",
    ]).start()
    daemon = daemon_for(tmp_path, "sip:agent@agents.voicegw.test;transport=tcp", dns.port)
    try:
        daemon.start()
        done, _ = one_call(daemon)
        assert done["event"] == "transfer.succeeded", done
        (failover,) = events(daemon, "dial.failover")
        assert (failover["target"], failover["status"]) == (f"tcp:127.0.0.1:{dead}", 503), failover
        assert failover["next"] == f"tcp:127.0.0.1:{live}"
        asked = len(dns.queries())
        assert asked >= 3, dns.queries()  # SRV, then A (and AAAA) of the first target
        done, _ = one_call(daemon)
        assert done["event"] == "transfer.succeeded", done
        assert len(dns.queries()) == asked, "the second call is located from the cache"
        assert agent.wait(30) == 0, agent.stderr.read() if agent.stderr else ""
    finally:
        agent.kill()
        dns.stop()
        daemon.terminate()
    log = (tmp_path / "agent_msgs.log").read_text(errors="replace")
    assert "INVITE sip:agent@agents.voicegw.test;transport=tcp SIP/2.0" in log, "the Request-URI keeps the name"
    assert any(q.startswith("SRV] _sip._tcp.agents.voicegw.test") for q in dns.queries()), dns.queries()


def test_nxdomain_fails_the_transfer_with_dns_and_the_fallback_keeps_the_caller(tmp_path: Path) -> None:
    dns = Dnsmasq(tmp_path, ["host-record=other.voicegw.test,127.0.0.1"]).start()
    daemon = daemon_for(tmp_path, "sip:agent@nowhere.voicegw.test:5060", dns.port)
    try:
        daemon.start()
        done, story = one_call(daemon)
    finally:
        dns.stop()
        daemon.terminate()
    assert (done["event"], done["status"]) == ("transfer.failed", "dns"), done
    assert "nowhere.voicegw.test" in done["reason"], done
    fallback = [d for e, d in story if e == "transfer.fallback"]
    assert [(d["status"], d["rule"], d["action"]) for d in fallback] == [("dns", "dns", "goto")], story
    assert any(q.startswith("A] nowhere.voicegw.test") for q in dns.queries()), dns.queries()


def test_a_server_that_never_answers_fails_with_dns_after_the_timeout(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes questions, answers none
    silent.bind(("127.0.0.1", 0))
    try:
        daemon = daemon_for(tmp_path, "sip:agent@slow.voicegw.test", silent.getsockname()[1], timeout=1.0)
        try:
            daemon.start()
            done, _ = one_call(daemon)
        finally:
            daemon.terminate()
        silent.settimeout(0.1)
        assert silent.recv(512), "voicegw asked the server"
    finally:
        silent.close()
    assert (done["event"], done["status"]) == ("transfer.failed", "dns"), done
    assert "timed out" in done["reason"], done
    (failed,) = [e for e in daemon.events() if e.get("event") == "dial.dns_failed"]
    assert failed["host"] == "slow.voicegw.test"
