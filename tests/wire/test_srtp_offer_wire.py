"""A profile's ``srtp`` on voicegw's outgoing offers against a plain-RTP peer (issue
12 item 7): a flow transfers the call to an agent profile at once; the sipp agent
(``-sn uas``) answers every offer with plain RTP/AVP. ``required``: voicegw offered
RTP/SAVP with an SDES key, the plain answer fails the transfer with status 488 (a
status fallback rules match) and the leg is torn down cleanly (ACK, then BYE, both
seen by the agent); ``optional``: best-effort SRTP, RTP/AVP with a=crypto, and the
plain answer is taken (the transfer succeeds). The with-SRTP side is
test_pjsip_profile_srtp_wire.py."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from peers.caller import Caller
from peers.daemon import DaemonProcess, wait_until
from peers.net import free_port
from peers.ports import free_block
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]


def transfer_to_plain_agent(tmp_path: Path, srtp: str) -> tuple[list[dict], str]:
    """One call transferred to an agent profile with ``srtp``; the daemon's events and
    what the sipp agent received (its -trace_msg log)."""
    port = free_port()
    media = free_block(4)  # sipp's -mp: RTP and RTCP, leased (peers/ports.py)
    agent = subprocess.Popen(
        [SIPP, "-p", str(port), "-i", "127.0.0.1", "-mp", str(media), "-m", "1", "-nostdin", "-sn", "uas",
         "-trace_msg", "-message_file", str(tmp_path / "agent_msgs.log"), "-timeout", "30s"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    (tmp_path / "profiles").mkdir()
    (tmp_path / "flows").mkdir()
    (tmp_path / "profiles" / "agent-x.yaml").write_text(yaml.safe_dump(
        {"kind": "agent", "uri": f"sip:agent@127.0.0.1:{port}", "srtp": srtp}))
    (tmp_path / "flows" / "main.yaml").write_text(yaml.safe_dump(
        {"nodes": {"to_agent": {"type": "agent_transfer", "target": "agent-x"}}}))
    config = tmp_path / "voicegw.yaml"
    config.write_text(yaml.safe_dump({"profiles_dir": str(tmp_path / "profiles"),
                                      "flows_dir": str(tmp_path / "flows"), "default_flow": "main"}))
    time.sleep(0.3)
    daemon = DaemonProcess("127.0.0.1", None, "--config", str(config))
    caller = None
    try:
        daemon.start()
        caller = Caller(daemon.address, user="+4917012345", request_user="+4930555")
        assert caller.invite().status == 200
        done = ("transfer.succeeded", "transfer.failed")
        assert wait_until(lambda: any(e.get("event") in done for e in daemon.events()), timeout=20), \
            [e.get("event") for e in daemon.events()]
        if srtp == "required":  # the agent saw our BYE and answered it: sipp is done
            assert agent.wait(15) == 0, agent.stderr.read() if agent.stderr else ""
        else:
            assert caller.bye().status == 200
            assert agent.wait(15) == 0, agent.stderr.read() if agent.stderr else ""
        events = daemon.events()
    finally:
        if caller is not None:
            caller.close()
        agent.kill()
        daemon.terminate()
    return events, (tmp_path / "agent_msgs.log").read_text(errors="replace").replace("\r", "")


def offer_of(log: str) -> str:
    invite = re.search(r"INVITE sip:.*?\n\n(.*?)\n\n", log, re.DOTALL)
    assert invite, log
    return invite.group(1)


def test_required_srtp_answered_plain_fails_488_and_the_leg_is_ended(tmp_path: Path) -> None:
    events, log = transfer_to_plain_agent(tmp_path, "required")
    offer = offer_of(log)
    assert re.search(r"m=audio \d+ RTP/SAVP ", offer) and "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in offer, offer
    failed = [e for e in events if e.get("event") == "transfer.failed"]
    assert failed and failed[0]["status"] == 488, failed
    assert "another transport" in failed[0]["reason"], failed[0]
    assert not any(e.get("event") == "transfer.succeeded" for e in events)
    # 13.2.2.4: the 2xx is ACKed, then the dialog ended by BYE - no half-up leg
    methods = re.findall(r"^(ACK|BYE) sip:", log, re.MULTILINE)
    assert methods[:2] == ["ACK", "BYE"], methods


def test_optional_srtp_offers_best_effort_and_takes_a_plain_answer(tmp_path: Path) -> None:
    events, log = transfer_to_plain_agent(tmp_path, "optional")
    offer = offer_of(log)
    assert re.search(r"m=audio \d+ RTP/AVP ", offer) and "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in offer, offer
    assert any(e.get("event") == "transfer.succeeded" for e in events), [e.get("event") for e in events]
