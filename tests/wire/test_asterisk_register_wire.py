"""Asterisk 22 as the registrar of a voicegw trunk (issue 12 item 6): a carrier profile
registers as Asterisk's ``agent`` endpoint, which demands digest auth (templates/
asterisk/pjsip.conf); Asterisk lists voicegw's Contact for the AOR, and removes it
when voicegw stops (Expires: 0). A wrong password is refused by Asterisk and reported
as ``auth`` with a back-off. One Asterisk for the module (tests/conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from peers.asterisk import requests
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
        assert wait_until(lambda: contact in pbx.contacts("agent"), 10), pbx.rx("pjsip show contacts")
        (row,) = ops.http("GET", "/trunks").json()["registrations"]
        assert (row["state"], row["last_status"]) == ("registered", 200)
        assert 0 < row["expires"] <= 120
        assert ops.daemon.terminate() == 0
        assert wait_until(lambda: contact not in pbx.contacts("agent"), 10), pbx.rx("pjsip show contacts")
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
