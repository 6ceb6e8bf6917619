"""Kamailio as an authenticating outbound proxy (issue 12 items 1 and 2): an agent
profile has ``outbound_proxy`` (Kamailio on a free loopback port) and ``auth``; every
INVITE voicegw sends to the agent carries the pre-loaded ``Route: <proxy;lr>`` and
goes to Kamailio, which demands digest auth (``proxy_challenge``, 407 with qop=auth)
and checks the answer itself (``pv_proxy_authenticate`` against the password in its
config) before it relays the INVITE to the agent (a sipp UAS) by its Request-URI,
record-routing (sipp's built-in UAS does not echo Record-Route in its 2xx, so the
dialog's ACK and BYE go to the agent directly). The right password is bridged; a wrong one is refused by Kamailio and the transfer fails
with status ``auth``. Asserted on Kamailio's log (one line per request) and the
agent's message log.

Kamailio as the carrier (issue 12: "Kamailio with auth as a second implementation"): a
carrier profile's ``trunk`` is Kamailio, which authenticates every INVITE and every
in-dialog request but the ACK (``pv_proxy_authenticate``, ``nonce_count`` on: the nc
of a reused nonce must grow), record-routes and relays to a sipp agent that echoes
Record-Route. The right password: the call is up, the ACK comes through Kamailio with
the INVITE's credentials (RFC 3261 13.2.2.4) and the BYE with the nonce's next count,
taken unchallenged (RFC 7616 3.4). A wrong one: status ``auth`` and the fallback.
Kamailio runs in the foreground, stopped by its PID."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from peers.auth_transfer import CARRIER_NUMBER, received, transfer_with_auth
from peers.calls import SCENARIOS, SippPeer
from peers.daemon import DaemonProcess
from peers.kamailio import KAMAILIO, Kamailio
from peers.sipp import SIPP

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(KAMAILIO is None, reason="kamailio not installed: run scripts/bootstrap"),
]

PASSWORD = "k4m-secret"

CONFIG = """#!KAMAILIO
# An outbound proxy that authenticates initial INVITEs (407), then relays by R-URI.
@CORE@
loadmodule "auth.so"
request_route {
    xlog("L_NOTICE", "KAM $rm from $si:$sp cseq=$cs ruri=$ru route=[$hdr(Route)] auth=[$hdr(Proxy-Authorization)]\\n");
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK") && t_check_trans()) { t_relay(); exit; }
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }
    if (is_method("INVITE")) {
        if (!pv_proxy_authenticate("voicegw.test", "@PASSWORD@", "0")) {
            xlog("L_NOTICE", "KAM challenge $rm cseq=$cs\\n");
            proxy_challenge("voicegw.test", "1");
            exit;
        }
        xlog("L_NOTICE", "KAM authenticated $rm user=$au cseq=$cs\\n");
        consume_credentials();
    }
    loose_route();  # the pre-loaded Route naming us (RFC 3261 16.4)
    record_route();
    if (!t_relay()) { sl_reply_error(); }
}
"""


def through_kamailio(tmp_path: Path, password: str) -> tuple[DaemonProcess, Kamailio, SippPeer, dict]:
    """One call transferred at once to a sipp agent behind Kamailio; the transfer's outcome."""
    proxy = Kamailio(tmp_path, CONFIG, password=PASSWORD).start()
    agent = SippPeer("agent", "uas", tmp_path / "agent", timeout=30)

    def finish_agent(done: dict) -> None:
        if done["event"] == "transfer.succeeded":  # else it got nothing and is stopped
            assert agent.wait(20) == 0, agent.report()

    try:
        daemon, done = transfer_with_auth(tmp_path, agent, password, finish_agent,
                                          outbound_proxy=f"sip:127.0.0.1:{proxy.port}")
    finally:
        proxy.stop()
    return daemon, proxy, agent, done


