"""A profile's ``transport`` and ``srtp`` on voicegw's outgoing legs, with PJSIP
(issue 12 item 7): the agent profile says ``transport: tls`` and ``srtp: required``
while its URI names neither; the PJSIP agent listens on TLS only and requires SRTP
(``srtp: mandatory``: it refuses an offer without RTP/SAVP and keys). A whole call
with a transfer: a plain UDP caller, a PJSIP bot that REFERs the call to the agent's
profile URI, voicegw bridges the caller's RTP to the agent's SRTP leg. The wire (the
agent's INVITE came over TLS, RTP/SAVP with a=crypto both ways) and the audio (each
end hears the other's tone, Goertzel) are checked."""

from __future__ import annotations

import re

import pytest
import yaml
from peers.calls import HOST, free_block
from peers.daemon import DaemonProcess
from peers.lab import NO_SHEDDING, wait_event
from peers.net import free_port
from peers.pjsua import TlsFiles, hears
from peers.pki import OPENSSL, make_pki

pytestmark = [pytest.mark.wire, pytest.mark.timeout(90)]

CALLER_HZ, AGENT_HZ, BOT_HZ = 600.0, 1000.0, 1400.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    assert OPENSSL, "the openssl CLI is missing: run scripts/bootstrap"
    return make_pki(tmp_path_factory.mktemp("pki"))


def savp(body: bytes) -> bool:
    text = body.decode(errors="replace")
    return bool(re.search(r"m=audio \d+ RTP/SAVP ", text)) and "a=crypto:" in text


def test_profile_tls_and_required_srtp_on_a_transfer_by_invite(lab, pjsua, pki):
    files = TlsFiles(pki.ca, pki.cert, pki.key, verify=True)
    agent = pjsua.ua("agent", tls=files, srtp="mandatory", tone_hz=AGENT_HZ)
    agent_uri = f"sip:agent@{HOST}:{agent.port}"  # no ;transport=tls: the profile says it
    profiles = lab.workdir / "profiles"
    profiles.mkdir()
    (profiles / "agent-tls.yaml").write_text(yaml.safe_dump(
        {"kind": "agent", "uri": agent_uri, "transport": "tls", "srtp": "required"}))
    low = free_block(40)
    lab.bot_port = free_port(HOST)
    config = lab.workdir / "voicegw.yaml"
    config.write_text(yaml.safe_dump({
        **NO_SHEDDING, "api": {"enabled": False}, "profiles_dir": str(profiles),
        "calls": {"transfer_allow": [agent_uri], "transfer_method": "invite"},
        "tls": {"enabled": True, "port": free_port(HOST), "cert_file": str(pki.cert), "key_file": str(pki.key),
                "ca_file": str(pki.ca), "verify_client": "none"},
    }), encoding="utf-8")
    lab.daemon = DaemonProcess(HOST, None, "--rtp-ports", f"{low}-{low + 39}",
                               "--bot-uri", f"sip:bot@{HOST}:{lab.bot_port}", "--config", str(config)).start()
    bot_ua = pjsua.ua("bot", port=lab.bot_port, tone_hz=BOT_HZ)
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{HOST}:{lab.daemon.address[1]}")
    call.wait_confirmed()
    leg_b = bot_ua.incoming()
    leg_b.wait_confirmed()
    leg_b.refer(agent_uri)
    assert leg_b.wait_transfer_final() == 200
    leg_c = agent.incoming()
    leg_c.wait_confirmed()
    wait_event(lab, "transfer.succeeded", status=200)
    assert call.listen(lambda s: hears(s, AGENT_HZ)), "the caller hears the agent (SRTP in, RTP out)"
    assert leg_c.listen(lambda s: hears(s, CALLER_HZ)), "the agent hears the caller (RTP in, SRTP out)"
    invite = agent.requests("INVITE")[0]
    assert (invite.header("via") or "").startswith("SIP/2.0/TLS"), invite.header("via")
    assert set(agent.sip_transports) == {"TLS"}
    assert savp(invite.body), "voicegw offered RTP/SAVP with its SDES key"
    assert savp(agent.responses("INVITE", "out")[-1].body)
    assert "RTP/AVP" in caller.responses("INVITE")[-1].body.decode(), "the caller's leg stays plain"
    call.hangup()
    leg_c.wait_disconnected()
