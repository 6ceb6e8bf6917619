"""Warm (attended) transfers over the wire (issue 7).

``voicegw run --config`` with ``calls: {transfer_method: warm, warm: {...}}`` and
``--agent-uri``; the scripted caller (peers.agent.Carrier: peers.caller's caller
with timestamped RTP, answering REFER with 202) presses 0 in the demo flow; a scripted
agent UAS (peers.agent.Agent) on loopback is the consult target. Assertions are on
what crossed the wire (SIP and RTP at the caller and at the agent) and on the daemon's
JSON log; after each test the daemon's stderr must hold nothing but JSON lines (a
player left sending on a closed endpoint shows as asyncio's 'socket.send() raised
exception.').

Three daemons, one per config (module scope, each isolated by DaemonProcess: own work
dir and API port): ``confirm`` (agent accepts/declines by DTMF, ring timeout 2 s),
``auto`` (connects after the briefing without a key) and ``refer`` (completion by
REFER with Replaces on the caller's leg). The caller hears hold ``silence`` while the
agent is consulted, so any speech energy on leg A during the consult would be the
briefing leaking.

Benchmark of complete -> two-way media: scripts/bench/warm_complete.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
from peers.agent import (
    AUDIBLE,
    SILENT,
    Agent,
    Carrier,
    WarmDaemon,
    done,
    exchange,
    press_zero,
    until_agent,
    until_quiet,
)
from peers.caller import speech_energy
from peers.daemon import wait_until
from peers.net import free_port
from peers.ports import free_block

from voicegw.sip.message import Response

pytestmark = [pytest.mark.wire, pytest.mark.timeout(60)]

BRIEFING = "Incoming transfer from {caller}. Billing question."


def _rtp(slot: int) -> tuple[int, int]:
    base = free_block(20, reserve=True)  # the module's daemon keeps it
    return base, base + 18


def _daemon(tmp_path_factory: pytest.TempPathFactory, name: str, slot: int, warm: dict[str, object],
            **calls: object) -> Iterator[tuple[WarmDaemon, int]]:
    agent_port = free_port()
    daemon = WarmDaemon(tmp_path_factory.mktemp(name), f"sip:agent@127.0.0.1:{agent_port}",
                        {"hold": "silence", "briefing_text": BRIEFING, **warm}, _rtp(slot), **calls)
    daemon.start()
    try:
        yield daemon, agent_port
    finally:
        daemon.terminate()
        daemon.kill()


def _clean(daemon: WarmDaemon, since: int) -> None:
    """Nothing went wrong inside the daemon during a test: no failed task, no loop
    exception, no stray stderr line (a player left sending on a closed endpoint
    prints asyncio's 'socket.send() raised exception.' every 20 ms)."""
    time.sleep(0.3)  # a leak shows within a few packet times
    lines = daemon.lines[since:]
    noise = [line for line in lines if not line.startswith("{")]
    errors = [line for line in lines if '"engine.task_failed"' in line or '"loop.exception"' in line]
    assert not noise and not errors, (noise[:5], errors[:5])


@pytest.fixture(scope="module")
def _confirm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WarmDaemon, int]]:
    yield from _daemon(tmp_path_factory, "confirm", 0,
                       {"confirm": True, "accept_digit": "1", "decline_digit": "2", "confirm_timeout": 10},
                       ring_timeout=2)


@pytest.fixture(scope="module")
def _auto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WarmDaemon, int]]:
    yield from _daemon(tmp_path_factory, "auto", 1, {"confirm": False, "auto_complete": True}, ring_timeout=5)


@pytest.fixture(scope="module")
def _refer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WarmDaemon, int]]:
    yield from _daemon(tmp_path_factory, "refer", 2,
                       {"confirm": False, "auto_complete": True, "complete_by": "refer"}, ring_timeout=5)


@pytest.fixture
def confirm(_confirm: tuple[WarmDaemon, int]) -> Iterator[tuple[WarmDaemon, int]]:
    """Confirmation by DTMF (accept 1, decline 2), ring timeout 2 s."""
    since = len(_confirm[0].lines)
    yield _confirm
    _clean(_confirm[0], since)


@pytest.fixture
def auto(_auto: tuple[WarmDaemon, int]) -> Iterator[tuple[WarmDaemon, int]]:
    """No confirmation: connected when the briefing ends."""
    since = len(_auto[0].lines)
    yield _auto
    _clean(_auto[0], since)


@pytest.fixture
def refer(_refer: tuple[WarmDaemon, int]) -> Iterator[tuple[WarmDaemon, int]]:
    """Completion by REFER with Replaces on the caller's leg, no confirmation."""
    since = len(_refer[0].lines)
    yield _refer
    _clean(_refer[0], since)


