"""engine/media_watch.py on its own (pure, with ``now``): which legs are watched, a
leg's silence counted from its last packet, the hold timeout while a leg is held, and
legs whose media voicegw does not see (rtpengine) left alone. Over the wire:
tests/wire/test_media_timeout_wire.py."""

from __future__ import annotations

from types import SimpleNamespace

from voicegw.engine.call import Call, Leg
from voicegw.engine.media_watch import MediaWatch
from voicegw.sip.events import Address
from voicegw.sip.invite_session_table import State

PEER = Address("udp", "127.0.0.1", 5062)


def leg(role: str, state: State = State.CONFIRMED, counted: bool = True) -> Leg:
    endpoint = SimpleNamespace(closed=False, **({"packets_in": 0} if counted else {}))
    return Leg(role, PEER, endpoint=endpoint, session=SimpleNamespace(state=state))


def call_with(*legs: Leg) -> Call:
    call = Call(id="c", caller=legs[0], created=0.0)
    call.bot = legs[1] if len(legs) > 1 else None
    return call


def test_a_caller_silent_for_the_timeout_is_found_and_packets_keep_it() -> None:
    call = call_with(leg("caller"))
    watch = MediaWatch(timeout=10, hold_timeout=100)
    assert watch.check(call, [], 0.0) is None  # first sight: silence counts from now
    call.caller.endpoint.packets_in = 5
    assert watch.check(call, [], 9.0) is None
    assert watch.check(call, [], 18.0) is None  # 9 s since the last packet
    silence = watch.check(call, [], 19.5)
    assert silence is not None and (silence.role, silence.seconds, silence.held) == ("caller", 10.5, False)


def test_a_held_call_gets_the_hold_timeout_counted_from_the_hold() -> None:
    call = call_with(leg("caller"))
    watch = MediaWatch(timeout=10, hold_timeout=100)
    watch.check(call, [], 0.0)
    call.caller.held = True
    assert watch.check(call, [], 8.0) is None  # hold: the count starts again
    assert watch.check(call, [], 60.0) is None
    silence = watch.check(call, [], 108.0)
    assert silence is not None and silence.held


def test_only_the_caller_and_bridged_legs_that_are_up_are_watched() -> None:
    ringing = leg("bot", State.EARLY)
    call = call_with(leg("caller"), ringing)
    watch = MediaWatch(timeout=1, hold_timeout=0)
    watch.check(call, [], 0.0)
    assert watch.check(call, [], 5.0).role == "caller"
    assert "bot" not in watch.seen  # still ringing: not sending yet
    call.bot = leg("bot")
    unbridged = MediaWatch(timeout=1, hold_timeout=0)
    call.caller.endpoint.packets_in = 1
    unbridged.check(call, [], 0.0)
    assert set(unbridged.seen) == {"caller"}  # an unbridged bot (a tap) is not watched
    bridge = SimpleNamespace(closed=False, a=call.caller.endpoint, b=call.bot.endpoint,
                             packets_from=lambda ep: 0)
    bridged = MediaWatch(timeout=1, hold_timeout=0)
    bridged.check(call, [bridge], 0.0)
    assert set(bridged.seen) == {"caller", "bot"}


def test_a_leg_whose_packets_voicegw_does_not_see_is_left_to_rtpengine() -> None:
    call = call_with(leg("caller", counted=False))
    watch = MediaWatch(timeout=1, hold_timeout=1)
    assert watch.check(call, [], 0.0) is None
    assert watch.check(call, [], 100.0) is None


def test_zero_disables() -> None:
    assert MediaWatch.of(0, 0) is None
    assert MediaWatch.of(60, 0).interval == 10.0
    assert MediaWatch.of(2, 600).interval == 0.5