def once(lines: list[str]) -> list[str]:
    """Kamailio's lines without repeats: a copy of voicegw's INVITE (Timer A, when a
    loaded Kamailio answers late) runs the script again and logs the same line."""
    return list(dict.fromkeys(lines))


def test_kamailio_challenges_and_relays_the_authenticated_invite_to_the_agent(tmp_path: Path) -> None:
    _daemon, proxy, agent, done = through_kamailio(tmp_path, PASSWORD)
    assert done["event"] == "transfer.succeeded", (done, proxy.text()[-3000:])
    invites = once(proxy.lines("INVITE from"))
    assert len(invites) == 2, proxy.text()
    assert "cseq=1 " in invites[0] and "cseq=2 " in invites[1], invites
    assert f"route=[<sip:127.0.0.1:{proxy.port};lr>]" in invites[0], invites[0]  # the pre-loaded Route
    assert "auth=[<null>]" in invites[0], invites[0]
    assert 'username="agent7"' in invites[1] and 'realm="voicegw.test"' in invites[1], invites[1]
    (challenged,) = once(proxy.lines("challenge INVITE"))
    (authenticated,) = once(proxy.lines("authenticated INVITE"))
    assert "cseq=1" in challenged and "user=agent7 cseq=2" in authenticated, (challenged, authenticated)
    got = received(agent, "INVITE")
    assert len(got) == 1 and got[0].header("proxy-authorization") is None, "Kamailio consumed the credentials"


def test_a_wrong_password_is_refused_by_kamailio_and_fails_with_auth(tmp_path: Path) -> None:
    _daemon, proxy, agent, done = through_kamailio(tmp_path, "not-the-password")
    assert (done["event"], done["status"]) == ("transfer.failed", "auth"), done
    assert len(once(proxy.lines("challenge INVITE"))) == 2, proxy.text()
    assert not proxy.lines("authenticated"), proxy.text()
    assert not [m for m in agent.messages() if m.method == "INVITE"], "nothing reached the agent"


# ------------------------------------------------------------------ Kamailio as the carrier
CARRIER_CONFIG = """#!KAMAILIO
# A carrier's SBC: authenticates every INVITE and every in-dialog request but the ACK
# (407, qop=auth, nc checked), record-routes, and relays initial INVITEs to its agent.
@CORE@
loadmodule "auth.so"
modparam("auth", "nonce_count", 1)
request_route {
    xlog("L_NOTICE", "KAM $rm from $si:$sp cseq=$cs route=[$hdr(Route)] auth=[$hdr(Proxy-Authorization)]\\n");
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    # a copy of a request it already relays (Timer A/E of a loaded peer): tm answers it,
    # the script does not authenticate it again (nonce_count would refuse its nc)
    if (!is_method("ACK|CANCEL") && t_check_trans()) { exit; }
    if (has_totag()) {
        if (!loose_route()) {
            if (is_method("ACK") && t_check_trans()) { t_relay(); }
            exit;
        }
        if (!is_method("ACK")) { route(AUTH); }  # an ACK is never challenged (RFC 3261 22.1)
        t_relay();
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }
    if (!is_method("INVITE")) { sl_send_reply("405", "Method Not Allowed"); exit; }
    route(AUTH);
    record_route();
    $du = "sip:127.0.0.1:@AGENT@";
    if (!t_relay()) { sl_reply_error(); }
}
route[AUTH] {
    if (!pv_proxy_authenticate("voicegw.test", "@PASSWORD@", "0")) {
        xlog("L_NOTICE", "KAM challenge $rm cseq=$cs\\n");
        proxy_challenge("voicegw.test", "1");
        exit;
    }
    xlog("L_NOTICE", "KAM authenticated $rm user=$au cseq=$cs\\n");
    consume_credentials();
}
"""


