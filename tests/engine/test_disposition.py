"""engine/disposition.py: a call's containment disposition from its typed events
(every case of the table, the method of a transfer, and hypothesis over any sequence),
and Call.apply recording CallDisposed right after CallEnded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voicegw.engine.call import Call, CallInput, Leg
from voicegw.engine.disposition import Disposition, containment_rate, disposition
from voicegw.engine.events import (
    CallConnected,
    CallDisposed,
    CallEnded,
    CallStarted,
    FlowEnded,
    LegHungUp,
    TransferFailed,
    TransferProgress,
    TransferRefused,
    TransferStarted,
    TransferSucceeded,
)
from voicegw.sip.events import Address

START = CallStarted("udp:127.0.0.1:5062", "sip:100@127.0.0.1", "alice", "demo")
UP = CallConnected("answered")
END = CallEnded("hung up", "caller hung up")


def started(tid: str = "t1", method: str = "invite") -> TransferStarted:
    return TransferStarted(tid, method, "sip:agent@127.0.0.1", "flow")


def of(*events):
    return disposition([START, *events, END])


def test_never_connected_is_failed() -> None:
    assert of().disposition is Disposition.FAILED
    assert disposition([START, CallEnded("cancelled", "caller cancelled", 487)]).disposition is Disposition.FAILED


def test_the_flow_ends_it_contained() -> None:
    assert of(UP, FlowEnded("goodbye")) == type(of(UP))(Disposition.CONTAINED, None)


def test_agent_answered_is_transferred_with_its_method() -> None:
    outcome = of(UP, started("t1", "refer"), TransferProgress("t1", 180), TransferSucceeded("t1", 200, "ok"))
    assert (outcome.disposition, outcome.method) == (Disposition.TRANSFERRED, "refer")


def test_the_method_is_the_attempt_that_succeeded() -> None:
    outcome = of(UP, started("t1", "refer"), TransferFailed("t1", 501, "no"), started("t2", "invite"),
                 TransferSucceeded("t2", 200, "agent answered"))
    assert (outcome.disposition, outcome.method) == (Disposition.TRANSFERRED, "invite")


def test_transferred_stays_transferred_after_post_agent_flow() -> None:
    outcome = of(UP, started(), TransferSucceeded("t1", 200, "ok"), LegHungUp("agent"), started("t2"),
                 TransferFailed("t2", 486, "busy"))
    assert outcome.disposition is Disposition.TRANSFERRED and outcome.method == "invite"


def test_failed_transfer_then_the_flow_ends_it() -> None:
    assert of(UP, started(), TransferFailed("t1", 486, "Busy Here"), FlowEnded("sorry")).disposition \
        is Disposition.TRANSFER_FAILED_CONTAINED
    assert of(UP, TransferRefused("sip:x@evil", "policy")).disposition is Disposition.TRANSFER_FAILED_CONTAINED


def test_caller_hangs_up_while_the_agent_rings_is_abandoned() -> None:
    assert of(UP, started(), TransferProgress("t1", 180), LegHungUp("caller")).disposition is Disposition.ABANDONED
    # after a failed attempt, the next one under way
    assert of(UP, started(), TransferFailed("t1", 486, "busy"), started("t2")).disposition is Disposition.ABANDONED


def test_the_engine_closing_the_attempt_is_not_a_failure() -> None:
    """TransferFailed(call_ended) follows CallEnded; even seen before it, it is abandonment."""
    events = [START, UP, started(), TransferFailed("t1", "call_ended", "the caller hung up"), END]
    assert disposition(events).disposition is Disposition.ABANDONED


events_st = st.lists(st.sampled_from([
    UP, started("t1"), started("t2", "refer"), TransferSucceeded("t1", 200, "ok"), TransferSucceeded("t2", 202, "ok"),
    TransferFailed("t1", 486, "busy"), TransferFailed("t2", "timeout", "t"), TransferFailed("t1", "call_ended", "x"),
    TransferRefused("x", "policy"), FlowEnded("bye"), LegHungUp("caller"), TransferProgress("t1", 180),
]), max_size=12)


@given(events_st)
def test_any_sequence_has_one_disposition(events) -> None:
    outcome = disposition([START, *events, END])
    connected = UP in events
    assert (outcome.disposition is Disposition.FAILED) == (not connected)
    assert (outcome.method is not None) == (outcome.disposition is Disposition.TRANSFERRED)
    if not any(isinstance(e, (TransferStarted, TransferRefused)) for e in events):
        assert outcome.disposition in (Disposition.FAILED, Disposition.CONTAINED)
    # events after the end change nothing
    assert disposition([START, *events, END, UP, started("t9"), TransferSucceeded("t9", 200, "x")]) == outcome


def test_containment_rate_leaves_out_calls_that_never_connected() -> None:
    assert containment_rate({"contained": 3, "transferred": 1, "failed": 10}) == 0.75
    assert containment_rate({"failed": 2}) is None


def test_call_records_its_disposition_after_the_end() -> None:
    call = Call(id="c1", caller=Leg("caller", Address("udp", "127.0.0.1", 5062)), created=0.0)
    call.record(0.0, START)
    call.apply(CallInput.ANSWERED, 1.0)
    call.record(2.0, started("t1", "invite"))
    call.apply(CallInput.HUNG_UP, 3.0, "caller hung up")
    names = [type(e) for _, e in call.timeline][-2:]
    assert names == [CallEnded, CallDisposed]
    assert call.timeline[-1][1] == CallDisposed("abandoned", None, "demo", None)
