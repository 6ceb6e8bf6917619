"""Asterisk 22 demanding digest auth from voicegw's INVITE (issue 12 item 1): an agent
profile names an extension of Asterisk with ``auth`` (Asterisk's ``agent`` endpoint
and its password, templates/asterisk/pjsip.conf) and ``caller_id: {number: auth}``, so
Asterisk identifies the INVITE by its From user as that endpoint and challenges it
(401). voicegw runs on a port Asterisk does not know (else Asterisk identifies it by
address as the unauthenticated ``voicegw`` endpoint). Right password: Asterisk runs
the extension (``vgauth``: answer, 1500 Hz) and the caller hears it through voicegw;
wrong password: Asterisk challenges again, the transfer fails with status ``auth``
and the fallback keeps the caller. Checked on Asterisk's SIP trace and the audio."""

from __future__ import annotations

import pytest
from peers.asterisk import requests
from peers.net import free_port
from peers.pbx import logged, start_voicegw, wait_logged

pytestmark = [pytest.mark.wire, pytest.mark.timeout(240)]

TONE = 1500  # what extension vgauth plays


@pytest.fixture
def authed(pbx, pbx_lab, tmp_path):
    def make(password: str):
        profiles = tmp_path / "profiles"
        profiles.mkdir(exist_ok=True)
        (profiles / "pbx-ext.yaml").write_text(
            f"kind: agent\nuri: '{pbx.uri('vgauth')}'\n"
            f"auth: {{username: agent, password: '{password}'}}\ncaller_id: {{number: auth, display: null}}\n")
        flow = {"name": "test", "start": "agent", "nodes": {
            "agent": {"type": "agent_transfer", "target": "pbx-ext", "method": "invite", "fallback": {
                "rules": [{"match": "auth", "action": "goto", "node": "wait"}], "default": {"action": "end"}}},
            "wait": {"type": "collect", "routes": {"9": "bye"}, "timeout": 60, "on_timeout": "bye"},
            "bye": {"type": "hangup"}}}
        daemon = start_voicegw(tmp_path / "voicegw", free_port(), flow=flow, calls={"ringback": "silence"},
                               profiles=str(profiles))
        pbx_lab.daemon = daemon
        return daemon
    return make


def test_right_password_asterisk_runs_the_extension_and_the_caller_hears_it(pbx, pbx_lab, authed):
    since = pbx.mark()
    daemon = authed(pbx.agent_password)
    caller = pbx_lab.phone("demo", to=daemon.address)
    assert caller.invite().status == 200
    wait_logged(daemon, "transfer.succeeded", timeout=30)
    assert caller.wait_heard(TONE, packets=20), "the caller hears Asterisk's extension through voicegw"
    assert pbx.wait_mark("vgauth from agent", since)
    invites = requests(pbx.sip(since), "INVITE", "in")
    assert len(invites) == 2, [i.header("cseq") for i in invites]
    assert invites[0].header("authorization") is None
    auth = invites[1].header("authorization") or ""
    assert 'username="agent"' in auth and 'realm="asterisk"' in auth and f'uri="{pbx.uri("vgauth")}"' in auth, auth
    assert caller.bye().status == 200
    assert pbx.agent_password not in "\n".join(daemon.lines)


def test_wrong_password_asterisk_refuses_and_the_transfer_fails_with_auth(pbx, pbx_lab, authed):
    since = pbx.mark()
    daemon = authed("not-the-password")
    caller = pbx_lab.phone("demo", to=daemon.address)
    assert caller.invite().status == 200
    failed = wait_logged(daemon, "transfer.failed", timeout=30)
    assert failed["status"] == "auth", failed
    assert not logged(daemon, "transfer.succeeded")
    assert len(requests(pbx.sip(since), "INVITE", "in")) == 2, "one answer, then no more"
    assert not caller.got_request("BYE"), "the fallback keeps the caller"
    assert caller.bye().status == 200
