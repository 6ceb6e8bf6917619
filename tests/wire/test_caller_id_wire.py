"""Caller ID on outgoing legs over the wire (issue 12 item 4): a flow transfers each
call to an agent profile at once; the headers of the INVITE the receiving sipp agent
logged (-trace_msg) are what the profile's ``caller_id`` asks for: a fixed From, the
caller's number with or without '+', P-Asserted/Preferred-Identity from the caller,
Diversion with the dialled number, Privacy: id for an anonymous caller."""

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
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]

DIALLED = "+4930555"


def agent_invite(tmp_path: Path, caller_id: dict | None, user: str, extra: str = "") -> dict[str, str]:
    """One call from ``user`` (with ``extra`` headers) to DIALLED, transferred to an
    agent profile with ``caller_id``; the headers of the INVITE the agent got."""
    port = free_port()
    media = free_port()
    media -= media % 2
    agent = subprocess.Popen(
        [SIPP, "-p", str(port), "-i", "127.0.0.1", "-mp", str(media), "-m", "1", "-nostdin", "-sn", "uas",
         "-trace_msg", "-message_file", str(tmp_path / "agent_msgs.log"), "-timeout", "30s"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    (tmp_path / "profiles").mkdir()
    (tmp_path / "flows").mkdir()
    profile = {"kind": "agent", "uri": f"sip:agent@127.0.0.1:{port}"}
    if caller_id is not None:
        profile["caller_id"] = caller_id
    (tmp_path / "profiles" / "agent-x.yaml").write_text(yaml.safe_dump(profile))
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
    invite = re.search(r"INVITE sip:.*?\n\n", log, re.S)
    assert invite, log
    headers = {}
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