# ------------------------------------------------------------------------------ helpers
def failed_with(daemon: WarmDaemon, caller: Carrier, status: object, timeout: float = 8.0) -> None:
    assert caller.listen(timeout, lambda: bool(daemon.logged("transfer.failed", call_id=caller.call_id))), \
        "the transfer never failed"
    got = daemon.logged("transfer.failed", call_id=caller.call_id)[0]
    assert got["status"] == status and got["method"] == "warm", got


def stays_and_hears_the_apology(caller: Carrier, since: float) -> None:
    """A failed warm transfer returns the caller to the flow: the apology, no BYE."""
    assert caller.listen(3.0, lambda: speech_energy(caller.audio(since=since)) > AUDIBLE), \
        "the caller hears the apology prompt"
    assert not caller.got_request("BYE"), "a failed transfer never drops the caller"


# ------------------------------------------------------------------------------ tests
def test_agent_accepts_by_dtmf_hears_the_briefing_alone_then_talks_to_the_caller(confirm) -> None:
    daemon, port = confirm
    with Agent(port, answer_delay=0.2) as agent:
        caller = press_zero(daemon)
        try:
            until_agent(caller, agent, "answered")
            answered = agent.call.answered_at
            assert f"X-VG-Call-ID: {caller.call_id}".encode() in agent.call.raw
            # not connected yet: what either side says stays on its own leg
            assert exchange(caller, agent, packets=10) == (0, 0)
            # the whole briefing plays (then silence while voicegw waits for the key)
            assert caller.listen(8, lambda: agent.quiet(answered, quiet=0.4)), "the briefing never ended"
            accepted = agent.send_dtmf("1")
            assert caller.listen(5, lambda: bool(daemon.logged("transfer.succeeded", call_id=caller.call_id)))

            briefing = agent.audio(answered, accepted)
            assert speech_energy(briefing) > AUDIBLE, "the agent hears the briefing before accepting"
            during = caller.audio(answered, accepted)
            # hold audio all along: its RTP clock spans the wait (a late loop makes the
            # player skip packets, not time, so count the timestamps, not the packets)
            stamps = [int.from_bytes(p[4:8], "big") for p in during]
            held = ((stamps[-1] - stamps[0]) % 2**32) / 8000 if stamps else 0.0
            assert held > 0.8 * (accepted - answered) - 0.2, ("hold audio reaches the caller meanwhile",
                                                              held, accepted - answered)
            assert speech_energy(during) < SILENT, "the caller must not hear the briefing"
            spoken = {p[12:] for p in briefing if speech_energy([p]) > AUDIBLE}
            assert spoken and not spoken & {p[12:] for p in caller.audio()}, \
                "no briefing packet ever reaches the caller"
            assert not any(e["event"] == "flow.dtmf" and e.get("digit") == "1" for e in daemon.events()), \
                "the agent's key is not the caller's"

            to_agent, to_caller = exchange(caller, agent)
            assert to_agent >= 20 and to_caller >= 20, (to_agent, to_caller)
            assert not agent.got("BYE") and not caller.got_request("BYE")
            assert caller.bye().status == 200
        finally:
            done(caller)
        assert agent.wait_for("BYE", 3), "the caller's BYE ends the agent leg"


def test_agent_declines_by_dtmf_gets_bye_and_the_caller_goes_back_to_the_menu(confirm) -> None:
    daemon, port = confirm
    with Agent(port, answer_delay=0.1) as agent:
        caller = press_zero(daemon)
        try:
            until_agent(caller, agent, "answered")
            first = agent.call
            caller.listen(0.5)  # mid-briefing
            declined = agent.send_dtmf("2")
            failed_with(daemon, caller, "declined")
            assert agent.wait_for("BYE", 3), "the declined consult leg gets BYE"
            stays_and_hears_the_apology(caller, declined)
            # back in the menu: 0 consults the agent again, on a new call
            until_quiet(caller)
            caller.send_dtmf("0")
            assert caller.listen(8, lambda: agent.call is not first), "0 again reaches the agent again"
            assert agent.call.call_id != first.call_id
            assert caller.bye().status == 200
        finally:
            done(caller)


def test_agent_never_answers_fails_no_answer_and_gets_cancel(confirm) -> None:
    daemon, port = confirm
    with Agent(port, mode="never") as agent:
        caller = press_zero(daemon)
        try:
            until_agent(caller, agent, "invited")
            invited = time.monotonic()
            failed_with(daemon, caller, "no_answer", timeout=5)
            assert time.monotonic() - invited > 1.5, "the ring timeout (2 s) ran"
            assert agent.wait_for("CANCEL", 2), "the unanswered consult call is cancelled"
            assert any(line.startswith("SIP/2.0 487") for _, line in agent.sent)
            assert agent.call.answered_at is None
            stays_and_hears_the_apology(caller, invited)
            assert caller.bye().status == 200
        finally:
            done(caller)


