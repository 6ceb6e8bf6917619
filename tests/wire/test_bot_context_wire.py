"""The context a bot hands over with its REFER reaches the agent's INVITE (issue 13 item 3).

caller (peers.agent.Carrier) -> ``voicegw run`` -> bot (sipp,
tests/peers/scenarios/bot_refer_context.xml): its REFER carries ``X-Intent: billing``
and a Refer-To with embedded headers (RFC 3261 19.1.5), ``User-to-User`` (RFC 7433,
hex) and ``X-Lang``; the agent (sipp agent_answer.xml) answers. The carrier profile's
``context_headers`` map the bot's UUI (``bot_session``) back into ``User-to-User`` and
its X-headers (``ivr.intent``, ``ivr``) into the agent's own names: the test reads them
in the INVITE the agent got (and, with an agent profile for the bot's target, that
profile's ``context_headers`` instead), and checks that nothing of the Refer-To's ``?`` part
leaked into the Request-URI.

With ``transfer_method: refer`` the context goes to the carrier instead: the UUI
embedded in the Refer-To of voicegw's REFER (RFC 7434 4.2: so the carrier puts it in
its INVITE), the X-headers on the REFER.

A bot may also hand its context back on its BYE (tests/peers/scenarios/
b2bua_bot_hangup_context.xml): a flow's agent_transfer after the bot node carries it.

The last test: a transcript attached through the control API before the bot REFERs
goes with the bot's transfer (``transcript_url``, ``summary``), and its link reads 10
times, then 410.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import yaml
from peers.agent import Agent, Carrier
from peers.calls import HOST, SIPP, render_scenario
from peers.lab import agent_uri, finish, peer, requests, sipfrags, start_voicegw, wait_event
from peers.net import free_port
from peers.ops import OpsDaemon

from voicegw.media.wav import write_wav
from voicegw.sip.headers import NameAddr
from voicegw.sip.refer_headers import parse_embedded_headers

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(60),
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]

SESSION = "kore-session-4711"


def context_bot(lab, refer_to: str, pause_ms: int):
    """The bot of bot_refer_context.xml on ``lab.bot_port``, REFERing ``pause_ms`` after the ACK."""
    scenario = render_scenario("bot_refer_context.xml", lab.workdir / "scenarios", pause=pause_ms)
    return peer(lab, "bot", scenario, port=lab.bot_port, keys={"refer_to": refer_to, "intent": "billing"})


@pytest.mark.parametrize("profile", ["carrier", "agent"])
def test_bot_uui_in_refer_to_and_x_headers_reach_the_agent_as_the_profile_maps_them(lab, profile):
    """The mapping of the carrier profile (the default), or of the agent profile whose
    URI the bot REFERs to (the carrier's then maps nothing of the bot's)."""
    profiles = lab.workdir / "profiles"
    profiles.mkdir()
    agent = peer(lab, "agent", "agent_answer.xml")
    target = agent_uri(agent)
    mapping = {"X-VG-Caller": "caller", "X-VG-Call-ID": "call_id", "X-VG-Called": "called",
               "User-to-User": "bot_session",
               "X-VG-Intent": "ivr.intent", "X-VG-IVR": "ivr"}
    carrier = {"X-VG-Caller": "caller", "X-VG-Call-ID": "call_id"} if profile == "agent" else mapping
    (profiles / "carrier.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"], "context_headers": carrier}))
    if profile == "agent":
        (profiles / "agent.yaml").write_text(yaml.safe_dump({
            "kind": "agent", "uri": target, "context_headers": mapping}))
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite",
                  ringback="silence", sections={"profiles_dir": str(profiles)})
    uui = SESSION.encode().hex()
    refer_to = f"{target}?User-to-User={uui}%3Bencoding%3Dhex&X-Lang=de"
    b = context_bot(lab, refer_to, 300)
    c = Carrier(lab.daemon.address, user="alice")
    lab.callers.append(c)
    assert c.invite().status == 200
    assert c.listen(15, lambda: bool(requests(agent.messages(), "INVITE"))), lab.report()
    wait_event(lab, "transfer.succeeded", status=200)

    invite = requests(agent.messages(), "INVITE")[0]
    assert invite.header("user-to-user") == f"{uui};encoding=hex", invite.headers
    assert invite.header("x-vg-intent") == "billing", "the REFER's own X-Intent, as ivr.intent"
    assert invite.header("x-vg-ivr") == "intent=billing;lang=de", "every X-header of the bot, as ivr"
    assert invite.header("x-vg-caller") == "alice"
    assert invite.header("x-vg-called") == c.request_user, "the number the caller dialled (Request-URI user)"
    assert "?" not in invite.first_line and "User-to-User" not in invite.first_line, invite.first_line

    finish(lab, b)
    assert sipfrags(b.messages())[-1] == (200, True)
    assert c.bye().status == 200
    finish(lab, agent)


def test_bot_context_goes_to_the_carrier_in_voicegws_refer_uui_embedded_in_refer_to(lab):
    profiles = lab.workdir / "profiles"
    profiles.mkdir()
    (profiles / "carrier.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"],
        "context_headers": {"X-VG-Caller": "caller", "User-to-User": "bot_session", "X-VG-Intent": "ivr.intent"}}))
    target = f"sip:agent@{HOST}:5999"
    start_voicegw(lab, transfer_allow=[target], transfer_method="refer", sections={"profiles_dir": str(profiles)})
    uui = SESSION.encode().hex()
    b = context_bot(lab, f"{target}?User-to-User={uui}%3Bencoding%3Dhex", 300)
    c = Carrier(lab.daemon.address, user="alice")
    lab.callers.append(c)
    assert c.invite().status == 200
    assert c.listen(10, lambda: bool(c.refers)), lab.report()
    refer = c.refers[0]
    refer_to = NameAddr.parse(refer.headers.get("refer-to")).uri
    assert str(refer_to.copy(headers=None)) == target
    assert parse_embedded_headers(refer_to.headers) == [("User-to-User", f"{uui};encoding=hex")]
    assert refer.headers.get("user-to-user") is None, "the UUI travels in the Refer-To only"
    assert refer.headers.get("x-vg-intent") == "billing" and refer.headers.get("x-vg-caller") == "alice"

    assert c.notify(refer, 200, "OK", final=True).status == 200
    assert c.listen(5, lambda: c.got_request("BYE")), "voicegw leaves once the carrier connected the caller"
    finish(lab, b)
    assert sipfrags(b.messages())[-1] == (200, True)


def test_bot_transfer_carries_the_transcript_link_which_reads_ten_times_then_410(lab):
    profiles = lab.workdir / "profiles"
    profiles.mkdir()
    (profiles / "carrier.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"],
        "context_headers": {"X-VG-Caller": "caller", "X-VG-Call-ID": "call_id",
                            "X-VG-Transcript": "transcript_url", "X-VG-Summary": "summary"}}))
    agent = peer(lab, "agent", "agent_answer.xml")
    lab.bot_port = free_port(HOST)
    ops = OpsDaemon(lab.workdir / "daemon", args=("--bot-uri", f"sip:bot@{HOST}:{lab.bot_port}"), config={
        "calls": {"transfer_allow": [f"sip:*@{HOST}:{agent.port}"], "transfer_method": "invite",
                  "ringback": "silence"},
        "profiles_dir": str(profiles)})
    with ops:
        b = context_bot(lab, agent_uri(agent), 2000)  # time to attach the transcript first
        c = Carrier(ops.address, user="alice")
        lab.callers.append(c)
        assert c.invite().status == 200
        summary = "Asked for a refund of invoice 42."
        reply = ops.http("POST", f"/calls/{c.call_id}/transcript",
                         json={"transcript": "bot: hello\ncaller: refund please", "summary": summary})
        assert reply.status_code == 201, reply.text
        assert c.listen(15, lambda: bool(ops.logged("transfer.succeeded", status=200))), ops.daemon.lines[-20:]

        invite = requests(agent.messages(), "INVITE")[0]
        url = invite.header("x-vg-transcript")
        assert url == reply.json()["url"], invite.headers
        assert invite.header("x-vg-summary") == summary
        reads = [httpx.get(url, timeout=5) for _ in range(11)]
        assert [r.status_code for r in reads] == [200] * 10 + [410]
        assert "refund please" in reads[0].text

        finish(lab, b)
        assert sipfrags(b.messages())[-1] == (200, True)
        assert c.bye().status == 200
        finish(lab, agent)


def test_bot_context_on_its_bye_goes_with_the_flows_next_transfer(lab):
    profiles, flows = lab.workdir / "profiles", lab.workdir / "flows"
    profiles.mkdir()
    flows.mkdir()
    bot_port = free_port(HOST)
    with Agent() as agent:
        (profiles / "bot.yaml").write_text(yaml.safe_dump({"kind": "bot", "uri": f"sip:bot@{HOST}:{bot_port}"}))
        (profiles / "agent.yaml").write_text(yaml.safe_dump({
            "kind": "agent", "uri": agent.uri,
            "context_headers": {"X-VG-Caller": "caller", "User-to-User": "bot_session", "X-VG-Intent": "ivr.intent"}}))
        hello = lab.workdir / "hello.wav"
        write_wav(hello, np.zeros(800, dtype=np.int16))  # 0.1 s: the flow answers the caller itself
        (flows / "handback.yaml").write_text(yaml.safe_dump({
            "name": "handback", "start": "hello", "nodes": {
                "hello": {"type": "message", "file": str(hello), "next": "assistant"},
                "assistant": {"type": "bot", "profile": "bot", "next": "to_agent"},
                "to_agent": {"type": "agent_transfer", "target": "agent", "method": "invite"}}}))
        start_voicegw(lab, bot=False, transfer_allow=[agent.uri], ringback="silence", sections={
            "profiles_dir": str(profiles), "flows_dir": str(flows), "default_flow": "handback"})
        uui = SESSION.encode().hex()
        b = peer(lab, "bot", "b2bua_bot_hangup_context.xml", port=bot_port,
                 keys={"uui": f"{uui};encoding=hex", "intent": "billing"})
        c = Carrier(lab.daemon.address, user="alice")
        lab.callers.append(c)
        assert c.invite().status == 200
        assert c.listen(15, lambda: agent.call is not None), lab.report()
        finish(lab, b)
        invite = agent.call.invite
        assert invite.headers.get("user-to-user") == f"{uui};encoding=hex", invite.headers
        assert invite.headers.get("x-vg-intent") == "billing"
        assert invite.headers.get("x-vg-caller") == "alice"
        assert c.listen(5, lambda: agent.call.acked)
        assert c.bye().status == 200
