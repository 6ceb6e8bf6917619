"""Outbound digest auth on transfers over the wire (issue 12 item 1): a flow transfers
each call by INVITE to an agent profile with ``auth``; a sipp agent challenges it
(401/407, RFC 3261 22.2) and checks the answer (sipp's verifyauth). Asserted on what
the agent got: the challenged INVITE ACKed, the retry with CSeq+1, the same Call-ID and
From tag, a new branch, ``uri`` the Request-URI; the right password is bridged, a
wrong one, a challenge voicegw cannot answer and endless challenges fail the transfer
with status ``auth`` (the fallback's ``auth`` rule runs, the caller stays); a stale
nonce gets one more answer. The password never appears in the daemon's log."""

from __future__ import annotations

from pathlib import Path

import pytest
from peers.auth_transfer import received, transfer_with_auth
from peers.calls import SippPeer, render_scenario
from peers.daemon import DaemonProcess
from peers.digest import digest_fields, expected_response
from peers.flow_transfer import events
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]

PASSWORD = "s3cret-pw"  # what the scenarios check (verifyauth)


def transfer(tmp_path: Path, scenario: str, password: str, **values: object) -> tuple[DaemonProcess, SippPeer, dict]:
    """One call transferred at once to a sipp agent running ``scenario``; the daemon
    (stopped), the agent (finished) and the transfer's final event."""
    agent = SippPeer("agent", render_scenario(scenario, tmp_path / "scenarios", **values), tmp_path / "agent",
                     timeout=20)

    def finish_agent(done: dict) -> None:
        assert agent.wait() == 0, agent.report()

    daemon, done = transfer_with_auth(tmp_path, agent, password, finish_agent)
    return daemon, agent, done


def invites(agent: SippPeer) -> list:
    return received(agent, "INVITE")


def check_retry(first, again, header: str = "authorization") -> dict[str, str]:
    """22.2: the retry is a new transaction of the same dialog attempt; the credentials."""
    assert int(again.header("cseq").split()[0]) == int(first.header("cseq").split()[0]) + 1
    assert again.header("call-id") == first.header("call-id")
    assert again.tag("from") == first.tag("from")
    assert again.branch != first.branch
    assert again.first_line == first.first_line
    assert first.header(header) is None
    value = again.header(header) or ""
    fields = digest_fields(value)
    request_uri = again.first_line.split(" ")[1]
    assert fields["uri"] == request_uri, (fields, request_uri)
    assert fields["username"] == "agent7" and fields["realm"] == "voicegw.test"
    return fields


def test_right_password_the_retry_is_authorised_and_the_call_bridged(tmp_path: Path) -> None:
    _daemon, agent, done = transfer(tmp_path, "agent_auth.xml", PASSWORD, status="401 Unauthorized",
                                      header="WWW-Authenticate", algorithm="MD5")
    assert done["event"] == "transfer.succeeded"
    first, again = invites(agent)
    fields = check_retry(first, again)
    assert fields["qop"] == "auth" and fields["nc"] == "00000001" and fields["algorithm"] == "MD5"
    acks = received(agent, "ACK")
    assert acks[0].header("cseq") == first.header("cseq").replace("INVITE", "ACK"), "the 401 is ACKed (17.1.1.3)"
    assert acks[0].branch == first.branch


def test_wrong_password_fails_with_auth_and_the_fallback_keeps_the_caller(tmp_path: Path) -> None:
    _daemon, agent, done = transfer(tmp_path, "agent_auth.xml", "not-the-password", status="401 Unauthorized",
                                      header="WWW-Authenticate", algorithm="MD5")
    assert (done["event"], done["status"]) == ("transfer.failed", "auth"), done
    assert "credentials refused" in done["reason"], done
    assert len(invites(agent)) == 2, "the same challenge again is not answered a second time"
    (fallback,) = done["fallbacks"]
    assert (fallback["status"], fallback["rule"], fallback["action"]) == ("auth", "auth", "goto"), fallback


def test_stale_nonce_is_answered_once_more(tmp_path: Path) -> None:
    _daemon, agent, done = transfer(tmp_path, "agent_auth_stale.xml", PASSWORD)
    assert done["event"] == "transfer.succeeded", done
    first, second, third = invites(agent)
    check_retry(first, second)
    assert int(third.header("cseq").split()[0]) == 3 and third.header("call-id") == first.header("call-id")
    assert 'nonce="n2-' in (third.header("authorization") or ""), "the new nonce is answered"


def test_endless_challenges_stop_at_two(tmp_path: Path) -> None:
    _daemon, agent, done = transfer(tmp_path, "agent_auth_endless.xml", PASSWORD)
    assert (done["event"], done["status"]) == ("transfer.failed", "auth"), done
    first, second, third = invites(agent)
    fields = check_retry(first, second, "proxy-authorization")
    # the answer is right (RFC 7616 3.4.1, MD5 with qop=auth), computed here
    assert fields["response"] == expected_response(fields, "INVITE", PASSWORD)
    assert 'nonce="n2-' in (third.header("proxy-authorization") or ""), "the stale nonce is answered"
    acks = received(agent, "ACK")
    assert len(acks) == 3, "every challenge is ACKed, the third is not answered"


@pytest.mark.parametrize(("challenge", "why"), [
    ('Digest realm="voicegw.test", qop="auth", algorithm=MD5', "no nonce"),
    ('Digest realm="voicegw.test", nonce="n1", qop="auth", algorithm=SHA-512-FOO', "unknown algorithm"),
    ('Digest realm="voicegw.test", nonce="n1", qop="auth-int", algorithm=MD5', "only qop=auth-int"),
])
def test_a_challenge_voicegw_cannot_answer_fails_with_auth(tmp_path: Path, challenge: str, why: str) -> None:
    daemon, agent, done = transfer(tmp_path, "agent_auth_bad.xml", PASSWORD, challenge=challenge, why=why)
    assert (done["event"], done["status"]) == ("transfer.failed", "auth"), done
    assert len(invites(agent)) == 1, "nothing is resent"
    assert not events(daemon, "transfer.succeeded")
