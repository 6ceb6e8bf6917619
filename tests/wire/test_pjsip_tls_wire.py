"""Whole calls with a transfer over SIP/TLS with SRTP (SDES, RFC 4568), PJSIP on every
end that needs TLS (the installed sipp has none).

voicegw listens for TLS (``tls:`` section, a throwaway CA from peers.pki); the PJSIP
caller connects over TLS and requires SRTP (``srtp: mandatory``: it offers RTP/SAVP
only and drops a call answered without keys). Two transfers:
- by INVITE: a PJSIP bot REFERs the call to a PJSIP agent reached over TLS
  (``;transport=tls``; voicegw verifies its certificate against the CA); voicegw
  keeps the caller's SRTP leg and bridges it to the agent's plain RTP leg;
- by REFER: voicegw REFERs the caller over its TLS connection; PJSIP's new call
  reaches a PJSIP agent over TLS with SRTP end to end.
Audio is checked at each end (Goertzel on what each side recorded), and the wire in
PJSIP's message logs (transport, RTP/SAVP and a=crypto in both offer and answer).
"""

from __future__ import annotations

import re

import pytest
import yaml
from peers.calls import HOST, free_block
from peers.daemon import DaemonProcess
from peers.lab import NO_SHEDDING, bot, wait_event
from peers.net import free_port
from peers.pjsua import TlsFiles, hears
from peers.pki import OPENSSL, make_pki

pytestmark = [pytest.mark.wire, pytest.mark.timeout(90)]

CALLER_HZ, AGENT_HZ, BOT_HZ = 600.0, 1000.0, 1400.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    assert OPENSSL, "the openssl CLI is missing: run scripts/bootstrap"
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_voicegw(lab, pki, **calls: object) -> int:
    """voicegw with a TLS listener and a bot at ``lab.bot_port`` (plain UDP); its TLS port."""
    low = free_block(40)
    lab.bot_port = free_port(HOST)
    tls_port = free_port(HOST)
    config = lab.workdir / "voicegw.yaml"
    config.write_text(yaml.safe_dump({
        **NO_SHEDDING, "calls": calls, "api": {"enabled": False},
        "tls": {"enabled": True, "port": tls_port, "cert_file": str(pki.cert), "key_file": str(pki.key),
                "ca_file": str(pki.ca), "verify_client": "none"},
    }), encoding="utf-8")
    lab.daemon = DaemonProcess(HOST, None, "--rtp-ports", f"{low}-{low + 39}",
                               "--bot-uri", f"sip:bot@{HOST}:{lab.bot_port}", "--config", str(config)).start()
    return tls_port


def files(pki) -> TlsFiles:
    return TlsFiles(pki.ca, pki.cert, pki.key, verify=True)


def savp(body: bytes) -> bool:
    text = body.decode(errors="replace")
    return bool(re.search(r"m=audio \d+ RTP/SAVP ", text)) and "a=crypto:" in text


def test_tls_srtp_caller_bot_refers_to_a_tls_agent_by_invite(lab, pjsua, pki):
    agent = pjsua.ua("agent", tls=files(pki), tone_hz=AGENT_HZ)
    tls_port = tls_voicegw(lab, pki, transfer_allow=[f"sip:*@{HOST}:{agent.port};transport=tls"],
                           transfer_method="invite")
    bot_ua = pjsua.ua("bot", port=lab.bot_port, tone_hz=BOT_HZ)
    caller = pjsua.ua("caller", tls=files(pki), srtp="mandatory", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{HOST}:{tls_port};transport=tls")
    call.wait_confirmed()
    leg_b = bot_ua.incoming()
    leg_b.wait_confirmed()
    assert call.listen(lambda s: hears(s, BOT_HZ)), "SRTP caller <-> plain bot through voicegw"
    leg_b.refer(agent.contact())
    assert leg_b.wait_transfer_final() == 200
    leg_c = agent.incoming()
    leg_c.wait_confirmed()
    wait_event(lab, "transfer.succeeded", status=200)
    assert call.listen(lambda s: hears(s, AGENT_HZ)), "the caller hears the agent (SRTP in, RTP out)"
    assert leg_c.listen(lambda s: hears(s, CALLER_HZ)), "the agent hears the caller"
    # the wire: TLS everywhere on the caller's and the agent's side, SRTP on the caller's leg
    assert set(caller.sip_transports) == {"TLS"} and set(agent.sip_transports) == {"TLS"}
    assert savp(caller.requests("INVITE", "out")[0].body)
    assert savp(caller.responses("INVITE")[-1].body), "voicegw answered with its SDES key"
    assert "RTP/AVP" in agent.requests("INVITE")[0].body.decode()
    assert (agent.requests("INVITE")[0].header("via") or "").startswith("SIP/2.0/TLS")
    call.hangup()
    leg_c.wait_disconnected()


def test_tls_srtp_caller_is_referred_over_tls_to_an_srtp_agent(lab, pjsua, pki):
    agent = pjsua.ua("agent", tls=files(pki), srtp="mandatory", tone_hz=AGENT_HZ)
    target = agent.contact()
    tls_port = tls_voicegw(lab, pki, transfer_allow=[f"sip:*@{HOST}:{agent.port};transport=tls"],
                           transfer_method="refer")
    b = bot(lab, "bot_refer.xml", target)
    caller = pjsua.ua("caller", tls=files(pki), srtp="mandatory", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{HOST}:{tls_port};transport=tls")
    call.wait_confirmed()
    new = call.transferred_to()
    new.wait_confirmed()
    leg = agent.incoming()
    leg.wait_confirmed()
    wait_event(lab, "transfer.succeeded", status=200)
    call.wait_disconnected()
    assert b.wait(15) == 0, lab.report()
    assert new.listen(lambda s: hears(s, AGENT_HZ))
    assert leg.listen(lambda s: hears(s, CALLER_HZ))
    refer = caller.requests("REFER")[0]
    assert (refer.header("via") or "").startswith("SIP/2.0/TLS"), "voicegw's REFER came over TLS"
    assert savp(agent.requests("INVITE")[0].body) and savp(agent.responses("INVITE", "out")[-1].body)
    assert set(caller.sip_transports) == {"TLS"} and set(agent.sip_transports) == {"TLS"}
    new.hangup()
    leg.wait_disconnected()
