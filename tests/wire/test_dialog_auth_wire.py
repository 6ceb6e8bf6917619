"""Digest challenges inside a dialog, over the wire (issue 12 item 1; RFC 3261 22.2,
RFC 7616): sipp peers challenge voicegw's re-INVITE (the caller's hold relayed to an
agent), its BYE (a new nonce), its PRACK (RFC 3262) and its REFER on the caller's leg (a carrier profile
with ``auth`` for the addresses the call came from), and check the answers
(verifyauth). Asserted on what crossed the wire: each retry is a new transaction of
the same dialog (CSeq one above, same Call-ID and tags, new branch, the same offer),
``uri`` is the Request-URI and the response is right (computed here); a later request
carries the challenged nonce ahead with the next count; the NOTIFYs name the REFER
that was accepted. A BYE challenge voicegw cannot answer: no second BYE, the call is
over on voicegw's side and its record says why. Credentials refused on the REFER: no
third REFER, the transfer fails with status ``auth`` and the caller stays. The
password is never logged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from peers.auth_transfer import received, transfer_with_auth
from peers.caller import Caller
from peers.calls import SCENARIOS, SipMessage, SippPeer, render_scenario
from peers.daemon import DaemonProcess, wait_until
from peers.digest import checked_credentials
from peers.flow_transfer import events
from peers.lab import (
    bot,
    event,
    finish,
    peer,
    requests,
    responses,
    sipfrags,
    start_voicegw,
    wait_event,
)
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]

PASSWORD = "s3cret-pw"  # what the scenarios check (verifyauth)
AUTH = {"username": "agent7", "password": PASSWORD}


def answer(message: SipMessage, header: str = "authorization") -> dict[str, str]:
    """The credentials a request carried, checked: ``uri`` is its Request-URI and the
    response is right for its method (RFC 7616 3.4.1, MD5, qop=auth)."""
    return checked_credentials(message, "agent7", PASSWORD, header=header)


def same_dialog_retry(first: SipMessage, again: SipMessage) -> None:
    """22.2: the retry is the dialog's next request: CSeq one above, new branch."""
    assert int(again.header("cseq").split()[0]) == int(first.header("cseq").split()[0]) + 1
    assert again.header("cseq").split()[1] == first.header("cseq").split()[1]
    assert again.header("call-id") == first.header("call-id")
    assert (again.tag("from"), again.tag("to")) == (first.tag("from"), first.tag("to"))
    assert again.branch != first.branch and again.first_line == first.first_line


def cseq(message: SipMessage) -> int:
    return int(message.header("cseq").split()[0])


def incoming(agent: SippPeer, method: str) -> list[SipMessage]:
    return received(agent, method)


def agent_call(tmp_path: Path, scenario: Path, during) -> tuple[DaemonProcess, SippPeer]:
    """One call transferred at once to a sipp agent (profile with ``auth``,
    peers/auth_transfer.py); once it is bridged, ``during(caller, agent)``, then the
    caller hangs up. The daemon (stopped) and the agent (finished)."""
    agent = SippPeer("agent", scenario, tmp_path / "agent", timeout=20)

    def bridged(caller: Caller, done: dict) -> None:
        assert done["event"] == "transfer.succeeded", done
        during(caller, agent)

    def finish_agent(_done: dict) -> None:
        assert agent.wait() == 0, agent.report()

    daemon, _done = transfer_with_auth(tmp_path, agent, PASSWORD, finish_agent, bridged)
    return daemon, agent


def test_a_challenged_reinvite_and_bye_are_answered_in_the_dialog(tmp_path: Path) -> None:
    def hold(caller: Caller, agent: SippPeer) -> None:
        assert caller.reinvite("sendonly").status == 200
        # the hold reaches the agent: its 401 ACKed, the re-INVITE again, its 200 ACKed
        assert wait_until(lambda: len(incoming(agent, "ACK")) >= 3, 10), agent.report()

    daemon, agent = agent_call(tmp_path, render_scenario("agent_auth_indialog.xml", tmp_path / "s"), hold)
    invite, reinvite, again = incoming(agent, "INVITE")
    assert invite.header("authorization") is None and reinvite.header("authorization") is None
    same_dialog_retry(reinvite, again)
    assert again.body == reinvite.body and b"a=sendonly" in again.body, "the offer stays the same"
    fields = answer(again)
    assert fields["nonce"].startswith("r1-") and fields["nc"] == "00000001"
    first_bye, second_bye = incoming(agent, "BYE")
    assert cseq(first_bye) > cseq(again)
    # credentials ahead: the re-INVITE's nonce with its next count (RFC 7616 3.4)
    ahead = answer(first_bye)
    assert ahead["nonce"] == fields["nonce"] and ahead["nc"] == "00000002"
    same_dialog_retry(first_bye, second_bye)
    fields = answer(second_bye)
    assert fields["nonce"].startswith("b1-") and fields["nc"] == "00000001", "the new nonce, answered afresh"
    assert not events(daemon, "leg.bye_failed")


