"""100rel/PRACK (RFC 3262) on voicegw's outgoing legs, over the wire (issue 12 item 7):
a bot REFERs the call to a sipp agent that sends a reliable 183 with the SDP answer and a
reliable 180, and waits for a PRACK to each (agent_reliable_183.xml checks Supported:
100rel in the INVITE and the RAck of each PRACK); its 200 carries no SDP (the answer was
in the 183). The transfer succeeds, and the caller's RTP goes through the agent and back
(sipp -rtp_echo), so the media settled by the reliable 183 is the one voicegw uses."""

from __future__ import annotations

import pytest
from peers.calls import HOST
from peers.lab import (
    agent_uri,
    bot,
    caller,
    echo_check,
    finish,
    peer,
    requests,
    start_voicegw,
    wait_event,
)
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap")]


def test_reliable_183_and_180_are_pracked_and_the_call_is_bridged(lab):
    agent = peer(lab, "agent", "agent_reliable_183.xml", rtp_echo=True)
    target = agent_uri(agent)
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    b = bot(lab, "bot_refer.xml", target)
    c = caller(lab)
    assert c.invite().status == 200
    wait_event(lab, "transfer.succeeded", status=200)
    finish(lab, b)
    echo_check(c)
    assert c.bye().status == 200
    finish(lab, agent)
    pracks = requests(agent.messages(), "PRACK")
    assert [p.header("rack").split()[0] for p in pracks] == ["1", "2"], [p.header("rack") for p in pracks]
