"""Warm (attended) transfers with PJSIP (peers.pjsua) as both the caller and the agent.

The PJSIP caller presses 0 in the demo flow; voicegw consults the PJSIP agent (its own
INVITE, a spoken briefing the agent hears while the caller hears hold silence) and
then completes:
- by REFER with Replaces (RFC 3891, RFC 5589 section 7) on the caller's leg: PJSIP's
  REFER handling sends an INVITE with Replaces naming the consult dialog to the agent,
  whose PJSIP really swaps the consult call for the new one (``onCallReplaced``); the
  caller and the agent then hear each other directly and voicegw has left both calls;
- by bridging: voicegw joins the two legs it holds and stays in the media path.
And PJSIP's own attended transfer (``xferReplaces``) with voicegw as the party whose
dialog is replaced: a PJSIP INVITE with Replaces takes the caller's place on a call.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from peers.lab import NO_SHEDDING, start_voicegw, wait_event
from peers.pjsua import hears, rms

pytestmark = [pytest.mark.wire, pytest.mark.timeout(90)]

CALLER_HZ, AGENT_HZ, BOT_HZ = 600.0, 1000.0, 1400.0
BRIEFING = "Incoming transfer from {caller}. Billing question."


def warm_call(lab, pjsua, complete_by: str):
    agent = pjsua.ua("agent", tone_hz=AGENT_HZ, answer_delay=0.2)
    start_voicegw(lab, sections=NO_SHEDDING, bot=False, agent_uri=agent.contact(), transfer_method="warm",
                  ring_timeout=5, warm={"hold": "silence", "briefing_text": BRIEFING, "confirm": False,
                                        "auto_complete": True, "complete_by": complete_by})
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:demo@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    call.dtmf("0")
    consult = agent.incoming(timeout=20)
    consult.wait_confirmed()
    return caller, call, agent, consult


def test_warm_refer_with_replaces_pjsip_caller_joins_the_pjsip_agent(lab, pjsua):
    caller, call, agent, consult = warm_call(lab, pjsua, "refer")
    assert consult.listen(lambda s: rms(s) > 200), "the agent hears the briefing on the consult call"
    new = call.transferred_to(timeout=20)  # PJSIP took voicegw's REFER with Replaces
    joined = consult.replaced_by(timeout=10)  # the agent's PJSIP swapped the consult call
    new.wait_confirmed()
    joined.wait_confirmed()
    consult.wait_disconnected()
    call.wait_disconnected()  # voicegw left the caller's leg after the final NOTIFY
    wait_event(lab, "transfer.succeeded")
    # the REFER named the consult dialog as the agent sees it (RFC 3891 section 3)
    refer_to = unquote(caller.requests("REFER")[0].header("refer-to") or "")
    consult_invite = agent.requests("INVITE")[0]
    assert f"Replaces={consult_invite.header('call-id')}" in refer_to, refer_to
    # and PJSIP's INVITE to the agent carried it as a Replaces header
    replacing = agent.requests("INVITE")[1]
    replaces = replacing.header("replaces") or ""
    assert replaces.startswith(consult_invite.header("call-id") or "?"), replaces
    assert re.search(r"to-tag=", replaces) and re.search(r"from-tag=", replaces), replaces
    assert (replacing.header("call-id") or "") not in (consult_invite.header("call-id"), call.call_id)
    # caller and agent now talk directly
    assert new.listen(lambda s: hears(s, AGENT_HZ))
    assert joined.listen(lambda s: hears(s, CALLER_HZ))
    new.hangup()
    joined.wait_disconnected()


def test_warm_bridge_pjsip_caller_and_agent_talk_through_voicegw(lab, pjsua):
    caller, call, agent, consult = warm_call(lab, pjsua, "bridge")
    assert consult.listen(lambda s: rms(s) > 200), "the agent hears the briefing first"
    wait_event(lab, "transfer.succeeded", timeout=20)
    assert call.listen(lambda s: hears(s, AGENT_HZ))
    assert consult.listen(lambda s: hears(s, CALLER_HZ))
    # voicegw stayed in the call: the caller's one dialog, the agent's one dialog
    assert caller.flow().count("out INVITE") == 1 and "in REFER" not in caller.flow()
    assert len(agent.requests("INVITE")) == 1
    call.hangup()
    consult.wait_disconnected()


def test_pjsip_attended_transfer_replaces_the_caller_of_voicegw(lab, pjsua):
    """The other way round: PJSIP phone A, in a call through voicegw with a bot, consults
    B directly and completes with ``xferReplaces`` (REFER to B with Replaces naming A's
    dialog with voicegw); B's PJSIP sends voicegw an INVITE with Replaces, which takes
    A's place on the call (RFC 3891 section 3): B talks to the bot, A is let go."""
    start_voicegw(lab, sections=NO_SHEDDING)
    bot = pjsua.ua("bot", port=lab.bot_port, tone_hz=BOT_HZ)
    a = pjsua.ua("alice", tone_hz=CALLER_HZ)
    b = pjsua.ua("bob", tone_hz=AGENT_HZ)
    to_voicegw = a.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port}")
    to_voicegw.wait_confirmed()
    leg_b = bot.incoming()
    leg_b.wait_confirmed()
    consult = a.call(b.contact())
    consult.wait_confirmed()
    b_consult = b.incoming()
    b_consult.wait_confirmed()
    consult.refer_replaces(to_voicegw)
    joined = b_consult.transferred_to()
    joined.wait_confirmed()
    to_voicegw.wait_disconnected()  # voicegw let A go once B took its place
    assert consult.wait_transfer_final() == 200
    assert joined.listen(lambda s: hears(s, BOT_HZ)), "B hears the bot through voicegw"
    assert leg_b.listen(lambda s: hears(s, AGENT_HZ)), "the bot hears B"
    replacing = b.requests("INVITE", "out")[-1]
    assert (replacing.header("replaces") or "").startswith(to_voicegw.call_id or "?"), replacing.headers
    assert b.wait_final("INVITE").status == 200, "voicegw accepted the INVITE with Replaces"
    assert "in BYE" in a.flow() and leg_b.state == "CONFIRMED", "the bot's leg is untouched"
    joined.hangup()
    leg_b.wait_disconnected()
