"""Caller ID and transport of outgoing legs over the wire (issue 12 items 4 and 7): a
flow transfers each call to an agent profile at once; the headers of the INVITE the
receiving sipp agent logged (-trace_msg) are what the profile's ``caller_id`` asks for:
a fixed From, the caller's number with or without '+', the carrier's auth username
(``number: auth``), P-Asserted/Preferred-Identity from the caller, Diversion with the
dialled number, Privacy: id for an anonymous caller; and the INVITE travels over the
profile's ``transport:`` (TCP to a sipp agent listening on TCP only)."""

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

DIALLED = "+4930555"


def agent_invite(tmp_path: Path, caller_id: dict | None, user: str, extra: str = "", *,
                 transport: str | None = None, carrier: dict | None = None) -> dict[str, str]:
    """One call from ``user`` (with ``extra`` headers) to DIALLED, transferred to an
    agent profile with ``caller_id`` (and ``transport``: the sipp agent listens on that
    transport alone; ``carrier``: a carrier profile besides); the headers of the INVITE
    the agent got, its request line as ``request-line``."""
    port = free_port()
    media = free_block(4)  # sipp's -mp: RTP and RTCP, leased (peers/ports.py)
    sipp_transport = ["-t", "t1"] if transport == "tcp" else []
    agent = subprocess.Popen(
        [SIPP, *sipp_transport, "-p", str(port), "-i", "127.0.0.1", "-mp", str(media), "-m", "1", "-nostdin",
         "-sn", "uas",
         "-trace_msg", "-message_file", str(tmp_path / "agent_msgs.log"), "-timeout", "30s"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    (tmp_path / "profiles").mkdir()
    (tmp_path / "flows").mkdir()
    profile = {"kind": "agent", "uri": f"sip:agent@127.0.0.1:{port}"}
    if caller_id is not None:
        profile["caller_id"] = caller_id
    if transport is not None:
        profile["transport"] = transport
    (tmp_path / "profiles" / "agent-x.yaml").write_text(yaml.safe_dump(profile))
    if carrier is not None:
        (tmp_path / "profiles" / "carrier.yaml").write_text(yaml.safe_dump(
            {"kind": "carrier", "addresses": ["127.0.0.0/8"], **carrier}))
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
        caller = Caller(daemon.address, user=user, request_user=DIALLED)
        assert caller.invite(extra=extra).status == 200
        assert wait_until(lambda: any(e.get("event") == "transfer.succeeded" for e in daemon.events()), timeout=20), \
            [e.get("event") for e in daemon.events()]
        assert caller.bye().status == 200
        assert agent.wait(15) == 0, agent.stderr.read() if agent.stderr else ""
        log = (tmp_path / "agent_msgs.log").read_text(errors="replace").replace("\r", "")
    finally:
        if caller is not None:
            caller.close()
        agent.kill()
        daemon.terminate()
    invite = re.search(r"INVITE sip:.*?\n\n", log, re.DOTALL)
    assert invite, log
    headers = {"request-line": invite.group(0).splitlines()[0]}
    for line in invite.group(0).splitlines()[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def test_default_presents_the_caller_its_pai_and_the_dialled_number(tmp_path: Path) -> None:
    got = agent_invite(tmp_path, None, "+4917012345", extra='P-Asserted-Identity: "Alice" <tel:+4917099999>\r\n')
    assert re.fullmatch(r'"Alice" <sip:\+4917099999@127\.0\.0\.1>;tag=\w+', got["from"]), got["from"]
    assert got["p-asserted-identity"] == '"Alice" <sip:+4917099999@127.0.0.1>'
    assert got["diversion"] == f"<sip:{DIALLED}@127.0.0.1>;reason=unconditional;counter=1"
    assert "privacy" not in got


def test_fixed_from_without_identity_or_diversion(tmp_path: Path) -> None:
    got = agent_invite(tmp_path, {"number": "+4930999", "display": "ACME", "identity": "none",
                                  "diversion": False}, "+4917012345")
    assert re.fullmatch(r'"ACME" <sip:\+4930999@127\.0\.0\.1>;tag=\w+', got["from"]), got["from"]
    assert "p-asserted-identity" not in got and "diversion" not in got


def test_callers_number_without_plus_with_a_tech_prefix_and_ppi(tmp_path: Path) -> None:
    got = agent_invite(tmp_path, {"plus": False, "tech_prefix": "77", "identity": "ppi", "display": None},
                       "+4917012345")
    assert re.fullmatch(r"<sip:774917012345@127\.0\.0\.1>;tag=\w+", got["from"]), got["from"]
    assert got["p-preferred-identity"] == "<sip:4917012345@127.0.0.1>"
    assert got["diversion"].startswith("<sip:4930555@127.0.0.1>")


def test_anonymous_caller_stays_anonymous_with_privacy_id(tmp_path: Path) -> None:
    got = agent_invite(tmp_path, None, "anonymous", extra="P-Asserted-Identity: <sip:+4917012345@carrier>\r\n")
    assert re.fullmatch(r'"Anonymous" <sip:anonymous@anonymous\.invalid>;tag=\w+', got["from"]), got["from"]
    assert got["p-asserted-identity"] == "<sip:+4917012345@127.0.0.1>"
    assert got["privacy"] == "id"


def test_auth_number_presents_the_carriers_auth_username(tmp_path: Path) -> None:
    """An agent profile without caller_id takes the carrier's: ``number: auth`` puts the
    carrier's auth username in the From; the caller stays in P-Asserted-Identity."""
    carrier = {"auth": {"username": "acct4930", "password": "not-on-the-wire"},
               "caller_id": {"number": "auth", "display": None, "diversion": False}}
    got = agent_invite(tmp_path, None, "+4917012345", carrier=carrier)
    assert re.fullmatch(r"<sip:acct4930@127\.0\.0\.1>;tag=\w+", got["from"]), got["from"]
    assert got["p-asserted-identity"] == "<sip:+4917012345@127.0.0.1>"
    assert "not-on-the-wire" not in str(got)


def test_profile_transport_tcp_sends_the_invite_over_tcp(tmp_path: Path) -> None:
    """The agent's URI names no transport; its profile says tcp: the INVITE reaches a
    sipp agent that listens on TCP alone (over UDP nothing would answer and the call
    would not be transferred), and our Via says TCP."""
    got = agent_invite(tmp_path, None, "+4917012345", transport="tcp")
    assert got["via"].startswith("SIP/2.0/TCP 127.0.0.1:"), got["via"]
    assert ";transport" not in got["request-line"], got["request-line"]  # the URI as the profile has it
