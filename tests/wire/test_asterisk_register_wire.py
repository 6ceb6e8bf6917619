"""Asterisk 22 as the registrar of a voicegw trunk (issue 12 item 6): a carrier profile
registers as Asterisk's ``agent`` endpoint, which demands digest auth (templates/
asterisk/pjsip.conf); Asterisk lists voicegw's Contact for the AOR, and removes it
when voicegw stops (Expires: 0). A wrong password is refused by Asterisk and reported
as ``auth`` with a back-off. Asterisk then calls the binding (AMI Originate of
PJSIP/agent): its INVITE's Request-URI carries the Contact's ``line``, and voicegw takes
the call as the trunk's although Asterisk's address is in no carrier's ``addresses``
nor trusted (a plain INVITE from there gets 403): the trunk's route and channel, the
carrier on the call (API) and in its record. One Asterisk for the module
(tests/conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from peers.asterisk import requests
from peers.caller import Caller
from peers.daemon import wait_until
from peers.ops import OpsDaemon

pytestmark = [pytest.mark.wire, pytest.mark.timeout(240)]


def registering(tmp_path: Path, pbx, password: str) -> OpsDaemon:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    host, port = pbx.address
    (profiles / "pbx.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"],
        "auth": {"username": "agent", "password": password},
        "register": {"registrar": f"sip:{host}:{port}", "aor": f"sip:agent@{host}", "expires": 120,
                     "retry_min": 30.0}}))
    return OpsDaemon(tmp_path / "daemon", config={"profiles_dir": str(profiles)})


def test_voicegw_registers_with_digest_auth_and_unregisters_at_stop(tmp_path: Path, pbx) -> None:
    since = pbx.mark()
    ops = registering(tmp_path, pbx, pbx.agent_password)
    try:
        ops.start()
        assert wait_until(lambda: ops.logged("register.registered"), 20), ops.daemon.lines[-20:]
        contact = f"sip:agent@127.0.0.1:{ops.address[1]}"
        assert wait_until(lambda: any(c.startswith(contact) for c in pbx.contacts("agent")), 10), \
            pbx.rx("pjsip show contacts")
        (row,) = ops.http("GET", "/trunks").json()["registrations"]
        assert (row["state"], row["last_status"]) == ("registered", 200)
        assert 0 < row["expires"] <= 120
        assert ops.daemon.terminate() == 0
        assert wait_until(lambda: not any(c.startswith(contact) for c in pbx.contacts("agent")), 10), \
            pbx.rx("pjsip show contacts")
    finally:
        ops.daemon.kill()
    sent = requests(pbx.sip(since), "REGISTER", "in")
    assert len(sent) >= 4, len(sent)  # challenged, authorized; the removal, challenged, authorized
    first, authorized = sent[0], sent[1]
    assert first.header("authorization") is None
    auth = authorized.header("authorization") or ""
    assert re.search(r'username="agent"', auth) and 'realm="asterisk"' in auth, auth
    assert pbx.agent_password not in "\n".join(ops.daemon.lines)


def test_a_wrong_password_is_an_auth_failure_that_backs_off(tmp_path: Path, pbx) -> None:
    ops = registering(tmp_path, pbx, "not-the-password")
    try:
        ops.start()
        assert wait_until(lambda: ops.logged("register.failed"), 20), ops.daemon.lines[-20:]
        (row,) = ops.http("GET", "/trunks").json()["registrations"]
        assert (row["state"], row["last_status"], row["failures"]) == ("failed", "auth", 1)
        assert "credentials refused" in row["reason"] and 0 < row["retry_in"] <= 30
        assert pbx.contacts("agent") == []
    finally:
        ops.daemon.kill()


def test_a_call_to_the_registered_binding_belongs_to_the_trunk_whatever_its_source(tmp_path: Path, pbx) -> None:
    profiles, flows = tmp_path / "profiles", tmp_path / "flows"
    profiles.mkdir()
    flows.mkdir()
    host, port = pbx.address
    (profiles / "pbx.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["192.0.2.0/24"],  # not Asterisk's 127.0.0.1
        "auth": {"username": "agent", "password": pbx.agent_password},
        "register": {"registrar": f"sip:{host}:{port}", "aor": f"sip:agent@{host}", "expires": 120}}))
    (flows / "hello.yaml").write_text(yaml.safe_dump({"nodes": {
        "hi": {"type": "message", "text": "Hello from the trunk.", "next": None}}}))
    ops = OpsDaemon(tmp_path / "daemon", config={
        "profiles_dir": str(profiles), "flows_dir": str(flows),
        "calls": {"trusted_sources": ["192.0.2.0/24"]},
        "routes": [{"channel": "pbx-line", "match": {"carrier": "pbx"}, "flow": "hello"}]})
    since = pbx.mark()
    try:
        ops.start()
        assert wait_until(lambda: ops.logged("register.registered"), 20), ops.daemon.lines[-20:]
        registered = requests(pbx.sip(since), "REGISTER", "in")[-1].header("contact") or ""
        found = re.search(r";line=([0-9a-f]+)", registered)
        assert found, registered
        line = found.group(1)

        stranger = Caller(ops.address, request_user="agent")  # the same source, no line
        try:
            assert stranger.invite().status == 403
        finally:
            stranger.close()

        since = pbx.mark()
        pbx.originate("agent", "2", "dtmf-to-voicegw")
        assert wait_until(lambda: ops.logged("call.ended"), 30), ops.daemon.lines[-30:]
        invites = requests(pbx.sip(since), "INVITE", "out")
        assert invites, pbx.report(since)
        assert f";line={line}" in invites[0].first_line, invites[0].first_line
        answers = [t.message for t in pbx.sip(since) if t.direction == "in" and t.message.status == 200
                   and "INVITE" in (t.message.header("cseq") or "")]
        assert answers, pbx.report(since)
        call_id = invites[0].header("call-id")
        detail = ops.http("GET", f"/calls/{call_id}").json()
        assert (detail["carrier"], detail["channel"], detail["flow"]) == ("pbx", "pbx-line", "hello"), detail
        (incoming,) = [e["detail"] for e in detail["timeline"] if e["event"] == "call.incoming"]
        assert incoming["carrier"] == "pbx" and incoming["source"].startswith("udp:127.0.0.1:"), incoming
        (listed,) = ops.http("GET", "/calls", params={"state": "ended"}).json()
        assert listed["carrier"] == "pbx", listed
        assert ops.daemon.terminate() == 0  # the binding removed for the module's next tests
    finally:
        ops.daemon.kill()