def test_a_challenged_prack_is_answered_and_the_bye_carries_credentials_ahead(tmp_path: Path) -> None:
    """RFC 3262 7.2 with 22.2: the agent's reliable 183 is PRACKed, the PRACK challenged
    and sent again with the answer (RAck unchanged); the BYE goes with that nonce's next
    count and is taken unchallenged (agent_auth_prack.xml verifies both answers)."""
    daemon, agent = agent_call(tmp_path, render_scenario("agent_auth_prack.xml", tmp_path / "s"),
                               lambda caller, agent: None)
    first, again = incoming(agent, "PRACK")
    assert first.header("authorization") is None
    same_dialog_retry(first, again)
    assert again.header("rack") == first.header("rack")
    fields = answer(again)
    assert fields["nonce"].startswith("p1-") and fields["nc"] == "00000001"
    [bye] = incoming(agent, "BYE")
    ahead = answer(bye)
    assert (ahead["nonce"], ahead["nc"]) == (fields["nonce"], "00000002") and cseq(bye) > cseq(again)
    [ack] = incoming(agent, "ACK")
    assert ack.header("authorization") is None, "the INVITE was not challenged: its ACK has no credentials"
    assert not events(daemon, "leg.bye_failed")


@pytest.mark.parametrize(("challenge", "why"), [
    ('Digest realm="voicegw.test", qop="auth", algorithm=MD5', "bad challenge"),
    ('Digest realm="voicegw.test", nonce="n1", qop="auth-int", algorithm=MD5', "unsupported challenge"),
])
def test_a_bye_challenge_voicegw_cannot_answer_ends_the_call_and_says_why(tmp_path: Path, challenge: str,
                                                                           why: str) -> None:
    scenario = render_scenario("agent_auth_bye_bad.xml", tmp_path / "s", challenge=challenge, why=why)
    daemon, agent = agent_call(tmp_path, scenario, lambda caller, agent: None)
    [bye] = incoming(agent, "BYE")
    assert bye.header("proxy-authorization") is None
    [failed] = events(daemon, "leg.bye_failed")
    assert (failed["leg"], failed["status"]) == ("agent", 407), failed
    assert why in failed["reason"] and "not answered" in failed["reason"], failed
    assert events(daemon, "call.ended"), "the call ended on voicegw's side all the same"


TARGET = "sip:agent@192.0.2.10:5060"
"""Where the bot asks to go; the carrier only reports the outcome (TEST-NET-1)."""


def refer_call(lab, carrier_scenario: Path, bot_scenario: str, password: str = PASSWORD) -> tuple[SippPeer, SippPeer]:
    """voicegw (transfers by REFER) with a carrier profile whose ``auth`` covers the
    addresses calls come from; the bot that REFERs; the sipp carrier that calls in."""
    (lab.workdir / "profiles").mkdir()
    (lab.workdir / "profiles" / "carrier.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"], "auth": {**AUTH, "password": password}}))
    start_voicegw(lab, transfer_allow=["sip:*@192.0.2.10:5060"], transfer_method="refer",
                  sections={"profiles_dir": str(lab.workdir / "profiles")})
    b = bot(lab, bot_scenario, TARGET)
    return b, peer(lab, "carrier", carrier_scenario, remote=lab.daemon.address)


def test_a_challenged_refer_is_answered_and_its_notifies_name_the_accepted_one(lab) -> None:
    # 401: sipp's verifyauth reads Authorization only (407 and Proxy-Authorization: tests/sip)
    scenario = render_scenario("carrier_refer_auth.xml", lab.workdir / "scenarios", status="401 Unauthorized",
                               header="WWW-Authenticate")
    b, carrier = refer_call(lab, scenario, "bot_refer.xml")
    finish(lab, carrier, b)
    first, again = requests(carrier.messages(), "REFER")
    same_dialog_retry(first, again)
    assert first.header("refer-to") == again.header("refer-to") == f"<{TARGET}>"
    fields = answer(again)
    assert fields["nonce"].startswith("f1-") and fields["nc"] == "00000001"
    # the carrier's NOTIFYs name the REFER it accepted (Event id = its CSeq), answered 200
    assert [m.status for m in responses(carrier.messages(), "NOTIFY")] == [200, 200, 200]
    done = wait_event(lab, "transfer.succeeded", status=200)
    assert wait_event(lab, "call.ended", call_id=done["call_id"])
    assert PASSWORD not in "\n".join(lab.daemon.lines)


def test_refused_credentials_on_the_refer_fail_the_transfer_with_auth_and_the_caller_stays(lab) -> None:
    b, carrier = refer_call(lab, SCENARIOS / "carrier_refer_auth_refused.xml", "bot_refer_stay.xml",
                            password="not-the-password")
    failed = wait_event(lab, "transfer.failed", status="auth")
    assert "credentials refused" in failed["reason"], failed
    # the carrier hangs up 6 s after its second challenge: no third REFER, no BYE came
    finish(lab, carrier, b)
    first, again = requests(carrier.messages(), "REFER")
    same_dialog_retry(first, again)
    assert again.header("authorization") and not requests(carrier.messages(), "BYE")
    assert sipfrags(b.messages())[-1][1], "the bot heard the end of its REFER's subscription"
    assert event(lab, "transfer.succeeded") is None
