"""FreeSWITCH with a PJSIP (pjsua2) phone around voicegw (issue 11): the transfers where
the phone's own REFER handling matters.

- FreeSWITCH's ``deflect`` sends the PJSIP phone to voicegw (test dialplan ``refer`` with
  an ``X-Refer-To`` header): PJSIP follows the REFER with a new INVITE to voicegw, which
  is the transfer target and bridges the phone to its bot (a sipp UAS that echoes).
- A warm transfer completed by REFER with Replaces where the agent side is FreeSWITCH:
  voicegw consults ``bridge-<agent port>`` on FreeSWITCH (which dials a sipp agent), then
  REFERs the PJSIP phone with Replaces naming that consult dialog; PJSIP's INVITE with
  Replaces goes to FreeSWITCH, which puts the phone where voicegw's consult leg was and
  BYEs that leg (RFC 3891 3).

- FreeSWITCH as the agents' PBX with a PJSIP agent: voicegw's INVITE transfer to
  ``bridge-<agent port>``; caller and agent hear each other's tone across both B2BUAs.

Asserted: the phone's SIP (tests/peers/pjsua.py keeps what PJSIP sent and received) and
its audio (its tone echoed back, recorded and detected by frequency), FreeSWITCH's SIP
trace, the sipp peers' message logs and voicegw's JSON log.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from peers.calls import HOST, SIPP
from peers.freeswitch import INSTALL, SKIP_REASON, talk, tone
from peers.lab import bot, caller, finish, peer, requests, sipfrags, start_voicegw, wait_event
from peers.pbx import tone_packets
from peers.pjsua import AVAILABLE, Pjsua, hears

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(INSTALL is None, reason=SKIP_REASON),
    pytest.mark.skipif(not AVAILABLE, reason="pjsua2 not installed: pip install -e '.[test]'"),
]


@pytest.fixture
def phone(tmp_path):
    """A PJSIP phone that plays 700 Hz into every call and follows REFERs."""
    with Pjsua(tmp_path, "phone", tone_hz=700) as ua:
        yield ua


def test_freeswitch_deflects_a_pjsip_phone_to_voicegw_which_is_the_transfer_target(lab, freeswitch, phone):
    start_voicegw(lab)
    b = peer(lab, "bot", "b2bua_bot_answer.xml", port=lab.bot_port, rtp_echo=True)
    target = f"sip:support@{HOST}:{lab.daemon.port}"
    first = phone.call(freeswitch.uri("refer"), headers={"X-Refer-To": target})
    first.wait_confirmed()
    second = first.transferred_to(timeout=10)
    second.wait_confirmed()
    assert hears(second.record(1.5), 700), "the bot's echo of the phone's tone, through voicegw"
    first.wait_disconnected(timeout=15)  # FreeSWITCH's BYE after the phone's NOTIFY 200
    # the phone's side: FreeSWITCH's REFER, then its own INVITE to voicegw
    refers = phone.requests("REFER")
    assert len(refers) == 1 and unquote(refers[0].header("refer-to") or "").strip("<>") == target
    invites = phone.requests("INVITE", "out")
    assert invites[-1].first_line.startswith(f"INVITE {target} ")
    # FreeSWITCH's side: NOTIFYs from the phone ending with a final 200, then its BYE
    fs = freeswitch.wait_sip("out BYE", freeswitch.since)
    notifies = [m for m in fs if m.direction == "in" and m.status is None and m.method == "NOTIFY"]
    assert notifies and notifies[-1].body.startswith(b"SIP/2.0 200"), [m.body for m in notifies]
    order = [m.describe() for m in fs]
    assert order.index("out BYE") > max(i for i, d in enumerate(order) if d == "in NOTIFY"), order
    second.hangup()
    finish(lab, b)
    assert "in BYE" in b.flow()


def test_warm_transfer_refer_with_replaces_pjsip_phone_joins_the_freeswitch_agent(lab, freeswitch, phone):
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    start_voicegw(lab, bot=False, agent_uri=freeswitch.uri(f"bridge-{agent.port}"), transfer_method="warm",
                  ring_timeout=5, warm={"hold": "silence", "briefing_text": "Incoming transfer.",
                                        "confirm": False, "auto_complete": True, "complete_by": "refer"})
    call = phone.call(f"sip:demo@{HOST}:{lab.daemon.port}")
    call.wait_confirmed()
    call.dtmf("0")
    joined = call.transferred_to(timeout=25)
    joined.wait_confirmed()
    done = wait_event(lab, "transfer.succeeded", timeout=15)
    wait_event(lab, "call.ended", call_id=done["call_id"])
    assert hears(joined.record(1.5), 700), "the agent's echo, with voicegw out of the call"
    # PJSIP's INVITE with Replaces went to FreeSWITCH, naming voicegw's consult dialog
    fs = freeswitch.wait_sip("out BYE", freeswitch.since)
    consult = [m for m in fs if m.direction == "in" and m.status is None and m.method == "INVITE"
               and m.first_line.startswith(f"INVITE sip:bridge-{agent.port}@") and not m.header("replaces")]
    replacing = [m for m in fs if m.direction == "in" and m.status is None and m.method == "INVITE"
                 and m.header("replaces")]
    assert len(consult) == 1 and len(replacing) == 1, [m.describe() for m in fs]
    assert replacing[0].header("replaces").startswith(consult[0].header("call-id") + ";")
    assert replacing[0].header("call-id") == joined.call_id
    # RFC 3891 3: FreeSWITCH answers the new INVITE, then ends the replaced dialog (a BYE to voicegw)
    order = [(m.describe(), m.header("call-id")) for m in fs]
    answered = order.index(("out 200 INVITE", joined.call_id))
    assert ("out BYE", consult[0].header("call-id")) in order[answered:], order
    # the phone: REFER on its first call, its NOTIFYs, then voicegw's BYE there
    assert [m.status for m in phone.responses("NOTIFY")][-1] == 200
    assert call.wait_disconnected(5)
    joined.hangup()
    finish(lab, agent)
    assert len(requests(agent.messages(), "INVITE")) == 1, "the agent's call was kept, not redialled"


def test_voicegw_transfers_to_a_pjsip_agent_behind_freeswitch_both_hear_each_other(lab, freeswitch, tmp_path):
    with Pjsua(tmp_path, "agent", tone_hz=900) as agent:
        start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{freeswitch.sip_port}"], transfer_method="invite")
        b = bot(lab, "bot_refer.xml", freeswitch.uri(f"bridge-{agent.port}"))
        c = caller(lab)
        assert c.invite().status == 200
        wait_event(lab, "transfer.succeeded", status=200)
        finish(lab, b)
        assert sipfrags(b.messages())[-1] == (200, True)
        call = agent.incoming()
        call.wait_confirmed()
        call.record_start()
        heard = talk(c, tone(500, 100))
        assert hears(call.record_stop(), 500), "the agent hears the caller's tone"
        assert tone_packets(heard, 900) >= 40, "the caller hears the agent's tone"
        invite = agent.requests("INVITE")[0]
        assert invite.header("x-vg-caller") == "alice", "voicegw's context headers, copied by FreeSWITCH"
        assert c.bye().status == 200
        call.wait_disconnected()
