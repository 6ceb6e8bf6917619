"""Transfers with Kamailio as a real record-routing proxy between the carrier and voicegw.

carrier (sipp UAC) -> Kamailio (record_route, loose_route, t_relay) -> voicegw -> bot
(sipp UAS that REFERs). voicegw must honour the Record-Route set: its in-dialog
requests to the carrier (REFER, BYE) go to Kamailio with a Route header, and so do the
carrier's (ACK, NOTIFY, BYE). Checked on the wire: the carrier's message log (the
Record-Route it got, the Route headers it sent, Kamailio's Via on what voicegw sent it)
and Kamailio's own log (one line per request it handled, and whether loose_route
routed it). Kamailio runs in the foreground (``-DD -E``) on a free loopback port,
stopped by its PID.
"""

from __future__ import annotations

import pytest
from peers.calls import HOST, SIPP
from peers.kamailio import KAMAILIO, Kamailio
from peers.lab import (
    agent_uri,
    bot,
    finish,
    peer,
    requests,
    sipfrags,
    start_voicegw,
    wait_event,
)

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(KAMAILIO is None, reason="kamailio not installed: run scripts/bootstrap"),
]

CONFIG = """#!KAMAILIO
# A transaction-stateful, record-routing proxy: carrier <-> voicegw.
@CORE@
request_route {
    xlog("L_NOTICE", "KAM $rm from $si:$sp ruri=$ru route=[$hdr(Route)]\\n");
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) {
            xlog("L_NOTICE", "KAM loose_route $rm -> $ru\\n");
            t_relay();
            exit;
        }
        if (is_method("ACK") && t_check_trans()) { t_relay(); exit; }
        xlog("L_NOTICE", "KAM no route $rm\\n");
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }
    record_route();
    $du = "sip:127.0.0.1:@VOICEGW@";
    if (!t_relay()) { sl_reply_error(); }
}
"""


def routed(proxy: Kamailio, method: str) -> list[str]:
    """Kamailio's log lines for in-dialog ``method`` requests it loose-routed."""
    return proxy.lines(f"loose_route {method} ")


@pytest.fixture
def kamailio(lab):
    proxies: list[Kamailio] = []

    def start() -> Kamailio:
        assert lab.daemon is not None
        proxy = Kamailio(lab.workdir, CONFIG, voicegw=lab.daemon.port).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


def assert_record_routed(carrier, proxy: Kamailio) -> None:
    """The carrier got Kamailio's Record-Route, and routed its own requests by it."""
    msgs = carrier.messages()
    ok = next(m for m in msgs if m.direction == "in" and m.status == 200 and m.method == "INVITE")
    assert f"127.0.0.1:{proxy.port}" in (ok.header("record-route") or ""), ok.headers
    for m in msgs:
        if m.direction == "out" and m.status is None and m.method in ("ACK", "NOTIFY", "BYE"):
            assert f"127.0.0.1:{proxy.port}" in (m.header("route") or ""), f"no Route on {m.first_line}"


def vias(message) -> list[str]:
    return [v for k, v in message.headers if k in ("via", "v")]


def test_refer_transfer_through_kamailio(lab, kamailio):
    """voicegw's REFER to the carrier, the carrier's NOTIFYs and voicegw's BYE all pass
    through Kamailio by the Record-Route set (loose_route), and the transfer succeeds."""
    start_voicegw(lab, transfer_allow=["sip:*@192.0.2.10:5060"], transfer_method="refer")
    proxy = kamailio()
    b = bot(lab, "bot_refer.xml", "sip:agent@192.0.2.10:5060")
    carrier = peer(lab, "carrier", "carrier_refer_ok.xml", remote=(HOST, proxy.port))
    finish(lab, carrier, b)
    wait_event(lab, "transfer.succeeded", status=200)
    assert_record_routed(carrier, proxy)
    msgs = carrier.messages()
    refer, = requests(msgs, "REFER")
    bye, = requests(msgs, "BYE")
    for message in (refer, bye):  # sent by voicegw to Kamailio, which added its Via
        assert len(vias(message)) == 2 and f"127.0.0.1:{proxy.port}" in vias(message)[0], message.headers
    assert routed(proxy, "REFER") and routed(proxy, "BYE"), proxy.text()
    assert len(routed(proxy, "NOTIFY")) == 3, proxy.text()
    from_voicegw = f"from 127.0.0.1:{lab.daemon.port} "
    for method in ("REFER", "BYE"):  # voicegw sent them to Kamailio, with a Route header
        line = next(l for l in proxy.text().splitlines() if f"KAM {method} " in l)
        assert from_voicegw in line and f"route=[<sip:127.0.0.1:{proxy.port};lr" in line, line
    assert sipfrags(b.messages())[-1] == (200, True)


def test_invite_transfer_through_kamailio(lab, kamailio):
    """The bot REFERs, voicegw bridges the caller to the agent by INVITE; the agent hangs
    up later and voicegw's BYE reaches the carrier through Kamailio (Route honoured)."""
    agent = peer(lab, "agent", "agent_hangup.xml", rtp_echo=True)
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    proxy = kamailio()
    b = bot(lab, "bot_refer.xml", agent_uri(agent))
    carrier = peer(lab, "carrier", "carrier_call_wait_bye.xml", remote=(HOST, proxy.port))
    wait_event(lab, "transfer.succeeded", status=200)
    finish(lab, b, agent, carrier)
    assert_record_routed(carrier, proxy)
    bye, = requests(carrier.messages(), "BYE")
    assert len(vias(bye)) == 2 and f"127.0.0.1:{proxy.port}" in vias(bye)[0], bye.headers
    assert routed(proxy, "ACK") and routed(proxy, "BYE"), proxy.text()
    assert sipfrags(b.messages())[-1] == (200, True)
    wait_event(lab, "call.ended")