def test_agent_hangs_up_during_the_briefing_fails_declined_and_the_caller_stays(confirm) -> None:
    daemon, port = confirm
    with Agent(port) as agent:
        caller = press_zero(daemon)
        try:
            until_agent(caller, agent, "answered")
            answered = agent.call.answered_at
            caller.listen(0.6)
            assert agent.energy(answered) > AUDIBLE, "the briefing had started"
            agent.bye()
            gone = time.monotonic()
            failed_with(daemon, caller, "declined")
            assert any(isinstance(m, Response) and m.status == 200 and m.cseq.method == "BYE"
                       for _, m in agent.messages), "voicegw answers the agent's BYE"
            stays_and_hears_the_apology(caller, gone)
            assert not agent.requests("BYE"), "no BYE back on a dialog the agent ended"
            assert caller.bye().status == 200
        finally:
            done(caller)


@pytest.mark.parametrize("when", ["ringing", "answered"])
def test_caller_hangs_up_during_the_consult_and_the_agent_leg_ends(confirm, when: str) -> None:
    daemon, port = confirm
    with Agent(port, mode="never" if when == "ringing" else "answer") as agent:
        caller = press_zero(daemon)
        try:
            until_agent(caller, agent, "invited" if when == "ringing" else "answered")
            caller.listen(0.3)
            assert caller.bye().status == 200
        finally:
            done(caller)
        if when == "ringing":
            assert agent.wait_for("CANCEL", 3), "a ringing consult leg is cancelled"
            assert not agent.got("BYE")
        else:
            assert agent.wait_for("BYE", 3), "an answered consult leg gets BYE"
            assert not agent.got("CANCEL")
        assert wait_until(lambda: bool(daemon.logged("call.ended", call_id=caller.call_id)), 3)
        assert not daemon.logged("transfer.succeeded", call_id=caller.call_id)


def test_auto_complete_connects_after_the_briefing_without_a_key(auto) -> None:
    daemon, port = auto
    with Agent(port, answer_delay=0.2) as agent:
        caller = press_zero(daemon)
        try:
            until_agent(caller, agent, "answered")
            answered = agent.call.answered_at
            assert caller.listen(8, lambda: bool(daemon.logged("transfer.succeeded", call_id=caller.call_id)))
            connected = time.monotonic()
            assert not [p for _, p in agent.rtp_in if p[1] & 0x7F == agent.call.dtmf_pt], "no key was pressed"
            assert speech_energy(agent.audio(answered, connected)) > AUDIBLE, "briefed first"
            assert connected - answered > 1.0, "connected after the briefing, not at the answer"
            assert speech_energy(caller.audio(answered, connected)) < SILENT, "the caller never hears it"
            to_agent, to_caller = exchange(caller, agent)
            assert to_agent >= 20 and to_caller >= 20, (to_agent, to_caller)
            assert caller.bye().status == 200
        finally:
            done(caller)
        assert agent.wait_for("BYE", 3)


def _replaces(refer_to: str) -> tuple[str, dict[str, str], str]:
    """(URI without headers, Replaces parameters, Call-ID) from a Refer-To value."""
    uri = refer_to.strip().strip("<>")
    base, _, query = uri.partition("?")
    headers = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    assert "Replaces" in headers, refer_to
    call_id, *params = unquote(headers["Replaces"]).split(";")
    return base, dict(p.split("=", 1) for p in params), call_id


def test_complete_by_refer_with_replaces_names_the_consult_dialog_and_leaves_the_call(refer) -> None:
    daemon, port = refer
    with Agent(port, answer_delay=0.1) as agent:
        caller = press_zero(daemon)
        try:
            until_agent(caller, agent, "answered")
            assert caller.listen(8, lambda: bool(caller.refers)), "no REFER on the caller's leg"
            request = caller.refers[0]
            # the REFER is on the caller's dialog (RFC 3515), from voicegw's side of it
            assert request.call_id == caller.call_id
            assert request.from_.tag == caller.to_tag and request.to.tag == caller.from_tag
            base, tags, call_id = _replaces(request.headers.get("refer-to") or "")
            consult = agent.call
            assert base == agent.uri, "Refer-To is the agent's Contact"
            # RFC 3891 3: as the agent (who gets the INVITE with Replaces) sees the dialog
            assert call_id == consult.call_id
            assert tags.get("to-tag") == consult.local_tag, tags
            assert tags.get("from-tag") == consult.remote_tag, tags
            assert speech_energy(agent.audio(consult.answered_at)) > AUDIBLE, "briefed before the REFER"

            assert caller.notify(request, 100, "Trying", final=False).status == 200
            assert not caller.got_request("BYE"), "voicegw waits for the final NOTIFY"
            final = time.monotonic()
            assert caller.notify(request, 200, "OK", final=True).status == 200
            assert caller.listen(3, lambda: caller.got_request("BYE")), "voicegw leaves the call: BYE on leg A"
            assert min(caller.requests_at("BYE")) >= final
            assert wait_until(lambda: bool(daemon.logged("transfer.succeeded", call_id=caller.call_id)), 3)
        finally:
            caller.close()


