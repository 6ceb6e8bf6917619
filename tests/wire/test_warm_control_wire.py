"""Warm transfers steered by the control API and the CLI (issue 7: "the flow, the API
and the CLI can complete the transfer explicitly or cancel it").

One daemon for the module (peers.ops.OpsDaemon: ``voicegw run --config`` with its
control API on a free port) with ``calls: {transfer_method: warm, warm: {auto_complete:
false, hold: silence}}`` and ``--agent-uri`` naming the scripted agent UAS
(peers.agent.Agent) of each test. The scripted caller (peers.agent.Carrier) presses
0 in the demo flow, or the CLI starts the transfer (``voicegw transfer ID URI --method
warm``). What is checked: the CLI's exit codes and output, the API's 409s, what crossed
the wire at the caller and at the agent (marked RTP each way, BYE/CANCEL), and the
daemon's log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers.agent import AUDIBLE, SILENT, Agent, Carrier, done, exchange, press_zero, until_agent
from peers.caller import speech_energy
from peers.net import free_port
from peers.ops import OpsDaemon, nothing_broke

pytestmark = [pytest.mark.wire, pytest.mark.timeout(60)]

BRIEFING = "Incoming transfer. Billing question."


@pytest.fixture(scope="module")
def _ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpsDaemon, int]]:
    agent_port = free_port()
    ops = OpsDaemon(tmp_path_factory.mktemp("warm-control"), config={"calls": {
        "transfer_method": "warm", "ring_timeout": 8,
        "warm": {"hold": "silence", "briefing_text": BRIEFING, "confirm": False, "auto_complete": False},
    }}, args=("--agent-uri", f"sip:agent@127.0.0.1:{agent_port}"))
    with ops:
        yield ops, agent_port


@pytest.fixture
def ops(_ops: tuple[OpsDaemon, int]) -> Iterator[tuple[OpsDaemon, int]]:
    with nothing_broke(_ops[0], json_only=True):
        yield _ops
        time.sleep(0.3)  # a player left on a closed endpoint shows within a few packet times


def briefed(caller: Carrier, agent: Agent) -> float:
    """The agent answered and heard the whole briefing; the time it answered."""
    until_agent(caller, agent, "answered")
    answered = agent.call.answered_at
    assert caller.listen(8, lambda: agent.quiet(answered, quiet=0.4)), "the briefing never ended"
    assert speech_energy(agent.audio(answered)) > AUDIBLE, "the agent hears the briefing"
    return answered


def transfer_of(ops: OpsDaemon, caller: Carrier) -> dict:
    return ops.http("GET", f"/calls/{caller.call_id}").json()["transfer"]


def test_without_auto_complete_the_call_waits_until_the_cli_completes(ops) -> None:
    daemon, port = ops
    with Agent(port, answer_delay=0.2) as agent:
        caller = press_zero(daemon)
        try:
            answered = briefed(caller, agent)
            # briefed, and still waiting: 1.5 s later nothing is connected, the caller hears hold silence
            caller.listen(1.5)
            assert transfer_of(daemon, caller)["state"] == "pending"
            assert exchange(caller, agent, packets=10) == (0, 0), "not connected before the complete"
            assert speech_energy(caller.audio(answered)) < SILENT, "the caller never hears the briefing"
            assert not daemon.logged("transfer.succeeded")

            done_cli = daemon.cli("transfer", "complete", caller.call_id)
            assert done_cli.returncode == 0, done_cli.stderr
            assert "warm" in done_cli.stdout and "succeeded 200" in done_cli.stdout, done_cli.stdout
            to_agent, to_caller = exchange(caller, agent)
            assert to_agent >= 20 and to_caller >= 20, (to_agent, to_caller)
            assert transfer_of(daemon, caller)["state"] == "succeeded"

            again = daemon.cli("transfer", "complete", caller.call_id)
            assert again.returncode == 1 and "(409)" in again.stderr, again.stderr
            assert "Traceback" not in again.stderr
            assert not caller.got_request("BYE") and not agent.got("BYE")
            assert caller.bye().status == 200
            assert caller.listen(3, lambda: agent.got("BYE")), "the agent's leg ends with the call"
        finally:
            done(caller)


def test_cli_cancel_sends_the_agent_bye_and_the_caller_stays_in_the_flow(ops) -> None:
    daemon, port = ops
    with Agent(port, answer_delay=0.2) as agent:
        caller = press_zero(daemon)
        try:
            briefed(caller, agent)
            cancelled_at = time.monotonic()
            result = daemon.cli("transfer", "cancel", caller.call_id)
            assert result.returncode == 0, result.stderr
            assert "failed cancelled" in result.stdout, result.stdout
            assert caller.listen(3, lambda: agent.got("BYE")), "the agent gets BYE"
            # the caller goes back to the flow (its fallback: the apology, then the menu)
            assert caller.listen(4, lambda: speech_energy(caller.audio(since=cancelled_at)) > AUDIBLE), \
                "the caller hears the flow again"
            assert not caller.got_request("BYE"), "a cancelled transfer never drops the caller"
            assert exchange(caller, agent, packets=10) == (0, 0), "caller and agent were never connected"
            again = daemon.cli("transfer", "cancel", caller.call_id)
            assert again.returncode == 1 and "(409)" in again.stderr, again.stderr
            assert caller.bye().status == 200
        finally:
            done(caller)


def test_cli_starts_a_warm_transfer_api_refuses_complete_while_it_rings_cancel_sends_cancel(ops) -> None:
    daemon, port = ops
    with Agent(port, mode="never") as agent:
        caller = Carrier(daemon.address)
        try:
            assert caller.invite().status == 200
            caller.listen(0.3)
            # no warm transfer yet: 409 for both; an unknown call: 404
            for action in ("complete", "cancel"):
                assert daemon.http("POST", f"/calls/{caller.call_id}/transfer/{action}").status_code == 409
                assert daemon.http("POST", f"/calls/nope/transfer/{action}").status_code == 404
            started = daemon.cli("transfer", caller.call_id, agent.uri, "--method", "warm", "--no-wait")
            assert started.returncode == 0 and "warm" in started.stdout and "pending" in started.stdout, \
                started.stdout + started.stderr
            until_agent(caller, agent, "invited")
            refused = daemon.http("POST", f"/calls/{caller.call_id}/transfer/complete")
            assert refused.status_code == 409 and "dialing" in refused.json()["detail"], refused.text
            cancelled = daemon.http("POST", f"/calls/{caller.call_id}/transfer/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled" and cancelled.json()["method"] == "warm"
            assert caller.listen(3, lambda: agent.got("CANCEL")), "the ringing agent gets CANCEL"
            assert agent.call.cancelled
            assert not caller.got_request("BYE")
            assert caller.bye().status == 200
        finally:
            done(caller)


def test_transfer_group_keeps_the_plain_form_and_its_usage_errors(ops, tmp_path: Path) -> None:
    daemon, _ = ops
    assert daemon.cli("transfer", "no-such-call", "sip:a@127.0.0.1", "--method", "warm").returncode == 1
    usage = daemon.cli("transfer", "x", "sip:a@b", "--method", "carrier-pigeon")
    assert usage.returncode == 2 and "warm" in usage.stderr
    missing = daemon.cli("transfer", "complete", "no-such-call")
    assert missing.returncode == 1 and "no call" in missing.stderr, missing.stderr
    assert "complete" in daemon.cli("transfer", "--help", token_args=False).stdout
