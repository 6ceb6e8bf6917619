"""Our REFERs' subscription events through the call controller (engine/controller.py
refer_commands), with no loop: ``ReferSent`` names the machine a REFER is for, each
``ReferReported`` event becomes that machine's input (a transfer attempt's: the 202
ACCEPTED, a 1xx sipfrag PROGRESS, a 2xx sipfrag or an unconfirmed 202 CONNECTED, a
failure FAILED; a warm transfer's REFER with Replaces: success completes the consult
and ends the call, failure is COMPLETION_FAILED; a 401/407 that ended it fails with
``auth``), and the subscriptions' timer is a
``StartTimer(REFER)`` that comes back as ``TickRefers(now)``."""

from __future__ import annotations

from voicegw.engine import control_io as io
from voicegw.engine.consult import ConsultMachine
from voicegw.engine.consult import Input as ConsultInput
from voicegw.engine.consult import State as ConsultState
from voicegw.engine.controller import CallController
from voicegw.engine.transfer_machine import Input, State, TransferMachine
from voicegw.sip.refer import (
    ReferAccepted,
    ReferFailed,
    ReferProgressed,
    ReferSucceeded,
    ReferUnconfirmed,
)


def referring() -> tuple[CallController, TransferMachine]:
    controller, machine = CallController(32.0), TransferMachine()
    controller.feed(io.TransferFed("t", machine, Input.REFERRED))
    assert controller.feed(io.ReferSent(7, "t", machine)) == ()
    return controller, machine


def test_a_refer_accepted_progressing_and_succeeding_feeds_its_attempt() -> None:
    controller, machine = referring()
    assert controller.feed(io.ReferReported(ReferAccepted(7, 202, True), 1.0)) == (
        io.RecordAccepted("t", 202, True),)
    assert controller.feed(io.ReferReported(ReferProgressed(7, 180, "Ringing"), 2.0)) == (
        io.RecordProgress("t", 180),)
    commands = controller.feed(io.ReferReported(ReferSucceeded(7, 200, "OK", True), 3.0))
    assert io.Settle("t", True, 200, "the carrier connected the caller") in commands
    assert machine.state is State.SUCCEEDED


def test_an_unconfirmed_refer_connects_with_its_202() -> None:
    controller, _machine = referring()
    commands = controller.feed(io.ReferReported(ReferUnconfirmed(7, 202), 1.0))
    assert io.Settle("t", True, 202, "accepted without progress reports") in commands


def test_a_failed_refer_fails_its_attempt_with_the_status() -> None:
    controller, _machine = referring()
    commands = controller.feed(io.ReferReported(ReferFailed(7, "timeout", "no NOTIFY"), 1.0))
    assert io.Settle("t", False, "timeout", "no NOTIFY") in commands


def test_events_of_an_unknown_refer_or_after_the_end_mean_nothing() -> None:
    controller, _machine = referring()
    assert controller.feed(io.ReferReported(ReferProgressed(8, 180, "Ringing"), 1.0)) == ()
    controller.feed(io.CallEnded(2.0))
    assert controller.feed(io.ReferReported(ReferProgressed(7, 180, "Ringing"), 3.0)) == ()
    assert controller.feed(io.RefersDue(10.0)) == ()


def test_a_warm_refer_with_replaces_completes_the_consult_and_ends_the_call() -> None:
    controller, machine = CallController(32.0), ConsultMachine(state=ConsultState.COMPLETING)
    controller.feed(io.ReferSent(3, "w", machine))
    assert controller.feed(io.ReferReported(ReferAccepted(3, 202, True), 1.0)) == ()
    commands = controller.feed(io.ReferReported(ReferSucceeded(3, 200, "OK", True), 2.0))
    assert commands[0] == io.RecordConsult("w", ConsultState.COMPLETED, ConsultInput.COMPLETED_OK)
    assert commands[-1] == io.EndCall("transferred by REFER with Replaces")


def test_a_warm_refer_that_fails_is_the_consults_completion_failure() -> None:
    controller, machine = CallController(32.0), ConsultMachine(state=ConsultState.COMPLETING)
    controller.feed(io.ReferSent(3, "w", machine))
    commands = controller.feed(io.ReferReported(ReferFailed(3, 603, "Decline"), 2.0))
    assert commands[0] == io.RecordConsult("w", ConsultState.FAILED, ConsultInput.COMPLETION_FAILED)
    assert io.EndCall("transferred by REFER with Replaces") not in commands


def test_the_subscriptions_timer_is_the_controllers() -> None:
    controller = CallController(32.0)
    assert controller.feed(io.RefersDue(12.5)) == (io.StartTimer(io.Timer.REFER, 12.5),)
    assert controller.feed(io.TimerFired(io.Timer.REFER, 12.5)) == (io.TickRefers(12.5),)
    assert controller.feed(io.RefersDue(None)) == (io.CancelTimer(io.Timer.REFER),)


def test_a_challenge_that_ended_a_refer_fails_it_with_auth() -> None:
    controller, _machine = referring()
    commands = controller.feed(io.ReferReported(ReferFailed(7, 401, "Unauthorized"), 1.0, "401 challenge, no auth"))
    assert io.Settle("t", False, "auth", "401 challenge, no auth") in commands
    controller, machine = CallController(32.0), ConsultMachine(state=ConsultState.COMPLETING)
    controller.feed(io.ReferSent(3, "w", machine))
    commands = controller.feed(io.ReferReported(ReferFailed(3, 407, "Proxy Auth"), 2.0, "407 challenge, no auth"))
    assert io.SettleConsult("w", True, "auth", "407 challenge, no auth") in commands