def test_the_carriers_bye_crossing_voicegws_after_refer_with_replaces_gets_200(refer) -> None:
    """The carrier joined caller and agent (NOTIFY 200) and hangs up its dialog with
    voicegw just as voicegw leaves it: its BYE crosses voicegw's (sent before voicegw's
    BYE is answered). The dialog lasts until a BYE's final response (RFC 3261 15.1.1),
    so the carrier's BYE is answered 200 (15.1.2, RFC 5407's crossing BYEs), not 481."""
    daemon, port = refer
    with Agent(port, answer_delay=0.1) as agent:
        caller = press_zero(daemon)
        try:
            until_agent(caller, agent, "answered")
            assert caller.listen(8, lambda: bool(caller.refers)), "no REFER on the caller's leg"
            request = caller.refers[0]
            caller.unanswered = ("BYE",)
            assert caller.notify(request, 200, "OK", final=True).status == 200
            assert caller.listen(3, lambda: caller.got_request("BYE")), "voicegw leaves the call: BYE on leg A"
            crossing = caller.bye()  # voicegw's BYE is still unanswered
            assert crossing.status == 200, crossing.status
            caller.unanswered = ()  # voicegw's BYE, retransmitted (T1), gets its 200 now
            assert caller.listen(4, lambda: len(caller.requests_at("BYE")) >= 2), "voicegw's BYE resent"
            assert wait_until(lambda: bool(daemon.logged("transfer.succeeded", call_id=caller.call_id)), 3)
        finally:
            caller.close()


@pytest.mark.parametrize("status,reason", [(481, "Call/Transaction Does Not Exist"), (503, "Service Unavailable")])
def test_refer_with_replaces_refused_by_the_carrier_fails_and_the_caller_stays(refer, status: int,
                                                                               reason: str) -> None:
    daemon, port = refer
    with Agent(port, answer_delay=0.1) as agent:
        caller = press_zero(daemon)
        try:
            until_agent(caller, agent, "answered")
            assert caller.listen(8, lambda: bool(caller.refers))
            request = caller.refers[0]
            assert caller.notify(request, 100, "Trying", final=False).status == 200
            refused = time.monotonic()
            assert caller.notify(request, status, reason, final=True).status == 200
            failed_with(daemon, caller, status)
            stays_and_hears_the_apology(caller, refused)
            # the consult leg is let go with the failure (the machine's COMPLETING -> FAILED)
            assert agent.wait_for("BYE", 2)
            assert caller.bye().status == 200
        finally:
            done(caller)


def test_incoming_invite_with_replaces_takes_the_callers_place_or_gets_481(confirm) -> None:
    daemon, _ = confirm
    caller = Carrier(daemon.address)
    newcomer = Carrier(daemon.address, user="bob")
    stranger = Carrier(daemon.address, user="eve")
    try:
        assert caller.invite().status == 200
        caller.listen(0.3)
        # Replaces naming no dialog of voicegw's, and the right dialog with its tags
        # swapped (RFC 3891 3: to-tag is the recipient's tag): both 481, the call is untouched
        nothing = stranger.invite(extra=f"Replaces: nobody-{caller.call_id};to-tag=1;from-tag=2\r\n")
        assert nothing.status == 481
        swapped = stranger.invite(
            extra=f"Replaces: {caller.call_id};to-tag={caller.from_tag};from-tag={caller.to_tag}\r\n")
        assert swapped.status == 481
        caller.listen(0.3)
        assert not caller.got_request("BYE")

        replacing = newcomer.invite(
            extra=f"Replaces: {caller.call_id};to-tag={caller.to_tag};from-tag={caller.from_tag}\r\n")
        assert replacing.status == 200
        assert caller.listen(3, lambda: caller.got_request("BYE")), "the replaced leg gets BYE"
        since = time.monotonic()
        newcomer.listen(1.5)
        assert speech_energy(newcomer.audio(since)) > AUDIBLE, "the new leg has the call (the flow's greeting)"
        assert newcomer.bye().status == 200
    finally:
        for party in (caller, newcomer, stranger):
            party.close()
