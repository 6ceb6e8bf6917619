"""Agent transfers over the wire: a scripted caller presses 0 in the demo flow and
voicegw transfers it by INVITE to a sipp agent; what crossed the wire is checked."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from peers.caller import Caller, speech_energy
from peers.daemon import DaemonProcess, wait_until
from peers.net import free_port
from peers.ports import free_block
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]
SCENARIOS = Path(__file__).resolve().parents[1] / "peers" / "scenarios"


def rtp_range() -> str:
    base = free_block(40)
    return f"{base}-{base + 38}"


def start_agent(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    media = free_block(4)  # sipp's -mp: RTP and RTCP, leased (peers/ports.py)
    proc = subprocess.Popen(
        [SIPP, "-p", str(port), "-i", "127.0.0.1", "-mp", str(media), "-m", "1", "-nostdin",
         "-trace_msg", "-message_file", str(tmp_path / "agent_msgs.log"), "-timeout", "30s", *args],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(0.3)
    return proc, port


def logged(daemon: DaemonProcess, event: str, **fields: object) -> bool:
    return any(e.get("event") == event and all(e.get(k) == v for k, v in fields.items()) for e in daemon.events())


def test_dtmf_zero_transfers_by_invite_and_media_reaches_the_agent(tmp_path: Path) -> None:
    agent, agent_port = start_agent(tmp_path, "-sn", "uas", "-rtp_echo")
    daemon = DaemonProcess("127.0.0.1", None, "--agent-uri", f"sip:agent@127.0.0.1:{agent_port}",
                           "--rtp-ports", rtp_range())
    caller = None
    try:
        daemon.start()
        caller = Caller(daemon.address)
        assert caller.invite().status == 200
        greeting = caller.receive_rtp(1.5)
        assert speech_energy(greeting) > 200, "the greeting should be audible before the menu"
        caller.send_dtmf("0")
        assert wait_until(lambda: logged(daemon, "transfer.succeeded"), timeout=10)
        # media now goes caller -> voicegw -> agent (echo) -> voicegw -> caller
        caller.receive_rtp(0.3)  # drain prompt/ringback leftovers
        sent = [bytes([i]) * 160 for i in range(1, 41)]
        for payload in sent:
            caller.send_rtp(payload)
            time.sleep(0.005)
        echoed = [p[12:] for p in caller.receive_rtp(1.5) if p[1] & 0x7F == 0]
        assert [p for p in echoed if p in sent] == sent, "every packet comes back, in order"
        assert caller.bye().status == 200
        assert agent.wait(15) == 0, agent.stderr.read() if agent.stderr else ""
        ladder = (tmp_path / "agent_msgs.log").read_text(errors="replace")
        assert "X-VG-Caller: alice" in ladder and f"X-VG-Call-ID: {caller.call_id}" in ladder
        assert "BYE sip:" in ladder
        assert logged(daemon, "flow.dtmf", digit="0")
    finally:
        if caller is not None:
            caller.close()
        agent.kill()
        daemon.terminate()


def test_busy_agent_fails_the_transfer_and_the_caller_stays_in_the_flow(tmp_path: Path) -> None:
    agent, agent_port = start_agent(tmp_path, "-sf", str(SCENARIOS / "agent_busy.xml"))
    daemon = DaemonProcess("127.0.0.1", None, "--agent-uri", f"sip:agent@127.0.0.1:{agent_port}",
                           "--rtp-ports", rtp_range())
    caller = None
    try:
        daemon.start()
        caller = Caller(daemon.address)
        assert caller.invite().status == 200
        caller.receive_rtp(1.0)
        caller.send_dtmf("0")
        assert wait_until(lambda: logged(daemon, "transfer.failed", status=486), timeout=10)
        apology = caller.receive_rtp(2.0)
        assert speech_energy(apology) > 200, "the caller hears the apology prompt"
        assert not caller.got_request("BYE"), "a failed transfer never drops the caller"
        assert agent.wait(15) == 0
        assert caller.bye().status == 200
    finally:
        if caller is not None:
            caller.close()
        agent.kill()
        daemon.terminate()


def test_unreachable_tcp_agent_fails_the_transfer_as_503_at_once(tmp_path: Path) -> None:
    """A TCP agent that refuses the connection: the transport error reaches the
    transaction (RFC 3261 17.1.4) and the transfer fails as a 503 (8.1.3.1) long before
    Timer B's 32 s; the caller stays in the flow."""
    closed = free_port()  # nothing listens there over TCP: the connect is refused
    daemon = DaemonProcess("127.0.0.1", None, "--agent-uri",
                           f"sip:agent@127.0.0.1:{closed};transport=tcp", "--rtp-ports", rtp_range())
    caller = None
    try:
        daemon.start()
        caller = Caller(daemon.address)
        assert caller.invite().status == 200
        caller.receive_rtp(1.0)
        caller.send_dtmf("0")
        assert wait_until(lambda: logged(daemon, "transfer.failed", status=503), timeout=10)
        apology = caller.receive_rtp(2.0)
        assert speech_energy(apology) > 200, "the caller hears the apology prompt"
        assert not caller.got_request("BYE"), "a failed transfer never drops the caller"
        assert caller.bye().status == 200
    finally:
        if caller is not None:
            caller.close()
        daemon.terminate()
