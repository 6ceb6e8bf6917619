"""A call's SIP ladder survives a restart (issue 13 item 7): the daemon saves each ended
call's messages with its records, and after a restart on the same records
``voicegw call show ID`` (through the control API, as an operator runs it) shows the
ladder and the timeline of a call the new process never saw."""

from __future__ import annotations

import json

import pytest
from peers.caller import Caller
from peers.daemon import wait_until
from peers.ops import OpsDaemon

pytestmark = pytest.mark.wire


def test_call_show_after_a_restart_has_the_ladder_and_the_timeline(tmp_path, monkeypatch):
    monkeypatch.delenv("VOICEGW_DB", raising=False)
    config = {"paths": {"records_dir": str(tmp_path / "records")}}
    with OpsDaemon(tmp_path / "first", config=config) as first:
        caller = Caller(first.address)
        try:
            assert caller.invite().status == 200
            assert caller.bye().status == 200
        finally:
            caller.close()
        call_id = caller.call_id
        # the call's ladder while the daemon that carried it still has it in memory
        live = json.loads(first.cli("call", "show", call_id, "--json").stdout)
        assert wait_until(lambda: first.logged("call.ended"), 5.0)
    # stopped with SIGINT right away: the ladder not yet saved is written at shutdown

    with OpsDaemon(tmp_path / "second", config=config) as second:
        result = second.cli("call", "show", call_id, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        data = json.loads(result.stdout)
        assert data["id"] == call_id and data["state"] == "ended"
        ladder = [(t["direction"], t["first_line"].split(" SIP/2.0")[0]) for t in data["trace"]]
        assert ("in", f"INVITE sip:voicegw@127.0.0.1:{first.address[1]}") in ladder or any(
            d == "in" and line.startswith("INVITE ") for d, line in ladder)
        assert ("out", "SIP/2.0 200 OK") in [(t["direction"], t["first_line"]) for t in data["trace"]]
        assert any(d == "in" and line.startswith("BYE ") for d, line in ladder)
        assert [t["first_line"] for t in data["trace"]] == [t["first_line"] for t in live["trace"]][
            :len(data["trace"])]
        assert all(t["message"] and t["message"].startswith(t["first_line"]) for t in data["trace"])
        events = [e["event"] for e in data["timeline"]]
        assert events[0] == "call.incoming" and "call.ended" in events

        human = second.cli("call", "show", call_id)
        assert human.returncode == 0 and "INVITE" in human.stdout and "BYE" in human.stdout
        assert "(no SIP messages kept for this call)" not in human.stdout

        missing = second.cli("call", "show", "no-such-call")
        assert missing.returncode == 1
