"""Reliable provisional responses toward the caller over the wire (RFC 3262 3, issue 12
item 7): a sipp caller whose INVITE says Require: 100rel (no longer 420) or Supported:
100rel gets voicegw's 183 with SDP reliably (Require: 100rel, RSeq), PRACKs it and gets
200 to the PRACK, and only then the 200 to the INVITE (the bot's answer came first and
was held); a caller that never PRACKs sees the 183 retransmitted and, 64*T1 later, a
500; the bot's answered leg gets a BYE."""

from __future__ import annotations

import pytest
from peers.calls import SIPP, CallLab
from peers.daemon import wait_until

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap")]


@pytest.fixture
def lab(tmp_path):
    with CallLab(tmp_path) as lab:
        yield lab


def finish(lab: CallLab, *peers, timeout: float = 30.0) -> None:
    for peer in peers:
        assert peer.wait(timeout) == 0, f"sipp {peer.name} failed\n{lab.report()}"


@pytest.mark.parametrize("hundredrel", ["Require: 100rel", "Supported: 100rel"])
def test_caller_pracks_the_reliable_183_and_the_200_waits_for_it(lab, hundredrel):
    lab.start_voicegw()
    bot = lab.bot("b2bua_bot_early.xml")
    caller = lab.caller("b2bua_uac_prack.xml", keys={"hundredrel": hundredrel})
    finish(lab, caller, bot)
    flow = [d for d in caller.flow() if d != "in 100 INVITE"]
    assert flow == ["out INVITE", "in 183 INVITE", "out PRACK", "in 200 PRACK", "in 200 INVITE",
                    "out ACK", "out BYE", "in 200 BYE"], lab.report()
    early = next(m for m in caller.messages() if m.describe() == "in 183 INVITE")
    assert early.header("require") == "100rel" and early.header("rseq").isdigit()
    assert b"m=audio " in early.body
    prack = next(m for m in caller.messages() if m.describe() == "out PRACK")
    assert prack.header("rack") == f"{early.header('rseq')} 1 INVITE"


def test_caller_that_never_pracks_gets_the_183_again_then_500(lab):
    lab.start_voicegw()
    bot = lab.bot("b2bua_bot_early.xml", timeout=60)
    caller = lab.caller("b2bua_uac_noprack.xml", timeout=60)
    finish(lab, caller, timeout=70)
    finish(lab, bot, timeout=20)
    flow = caller.flow()
    # T1 doubling until 64*T1: at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s
    assert flow.count("in 183 INVITE") >= 6, lab.report()
    assert flow[-2:] == ["in 500 INVITE", "out ACK"], lab.report()
    assert "in 200 INVITE" not in flow
    assert bot.flow()[-2:] == ["in BYE", "out 200 BYE"], lab.report()
    assert wait_until(lambda: lab.events("call.ended"), 5)
    assert "PRACK" in lab.events("call.ended")[0]["reason"]
