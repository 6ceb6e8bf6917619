"""Inbound digest authentication (RFC 3261 section 22, RFC 8760) answered by PJSIP's
own digest client: a PJSIP caller on 127.0.0.3, outside voicegw's trusted sources,
is challenged (401), retries with its credentials and is admitted; with a wrong
password it gets a challenge again and gives up, and no call is set up."""

from __future__ import annotations

import re

import pytest
from peers.lab import NO_SHEDDING, event, start_voicegw, wait_event
from peers.pjsua import rms

pytestmark = [pytest.mark.wire, pytest.mark.timeout(60)]

UNTRUSTED = "127.0.0.3"


def auth_voicegw(lab):
    return start_voicegw(lab, sections=NO_SHEDDING, bot=False, trusted_sources=["127.0.0.1/32"],
                         auth_users={"alice": "s3cret"})


def test_pjsip_caller_answers_the_digest_challenge_and_is_admitted(lab, pjsua):
    auth_voicegw(lab)
    caller = pjsua.ua("alice", host=UNTRUSTED, credentials=("alice", "s3cret"))
    call = caller.call(f"sip:demo@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    assert call.listen(lambda s: rms(s) > 200), "the admitted caller hears the greeting"
    invites = caller.requests("INVITE", "out")
    assert len(invites) == 2 and invites[0].header("authorization") is None
    challenge = next(r for r in caller.responses("INVITE") if r.status >= 200)
    assert challenge.status == 401
    offered = [v for k, v in challenge.headers if k == "www-authenticate"]
    algorithm = re.search(r"algorithm=([\w-]+)", invites[1].header("authorization") or "")
    assert algorithm and any(algorithm.group(1) in v for v in offered), (invites[1].header("authorization"), offered)
    assert 'username="alice"' in (invites[1].header("authorization") or "")
    call.hangup()
    call.wait_disconnected()
    wait_event(lab, "call.ended")


def test_pjsip_caller_with_a_wrong_password_is_refused(lab, pjsua):
    auth_voicegw(lab)
    caller = pjsua.ua("alice", host=UNTRUSTED, credentials=("alice", "guess"))
    call = caller.call(f"sip:demo@{lab.daemon.host}:{lab.daemon.port}")
    final = call.wait_disconnected()
    assert final["status"] == 401, final
    # two INVITE transactions (CSeq), however often a slow answer made PJSIP retransmit one
    sent = {m.header("cseq") for m in caller.requests("INVITE", "out")}
    assert len(sent) == 2, f"PJSIP tries its credentials once: {sent}"
    assert [r.status for r in caller.responses("INVITE") if r.status >= 200] == [401, 401], caller.flow()
    assert event(lab, "call.incoming") is None, "no call was set up"
