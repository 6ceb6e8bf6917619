"""A warm transfer completed by REFER with Replaces where the other side is Asterisk 22,
over the wire (issue 11).

The caller (peers.pbx.Phone) calls voicegw (demo flow, ``transfer_method: warm``,
``complete_by: refer``) and presses 0. voicegw consults the agent through a real
Asterisk (peers.asterisk): its INVITE goes to extension ``queue``, which Dials the
agent registered with digest auth; after the briefing voicegw completes by REFER on
the caller's leg, Refer-To Asterisk's Contact with a Replaces header naming the
consult dialog as Asterisk sees it (RFC 3891). The test plays the transferee, as a
carrier does: it sends Asterisk the INVITE with that Replaces header from a new leg,
then NOTIFYs voicegw 200 (RFC 3515). Asterisk really joins the calls: it takes the new
leg into the consult call's place (200 OK), BYEs voicegw's consult leg, and the new
leg talks with the agent (tones both ways) with voicegw out of the call.
"""

from __future__ import annotations

import time
from urllib.parse import unquote

import pytest
from peers.asterisk import ladder, requests
from peers.pbx import wait_logged

pytestmark = [pytest.mark.wire, pytest.mark.timeout(240)]

CALLER_TONE, AGENT_TONE = 700, 1100


def replaces_of(refer_to: str) -> tuple[str, str]:
    """(the URI without its headers, the Replaces header value) of a Refer-To."""
    uri = refer_to.strip().strip("<>")
    base, _, query = uri.partition("?")
    headers = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    assert "Replaces" in headers, refer_to
    return base, unquote(headers["Replaces"])


def test_refer_with_replaces_joins_the_caller_to_the_agent_inside_asterisk(pbx, pbx_lab):
    agent = pbx_lab.agent(answer_delay=0.2)
    warm = {"hold": "silence", "briefing_text": "Transfer of a caller.", "confirm": False,
            "auto_complete": True, "complete_by": "refer"}
    daemon = pbx_lab.voicegw(args=("--agent-uri", pbx.uri("queue")), transfer_method="warm",
                             warm=warm, ring_timeout=20)
    since = pbx.mark()
    caller = pbx_lab.phone("demo", to=daemon.address)
    assert caller.invite().status == 200
    caller.listen(0.5)
    caller.send_dtmf("0")
    assert agent.wait_answered(30), pbx.report(since)
    assert caller.listen(30, lambda: bool(caller.refers)), "no REFER on the caller's leg"
    refer = caller.refers[0]
    base, replaces = replaces_of(refer.headers.get("refer-to") or "")
    assert base.endswith(f"127.0.0.1:{pbx.sip_port}"), "Refer-To: Asterisk's Contact"
    consult = requests(pbx.with_voicegw(since), "INVITE", "in")[0]
    call_id, *params = replaces.split(";")
    assert call_id == consult.header("call-id")
    tags = dict(p.split("=", 1) for p in params)
    assert tags["from-tag"] == consult.tag("from"), "RFC 3891 3: from-tag is voicegw's"

    # the transferee's INVITE with Replaces, to Asterisk, from a new leg
    transferee = pbx_lab.phone("", to=pbx.address)
    transferee.exten = ""
    assert transferee.invite(extra=f"Replaces: {replaces}\r\n"
                             f"Referred-By: {refer.headers.get('referred-by') or '<sip:voicegw@127.0.0.1>'}\r\n"
                             ).status == 200, pbx.report(since)
    pbx_lab.talk(transferee, CALLER_TONE)
    pbx_lab.talk(agent, AGENT_TONE)
    joined = time.monotonic()
    assert transferee.wait_heard(AGENT_TONE, since=joined), "the new leg talks with the agent"
    assert agent.wait_heard(CALLER_TONE, since=joined), "the agent hears the new leg"

    # Asterisk replaced voicegw's consult leg: it BYEs it
    trace = pbx.wait_sip(lambda tr: "out BYE" in ladder(tr, pbx.voicegw_port), since)
    assert "out BYE" in ladder(trace, pbx.voicegw_port), ladder(trace, pbx.voicegw_port)
    assert "in INVITE" in ladder(trace, transferee.sip_port)
    invite = next(t.message for t in trace if t.peer[1] == transferee.sip_port and t.direction == "in"
                  and t.message.method == "INVITE")
    assert invite.header("replaces") == replaces

    # the transferee reports success: voicegw leaves the caller's leg
    assert caller.notify(refer, 200, "OK", final=True).status == 200
    assert caller.listen(15, lambda: caller.got_request("BYE")), "voicegw hangs up leg A"
    wait_logged(daemon, "transfer.succeeded", call_id=caller.call_id)
    wait_logged(daemon, "call.ended", call_id=caller.call_id)
    channels = pbx.wait_channels(lambda names: len(names) == 2 and not any("voicegw" in n for n in names))
    assert sorted(name.rsplit("-", 1)[0] for name in channels) == ["PJSIP/agent", "PJSIP/phone"], channels
    later = time.monotonic()
    assert transferee.wait_heard(AGENT_TONE, since=later), "still talking with voicegw gone"
    assert transferee.bye().status == 200
