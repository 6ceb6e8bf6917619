"""Transfers the bot asks for by REFER, over the wire, with transfer_method: invite.

caller (the scripted Python caller of peers.caller) -> ``voicegw run`` -> bot (a sipp
UAS that answers, then REFERs, tests/peers/scenarios/bot_refer*.xml) and the agent (a sipp UAS,
tests/peers/scenarios/agent_*.xml). Each test runs its own daemon and peers on free loopback
ports and stops them all (CallLab). Assertions are on what crossed the wire: the sipp
peers' exit codes (their scenarios check the messages with regexps, and any unexpected
message fails them), their ``-trace_msg`` message logs, the RTP the caller's socket
gets back, and the daemon's JSON log lines (transfer.*, call.ended).

The lab's verbs (start_voicegw, peer, bot, finish, ...) are tests/peers/lab.py.
"""

from __future__ import annotations

import time

import pytest
from peers.calls import HOST, SIPP
from peers.lab import (
    agent_uri,
    bot,
    caller,
    echo_check,
    event,
    finish,
    log_time,
    peer,
    requests,
    responses,
    sipfrags,
    start_voicegw,
    wait_event,
)

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]


# --------------------------------------------------------------------------- tests
def test_bot_refer_agent_answers_bot_notified_and_released_media_reaches_agent(lab):
    """Bot REFER -> 202; NOTIFY 100, 180, 200 (sipfrags of the agent leg's real
    progress) to the bot, then BYE to the bot; the caller's RTP now reaches the agent."""
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    target = agent_uri(agent)
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    b = bot(lab, "bot_refer.xml", target)
    c = caller(lab)
    assert c.invite().status == 200
    done = wait_event(lab, "transfer.succeeded", status=200)
    assert event(lab, "transfer.progress", status=180), "the agent's 180 is logged as progress"
    started = event(lab, "transfer.started")
    assert started is not None and started["target"] == target and started["method"] == "invite"
    finish(lab, b)  # the bot got its BYE after the final NOTIFY
    echo_check(c)
    assert not c.got_request("BYE"), "the caller stays in the call, now with the agent"
    assert c.bye().status == 200
    finish(lab, agent)

    bot_msgs = b.messages()
    assert [m.status for m in responses(bot_msgs, "REFER")] == [202]
    frags = sipfrags(bot_msgs)
    assert frags[0] == (100, False), frags
    assert 180 in [s for s, _ in frags], f"the agent's 180 is reported to the bot: {frags}"
    assert frags[-1] == (200, True), frags
    # the order on the bot's dialog: final NOTIFY, our 200 to it, then voicegw's BYE
    flow = [m.describe() for m in bot_msgs]
    final_notify = max(i for i, d in enumerate(flow) if d == "in NOTIFY")
    assert flow[final_notify + 1] == "out 200 NOTIFY" and flow.index("in BYE") > final_notify + 1, flow
    invite = requests(agent.messages(), "INVITE")[0]
    assert invite.header("x-vg-caller") == "alice" and invite.header("x-vg-call-id") == c.call_id
    assert done["call_id"] == c.call_id
    wait_event(lab, "call.ended", call_id=c.call_id)


def test_bot_refer_agent_busy_bot_gets_486_and_stays_caller_stays(lab):
    """Agent 486: the bot gets a NOTIFY with a SIP/2.0 486 sipfrag and no BYE (it stays
    bridged with the caller); the caller is never hung up."""
    agent = peer(lab, "agent", "agent_busy.xml")
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    b = bot(lab, "bot_refer_stay.xml", agent_uri(agent))
    c = caller(lab)
    assert c.invite().status == 200
    wait_event(lab, "transfer.failed", status=486)
    finish(lab, agent)
    c.receive_rtp(2.0)  # the bot's INFO probe 1.5 s after the failure is answered meanwhile
    assert not c.got_request("BYE"), "a failed transfer never drops the caller"
    assert c.bye().status == 200
    finish(lab, b)  # no BYE before the probe; BYE after the caller's
    frags = sipfrags(b.messages())
    assert frags[-1] == (486, True), frags
    assert all(s < 200 for s, _ in frags[:-1]), frags
    assert [m.describe() for m in b.messages()][-2:] == ["in BYE", "out 200 BYE"]
    assert event(lab, "transfer.succeeded") is None


