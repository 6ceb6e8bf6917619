"""The control API against a real daemon: auth, status/calls during live sipp calls,
transfer to a sipp agent, hang-up, transcript links, metrics."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from peers.daemon import wait_until
from peers.ops import OpsDaemon, Sipp, active_call
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]


def test_api_refuses_requests_without_or_with_a_wrong_token(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path) as ops:
        mode = stat.S_IMODE(ops.token_file.stat().st_mode)
        assert mode == 0o600, oct(mode)
        for path in ("/status", "/calls", "/records", "/metrics", "/calls/x", "/transfers/t1"):
            response = ops.http("GET", path, auth=False)
            assert response.status_code == 401, (path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            wrong = ops.http("GET", path, auth=False, headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401, path
        assert ops.http("POST", "/reload", auth=False).status_code == 401
        assert ops.http("POST", "/calls/x/hangup", auth=False).status_code == 401
        assert ops.http("GET", "/status").status_code == 200
        health = ops.http("GET", "/health", auth=False)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        schema = ops.http("GET", "/openapi.json", auth=False).json()
        assert {"/health", "/status", "/calls", "/calls/{call_id}", "/calls/{call_id}/transfer",
                "/calls/{call_id}/hangup", "/records", "/reload", "/calls/{call_id}/transcript",
                "/t/{token}", "/metrics"} <= set(schema["paths"])
        assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_status_calls_and_hangup_of_a_live_sipp_call(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path) as ops:
        caller = Sipp(tmp_path, "caller", "b2bua_uac_wait_bye.xml", remote=ops.address).start()
        try:
            call = active_call(ops)
            status = ops.http("GET", "/status").json()
            assert status["active_calls"] == 1 and status["totals"]["calls"] == 1
            detail = ops.http("GET", f"/calls/{call['id']}").json()
            assert detail["state"] == "connected" and detail["legs"] == ["caller"]
            events = [e["event"] for e in detail["timeline"]]
            assert events[:2] == ["call.incoming", "call.connected"]
            lines = [m["first_line"] for m in detail["trace"]]
            assert lines[0].startswith("INVITE sip:") and "SIP/2.0 200 OK" in lines
            assert detail["trace"][0]["direction"] == "in"
            hung = ops.http("POST", f"/calls/{call['id']}/hangup", json={"reason": "test"})
            assert hung.status_code == 200 and hung.json()["hung_up"] is True
            assert caller.wait(15) == 0, caller.output()[-2000:]  # it got our BYE and answered
            assert wait_until(lambda: ops.http("GET", f"/calls/{call['id']}").json()["state"] == "ended")
            ended = ops.http("GET", f"/calls/{call['id']}").json()
            assert ended["end_reason"] == "test"
            assert any(m["first_line"].startswith("BYE ") and m["direction"] == "out" for m in ended["trace"])
            assert ops.http("POST", f"/calls/{call['id']}/hangup").status_code == 409
            assert ops.http("GET", "/calls/no-such-call").status_code == 404
            assert ops.http("POST", "/calls/no-such-call/hangup").status_code == 404
            status = ops.http("GET", "/status").json()
            assert status["active_calls"] == 0
            assert status["totals"]["by_sip_code"] == {"200": 1}
            assert status["totals"]["by_outcome"] == {"hung up": 1}
            metrics = ops.http("GET", "/metrics").text
            assert "voicegw_calls_admitted_total 1.0" in metrics
            assert 'voicegw_sip_responses_total{code="200",direction="out"}' in metrics
            assert 'voicegw_calls_ended_total{outcome="hung up"} 1.0' in metrics
            assert "voicegw_event_loop_lag_seconds_count" in metrics
            assert "voicegw_rtp_packets_relayed_total" in metrics
        finally:
            caller.stop()


def test_transfer_by_api_of_a_live_call_to_a_sipp_agent_with_a_transcript_link(tmp_path: Path) -> None:
    agent = Sipp(tmp_path, "agent", "-sn uas")
    target = f"sip:agent@127.0.0.1:{agent.port}"
    with OpsDaemon(tmp_path, config={"calls": {"transfer_allow": [target]}}) as ops:
        agent.start()
        caller = Sipp(tmp_path, "caller", "b2bua_uac_wait_bye.xml", remote=ops.address).start()
        try:
            call = active_call(ops)
            link = ops.http("POST", f"/calls/{call['id']}/transcript",
                            json={"transcript": "bot: hello\ncaller: I want a human", "summary": "wants a human"})
            assert link.status_code == 201, link.text
            url = link.json()["url"]
            refused = ops.http("POST", f"/calls/{call['id']}/transfer", json={"target": "sip:evil@198.51.100.1"})
            assert refused.status_code == 403 and "allow-list" in refused.json()["detail"]
            started = ops.http("POST", f"/calls/{call['id']}/transfer", json={"target": target, "method": "invite"})
            assert started.status_code == 202, started.text
            transfer = started.json()
            assert transfer["context"] == {"transcript_url": url, "summary": "wants a human"}
            assert wait_until(lambda: ops.http("GET", f"/transfers/{transfer['id']}").json()["state"] != "pending",
                              10)
            done = ops.http("GET", f"/calls/{call['id']}").json()
            assert done["transfer"]["state"] == "succeeded", done["transfer"]
            assert done["legs"] == ["caller", "agent"]
            events = [e["event"] for e in done["timeline"]]
            assert "transcript.attached" in events and "transfer.succeeded" in events
            # the agent's leg is in the ladder: voicegw's INVITE to it and its 200
            agent_lines = [m["first_line"] for m in done["trace"] if m["peer"].endswith(f":{agent.port}")]
            assert agent_lines[0].startswith("INVITE sip:agent@") and "SIP/2.0 200 OK" in agent_lines
            status = ops.http("GET", "/status").json()
            assert status["transfers"] == [{"method": "invite", "started": 2, "succeeded": 1, "failed": 1}]
            # hang up from the CLI, as an operator would: both the caller and the agent get BYE
            done = ops.cli("hangup", call["id"])
            assert done.returncode == 0, done.stderr
            assert f"call {call['id']}: hung up" in done.stdout
            assert caller.wait(15) == 0, caller.output()[-2000:]
            assert agent.wait(15) == 0, agent.output()[-2000:]
        finally:
            caller.stop()
            agent.stop()


def test_transcript_link_works_n_times_then_410_and_expires(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path) as ops:
        caller = Sipp(tmp_path, "caller", "b2bua_uac_wait_bye.xml", remote=ops.address).start()
        try:
            call = active_call(ops)
            made = ops.http("POST", f"/calls/{call['id']}/transcript",
                            json={"transcript": "line one", "summary": "short", "max_uses": 2}).json()
            url = made["url"]
            token = url.rsplit("/", 1)[1]
            assert len(token) >= 32 and made["max_uses"] == 2
            for _ in range(2):
                got = ops.http("GET", f"/t/{token}", auth=False)
                assert got.status_code == 200 and "line one" in got.text and "short" in got.text
                assert got.headers["cache-control"] == "no-store"
            assert ops.http("GET", f"/t/{token}", auth=False).status_code == 410
            assert ops.http("GET", "/t/never-issued-token", auth=False).status_code == 404
            brief = ops.http("POST", f"/calls/{call['id']}/transcript",
                             json={"transcript": "x", "ttl_seconds": 0.5}).json()
            time.sleep(0.8)
            assert ops.http("GET", "/t/" + brief["url"].rsplit("/", 1)[1], auth=False).status_code == 410
            assert ops.http("POST", "/calls/nope/transcript", json={"transcript": "x"}).status_code == 404
        finally:
            caller.stop()
