"""The flow runner as a pure machine: inputs in, the next action out."""

from __future__ import annotations

import pytest

from voicegw.engine.b2bua import caller_status
from voicegw.engine.call import TRANSITIONS, Call, CallInput, CallState, Leg
from voicegw.engine.events import CallConnected, CallDisposed, CallEnded
from voicegw.flow.runner import (
    DEMO_FLOW,
    CollectNode,
    EndCall,
    Flow,
    FlowRunner,
    HangupNode,
    MessageNode,
    PlayPrompt,
    WaitForDigit,
)
from voicegw.sip.events import Address


def test_demo_flow_greets_then_waits_for_a_digit() -> None:
    runner = FlowRunner(DEMO_FLOW)
    first = runner.start()
    assert isinstance(first, PlayPrompt) and "Press zero" in first.text
    assert runner.prompt_finished() == WaitForDigit(15.0)
    assert runner.current == "menu"


def test_digit_routes_and_unknown_digit_keeps_waiting() -> None:
    runner = FlowRunner(DEMO_FLOW)
    runner.start()
    runner.prompt_finished()
    assert runner.digit("7") == WaitForDigit(15.0)
    action = runner.digit("0")
    assert isinstance(action, PlayPrompt) and "not configured" in action.text
    assert runner.prompt_finished() == EndCall("hangup node")


def test_timeout_goes_to_goodbye_and_digits_outside_collect_are_ignored() -> None:
    runner = FlowRunner(DEMO_FLOW)
    runner.start()
    assert runner.digit("0") is None  # still in the greeting: no barge-in
    runner.prompt_finished()
    assert runner.timed_out() == PlayPrompt("Goodbye.")
    assert runner.prompt_finished() == EndCall("hangup node")


def test_a_flow_that_loops_forever_is_cut_by_the_step_limit() -> None:
    loop = Flow("loop", "a", {"a": MessageNode("a", "again", "a")})
    runner = FlowRunner(loop, max_steps=5)
    actions = [runner.start()] + [runner.prompt_finished() for _ in range(5)]
    assert actions[-1] == EndCall("flow step limit")


def test_flow_with_a_dangling_target_is_refused_at_load_time() -> None:
    with pytest.raises(ValueError, match="nowhere"):
        Flow("bad", "menu", {"menu": CollectNode("menu", {"1": "nowhere"}), "end": HangupNode("end")})


def test_call_table_and_status_mapping() -> None:
    call = Call("c1", Leg("caller", Address("udp", "127.0.0.1", 5060)), created=0.0, local_tag="t")
    assert not call.apply(CallInput.CANCELLED, 1.0) or call.state is CallState.ENDED
    assert {s for s, _ in TRANSITIONS} == {CallState.SETUP, CallState.CONNECTED}
    call2 = Call("c2", Leg("caller", Address("udp", "127.0.0.1", 5060)), created=0.0, local_tag="u")
    assert call2.apply(CallInput.ANSWERED, 1.0) and call2.state is CallState.CONNECTED
    assert not call2.apply(CallInput.CANCELLED, 2.0)  # no such arrow: nothing changes
    assert call2.apply(CallInput.HUNG_UP, 3.0, "caller hung up") and call2.end_reason == "caller hung up"
    assert call2.timeline == [(1.0, CallConnected("answered", "")), (3.0, CallEnded("hung up", "caller hung up")),
                              (3.0, CallDisposed("contained"))]  # the disposition follows the end
    assert [caller_status(s) for s in (486, 503, 404, 408, 500, 603, 606)] == [486, 503, 404, 480, 503, 603, 488]


def test_context_headers_user_to_user_is_hex_encoded_per_rfc_7433() -> None:
    from voicegw.engine.transfer import Transfers
    from voicegw.settings import TransferConfig

    class FakeEngine:
        config = type("C", (), {"transfer": TransferConfig(context_headers={"User-to-User": "summary", "X-VG-Caller": "caller"})})()

    call = Call("c3", Leg("caller", Address("udp", "127.0.0.1", 5060)), created=0.0, local_tag="t")
    headers = Transfers(FakeEngine()).context_headers(call, {"summary": "refund\r\nX-Evil: 1"})  # type: ignore[arg-type]
    assert headers == [("User-to-User", "726566756e640d0a582d4576696c3a2031;encoding=hex")]
