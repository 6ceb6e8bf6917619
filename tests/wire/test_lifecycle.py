"""The daemon's lifecycle with real sipp calls: SIGTERM drains (a call in progress
finishes, a new call gets 503 + Retry-After, exit 0), the deadline hangs up the
rest, SIGHUP / ``voicegw reload`` with a broken file is refused and the old config
stays."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from peers.daemon import wait_until
from peers.net import header, options, recv_any, status_line, udp_socket
from peers.ops import HOST, OpsDaemon, Sipp, active_call
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]


def invite(ops: OpsDaemon) -> tuple[int, str | None]:
    """A bare INVITE from a fresh socket: (final status, Retry-After)."""
    with udp_socket(HOST) as sock:
        sock.sendto(options(ops.address, sock.getsockname(), method="INVITE"), ops.address)
        while True:
            got = recv_any([sock], 3)
            assert got is not None, "no final answer to the INVITE"
            status = status_line(got[0])[0]
            if status >= 200:
                return status, header(got[0], "Retry-After")


def test_sigterm_drains_a_call_in_progress_refuses_new_ones_and_exits_0(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path, config={"lifecycle": {"drain_deadline": 20}}) as ops:
        caller = Sipp(tmp_path, "caller", "ops_uac_call.xml", remote=ops.address, extra=("-d", "3000")).start()
        try:
            active_call(ops)
            ops.daemon._proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            assert wait_until(lambda: ops.logged("daemon.draining"), 5)
            assert invite(ops) == (503, "30")
            assert ops.http("GET", "/health", auth=False).status_code == 503
            assert caller.wait(20) == 0, caller.output()[-2000:]  # its own BYE got 200
            assert ops.daemon._proc.wait(10) == 0  # type: ignore[union-attr]
        finally:
            caller.stop()
        assert ops.logged("daemon.drained", finished=1, hung_up=0)
        names = [e["event"] for e in ops.daemon.events()]
        assert names[-1] == "daemon.stopped"
        assert names.index("daemon.stopping") < names.index("daemon.draining") < names.index("daemon.drained")


def test_sigterm_deadline_hangs_up_the_calls_left_and_exits_0(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path, config={"lifecycle": {"drain_deadline": 1}}) as ops:
        caller = Sipp(tmp_path, "caller", "b2bua_uac_wait_bye.xml", remote=ops.address).start()
        try:
            active_call(ops)
            started = time.monotonic()
            ops.daemon._proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            assert caller.wait(15) == 0, caller.output()[-2000:]  # it got our BYE and answered 200
            assert ops.daemon._proc.wait(10) == 0  # type: ignore[union-attr]
            assert time.monotonic() - started < 6
        finally:
            caller.stop()
        assert ops.logged("daemon.drained", finished=0, hung_up=1)


def test_reload_with_a_broken_file_is_refused_and_the_running_config_stays(tmp_path: Path) -> None:
    good = {"calls": {"trusted_sources": ["127.0.0.0/8"]}}
    with OpsDaemon(tmp_path, config=good) as ops:
        assert invite(ops)[0] != 403  # from loopback: trusted
        # a broken file: the CLI reports the refusal, exit 1, the daemon keeps running
        ops.write_config("calls: [this is not\n  valid: yaml\n")
        result = ops.cli("reload")
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "reload refused, the running config stays" in result.stderr
        assert "Traceback" not in result.stderr
        assert ops.logged("daemon.reload_refused", trigger="api")
        # a file that parses but names a wrong field: refused with the field named (SIGHUP)
        ops.write_config({**ops.config, "calls": {"trusted_sources": ["not-a-network"]}})
        ops.daemon._proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        assert wait_until(lambda: ops.logged("daemon.reload_refused", trigger="sighup"), 5)
        refused = ops.logged("daemon.reload_refused", trigger="sighup")[0]
        assert "trusted_sources" in refused["error"], refused
        assert ops.daemon.running()
        assert invite(ops)[0] != 403, "the old config (loopback trusted) still applies"
        # a good change applies: loopback is no longer trusted
        ops.write_config({**ops.config, "calls": {"trusted_sources": ["192.0.2.0/24"]}})
        result = ops.cli("reload", "--json")
        assert result.returncode == 0, result.stderr
        assert '"reloaded": true' in result.stdout
        assert invite(ops)[0] == 403
        assert ops.logged("daemon.reloaded", trigger="api")
        metrics = ops.http("GET", "/metrics").text
        assert 'voicegw_reloads_total{result="refused"} 2.0' in metrics
        assert 'voicegw_reloads_total{result="ok"} 1.0' in metrics
