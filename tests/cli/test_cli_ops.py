"""The ``voicegw`` operator commands run as a user runs them, against a real daemon
with a live sipp call: their output and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peers.net import free_port
from peers.ops import OpsDaemon, Sipp, active_call
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]


# The live call waits in a menu for minutes: with the demo flow's 15 s menu the call
# could end by itself while a loaded machine was still starting the CLI commands.
WAITING_FLOW = """\
name: waiting
start: greeting
nodes:
  greeting: {type: message, text: Hello., next: menu}
  menu: {type: collect, routes: {"1": bye}, timeout: 300, on_timeout: bye}
  bye: {type: hangup}
"""


def test_status_calls_and_call_show_ladder_during_a_live_call(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "waiting.yaml").write_text(WAITING_FLOW)
    with OpsDaemon(tmp_path / "ops", config={"default_flow": "waiting", "flows_dir": str(flows)}) as ops:
        caller = Sipp(tmp_path, "caller", "b2bua_uac_wait_bye.xml", remote=ops.address).start()
        try:
            call = active_call(ops)
            status = ops.cli("status")
            assert status.returncode == 0, status.stderr
            assert "active calls" in status.stdout and "running" in status.stdout
            assert json.loads(ops.cli("status", "--json").stdout)["active_calls"] == 1
            calls = ops.cli("calls")
            assert calls.returncode == 0 and call["id"] in calls.stdout and "connected" in calls.stdout
            listed = json.loads(ops.cli("calls", "--json").stdout)
            assert [c["id"] for c in listed] == [call["id"]]
            show = ops.cli("call", "show", call["id"])
            assert show.returncode == 0, show.stderr
            lines = show.stdout.splitlines()
            header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["caller", "voicegw"])
            arrows = lines[header + 3:]
            invite = next(line for line in arrows if "INVITE" in line)
            ok = next(line for line in arrows if "200 OK" in line)
            assert invite.index("INVITE") < invite.index(">"), invite  # caller -> voicegw
            assert ok.index("<") < ok.index("200 OK"), ok  # voicegw -> caller
            assert "call.connected" in show.stdout  # the timeline
            full = ops.cli("call", "show", call["id"], "--messages")
            assert "Call-ID: " + call["id"] in full.stdout
            assert json.loads(ops.cli("call", "show", call["id"], "--json").stdout)["trace"][0]["message"]
            hung = ops.cli("hangup", call["id"], "--reason", "cli test")
            assert hung.returncode == 0 and "hung up" in hung.stdout
            assert caller.wait(15) == 0
            cdr = ops.cli("cdr", "--since", "1h", "--json")
            assert cdr.returncode == 0, cdr.stderr
            assert json.loads(cdr.stdout)["records"], cdr.stdout
            assert ops.cli("cdr").returncode == 0
        finally:
            caller.stop()


def test_exit_codes_and_messages_never_a_traceback(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path) as ops:
        unknown = ops.cli("call", "show", "no-such-call")
        assert unknown.returncode == 1 and "no call" in unknown.stderr
        assert ops.cli("hangup", "no-such-call").returncode == 1
        failed = ops.cli("transfer", "no-such-call", "sip:a@127.0.0.1")
        assert failed.returncode == 1
        usage = ops.cli("transfer", "x", "sip:a@b", "--method", "carrier-pigeon")
        assert usage.returncode == 2
        wrong = ops.cli("status", "--api", ops.url, "--token", "wrong", token_args=False)
        assert wrong.returncode == 4 and "refused the API token" in wrong.stderr
        missing = ops.cli("status", "--api", ops.url, "--token-file", str(tmp_path / "nope"), token_args=False)
        assert missing.returncode == 4 and "cannot read the API token" in missing.stderr
        for result in (unknown, failed, usage, wrong, missing):
            assert "Traceback" not in result.stderr + result.stdout
    down = f"http://127.0.0.1:{free_port()}"
    for args in (("status",), ("calls",), ("reload",), ("status", "--token-file", str(tmp_path / "nope"))):
        result = ops.cli(*args, "--api", down, token_args=False) if "--token-file" in args else \
            ops.cli(*args, "--api", down, "--token", "x", token_args=False)
        assert result.returncode == 3, (args, result.stderr)
        assert "voicegw is not running" in result.stderr and "Traceback" not in result.stderr
