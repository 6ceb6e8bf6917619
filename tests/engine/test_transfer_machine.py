"""The transfer-attempt machine (engine/transfer_machine.py) as a table: every
(state, input) pair is a row, ignored, or refused; hypothesis over input orders; and
the one rule for the bot's BYE (BOT_TABLE)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicegw.engine.transfer_machine import (
    BOT_TABLE,
    FINAL,
    IGNORED,
    TABLE,
    Action,
    How,
    Input,
    Moment,
    State,
    Step,
    TransferMachine,
    TransferMachineError,
    bot_steps,
)


def run(*events: Input | tuple[Input, object], asked_by_bot: bool = False) -> TransferMachine:
    machine = TransferMachine(asked_by_bot=asked_by_bot)
    for event in events:
        if isinstance(event, tuple):
            machine.feed(*event)  # type: ignore[arg-type]
        else:
            machine.feed(event)
    return machine


def test_invite_bridge_rings_then_swaps_media_and_succeeds() -> None:
    machine = TransferMachine()
    assert machine.feed(Input.DIALLED) == ()
    assert machine.feed(Input.PROGRESS, 180) == (Action.RECORD_PROGRESS,)
    assert machine.feed(Input.CONNECTED, 200) == (Action.STOP_WAITING_AUDIO, Action.SWAP_TO_AGENT,
                                                  Action.SUCCEEDED)
    assert machine.state is State.SUCCEEDED and machine.status == 200


def test_a_busy_agent_fails_the_attempt_and_drops_its_leg() -> None:
    machine = run(Input.DIALLED)
    assert machine.feed(Input.FAILED, 486) == (Action.STOP_WAITING_AUDIO, Action.DROP_AGENT, Action.FAILED)
    assert machine.state is State.FAILED and machine.status == 486


def test_refer_records_the_202_and_leaves_on_success() -> None:
    machine = run(Input.REFERRED)
    assert machine.feed(Input.ACCEPTED, 202) == (Action.RECORD_ACCEPTED,)
    assert machine.feed(Input.CONNECTED, 200) == (Action.SUCCEEDED, Action.LEAVE)


def test_bye_hand_back_succeeds_at_once() -> None:
    machine = TransferMachine()
    assert machine.feed(Input.CONNECTED, 200) == (Action.SUCCEEDED, Action.HAND_BACK)


def test_only_a_bot_that_asked_hears_progress_and_the_caller_leaving() -> None:
    assert run(Input.DIALLED).feed(Input.PROGRESS, 180) == (Action.RECORD_PROGRESS,)
    asked = run(Input.DIALLED, asked_by_bot=True)
    assert asked.feed(Input.PROGRESS, 180) == (Action.RECORD_PROGRESS, Action.TELL_BOT)
    assert asked.feed(Input.CALLER_GONE) == (Action.STOP_WAITING_AUDIO, Action.FAILED, Action.TELL_BOT)
    assert asked.status == "call_ended"


def test_the_bot_is_released_once_it_heard_a_success_only() -> None:
    done = run(Input.DIALLED, (Input.CONNECTED, 200), asked_by_bot=True)
    assert done.feed(Input.BOT_TOLD) == (Action.RELEASE_BOT,)
    failed = run(Input.DIALLED, (Input.FAILED, 486), asked_by_bot=True)
    assert failed.feed(Input.BOT_TOLD) == ()


def test_late_inputs_are_ignored_and_out_of_order_ones_refused() -> None:
    machine = run(Input.DIALLED, (Input.CONNECTED, 200))
    assert machine.feed(Input.PROGRESS, 180) == ()
    assert machine.feed(Input.CALLER_GONE) == ()
    assert machine.status == 200
    with pytest.raises(TransferMachineError):
        TransferMachine().feed(Input.PROGRESS, 180)  # nothing has left yet
    with pytest.raises(TransferMachineError):
        run(Input.DIALLED).feed(Input.ACCEPTED, 202)  # an INVITE is never "accepted"


def test_every_pair_is_a_row_or_ignored_or_refused_and_rows_are_not_ignored() -> None:
    assert not set(TABLE) & IGNORED
    for state, event in itertools.product(State, Input):
        machine = TransferMachine(asked_by_bot=True, state=state)
        if (state, event) in TABLE or (state, event) in IGNORED:
            machine.feed(event, 500)
        else:
            with pytest.raises(TransferMachineError):
                machine.feed(event, 500)


def test_a_final_state_never_changes_its_status() -> None:
    for state in FINAL:
        for event in Input:
            machine = TransferMachine(state=state, status=487)
            machine.feed(event, 200)
            assert machine.state is state and machine.status == 487


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Input)), st.sampled_from([180, 200, 202, 486, 503, "timeout"])),
                max_size=12), st.booleans())
def test_any_order_of_inputs_ends_with_a_status_for_each_final_and_one_report(
        events: list[tuple[Input, object]], asked_by_bot: bool) -> None:
    """Whatever arrives, in whatever order: the machine is refused or moves by its
    table; it reports success or failure at most once, with a status, and only a bot
    that asked is ever told."""
    machine = TransferMachine(asked_by_bot=asked_by_bot)
    reports = 0
    for event, status in events:
        before = machine.state
        try:
            actions = machine.feed(event, status)  # type: ignore[arg-type]
        except TransferMachineError:
            assert (before, event) not in TABLE and (before, event) not in IGNORED
            assert machine.state is before
            continue
        reports += sum(a in (Action.SUCCEEDED, Action.FAILED) for a in actions)
        if not asked_by_bot:
            assert Action.TELL_BOT not in actions
        if Action.SUCCEEDED in actions:
            assert machine.state is State.SUCCEEDED
        if Action.FAILED in actions:
            assert machine.state is State.FAILED
    assert reports == (1 if machine.finished else 0)
    if machine.finished:
        assert machine.status is not None


# ---------------------------------------------------------------------- the bot's BYE
def test_an_operator_or_flow_transfer_byes_the_bot_when_the_agent_answers() -> None:
    assert bot_steps(How.BRIDGED, Moment.CONNECTED, False, False) == (Step.BYE_BOT,)


def test_a_bot_that_asked_hears_the_outcome_before_its_bye() -> None:
    assert bot_steps(How.BRIDGED, Moment.CONNECTED, True, False) == ()
    assert bot_steps(How.BRIDGED, Moment.BOT_TOLD, True, False) == (Step.BYE_BOT,)


def test_a_listening_bot_stays() -> None:
    for hears_first in (False, True):
        assert bot_steps(How.BRIDGED, Moment.CONNECTED, hears_first, True) == (Step.BOT_LISTENS,)
    assert bot_steps(How.BRIDGED, Moment.BOT_TOLD, True, True) == ()


def test_after_a_refer_voicegw_leaves_but_a_waiting_bot_is_told_first() -> None:
    assert bot_steps(How.LEFT, Moment.CONNECTED, False, False) == (Step.END_CALL,)
    assert bot_steps(How.LEFT, Moment.CONNECTED, True, False) == (Step.BYE_CALLER,)
    assert bot_steps(How.LEFT, Moment.BOT_TOLD, True, False) == (Step.BYE_BOT, Step.END_CALL)
    assert bot_steps(How.LEFT, Moment.CONNECTED, True, True) == (Step.BYE_CALLER,)  # cannot listen


@given(st.sampled_from(list(How)), st.sampled_from(list(Moment)), st.booleans(), st.booleans())
def test_every_case_has_one_answer_and_the_bot_is_byed_at_most_once(
        how: How, moment: Moment, hears_first: bool, listens: bool) -> None:
    now = bot_steps(how, moment, hears_first, listens)
    assert now.count(Step.BYE_BOT) <= 1
    if moment is Moment.CONNECTED and Step.BYE_BOT in now:
        assert not hears_first  # a bot waiting for its NOTIFY never gets BYE first (RFC 5589)
    if Step.BOT_LISTENS in now:
        assert Step.BYE_BOT not in now
    assert len(BOT_TABLE) == 9
