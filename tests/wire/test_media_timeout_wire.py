"""RTP inactivity over the wire (issue 16 c): a call whose peer stops sending RTP ends
with cause ``media_timeout`` (BYE on every leg, the record's end cause, a log line);
a held call is judged by the longer ``media.hold_timeout`` and is not ended.

``voicegw run`` with ``media.inactivity_timeout: 2`` and the scripted caller of
tests/peers/caller.py (real SIP and RTP over loopback): the demo flow (voicegw is the
bot) for the caller's own silence and for hold, and a sipp bot that answers and sends
no RTP for a bridged leg that goes quiet while the caller keeps talking.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from peers.caller import Caller
from peers.calls import CallLab
from peers.daemon import DaemonProcess
from peers.lab import bot, start_voicegw

TIMEOUT = 2
#: How long a test waits for what should come within TIMEOUT plus a check interval.
PATIENCE = 15.0


def talk(caller: Caller, seconds: float) -> bool:
    """RTP (PCMU silence) every 20 ms for ``seconds``, answering SIP meanwhile; True
    as soon as a BYE came."""
    for _ in range(int(seconds / 0.02)):
        caller.send_rtp(b"\xff" * 160)
        caller.rtp_ts += 160
        caller.poll(0.02)
        if caller.got_request("BYE"):
            return True
    return False


def quiet(caller: Caller, seconds: float) -> bool:
    """No RTP from the caller for ``seconds`` (SIP answered); True once a BYE came."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        caller.poll(0.1)
        if caller.got_request("BYE"):
            return True
    return False


def end_cause(call_id: str) -> tuple[str, str] | None:
    """(end_cause, end_reason) of the call's record once it has ended, waiting for
    the store's commit (bounded). The lab fixture puts the records at $VOICEGW_DB."""
    db = Path(os.environ["VOICEGW_DB"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if db.exists():
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                row = conn.execute("SELECT end_cause, end_reason FROM calls WHERE call_id = ? AND state = 'ended'",
                                   (call_id,)).fetchone()
            except sqlite3.OperationalError:
                row = None
            finally:
                conn.close()
            if row is not None:
                return row[0], row[1]
        time.sleep(0.2)
    return None


def timeouts_logged(daemon: DaemonProcess, wait: float = 5.0) -> list[dict]:
    """The daemon's call.media_timeout lines; its log is read by a thread and may lag
    the BYE the caller already has: wait a little (bounded) for the first one."""
    deadline = time.monotonic() + wait
    while True:
        found = [e for e in daemon.events() if e.get("event") == "call.media_timeout"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture()
def caller_of(lab: CallLab):
    made: list[Caller] = []

    def make() -> Caller:
        assert lab.daemon is not None
        caller = Caller(lab.daemon.address)
        made.append(caller)
        return caller

    yield make
    for caller in made:
        caller.close()


@pytest.mark.wire
def test_a_caller_that_stops_sending_rtp_gets_a_bye(lab: CallLab, caller_of) -> None:
    daemon = lab.start_voicegw(bot=False, media={"inactivity_timeout": TIMEOUT})
    caller = caller_of()
    assert caller.invite().status == 200
    # longer than the timeout: RTP that keeps coming keeps the call
    assert not talk(caller, TIMEOUT * 2), "BYE while the caller was still sending RTP"
    assert quiet(caller, PATIENCE), "no BYE after the caller went silent"
    logged = timeouts_logged(daemon)
    assert [(e["call_id"], e["leg"], e["held"]) for e in logged] == [(caller.call_id, "caller", False)]
    cause, reason = end_cause(caller.call_id) or ("", "")
    assert cause == "media_timeout" and reason.startswith("no RTP from the caller"), (cause, reason)


@pytest.mark.wire
def test_a_held_call_is_kept_past_the_inactivity_timeout(lab: CallLab, caller_of) -> None:
    daemon = lab.start_voicegw(bot=False, media={"inactivity_timeout": TIMEOUT, "hold_timeout": 60})
    caller = caller_of()
    assert caller.invite().status == 200
    assert not talk(caller, 0.5)
    assert caller.reinvite("sendonly").status == 200  # the caller holds: it may send nothing now
    assert not quiet(caller, TIMEOUT * 4), "a held call was ended by the inactivity timeout"
    assert caller.bye().status == 200
    cause, _ = end_cause(caller.call_id) or ("", "")
    assert cause == "hung up"
    assert not timeouts_logged(daemon, wait=0)


@pytest.mark.wire
def test_a_bridged_bot_that_sends_no_rtp_ends_the_call_on_every_leg(lab: CallLab, caller_of) -> None:
    daemon = lab.start_voicegw(media={"inactivity_timeout": TIMEOUT})
    bot = lab.bot("b2bua_bot_answer.xml", calls=1)  # answers, sends no RTP, waits for BYE
    caller = caller_of()
    assert caller.invite().status == 200
    # the caller talks all along (relayed through the bridge): only the bot is silent
    assert talk(caller, PATIENCE), "no BYE to the caller while the bot sent no RTP"
    assert bot.wait(10) == 0, bot.report()  # the bot got its BYE too (and answered it)
    assert "in BYE" in bot.flow(), bot.flow()
    logged = timeouts_logged(daemon)
    assert [(e["leg"], e["held"]) for e in logged] == [("bot", False)]
    cause, reason = end_cause(caller.call_id) or ("", "")
    assert cause == "media_timeout" and reason.startswith("no RTP from the bot"), (cause, reason)


@pytest.mark.wire
def test_a_carrier_that_vanishes_during_a_refer_transfer_is_hung_up(lab: CallLab, caller_of) -> None:
    """The refer_transfer soak's 1,100 stuck calls (issue 16 d): the carrier (sipp) took
    the REFER, then dropped the call on its side without a usable BYE and sent nothing
    more. voicegw waited for the final NOTIFY (60 s), gave the call back to the bot,
    and kept it for ever. Here the carrier accepts the REFER, sends no NOTIFY and no
    more RTP: the inactivity timeout ends the call, long before the NOTIFY timeout,
    with a BYE to the carrier and to the bot."""
    target = "sip:agent@192.0.2.10:5060"  # never reached: the carrier would dial it
    daemon = start_voicegw(lab, transfer_allow=[target], transfer_method="refer",
                           sections={"media": {"inactivity_timeout": TIMEOUT}})
    b = bot(lab, "bot_refer.xml", target)
    carrier = caller_of()
    assert carrier.invite().status == 200
    deadline = time.monotonic() + PATIENCE
    while not carrier.got_request("REFER") and time.monotonic() < deadline:
        talk(carrier, 0.2)  # the caller speaks until voicegw REFERs it (answered 200)
    assert carrier.got_request("REFER"), "no REFER from voicegw"
    assert quiet(carrier, PATIENCE), "no BYE to the carrier that went silent after the REFER"
    assert not carrier.got_request("NOTIFY")
    logged = timeouts_logged(daemon)
    assert [(e["leg"], e["held"]) for e in logged] == [("caller", False)]
    cause, _ = end_cause(carrier.call_id) or ("", "")
    assert cause == "media_timeout"
    b.wait(20)  # the bot's scenario may not expect a BYE while it waits for NOTIFYs
    assert "in BYE" in b.flow(), b.flow()