def carrier_call(tmp_path: Path, password: str) -> tuple[Kamailio, SippPeer, dict]:
    """One call transferred at once to a number on a carrier profile (``trunk`` at
    Kamailio, ``auth``); Kamailio relays to a sipp agent that echoes Record-Route."""
    agent = SippPeer("agent", SCENARIOS / "agent_record_route.xml", tmp_path / "agent", timeout=30)
    carrier = Kamailio(tmp_path, CARRIER_CONFIG, password=PASSWORD, agent=agent.port).start()

    def finish_agent(done: dict) -> None:
        if done["event"] == "transfer.succeeded":  # else it got nothing and is stopped
            assert agent.wait(20) == 0, agent.report()

    try:
        _daemon, done = transfer_with_auth(tmp_path, agent, password, finish_agent,
                                           trunk=f"sip:{{number}}@127.0.0.1:{carrier.port}")
    finally:
        agent.stop()
        carrier.stop()
    return carrier, agent, done


def digest(line: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="?([^",\]]*)"?', line.split("auth=[", 1)[1]))


def test_kamailio_as_the_carrier_takes_the_call_and_the_dialog_carries_credentials_ahead(tmp_path: Path) -> None:
    carrier, agent, done = carrier_call(tmp_path, PASSWORD)
    assert done["event"] == "transfer.succeeded", (done, carrier.text()[-3000:])
    first, again = once(carrier.lines("INVITE from"))
    assert "auth=[<null>]" in first and "cseq=1 " in first, first
    invite = digest(again)
    assert (invite["username"], invite["realm"], invite["nc"], invite["uri"]) == (
        "agent7", "voicegw.test", "00000001", f"sip:{CARRIER_NUMBER}@127.0.0.1:{carrier.port}")
    assert [line.split("KAM ")[1] for line in once(carrier.lines("authenticated"))] == [
        "authenticated INVITE user=agent7 cseq=2", "authenticated BYE user=agent7 cseq=3"], carrier.text()
    assert len(once(carrier.lines("challenge"))) == 1, "only the first INVITE is challenged"
    # the dialog's requests come back through the carrier (its Record-Route) ...
    route = f"route=[<sip:127.0.0.1:{carrier.port};lr;"  # its ;ftag= after
    [ack] = [line for line in once(carrier.lines("ACK from")) if route in line]
    [bye] = once(carrier.lines("BYE from"))
    assert route in bye, bye
    # ... the ACK with the INVITE's credentials (RFC 3261 13.2.2.4), the BYE with the
    # nonce's next count (RFC 7616 3.4; Kamailio's nonce_count checks that it grew)
    assert digest(ack) == invite, (ack, again)
    ahead = digest(bye)
    assert (ahead["nonce"], ahead["nc"], ahead["cnonce"] != invite["cnonce"]) == (invite["nonce"], "00000002", True)
    assert ahead["uri"] == f"sip:agent@127.0.0.1:{agent.port}", "uri is the BYE's Request-URI (the agent's Contact)"
    got = [*received(agent, "INVITE"), *received(agent, "BYE")]
    assert [m.method for m in got] == ["INVITE", "BYE"]
    assert all(m.header("proxy-authorization") is None for m in got), "the carrier consumed the credentials"


def test_kamailio_as_the_carrier_refuses_a_wrong_password_and_the_fallback_runs(tmp_path: Path) -> None:
    carrier, agent, done = carrier_call(tmp_path, "not-the-password")
    assert (done["event"], done["status"]) == ("transfer.failed", "auth"), done
    assert "credentials refused" in done["reason"], done
    (fallback,) = done["fallbacks"]
    assert (fallback["status"], fallback["rule"], fallback["action"]) == ("auth", "auth", "goto"), fallback
    assert len(once(carrier.lines("INVITE from"))) == 2 and len(once(carrier.lines("challenge INVITE"))) == 2, carrier.text()
    assert not carrier.lines("authenticated"), carrier.text()
    assert not [m for m in agent.messages() if m.method == "INVITE"], "nothing reached the agent"
