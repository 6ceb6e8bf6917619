"""Transfers by REFER on the caller's leg (voicegw is the referrer), over the wire.

The carrier (leg A) is a sipp UAC (tests/peers/scenarios/carrier_refer_*.xml) or, for the demo
flow's DTMF 0, the scripted Python caller extended here to act as a carrier. The
trigger is the bot's REFER with ``transfer_method: refer`` (tests/peers/scenarios/bot_refer*.xml)
or the demo flow's agent node with ``transfer_method: refer``. What is checked: the
sipp peers' exit codes (their scenarios check the REFER and require every answer in
order: a BYE while the call should stay up fails them), their message logs (Refer-To,
Refer-Sub, context headers, the bot's NOTIFY sipfrags, who got a BYE), and the daemon's
JSON log lines with their times (a rejected REFER fails at once, a silent one after
``notify_timeout``).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from peers.caller import Caller, speech_energy
from peers.calls import SIPP, render_scenario
from peers.daemon import wait_until
from peers.lab import (
    bot,
    event,
    finish,
    log_time,
    peer,
    requests,
    responses,
    sipfrags,
    start_voicegw,
    wait_event,
)

from voicegw.sip.message import Request
from voicegw.sip.parser import parse_message

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]

TARGET = "sip:agent@192.0.2.10:5060"
"""Where the bot asks to go; with REFER only the carrier dials it (TEST-NET-1, never
reached: the scripted carrier reports the outcome)."""


def refer_lab(lab, carrier_scenario: str, bot_scenario: str, keys: dict[str, str] | None = None,
              template: dict[str, str] | None = None, **calls: object):
    """voicegw (method refer) + the bot that REFERs + the sipp carrier that calls in.
    ``template``: the carrier scenario's @KEY@ placeholders (where sipp takes no -key)."""
    start_voicegw(lab, transfer_allow=["sip:*@192.0.2.10:5060"], transfer_method="refer", **calls)
    b = bot(lab, bot_scenario, TARGET)
    scenario: str | Path = carrier_scenario
    if template:
        scenario = render_scenario(carrier_scenario, lab.workdir / "scenarios", **template)
    carrier = peer(lab, "carrier", scenario, remote=lab.daemon.address, keys=keys or {})
    return b, carrier


def the_refer(carrier) -> object:
    refers = requests(carrier.messages(), "REFER")
    assert len(refers) == 1, carrier.flow()
    return refers[0]


def test_carrier_accepts_refer_notifies_100_180_200_then_voicegw_byes_both_legs(lab):
    b, carrier = refer_lab(lab, "carrier_refer_ok.xml", "bot_refer.xml")
    finish(lab, carrier, b)
    refer = the_refer(carrier)
    assert refer.header("refer-to") == f"<{TARGET}>"
    assert refer.header("referred-by") and refer.header("x-vg-caller") == "caller"
    assert refer.header("refer-sub") is None
    # every NOTIFY answered 200, and the BYE only after the last answer (order on the wire)
    flow = carrier.flow()
    assert [m.status for m in responses(carrier.messages(), "NOTIFY")] == [200, 200, 200]
    assert flow.index("in BYE") > max(i for i, d in enumerate(flow) if d == "in 200 NOTIFY"), flow
    # the bot heard the carrier's real progress, then its BYE
    frags = sipfrags(b.messages())
    assert frags[-1] == (200, True) and 180 in [s for s, _ in frags], frags
    assert "in BYE" in b.flow()
    done = wait_event(lab, "transfer.succeeded", status=200)
    assert wait_event(lab, "call.ended", call_id=done["call_id"])


@pytest.mark.parametrize("final", ["486 Busy Here", "603 Decline", "503 Service Unavailable"])
def test_carrier_notifies_a_failure_both_legs_stay(lab, final):
    status = int(final.split()[0])
    b, carrier = refer_lab(lab, "carrier_refer_fail.xml", "bot_refer_stay.xml", {"final": final})
    wait_event(lab, "transfer.failed", status=status)
    # the carrier hangs up 2.5 s after its final NOTIFY: no BYE came from voicegw before
    finish(lab, carrier, b)
    assert [m.status for m in responses(carrier.messages(), "NOTIFY")] == [200, 200]
    assert not requests(carrier.messages(), "BYE"), "voicegw must not BYE the caller"
    assert sipfrags(b.messages())[-1] == (status, True)
    assert event(lab, "transfer.succeeded") is None


@pytest.mark.parametrize("reject", ["403 Forbidden", "405 Method Not Allowed", "501 Not Implemented"])
def test_carrier_rejects_the_refer_fails_at_once(lab, reject):
    status = int(reject.split()[0])
    b, carrier = refer_lab(lab, "carrier_refer_reject.xml", "bot_refer_stay.xml", template={"status": reject})
    started = wait_event(lab, "transfer.started")
    failed = wait_event(lab, "transfer.failed", timeout=5, status=status)
    # at once: not after a NOTIFY wait (notify_timeout is 60 s here); the margin is for a loaded CI box
    assert log_time(failed) - log_time(started) < 2.0, "a rejected REFER resolves at once, no NOTIFY wait"
    finish(lab, carrier, b)
    assert not requests(carrier.messages(), "BYE")
    assert sipfrags(b.messages())[-1] == (status, True)


