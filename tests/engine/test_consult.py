"""The warm-transfer consult machine as a table: every pair is a row, ignored, or refused."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicegw.engine.consult import (
    FINAL,
    IGNORED,
    TABLE,
    Action,
    ConsultError,
    ConsultMachine,
    Input,
    State,
)


def run(*events: Input | tuple[Input, object]) -> ConsultMachine:
    machine = ConsultMachine()
    for event in events:
        if isinstance(event, tuple):
            machine.feed(*event)
        else:
            machine.feed(event)
    return machine


def test_briefed_then_auto_complete_connects() -> None:
    machine = ConsultMachine()
    assert machine.feed(Input.ANSWERED) == (Action.PLAY_BRIEFING,)
    assert machine.feed(Input.BRIEFED) == ()
    assert machine.state is State.READY
    assert machine.feed(Input.COMPLETE) == (Action.CONNECT,)
    assert machine.feed(Input.COMPLETED_OK) == (Action.SUCCEEDED,)
    assert machine.state is State.COMPLETED


def test_decline_and_timeout_fail_with_the_new_statuses() -> None:
    declined = run(Input.ANSWERED, Input.BRIEFED_CONFIRM, Input.DECLINED)
    assert declined.state is State.FAILED and declined.status == "declined"
    timed_out = run(Input.ANSWERED, Input.BRIEFED_CONFIRM, Input.CONFIRM_TIMEOUT)
    assert timed_out.status == "no_answer"
    hung_up = run(Input.ANSWERED, Input.AGENT_HUNG_UP)
    assert hung_up.status == "declined"
    busy = run((Input.DIAL_FAILED, 486))
    assert busy.status == 486


def test_failure_gives_the_caller_back_and_drops_the_agent() -> None:
    machine = run(Input.ANSWERED, Input.BRIEFED_CONFIRM)
    actions = machine.feed(Input.DECLINED)
    assert actions == (Action.HANG_UP_AGENT, Action.STOP_HOLD, Action.FAILED)


def test_complete_before_the_agent_answers_is_refused() -> None:
    with pytest.raises(ConsultError, match="complete now while dialing"):
        ConsultMachine().feed(Input.COMPLETE)


def test_caller_leaving_cancels_the_consult_without_giving_back() -> None:
    machine = run(Input.ANSWERED)
    assert machine.feed(Input.CALLER_GONE) == (Action.HANG_UP_AGENT, Action.CANCELLED)
    assert machine.state is State.CANCELLED


def test_every_pair_is_a_row_ignored_or_refused() -> None:
    assert not set(TABLE) & IGNORED
    for state, event in itertools.product(State, Input):
        machine = ConsultMachine(state=state)
        if (state, event) in TABLE or (state, event) in IGNORED:
            machine.feed(event, 486)
        else:
            with pytest.raises(ConsultError):
                machine.feed(event, 486)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(Input)), max_size=12))
def test_any_sequence_ends_in_a_final_state_or_stays_consistent(events: list[Input]) -> None:
    machine = ConsultMachine()
    for event in events:
        try:
            actions = machine.feed(event, 503)
        except ConsultError:
            continue
        if Action.FAILED in actions:
            assert machine.state is State.FAILED and machine.status is not None
        if Action.CONNECT in actions:
            assert machine.state is State.COMPLETING
    if machine.finished:
        assert machine.state in FINAL