def test_bot_refer_off_the_allow_list_is_refused_403_and_nothing_is_sent(lab, tmp_path):
    """A REFER whose target is not on the allow-list: 403 to the bot, no NOTIFY, nothing
    sent to the target (a socket listening there stays silent), the call goes on."""
    import socket

    trap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trap.bind((HOST, 0))
    trap.settimeout(0.1)
    try:
        target = f"sip:premium@{HOST}:{trap.getsockname()[1]}"
        start_voicegw(lab, transfer_allow=["sip:*@pbx.example.com"], transfer_method="invite")
        b = bot(lab, "bot_refer_refused.xml", target)
        c = caller(lab)
        assert c.invite().status == 200
        refused = wait_event(lab, "transfer.refused")
        assert refused["target"] == target
        c.receive_rtp(2.0)  # the bot's INFO probe is answered meanwhile
        assert not c.got_request("BYE")
        assert c.bye().status == 200
        finish(lab, b)
        try:
            data = trap.recv(65535)
        except (TimeoutError, BlockingIOError):
            data = b""
        assert data == b"", f"nothing may be sent to a refused target: {data[:200]!r}"
        assert event(lab, "transfer.started") is None
        assert [m.status for m in responses(b.messages(), "REFER")] == [403]
        assert not requests(b.messages(), "NOTIFY")
    finally:
        trap.close()


# --- agent behaviours for INVITE transfers ------------------------------------------
def test_agent_unavailable_503_fails_the_transfer_caller_stays(lab):
    agent = peer(lab, "agent", "agent_unavailable.xml")
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    b = bot(lab, "bot_refer_stay.xml", agent_uri(agent))
    c = caller(lab)
    assert c.invite().status == 200
    wait_event(lab, "transfer.failed", status=503)
    finish(lab, agent)
    c.receive_rtp(2.0)
    assert not c.got_request("BYE")
    assert c.bye().status == 200
    finish(lab, b)
    assert sipfrags(b.messages())[-1] == (503, True)


def test_agent_never_answers_ring_timeout_cancels_the_agent_leg(lab):
    """ring_timeout 1.5 s: voicegw CANCELs the agent's INVITE (the agent's scenario
    requires the CANCEL), the transfer fails with ``timeout``, the caller stays."""
    agent = peer(lab, "agent", "agent_noanswer.xml")
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite",
                  ring_timeout=1.5)
    b = bot(lab, "bot_refer_stay.xml", agent_uri(agent))
    c = caller(lab)
    assert c.invite().status == 200
    started = wait_event(lab, "transfer.started")
    failed = wait_event(lab, "transfer.failed", status="no_answer")
    assert 1.3 <= log_time(failed) - log_time(started) <= 4.0
    finish(lab, agent)
    flow = agent.flow()
    assert flow[:4] == ["in INVITE", "out 100 INVITE", "out 180 INVITE", "in CANCEL"], flow
    assert flow[-1] == "in ACK", flow
    c.receive_rtp(2.0)
    assert not c.got_request("BYE")
    assert c.bye().status == 200
    finish(lab, b)
    frags = sipfrags(b.messages())
    assert 180 in [s for s, _ in frags] and frags[-1][1], frags
    assert frags[-1][0] >= 400, frags  # a failure status for the bot (408 for a timeout)


def test_caller_hangs_up_while_the_agent_rings_agent_gets_cancel(lab):
    agent = peer(lab, "agent", "agent_noanswer.xml")
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    b = bot(lab, "bot_refer.xml", agent_uri(agent))
    c = caller(lab)
    assert c.invite().status == 200
    wait_event(lab, "transfer.started")
    time.sleep(1.0)  # the agent rings
    assert c.bye().status == 200
    finish(lab, agent)  # it got CANCEL, answered 200 + 487, got the ACK
    assert "in CANCEL" in agent.flow()
    finish(lab, b)  # a final NOTIFY (the transfer is over), then BYE
    failed = wait_event(lab, "transfer.failed")
    assert failed["status"] == "call_ended"
    wait_event(lab, "call.ended", call_id=c.call_id)