def test_carrier_accepts_and_never_notifies_times_out_after_notify_timeout(lab):
    b, carrier = refer_lab(lab, "carrier_refer_silent.xml", "bot_refer_stay.xml", notify_timeout=2)
    started = wait_event(lab, "transfer.started")
    failed = wait_event(lab, "transfer.failed", timeout=8, status="timeout")
    assert 1.8 <= log_time(failed) - log_time(started) <= 4.0
    finish(lab, carrier, b)
    assert not requests(carrier.messages(), "BYE")
    frags = sipfrags(b.messages())
    assert frags[-1][1] and frags[-1][0] >= 400, frags


def test_refer_sub_false_the_2xx_ends_the_transfer_as_accepted(lab):
    b, carrier = refer_lab(lab, "carrier_refer_nosub.xml", "bot_refer.xml", refer_sub=False)
    finish(lab, carrier, b)
    refer = the_refer(carrier)
    assert refer.header("refer-sub") == "false"
    assert "norefersub" in (refer.header("require") or refer.header("supported") or "")
    assert not requests(carrier.messages(), "NOTIFY") and not requests(carrier.messages(), "NOTIFY", "out")
    done = wait_event(lab, "transfer.succeeded")
    assert done["status"] == 202
    assert "in BYE" in carrier.flow() and "in BYE" in b.flow()


# --- the demo flow's DTMF 0 with transfer_method: refer, a scripted carrier ----------
class CarrierCaller(Caller):
    """The scripted caller acting as the carrier: answers voicegw's REFER 202 and
    reports ``outcome`` in NOTIFYs (100, then the final, terminated)."""

    outcome = "200 OK"
    event_header = True
    """False: NOTIFYs without an Event header (an SBC stripped it, issue 4)."""
    line_end = "\r\n"
    """The sipfrag status line's end: "\n" alone is a pitfall other stacks fail on."""

    def serve_refer(self, timeout: float = 15.0) -> Request:
        self.notify_answers: list[int] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sip.settimeout(0.1)
            try:
                data, addr = self.sip.recvfrom(65535)
            except OSError:
                continue
            message = parse_message(data)
            self.received.append(message)
            if isinstance(message, Request) and message.method == "REFER":
                self._reply(message, "202 Accepted", addr)
                cseq = message.cseq.seq
                for frag, state in (("100 Trying", "active;expires=60"),
                                    (self.outcome, "terminated;reason=noresource")):
                    self._notify(cseq, frag, state)
                    self.notify_answers.append(self.wait_response("NOTIFY", 5.0).status)
                return message
            if isinstance(message, Request) and message.method != "ACK":
                self._reply(message, "200 OK", addr)
        raise TimeoutError("no REFER")

    def _reply(self, request: Request, status: str, addr) -> None:
        headers = "".join(f"{n}: {v}\r\n" for n, v in request.headers
                          if n.lower() in ("via", "from", "to", "call-id", "cseq"))
        self.sip.sendto(f"SIP/2.0 {status}\r\n{headers}Content-Length: 0\r\n\r\n".encode(), addr)

    def _notify(self, refer_cseq: int, frag: str, state: str) -> None:
        self.cseq += 1
        body = f"SIP/2.0 {frag}{self.line_end}".encode()
        branch = f"z9hG4bK{random.getrandbits(48):x}"
        data = (
            f"NOTIFY sip:voicegw@{self.daemon[0]}:{self.daemon[1]} SIP/2.0\r\n"
            + self._headers("NOTIFY", self.cseq, branch, self.to_tag)
            + (f"Event: refer;id={refer_cseq}\r\n" if self.event_header else "")
            + f"Subscription-State: {state}\r\n"
            + f"Content-Type: message/sipfrag\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.sip.sendto(data, self.daemon)


def demo_refer(lab, outcome: str, **carrier: object) -> CarrierCaller:
    start_voicegw(lab, bot=False, agent_uri=TARGET, transfer_method="refer")
    c = CarrierCaller(lab.daemon.address)
    c.outcome = outcome
    for key, value in carrier.items():
        setattr(c, key, value)
    lab.callers.append(c)
    assert c.invite().status == 200
    c.receive_rtp(1.0)  # the greeting plays
    c.send_dtmf("0")
    refer = c.serve_refer()
    assert refer.headers.get("refer-to") == f"<{TARGET}>"
    return c


@pytest.mark.parametrize("carrier", [{}, {"event_header": False, "line_end": "\n"}],
                         ids=["plain", "no-Event-header-and-LF-only-sipfrag"])
def test_demo_flow_dtmf_zero_refers_the_scripted_carrier_success(lab, carrier):
    c = demo_refer(lab, "200 OK", **carrier)
    assert c.notify_answers == [200, 200], "voicegw answers each NOTIFY 200"
    # after its final NOTIFY was answered, voicegw leaves: BYE (Caller.poll answers it 200)
    assert wait_until(lambda: (c.poll(0.1), c.got_request("BYE"))[1], 5.0)
    wait_event(lab, "transfer.succeeded", status=200)
    wait_event(lab, "call.ended", call_id=c.call_id)


def test_demo_flow_dtmf_zero_refer_busy_caller_hears_apology_and_stays(lab):
    c = demo_refer(lab, "486 Busy Here")
    assert c.notify_answers == [200, 200]
    wait_event(lab, "transfer.failed", status=486)
    apology = c.receive_rtp(2.0)
    assert speech_energy(apology) > 200, "the caller hears the flow's apology prompt"
    assert not c.got_request("BYE")
    assert c.bye().status == 200
