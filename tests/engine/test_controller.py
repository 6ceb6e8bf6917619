"""The call controller (engine/controller.py) alone, with no loop: a dial attempt's
inputs in, commands out, and the forget at the end (at once, when the last session
is over, or by the 64*T1 backstop). Hypothesis over input
orders: whatever comes in whatever order, the dialler hears one outcome at most, a
ring timer started is stopped or fires, and nothing is told after the decision."""

from __future__ import annotations

from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from voicegw.engine import control_io as io
from voicegw.engine.controller import TABLE, CallController, Happened, Phase
from voicegw.sip.message import Headers, Response
from voicegw.sip.offer_answer import NegotiatedMedia

RINGING = Response(180, "Ringing", Headers([("CSeq", "1 INVITE")]))
MEDIA = cast(NegotiatedMedia, object())  # opaque to the controller: handed on as it is


def dialled(controller: CallController, attempt: object = "a", due: float = 30.0) -> None:
    assert controller.feed(io.LegDialled(attempt, due)) == (io.StartTimer(io.Timer.NO_ANSWER, due, attempt),)


def test_an_answer_stops_the_ring_timer_decides_then_tells() -> None:
    controller = CallController(32.0)
    dialled(controller)
    assert controller.feed(io.LegProgressed("a", RINGING)) == (io.TellProgress("a", RINGING),)
    assert controller.feed(io.LegAnswered("a", MEDIA)) == (
        io.CancelTimer(io.Timer.NO_ANSWER, "a"), io.Decide("a", answered=True), io.TellAnswer("a", MEDIA))
    assert not controller.ringing("a")
    assert controller.feed(io.LegFailed("a", 500, "late")) == ()  # decided: means nothing


def test_a_183s_early_media_is_handed_to_the_dialler_with_it() -> None:
    controller = CallController(32.0)
    dialled(controller)
    progress = Response(183, "Session Progress", Headers([("CSeq", "1 INVITE")]))
    assert controller.feed(io.LegProgressed("a", progress, MEDIA)) == (io.TellProgress("a", progress, MEDIA),)
    assert controller.ringing("a"), "early media is progress: the attempt still rings"


def test_the_ring_timer_cancels_and_tells_no_answer() -> None:
    controller = CallController(32.0)
    dialled(controller)
    assert controller.feed(io.TimerFired(io.Timer.NO_ANSWER, 30.0, "a")) == (
        io.Decide("a", answered=False), io.Cancel("a"), io.TellFailure("a", "no_answer", "no answer"))
    # the 487 to our CANCEL ends the session: the dialler heard already
    assert controller.feed(io.LegFailed("a", 487, "Request Terminated")) == ()


def test_a_dropped_attempt_is_cancelled_without_telling_anyone() -> None:
    controller = CallController(32.0)
    dialled(controller)
    assert controller.feed(io.LegDropped("a")) == (
        io.CancelTimer(io.Timer.NO_ANSWER, "a"), io.Decide("a", answered=False), io.Cancel("a"))


def test_an_ended_call_whose_sessions_are_over_is_forgotten_at_once() -> None:
    controller = CallController(32.0)
    assert controller.feed(io.LegsSettled()) == ()  # before the end: means nothing
    assert controller.feed(io.CallEnded(100.0)) == (io.Forget(),)
    assert controller.feed(io.CallEnded(101.0)) == ()
    assert controller.feed(io.LegsSettled()) == ()  # forgotten once
    assert controller.feed(io.LegDialled("late", 200.0)) == ()  # nothing is dialled for an ended call


def test_a_session_outliving_the_end_holds_the_call_until_it_is_over() -> None:
    controller = CallController(32.0)
    assert controller.feed(io.CallEnded(100.0, settled=False)) == (io.StartTimer(io.Timer.FORGET, 132.0),)
    assert controller.feed(io.CallEnded(101.0)) == ()
    assert controller.feed(io.LegsSettled()) == (io.CancelTimer(io.Timer.FORGET), io.Forget())
    assert controller.feed(io.TimerFired(io.Timer.FORGET, 132.0)) == ()


def test_the_forget_timer_is_the_backstop_of_a_session_that_never_ends() -> None:
    controller = CallController(32.0)
    assert controller.feed(io.CallEnded(100.0, settled=False)) == (io.StartTimer(io.Timer.FORGET, 132.0),)
    assert controller.feed(io.TimerFired(io.Timer.FORGET, 132.0)) == (io.Forget(),)
    assert controller.feed(io.LegsSettled()) == ()


def test_every_ringing_input_has_a_row() -> None:
    assert {happened for (phase, happened) in TABLE if phase is Phase.RINGING} == set(Happened)


INPUTS = st.sampled_from(["progress", "answered", "failed", "timer", "dropped"])


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), INPUTS), max_size=12))
def test_no_order_tells_twice_or_leaves_a_ring_timer(orders: list[tuple[str, str]]) -> None:
    controller = CallController(32.0)
    armed: set[object] = set()
    outcomes: dict[object, int] = {"a": 0, "b": 0}
    for attempt in ("a", "b"):
        dialled(controller, attempt)
        armed.add(attempt)
    decided: set[object] = set()
    for attempt, what in orders:
        event = {
            "progress": io.LegProgressed(attempt, RINGING),
            "answered": io.LegAnswered(attempt, MEDIA),
            "failed": io.LegFailed(attempt, 486, "Busy Here"),
            "timer": io.TimerFired(io.Timer.NO_ANSWER, 30.0, attempt),
            "dropped": io.LegDropped(attempt),
        }[what]
        if what == "timer" and attempt not in armed:
            continue  # a cancelled timer never fires
        commands = controller.feed(event)
        if attempt in decided:
            assert commands == ()
        for command in commands:
            if isinstance(command, io.CancelTimer):
                armed.discard(command.attempt)
            elif isinstance(command, io.Decide):
                decided.add(command.attempt)
            elif isinstance(command, (io.TellAnswer, io.TellFailure)):
                outcomes[command.attempt] += 1
        if what == "timer":
            armed.discard(attempt)  # it fired
    assert all(count <= 1 for count in outcomes.values())
    assert armed <= {a for a in ("a", "b") if controller.ringing(a)}
