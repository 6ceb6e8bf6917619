"""The context a bot hands over with its REFER reaches the agent's INVITE (issue 13 item 3).

caller (peers.agent.Carrier) -> ``voicegw run`` -> bot (sipp,
tests/peers/scenarios/bot_refer_context.xml): its REFER carries ``X-Intent: billing``
and a Refer-To with embedded headers (RFC 3261 19.1.5), ``User-to-User`` (RFC 7433,
hex) and ``X-Lang``; the agent (sipp agent_answer.xml) answers. The carrier profile's
``context_headers`` map the bot's UUI (``bot_session``) back into ``User-to-User`` and
its X-headers (``ivr.intent``, ``ivr``) into the agent's own names: the test reads them
in the INVITE the agent got, and checks that nothing of the Refer-To's ``?`` part
leaked into the Request-URI.
"""

from __future__ import annotations

import pytest
import yaml
from peers.agent import Carrier
from peers.calls import HOST, SIPP
from peers.lab import agent_uri, bot, finish, peer, requests, sipfrags, start_voicegw, wait_event

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(60),
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]

SESSION = "kore-session-4711"


def test_bot_uui_in_refer_to_and_x_headers_reach_the_agent_as_the_profile_maps_them(lab):
    profiles = lab.workdir / "profiles"
    profiles.mkdir()
    (profiles / "carrier.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"],
        "context_headers": {"X-VG-Caller": "caller", "X-VG-Call-ID": "call_id", "User-to-User": "bot_session",
                            "X-VG-Intent": "ivr.intent", "X-VG-IVR": "ivr"}}))
    agent = peer(lab, "agent", "agent_answer.xml")
    target = agent_uri(agent)
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite",
                  ringback="silence", sections={"profiles_dir": str(profiles)})
    uui = SESSION.encode().hex()
    refer_to = f"{target}?User-to-User={uui}%3Bencoding%3Dhex&X-Lang=de"
    b = bot(lab, "bot_refer_context.xml", refer_to, intent="billing")
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
    assert "?" not in invite.first_line and "User-to-User" not in invite.first_line, invite.first_line

    finish(lab, b)
    assert sipfrags(b.messages())[-1] == (200, True)
    assert c.bye().status == 200
    finish(lab, agent)
