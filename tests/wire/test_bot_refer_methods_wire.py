"""A bot's REFER carried out with ``calls.transfer_methods: [refer, invite]`` (issue 4).

The second test: the carrier cannot REFER and answers it 501 (issue 13 item 6); the
INVITE to the agent follows and the bot hears only the final 200.

caller (peers.agent.Carrier: the scripted caller acting as the carrier, RTP recorded
with arrival times) -> ``voicegw run`` -> bot (sipp, tests/peers/scenarios/bot_refer.xml: answers,
REFERs to the agent, answers every NOTIFY until the terminated one, then expects BYE);
agent: sipp tests/peers/scenarios/agent_answer.xml with RTP echo.

voicegw first REFERs the carrier (leg A); the carrier accepts (202) and NOTIFYs 100,
then 486: the caller must hear the "please hold" prompt (speech energy, TTS) and stay
up; voicegw then dials the agent by INVITE and bridges. The bot hears the progress and
one final outcome, 200 (never the 486 of the first method), then its BYE.
"""

from __future__ import annotations

import time

import pytest
from peers.agent import Carrier
from peers.caller import speech_energy
from peers.calls import HOST, SIPP
from peers.daemon import wait_until
from peers.lab import (
    agent_uri,
    bot,
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
    pytest.mark.timeout(60),
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]


def test_refer_to_carrier_486_hold_prompt_then_invite_to_agent_succeeds(lab):
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    target = agent_uri(agent)
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_methods=["refer", "invite"],
                  ringback="silence")
    b = bot(lab, "bot_refer.xml", target)
    c = Carrier(lab.daemon.address)
    lab.callers.append(c)
    assert c.invite().status == 200

    # 1. voicegw REFERs the carrier to the bot's target; the carrier accepts, then fails 486
    assert c.listen(10, lambda: bool(c.refers)), lab.report()
    refer = c.refers[0]
    assert refer.headers.get("refer-to") == f"<{target}>"
    assert c.notify(refer, 100, "Trying", final=False).status == 200
    assert c.notify(refer, 486, "Busy Here", final=True).status == 200
    failed_at = time.monotonic()
    failed = wait_event(lab, "transfer.failed", status=486)

    # 2. the caller hears the "please hold" prompt, then the INVITE to the agent succeeds
    assert c.listen(15, lambda: event(lab, "transfer.succeeded", status=200) is not None), lab.report()
    done = wait_event(lab, "transfer.succeeded", status=200)
    prompt = [p for p in c.audio(failed_at) if speech_energy([p]) > 200]  # 20 ms packets of speech
    assert speech_energy(c.audio(failed_at)) > 200 and len(prompt) >= 25, \
        "the caller hears the hold prompt (>= 0.5 s of speech) between the two methods"
    invite = wait_event(lab, "transfer.started", method="invite")
    assert event(lab, "transfer.started", method="refer") is not None
    # the INVITE waited for the prompt: its start is at least the prompt's length after the 486
    assert log_time(invite) - log_time(failed) >= len(prompt) * 0.02 - 0.3, (len(prompt), invite, failed)
    assert done["transfer_id"] == invite["transfer_id"]

    # 3. caller <-> agent media (the agent echoes), the caller was never hung up
    mark = time.monotonic()
    sent = [bytes([i]) * 160 for i in range(1, 31)]
    for payload in sent:
        c.send_rtp(payload)
        time.sleep(0.005)
    c.listen(1.0)
    assert [p[12:] for p in c.audio(mark) if p[12:] in sent] == sent, "every packet comes back from the agent, in order"
    assert not c.got_request("BYE"), "a failed REFER never drops the caller"

    # 4. the bot: 202, NOTIFY 100 ... then one final, 200 (not the 486), then BYE
    finish(lab, b)
    bot_msgs = b.messages()
    assert [m.status for m in responses(bot_msgs, "REFER")] == [202]
    frags = sipfrags(bot_msgs)
    assert frags[0] == (100, False), frags
    assert frags[-1] == (200, True), frags
    assert all(status < 200 and not ended for status, ended in frags[:-1]), \
        f"no final (486 or other) before the 200: {frags}"
    assert 486 not in [s for s, _ in frags], frags
    flow = b.flow()
    final_notify = max(i for i, d in enumerate(flow) if d == "in NOTIFY")
    assert flow[final_notify + 1] == "out 200 NOTIFY" and flow.index("in BYE") > final_notify + 1, flow

    assert c.bye().status == 200
    finish(lab, agent)
    assert requests(agent.messages(), "BYE"), "the agent leg ends with the call"
    assert wait_until(lambda: event(lab, "call.ended", call_id=c.call_id) is not None, 5)


def test_refer_answered_501_by_the_carrier_then_invite_to_agent_succeeds(lab):
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    target = agent_uri(agent)
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_methods=["refer", "invite"],
                  ringback="silence")
    b = bot(lab, "bot_refer.xml", target)
    c = Carrier(lab.daemon.address, refer_answer="501 Not Implemented")
    lab.callers.append(c)
    assert c.invite().status == 200

    # voicegw REFERs the carrier, which answers 501; then voicegw INVITEs the agent
    assert c.listen(10, lambda: bool(c.refers)), lab.report()
    assert c.refers[0].headers.get("refer-to") == f"<{target}>"
    assert c.listen(15, lambda: event(lab, "transfer.succeeded", status=200) is not None), lab.report()
    failed = wait_event(lab, "transfer.failed", status=501)
    invite = wait_event(lab, "transfer.started", method="invite")
    assert log_time(invite) >= log_time(failed), "the INVITE follows the 501"
    assert wait_event(lab, "transfer.succeeded", status=200)["transfer_id"] == invite["transfer_id"]
    assert len(c.refers) == 1, "one REFER: a 501 is not retried"
    assert requests(agent.messages(), "INVITE"), "the agent got voicegw's INVITE"

    # caller <-> agent media (the agent echoes); the caller was never hung up
    mark = time.monotonic()
    sent = [bytes([i]) * 160 for i in range(1, 31)]
    for payload in sent:
        c.send_rtp(payload)
        time.sleep(0.005)
    c.listen(1.0)
    assert [p[12:] for p in c.audio(mark) if p[12:] in sent] == sent, "every packet comes back from the agent"
    assert not c.got_request("BYE"), "a rejected REFER never drops the caller"

    # the bot: 202, then only progress and one final 200 (never the 501), then its BYE
    finish(lab, b)
    frags = sipfrags(b.messages())
    assert frags[-1] == (200, True), frags
    assert 501 not in [s for s, _ in frags], frags
    assert c.bye().status == 200
    finish(lab, agent)
