"""NAT over the wire (issue 12 item 3): with ``sip.external_host`` and
``media.external_host`` set, what voicegw sends to a peer outside ``local_nets``
carries the external addresses in Contact, Via and SDP o=/c=; a peer inside gets the
bind addresses, and RTP is bound to ``media.host`` when it differs from ``sip.host``.
Every kind of leg: the caller's (voicegw's 200 and BYE), an agent's (INVITE transfer:
INVITE, BYE) and the bot's at call setup (INVITE, BYE); and a call with peers on both
sides of ``local_nets`` at once.

The external addresses are documentation addresses (RFC 5737) only ever written into
headers: the caller sends its RTP to the bind address (as a NAT would deliver it), and
voicegw sends to the addresses the peers advertise (127.0.0.1), so media still flows."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from peers.agent import Agent
from peers.caller import Caller
from peers.daemon import DaemonProcess, wait_until
from peers.net import free_port
from peers.ports import free_block
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]

SIP_EXTERNAL = "203.0.113.10"
MEDIA_EXTERNAL = "203.0.113.11"
MEDIA_HOST = "127.0.0.3"


def start_agent(tmp_path: Path, host: str = "127.0.0.1") -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    media = free_block(4)  # sipp's -mp: RTP and RTCP, leased (peers/ports.py)
    proc = subprocess.Popen(
        [SIPP, "-p", str(port), "-i", host, "-mp", str(media), "-m", "1", "-nostdin", "-sn", "uas",
         "-rtp_echo", "-trace_msg", "-message_file", str(tmp_path / "agent_msgs.log"), "-timeout", "30s"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(0.3)
    return proc, port


def invite_to_agent(log: str) -> str:
    """The INVITE voicegw sent to the agent, as sipp logged it."""
    match = re.search(r"(INVITE sip:.*?)(?:\n-{5,}|\Z)", log, re.DOTALL)
    assert match, log
    return match.group(1)


def run_call(tmp_path: Path, local_nets: list[str],
             agent_host: str = "127.0.0.1") -> tuple[str, str, list[bytes], list[bytes]]:
    """One call: caller (127.0.0.1) -> demo flow, 0 -> transfer by INVITE to the echoing
    agent at ``agent_host``. Returns the caller's 200 OK, the agent's log, the packets
    sent and echoed back."""
    config = tmp_path / "nat.yaml"
    config.write_text(yaml.safe_dump({
        "sip": {"external_host": SIP_EXTERNAL},
        "media": {"host": MEDIA_HOST, "external_host": MEDIA_EXTERNAL},
        "local_nets": local_nets,
    }))
    agent, agent_port = start_agent(tmp_path, agent_host)
    daemon = DaemonProcess("127.0.0.1", None, "--config", str(config),
                           "--agent-uri", f"sip:agent@{agent_host}:{agent_port}")
    caller = None
    try:
        daemon.start()
        caller = Caller(daemon.address)
        ok = caller.invite()
        assert ok.status == 200
        advertised = caller.remote_media
        assert advertised is not None
        # a NAT would deliver what is sent to the advertised address to the bind one
        caller.remote_media = (MEDIA_HOST, advertised[1])
        caller.receive_rtp(0.5)
        caller.send_dtmf("0")
        assert wait_until(lambda: any(e.get("event") == "transfer.succeeded" for e in daemon.events()), timeout=10)
        caller.receive_rtp(0.3)
        sent = [bytes([i]) * 160 for i in range(1, 31)]
        for payload in sent:
            caller.send_rtp(payload)
            time.sleep(0.005)
        echoed = [p[12:] for p in caller.receive_rtp(1.5) if p[1] & 0x7F == 0]
        assert caller.bye().status == 200
        assert agent.wait(15) == 0, agent.stderr.read() if agent.stderr else ""
        log = (tmp_path / "agent_msgs.log").read_text(errors="replace")
        return bytes(ok).decode(errors="replace"), log, sent, echoed
    finally:
        if caller is not None:
            caller.close()
        agent.kill()
        daemon.terminate()


def test_peers_outside_local_nets_are_told_the_external_addresses(tmp_path: Path) -> None:
    ok, log, sent, echoed = run_call(tmp_path, ["10.0.0.0/8"])
    # the caller's 200 OK: Contact and SDP
    assert re.search(rf"Contact: <sip:voicegw@{SIP_EXTERNAL}:\d+>", ok), ok
    assert f"c=IN IP4 {MEDIA_EXTERNAL}" in ok and re.search(rf"o=\S+ \d+ \d+ IN IP4 {MEDIA_EXTERNAL}", ok), ok
    # what voicegw sent the agent: the INVITE (Via from the core, Contact, SDP) and the BYE
    invite = invite_to_agent(log)
    assert re.search(rf"Via: SIP/2.0/UDP {SIP_EXTERNAL}:\d+;rport;branch=", invite), invite
    assert re.search(rf"Contact: <sip:voicegw@{SIP_EXTERNAL}:\d+>", invite), invite
    assert f"c=IN IP4 {MEDIA_EXTERNAL}" in invite and f"IN IP4 {MEDIA_EXTERNAL}\n" in invite.replace("\r", "")
    bye = log[log.index("BYE sip:"):]
    assert re.search(rf"Via: SIP/2.0/UDP {SIP_EXTERNAL}:\d+;rport;branch=", bye), bye
    assert "127.0.0.1" not in re.search(r"Contact: [^\n]*", invite).group(0)  # type: ignore[union-attr]
    # media flows on loopback all the same: RTP goes to what the peers advertise
    assert [p for p in echoed if p in sent] == sent, "every packet comes back through the agent, in order"


def test_peers_in_local_nets_are_told_the_bind_addresses(tmp_path: Path) -> None:
    ok, log, sent, echoed = run_call(tmp_path, ["127.0.0.0/8"])
    for text in (ok, log):
        assert SIP_EXTERNAL not in text and MEDIA_EXTERNAL not in text
    assert re.search(r"Contact: <sip:voicegw@127.0.0.1:\d+>", ok) and f"c=IN IP4 {MEDIA_HOST}" in ok
    invite = invite_to_agent(log)
    assert re.search(r"Via: SIP/2.0/UDP 127.0.0.1:\d+;rport;branch=", invite), invite
    assert re.search(r"Contact: <sip:voicegw@127.0.0.1:\d+>", invite) and f"c=IN IP4 {MEDIA_HOST}" in invite
    assert [p for p in echoed if p in sent] == sent


def test_in_one_call_each_peer_is_told_the_addresses_it_can_reach(tmp_path: Path) -> None:
    """The usual deployment: the carrier outside, the agents' PBX on the private network
    (``local_nets``). The caller at 127.0.0.1 is outside and gets the external
    addresses; the agent at 127.0.0.2 is inside and gets the bind ones, in the same call."""
    ok, log, sent, echoed = run_call(tmp_path, ["127.0.0.2/32"], agent_host="127.0.0.2")
    assert re.search(rf"Contact: <sip:voicegw@{SIP_EXTERNAL}:\d+>", ok), ok
    assert f"c=IN IP4 {MEDIA_EXTERNAL}" in ok and re.search(rf"o=\S+ \d+ \d+ IN IP4 {MEDIA_EXTERNAL}", ok), ok
    assert SIP_EXTERNAL not in log and MEDIA_EXTERNAL not in log, "the agent sees no external address"
    invite = invite_to_agent(log)
    assert re.search(r"Via: SIP/2.0/UDP 127.0.0.1:\d+;rport;branch=", invite), invite
    assert re.search(r"Contact: <sip:voicegw@127.0.0.1:\d+>", invite), invite
    assert f"c=IN IP4 {MEDIA_HOST}" in invite and re.search(rf"o=\S+ \d+ \d+ IN IP4 {MEDIA_HOST}", invite), invite
    bye = log[log.index("BYE sip:"):]
    assert re.search(r"Via: SIP/2.0/UDP 127.0.0.1:\d+;rport;branch=", bye), bye
    assert [p for p in echoed if p in sent] == sent


@pytest.mark.parametrize(("bot_host", "local_nets", "sip_host", "media_host"), [
    ("127.0.0.1", ["10.0.0.0/8"], SIP_EXTERNAL, MEDIA_EXTERNAL),
    ("127.0.0.2", ["127.0.0.2/32"], "127.0.0.1", MEDIA_HOST),
], ids=["outside", "in_local_nets"])
def test_the_bot_leg_is_told_what_it_can_reach(tmp_path: Path, bot_host: str, local_nets: list[str],
                                                sip_host: str, media_host: str) -> None:
    """The bot's INVITE at call setup and its BYE at the end: the external addresses to
    a bot outside ``local_nets``, the bind ones to a bot inside (the caller is outside
    in both, and keeps getting the external ones). Media through a NAT: test_nat_netns_wire."""
    config = tmp_path / "nat.yaml"
    with Agent(host=bot_host, user="bot") as bot:
        config.write_text(yaml.safe_dump({
            "sip": {"external_host": SIP_EXTERNAL},
            "media": {"host": MEDIA_HOST, "external_host": MEDIA_EXTERNAL},
            "local_nets": local_nets,
            "calls": {"bot_uri": bot.uri},
        }))
        with DaemonProcess("127.0.0.1", None, "--config", str(config)) as daemon:
            caller = Caller(daemon.address)
            try:
                ok = caller.invite()
                assert ok.status == 200, ok
                text = bytes(ok).decode(errors="replace")
                assert re.search(rf"Contact: <sip:voicegw@{SIP_EXTERNAL}:\d+>", text), text
                assert f"c=IN IP4 {MEDIA_EXTERNAL}" in text
                assert bot.call is not None
                invite = bot.call.raw.decode(errors="replace")
                assert re.search(rf"Via: SIP/2.0/UDP {re.escape(sip_host)}:\d+;", invite), invite
                assert re.search(rf"Contact: <sip:voicegw@{re.escape(sip_host)}:\d+>", invite), invite
                assert f"c=IN IP4 {media_host}" in invite, invite
                assert re.search(rf"o=\S+ \d+ \d+ IN IP4 {re.escape(media_host)}", invite), invite
                other = {SIP_EXTERNAL, MEDIA_EXTERNAL} if sip_host == "127.0.0.1" else {MEDIA_HOST}
                assert not any(address in invite for address in other), invite
                assert caller.bye().status == 200
                assert bot.wait_for("BYE", 10), "voicegw's BYE reached the bot"
                bye = bot.requests("BYE")[0][1]
                assert re.search(rf"^SIP/2.0/UDP {re.escape(sip_host)}:\d+;", bye.headers.get("via")), bye.headers
            finally:
                caller.close()
