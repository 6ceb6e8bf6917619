"""voicegw behind a real NAT (issue 12 item 3): network namespaces this test makes
(peers.netns.NatNet) put voicegw on a private network (10.77.1.2) behind a router that
MASQUERADEs what leaves on the public side and forwards voicegw's SIP port and RTP
range (DNAT) from its public address (10.77.2.1), which is voicegw's
``sip.external_host`` and ``media.external_host``; ``local_nets`` is the private
network. The caller (peers.agent.Carrier) and the agent (peers.agent.Agent) are on the
public side, with no route to the private network.

A whole call: the caller's INVITE through the port forward, the demo flow, DTMF 0, an
INVITE transfer to the agent (out through the MASQUERADE), audio both ways between
caller and agent, the agent's BYE and voicegw's BYE to the caller. What each peer got
names the public address everywhere voicegw advertises itself (Contact, Via sent-by,
SDP o= and c=) and the private one nowhere; the media only flows because of it.
Skipped only where network namespaces cannot be made (not root, no ``ip``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from peers.agent import Agent, Carrier, exchange
from peers.daemon import ROOT, TTS_CACHE
from peers.netns import AGENT, CALLER, PRIVATE_NET, ROUTER_PUBLIC, VOICEGW, NatNet, unavailable
from peers.procs import stop

pytestmark = [pytest.mark.wire, pytest.mark.timeout(120)]

WHY = unavailable()
SIP_PORT = 5060  # in the test's own private namespace: nothing else is there
RTP_PORTS = (20000, 20039)


@dataclass
class NatCaller(Carrier):
    """The scripted caller at its public address (Caller writes 127.0.0.1)."""

    host: str = CALLER

    def _headers(self, method: str, cseq: int, branch: str, to_tag: str | None) -> str:
        return super()._headers(method, cseq, branch, to_tag).replace("127.0.0.1", self.host)

    def sdp(self, direction: str = "sendrecv") -> bytes:
        return super().sdp(direction).replace(b"127.0.0.1", self.host.encode())


def _even_socket(host: str) -> socket.socket:
    for _ in range(50):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        if sock.getsockname()[1] % 2 == 0:
            return sock
        sock.close()
    raise RuntimeError("no even RTP port")


class NetnsDaemon:
    """``voicegw run`` inside the private namespace; its JSON log lines from stderr."""

    def __init__(self, net: NatNet, workdir: Path, agent_uri: str) -> None:
        config = {
            "sip": {"host": VOICEGW, "port": SIP_PORT, "external_host": ROUTER_PUBLIC, "transports": ["udp"]},
            "media": {"host": VOICEGW, "external_host": ROUTER_PUBLIC, "inactivity_timeout": 0},
            "local_nets": [f"{PRIVATE_NET}.0/24"],
            "calls": {"trusted_sources": [f"{CALLER}/32"], "agent_uri": agent_uri},
            "api": {"enabled": False},
            "paths": {"tts_cache": str(TTS_CACHE)},
            "guard": {"max_loop_lag": 0},
            "profiles_dir": None, "flows_dir": None,
        }
        path = workdir / "voicegw-nat.yaml"
        path.write_text(yaml.safe_dump(config))
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
        self.lines: list[str] = []
        self.started = threading.Event()
        self.proc = subprocess.Popen(
            [*net.exec_prefix(net.private), sys.executable, "-m", "voicegw", "run", "--config", str(path),
             "--rtp-ports", f"{RTP_PORTS[0]}-{RTP_PORTS[1]}"],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if '"daemon.started"' in line:
                self.started.set()

    def wait_started(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.started.wait(0.1):
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                "daemon did not start:\n" + "\n".join(self.lines[-20:])

    def stop(self) -> None:
        stop(self.proc)
        self.reader.join(5)


@pytest.fixture
def net() -> Iterator[NatNet]:
    if WHY is not None:
        pytest.skip(WHY)
    with NatNet(SIP_PORT, RTP_PORTS) as made:
        yield made


def test_a_whole_call_through_masquerade_with_media_both_ways(net: NatNet, tmp_path: Path) -> None:
    with net.inside(net.public):
        agent = Agent(host=AGENT, answer_delay=0.3)
        caller = NatCaller((ROUTER_PUBLIC, SIP_PORT), sip=_bound(CALLER), rtp=_even_socket(CALLER))
    daemon = NetnsDaemon(net, tmp_path, agent.uri)
    try:
        daemon.wait_started()
        ok = caller.invite()
        assert ok.status == 200, ok
        text = bytes(ok).decode(errors="replace")
        # the caller's 200: our public address in Contact and SDP, the private one nowhere
        assert re.search(rf"Contact: <sip:voicegw@{re.escape(ROUTER_PUBLIC)}:{SIP_PORT}>", text), text
        assert f"c=IN IP4 {ROUTER_PUBLIC}" in text and re.search(rf"o=\S+ \d+ \d+ IN IP4 {ROUTER_PUBLIC}", text)
        assert PRIVATE_NET not in text
        caller.listen(0.3)
        caller.send_dtmf("0")
        assert caller.listen(20, lambda: agent.call is not None and agent.call.acked), "the agent answered"
        invite = agent.call.raw.decode(errors="replace")
        # the agent's INVITE left through the MASQUERADE, naming the public address
        assert agent.call.source == (ROUTER_PUBLIC, SIP_PORT), agent.call.source
        assert re.search(rf"Via: SIP/2.0/UDP {re.escape(ROUTER_PUBLIC)}:{SIP_PORT};", invite), invite
        assert re.search(rf"Contact: <sip:voicegw@{re.escape(ROUTER_PUBLIC)}:{SIP_PORT}>", invite), invite
        assert f"c=IN IP4 {ROUTER_PUBLIC}" in invite and re.search(rf"o=\S+ \d+ \d+ IN IP4 {ROUTER_PUBLIC}", invite)
        assert PRIVATE_NET not in invite
        # audio both ways, through the port forward in and the MASQUERADE out
        to_agent, to_caller = exchange(caller, agent)
        assert to_agent >= 15 and to_caller >= 15, (to_agent, to_caller)
        # the agent hangs up; the demo flow ends the call: voicegw's BYE reaches the caller
        agent.bye()
        assert caller.listen(15, lambda: caller.got_request("BYE")), "voicegw's BYE reached the caller"
        bye = next(m for m in caller.received if getattr(m, "method", None) == "BYE")
        assert re.search(rf"^SIP/2.0/UDP {re.escape(ROUTER_PUBLIC)}:{SIP_PORT};", bye.headers.get("via")), bye.headers
        assert PRIVATE_NET not in bytes(bye).decode(errors="replace")
        errors = [line for line in daemon.lines if '"level": "error"' in line]
        assert not errors, errors[:5]
    finally:
        caller.close()
        agent.close()
        daemon.stop()


def _bound(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock
