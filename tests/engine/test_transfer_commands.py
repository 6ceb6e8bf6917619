"""A transfer attempt's and a warm consult's inputs through the call controller
(engine/controller.py), with no loop: the attempt's machine (engine/transfer_machine.py)
or the consult machine (engine/consult.py) answers actions, the controller turns each
into one typed command (engine/control_io.py) for the executor, in the machine's order,
with the attempt, the leg, the status and the reason handed on."""

from __future__ import annotations

import pytest

from voicegw.engine import control_io as io
from voicegw.engine.consult import Action as ConsultAction
from voicegw.engine.consult import ConsultError, ConsultMachine
from voicegw.engine.consult import Input as ConsultInput
from voicegw.engine.consult import State as ConsultState
from voicegw.engine.controller import CONSULT_COMMANDS, TRANSFER_COMMANDS, CallController
from voicegw.engine.transfer_machine import Action, Input, TransferMachine


def fed(controller: CallController, machine: TransferMachine, happened: Input, status: io.FailureStatus | None = None,
        reason: str = "", leg: object | None = None, headers: tuple[tuple[str, str], ...] | None = None,
        subscription: object = None) -> tuple[io.Command, ...]:
    return controller.feed(io.TransferFed("t", machine, happened, status, reason, leg, headers, subscription))


def test_every_action_of_the_machine_has_a_command() -> None:
    assert set(TRANSFER_COMMANDS) == set(Action)


def test_an_invite_transfer_answered_stops_the_ringback_swaps_the_bridge_and_settles() -> None:
    controller, machine = CallController(32.0), TransferMachine()
    assert fed(controller, machine, Input.DIALLED) == ()
    assert fed(controller, machine, Input.PROGRESS, 180) == (io.RecordProgress("t", 180),)
    assert fed(controller, machine, Input.CONNECTED, 200, "agent answered", leg="agent") == (
        io.StopPlay("t"), io.SwapBridge("t", "agent"), io.Settle("t", True, 200, "agent answered"))
    assert fed(controller, machine, Input.FAILED, 500, "late", leg="agent") == ()  # decided: means nothing


def test_a_failed_invite_transfer_drops_the_agent_leg_and_settles_failed() -> None:
    controller, machine = CallController(32.0), TransferMachine()
    fed(controller, machine, Input.DIALLED)
    assert fed(controller, machine, Input.FAILED, 486, "busy", leg="agent") == (
        io.StopPlay("t"), io.DropLeg("t", "agent"), io.Settle("t", False, 486, "busy"))


def test_a_bot_asking_by_refer_is_told_and_released_after_its_notify() -> None:
    controller, machine = CallController(32.0), TransferMachine(asked_by_bot=True)
    fed(controller, machine, Input.REFERRED)
    assert fed(controller, machine, Input.ACCEPTED, 202, subscription="active") == (
        io.RecordAccepted("t", 202, "active"),)
    assert fed(controller, machine, Input.PROGRESS, 180) == (io.RecordProgress("t", 180), io.NotifyBot("t"))
    assert fed(controller, machine, Input.CONNECTED, 200, "connected") == (
        io.Settle("t", True, 200, "connected"), io.Leave("t"))
    assert fed(controller, machine, Input.BOT_TOLD) == (io.ReleaseBot("t"),)


def test_a_bye_hand_back_settles_then_hands_the_caller_back_with_its_headers() -> None:
    controller, machine = CallController(32.0), TransferMachine()
    headers = (("X-Destination", "<sip:agent@example.com>"),)
    assert fed(controller, machine, Input.CONNECTED, 200, "handed back by BYE", headers=headers) == (
        io.Settle("t", True, 200, "handed back by BYE"), io.HandBack("t", headers))


def test_the_caller_gone_settles_with_the_default_status() -> None:
    controller, machine = CallController(32.0), TransferMachine()
    fed(controller, machine, Input.DIALLED)
    controller.feed(io.CallEnded(10.0))
    assert fed(controller, machine, Input.CALLER_GONE, reason="the caller hung up") == (
        io.StopPlay("t"), io.Settle("t", False, "call_ended", "the caller hung up"))


def consulted(controller: CallController, machine: ConsultMachine, happened: ConsultInput,
              status: io.FailureStatus | None = None, reason: str = "") -> tuple[io.Command, ...]:
    return controller.feed(io.ConsultFed("w", machine, happened, status, reason))


def test_every_action_of_the_consult_machine_has_a_command() -> None:
    assert set(CONSULT_COMMANDS) == set(ConsultAction)


def test_a_warm_transfer_records_each_move_briefs_connects_and_settles() -> None:
    controller, machine = CallController(32.0), ConsultMachine()
    assert consulted(controller, machine, ConsultInput.ANSWERED) == (
        io.RecordConsult("w", ConsultState.BRIEFING, ConsultInput.ANSWERED), io.PlayBriefing("w"))
    assert consulted(controller, machine, ConsultInput.BRIEFED_CONFIRM) == (
        io.RecordConsult("w", ConsultState.CONFIRMING, ConsultInput.BRIEFED_CONFIRM),
        io.StartTimer(io.Timer.CONFIRM, 0.0, "w"),
        io.EndLiveBriefing("w"))
    assert consulted(controller, machine, ConsultInput.ACCEPTED) == (
        io.CancelTimer(io.Timer.CONFIRM, "w"),
        io.RecordConsult("w", ConsultState.COMPLETING, ConsultInput.ACCEPTED), io.Connect("w"), io.EndLiveBriefing("w"))
    assert consulted(controller, machine, ConsultInput.COMPLETED_OK) == (
        io.RecordConsult("w", ConsultState.COMPLETED, ConsultInput.COMPLETED_OK),
        io.SettleConsult("w", False, 200, "agent connected after briefing"), io.EndLiveBriefing("w"))


def test_the_confirm_timer_is_the_controllers_and_comes_back_with_now() -> None:
    controller, machine = CallController(32.0), ConsultMachine()
    consulted(controller, machine, ConsultInput.ANSWERED)
    armed = controller.feed(io.ConsultFed("w", machine, ConsultInput.BRIEFED_CONFIRM, now=100.0, confirm_after=10.0))
    assert io.StartTimer(io.Timer.CONFIRM, 110.0, "w") in armed
    assert controller.feed(io.TimerFired(io.Timer.CONFIRM, 110.0, "w")) == (
        io.RecordConsult("w", ConsultState.FAILED, ConsultInput.CONFIRM_TIMEOUT), io.HangUpAgent("w"),
        io.StopHold("w"), io.SettleConsult("w", True, "no_answer", "no confirmation"), io.EndLiveBriefing("w"))
    assert controller.feed(io.TimerFired(io.Timer.CONFIRM, 111.0, "w")) == (), "fired once"


def test_the_confirm_timer_stops_when_the_agent_hangs_up_while_asked() -> None:
    controller, machine = CallController(32.0), ConsultMachine()
    consulted(controller, machine, ConsultInput.ANSWERED)
    consulted(controller, machine, ConsultInput.BRIEFED_CONFIRM)
    assert consulted(controller, machine, ConsultInput.AGENT_HUNG_UP)[0] == io.CancelTimer(io.Timer.CONFIRM, "w")
    assert controller.feed(io.TimerFired(io.Timer.CONFIRM, 30.0, "w")) == ()


def test_a_declined_consult_hangs_up_the_agent_gives_the_caller_back_and_fails_declined() -> None:
    controller, machine = CallController(32.0), ConsultMachine()
    consulted(controller, machine, ConsultInput.ANSWERED)
    assert consulted(controller, machine, ConsultInput.DECLINED, reason="the agent declined") == (
        io.RecordConsult("w", ConsultState.FAILED, ConsultInput.DECLINED), io.HangUpAgent("w"), io.StopHold("w"),
        io.SettleConsult("w", True, "declined", "the agent declined"), io.EndLiveBriefing("w"))


def test_a_consult_input_its_state_refuses_raises_for_the_api() -> None:
    controller, machine = CallController(32.0), ConsultMachine()
    with pytest.raises(ConsultError):
        consulted(controller, machine, ConsultInput.COMPLETE)
