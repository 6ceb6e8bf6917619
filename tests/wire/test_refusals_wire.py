"""Every refused call says why: each cause forced against a real daemon, with a sipp
caller that checks the Reason header of the refusal (RFC 3326) on the wire, and the
daemon's ``voicegw_calls_refused_total{cause}`` metric and ``call.refused`` log line.

Causes: the RTP port pool (a range of one port), the guard's call limit, its
per-source limit, its overload guard (the daemon stopped for a second with SIGSTOP:
its loop runs late), a drain (SIGTERM), and a bot that refuses.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from peers.caller import Caller
from peers.calls import SippPeer, free_block, render_scenario
from peers.daemon import wait_until
from peers.ops import OpsDaemon
from peers.sipp import SIPP
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]


#: The loop-lag check off where the test is not about it: on a busy machine a late
#: timer would refuse the call a test needs up (that is the overload guard working).
NO_LAG_CHECK = {"max_loop_lag": 0}


def refused_counts(ops: OpsDaemon) -> dict[str, float]:
    """``voicegw_calls_refused_total`` by cause, scraped from /metrics."""
    text = ops.http("GET", "/metrics").text
    return {sample.labels["cause"]: sample.value
            for family in text_string_to_metric_families(text) if family.name == "voicegw_calls_refused"
            for sample in family.samples if sample.name == "voicegw_calls_refused_total"}


def refused_call(ops: OpsDaemon, workdir: Path, status: int, cause: str, code: int | None = None) -> Any:
    """One sipp call that must be refused with ``status`` and ``Reason: SIP;cause=CODE;
    text="CAUSE"`` (sipp checks the header itself); the refusal as sipp received it."""
    scenario = render_scenario("uac_refused_reason.xml", workdir / "scenarios", status=status,
                               code=code or status, cause=cause)
    caller = SippPeer("refused", scenario, workdir, remote=ops.address, timeout=15).start()
    try:
        assert caller.wait() == 0, caller.report()
    finally:
        caller.stop()
    final = next(m for m in caller.messages() if m.status == status and m.direction == "in")
    assert final.header("reason") == f'SIP;cause={code or status};text="{cause}"'
    return final


def held_call(ops: OpsDaemon) -> Caller:
    """A call answered by the demo flow and kept up (it holds a port and a call slot)."""
    caller = Caller(ops.address)
    answer = caller.invite()
    assert answer.status == 200, answer
    return caller


def assert_logged_once(ops: OpsDaemon, cause: str, status: int) -> None:
    assert wait_until(lambda: ops.logged("call.refused", cause=cause), 5), ops.daemon.lines[-20:]
    (line,) = ops.logged("call.refused", cause=cause)
    assert line["status"] == status and line["level"] == "info" and line["call_id"]


def test_port_pool_exhausted_refusal_names_the_port_pool(tmp_path: Path) -> None:
    low = free_block(2)  # one RTP/RTCP pair: the first call takes it
    with OpsDaemon(tmp_path, config={"guard": NO_LAG_CHECK}, args=("--rtp-ports", f"{low}-{low + 2}")) as ops:
        assert refused_counts(ops)["port_pool"] == 0  # every cause's series exists from the start
        first = held_call(ops)
        try:
            final = refused_call(ops, tmp_path, 503, "port_pool")
            assert final.header("retry-after") == "5"
            assert "no free RTP port" in final.first_line
            assert refused_counts(ops)["port_pool"] == 1
            assert_logged_once(ops, "port_pool", 503)
            assert ops.http("GET", "/status").json()["totals"]["refused"] == {"port_pool": 1}
            status = ops.cli("status")
            assert status.returncode == 0 and "refused" in status.stdout and "port_pool: 1" in status.stdout
        finally:
            first.close()


@pytest.mark.parametrize("guard, cause", [
    ({"max_calls": 1}, "call_limit"),
    # 127.0.0.1 still may call (calls.trusted_sources) but is not whitelisted by the guard
    ({"max_calls_per_source": 1, "whitelist": []}, "source_limit"),
])
def test_call_limits_refusal_names_the_limit(tmp_path: Path, guard: dict[str, Any], cause: str) -> None:
    with OpsDaemon(tmp_path, config={"guard": {**NO_LAG_CHECK, **guard}}) as ops:
        first = held_call(ops)
        try:
            final = refused_call(ops, tmp_path, 503, cause)
            assert final.header("retry-after") == "5"
            counts = refused_counts(ops)
            assert counts[cause] == 1 and sum(counts.values()) == 1
            assert_logged_once(ops, cause, 503)
        finally:
            first.close()


def test_overload_guard_refusal_names_the_overload(tmp_path: Path) -> None:
    # the loop lag probe sees a late timer after the process got no CPU for a second
    with OpsDaemon(tmp_path, config={"guard": {"max_loop_lag": 0.25, "overload_hold": 60}}) as ops:
        proc = ops.daemon._proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.0)  # no CPU for a second, as under a starved machine
        finally:
            proc.send_signal(signal.SIGCONT)
        assert wait_until(lambda: ops.logged("guard.overloaded"), 5), ops.daemon.lines[-10:]
        final = refused_call(ops, tmp_path, 503, "overload")
        assert final.header("retry-after") == "5"
        assert refused_counts(ops)["overload"] == 1
        assert_logged_once(ops, "overload", 503)


def test_draining_refusal_names_the_drain(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path, config={"lifecycle": {"drain_deadline": 20}, "guard": NO_LAG_CHECK}) as ops:
        first = held_call(ops)
        try:
            ops.daemon._proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            assert wait_until(lambda: ops.logged("daemon.draining"), 5)
            final = refused_call(ops, tmp_path, 503, "draining")
            assert final.header("retry-after") == "30"
            assert refused_counts(ops)["draining"] == 1  # the API serves while draining
            assert_logged_once(ops, "draining", 503)
        finally:
            first.close()


def test_bot_refusal_carries_the_bots_status_as_the_cause(tmp_path: Path) -> None:
    bot_scenario = render_scenario("b2bua_bot_reject.xml", tmp_path / "scenarios", status=486)
    bot = SippPeer("bot", bot_scenario, tmp_path, timeout=15)
    with OpsDaemon(tmp_path, config={"guard": NO_LAG_CHECK}, args=("--bot-uri", f"sip:bot@127.0.0.1:{bot.port}")) as ops:
        bot.start()
        try:
            final = refused_call(ops, tmp_path, 486, "bot_failed", code=486)
            assert final.header("retry-after") is None  # a busy bot is not an overload
            assert bot.wait() == 0, bot.report()
            assert refused_counts(ops)["bot_failed"] == 1
            assert_logged_once(ops, "bot_failed", 486)
        finally:
            bot.stop()
