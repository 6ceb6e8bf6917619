"""Warm (attended) transfer completed by REFER with Replaces where the other side is
FreeSWITCH (issue 11, RFC 5589 7 / RFC 3891).

phone (peers.caller) -> FreeSWITCH ``bridge-<voicegw port>`` -> ``voicegw run`` (demo flow,
``transfer_method: warm`` with ``complete_by: refer``). The phone presses 0; voicegw
consults the agent through the same FreeSWITCH (``bridge-<agent port>`` to a sipp UAS
that echoes), briefs it, then REFERs its leg A (FreeSWITCH's) with
``Refer-To: <agent leg?Replaces=...>`` naming the consult dialog. FreeSWITCH owns both
dialogs: it joins the phone's channel with the agent's and ends its two legs to voicegw.
Asserted: FreeSWITCH's SIP trace (the REFER with Replaces, its 202 and NOTIFY 200, BYEs
on both voicegw dialogs), the phone's RTP (its tone echoed by the agent with voicegw out
of the call), the agent's sipp log (one INVITE, never a BYE until the phone hangs up),
and voicegw's JSON log.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from peers.caller import Caller
from peers.calls import HOST, SIPP
from peers.freeswitch import INSTALL, SKIP_REASON, talk, tone
from peers.lab import finish, peer, requests, start_voicegw, wait_event
from peers.pbx import tone_packets

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(INSTALL is None, reason=SKIP_REASON),
]


def test_warm_transfer_completed_by_refer_with_replaces_freeswitch_joins_phone_and_agent(lab, freeswitch):
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    start_voicegw(lab, bot=False, agent_uri=freeswitch.uri(f"bridge-{agent.port}"), transfer_method="warm",
                  ring_timeout=5, warm={"hold": "silence", "briefing_text": "Incoming transfer.",
                                        "confirm": False, "auto_complete": True, "complete_by": "refer"})
    phone = Caller(freeswitch.address, user="phone", request_user=f"bridge-{lab.daemon.port}")
    lab.callers.append(phone)
    assert phone.invite().status == 200
    phone.receive_rtp(0.3)
    phone.send_dtmf("0")
    done = wait_event(lab, "transfer.succeeded", timeout=25)
    wait_event(lab, "call.ended", call_id=done["call_id"])
    heard = talk(phone, tone(850, 100))
    assert tone_packets(heard, 850) >= 40, "the agent's echo reaches the phone"
    assert not phone.got_request("BYE")
    fs = freeswitch.sip_messages(freeswitch.since)
    refers = [m for m in fs if m.direction == "in" and m.status is None and m.method == "REFER"]
    assert len(refers) == 1, [m.describe() for m in fs]
    refer_to = unquote(refers[0].header("refer-to") or "")
    # Refer-To names FreeSWITCH's consult leg (its Contact) and, in Replaces, that dialog
    # as FreeSWITCH sees it: the Call-ID of the INVITE voicegw sent it for the consult
    consult = [m for m in fs if m.direction == "in" and m.status is None and m.method == "INVITE"
               and m.first_line.startswith(f"INVITE sip:bridge-{agent.port}@")]
    assert len(consult) == 1, [m.describe() for m in fs]
    assert refer_to.startswith(f"<sip:bridge-{agent.port}@{HOST}:{freeswitch.sip_port}"), refer_to
    assert f"Replaces={consult[0].header('call-id')};" in refer_to, refer_to
    accepted = [m.status for m in fs if m.direction == "out" and m.method == "REFER" and m.status]
    assert accepted == [202], accepted
    notifies = [m for m in fs if m.direction == "out" and m.status is None and m.method == "NOTIFY"]
    assert notifies and notifies[-1].body.startswith(b"SIP/2.0 200"), [m.body for m in notifies]
    assert "terminated" in (notifies[-1].header("subscription-state") or "")
    assert phone.bye().status == 200
    finish(lab, agent)
    assert len(requests(agent.messages(), "INVITE")) == 1, "FreeSWITCH joined the legs it had"
