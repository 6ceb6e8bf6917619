"""Keep-alives toward a profile's peer over the wire (issue 12 item 3): an agent
profile's ``keepalive: {interval}`` makes the daemon send, with no call at all, an
OPTIONS every interval on UDP (a sipp peer answers two and exits 0: it saw both), a
double-CRLF ping (RFC 5626 3.5.1) on TCP (a plain socket server the test runs reads
them off the connection voicegw opened, and sends no pong: voicegw's
framer reads two pongs in a row as a ping and answers it); a peer that does not answer is one
``keepalive.failed`` warning with its reason (not one per ping), and a profile without
``keepalive`` gets nothing."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from peers.calls import HOST, SCENARIOS
from peers.daemon import DaemonProcess, wait_until
from peers.net import free_port
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]


def daemon_with(tmp_path: Path, profiles: dict[str, dict]) -> DaemonProcess:
    (tmp_path / "profiles").mkdir()
    for name, profile in profiles.items():
        (tmp_path / "profiles" / f"{name}.yaml").write_text(yaml.safe_dump(profile))
    config = tmp_path / "voicegw.yaml"
    config.write_text(yaml.safe_dump({"profiles_dir": str(tmp_path / "profiles"), "api": {"enabled": False}}))
    return DaemonProcess(HOST, None, "--config", str(config))


def test_udp_options_every_interval_answered(tmp_path: Path) -> None:
    port = free_port(HOST)
    gateway = subprocess.Popen(
        [SIPP, "-sf", str(SCENARIOS / "gateway_options.xml"), "-p", str(port), "-i", HOST, "-m", "2",
         "-nostdin", "-timeout", "20s", "-timeout_error", "-trace_msg", "-message_file",
         str(tmp_path / "peer_msgs.log")],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    daemon = daemon_with(tmp_path, {
        "agent-nat": {"kind": "agent", "uri": f"sip:agent@{HOST}:{port}", "keepalive": {"interval": 0.5}},
        "agent-quiet": {"kind": "agent", "uri": f"sip:quiet@{HOST}:{free_port(HOST)}"},
    })
    try:
        time.sleep(0.3)
        daemon.start()
        assert gateway.wait(20) == 0, gateway.stderr.read() if gateway.stderr else ""
        events = daemon.events()
    finally:
        gateway.kill()
        daemon.terminate()
    log = (tmp_path / "peer_msgs.log").read_text(errors="replace")
    assert log.count(f"OPTIONS sip:agent@{HOST}:{port} SIP/2.0") == 2, log
    assert not [e for e in events if e.get("event") == "keepalive.failed"], events


def test_tcp_double_crlf_pings_on_the_connection(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen(1)
    server.settimeout(20)  # from the daemon's start (slow on a loaded box)
    port = server.getsockname()[1]
    got = bytearray()

    def read() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        conn.settimeout(0.5)
        deadline = time.monotonic() + 20
        with conn:
            while got.count(b"\r\n\r\n") < 3 and time.monotonic() < deadline:
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                if not data:
                    return
                got.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    daemon = daemon_with(tmp_path, {"agent-tcp": {
        "kind": "agent", "uri": f"sip:agent@{HOST}:{port}", "transport": "tcp", "keepalive": {"interval": 0.3}}})
    try:
        daemon.start()
        reader.start()
        reader.join(40)
        events = daemon.events()
    finally:
        daemon.terminate()
        server.close()
    pings, rest = divmod(len(got), 4)
    assert bytes(got) == b"\r\n\r\n" * pings and not rest and pings >= 3, bytes(got)  # pings, nothing else
    assert not [e for e in events if e.get("event") == "keepalive.failed"], events


def test_a_silent_peer_is_one_failed_warning(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind((HOST, 0))
    port = silent.getsockname()[1]
    daemon = daemon_with(tmp_path, {"agent-gone": {
        "kind": "agent", "uri": f"sip:agent@{HOST}:{port}", "keepalive": {"interval": 0.3, "timeout": 0.5}}})
    try:
        daemon.start()
        assert wait_until(lambda: any(e.get("event") == "keepalive.failed" for e in daemon.events()), timeout=10)
        time.sleep(1.5)  # more pings fail: still one warning
        events = daemon.events()
    finally:
        daemon.terminate()
        silent.close()
    failed = [e for e in events if e.get("event") == "keepalive.failed"]
    assert len(failed) == 1, failed
    assert failed[0]["profile"] == "agent-gone" and failed[0]["reason"] == "timeout", failed[0]
    assert failed[0]["level"] == "warning"
