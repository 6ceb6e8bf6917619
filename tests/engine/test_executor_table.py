"""The dispatch tables: the controller's (engine/controller.py), one handler per input
type, and the executor's (engine/executor.py): every command the controller can
answer is carried out, by the executor itself or by one port method
(engine/effects.py), and each port method takes the call then the command's fields,
by the same names and in the same order (the table passes them positionally)."""

from __future__ import annotations

import inspect
import typing
from dataclasses import fields

import pytest

from voicegw.engine import control_io as io
from voicegw.engine.controller import _FEED
from voicegw.engine.effects import ByeEffects, ConsultEffects, MediaEffects, TransferEffects
from voicegw.engine.executor import _OWN, THROUGH_PORTS

PORTS = {"transfers": TransferEffects, "consults": ConsultEffects, "byes": ByeEffects, "media": MediaEffects}


def test_every_input_has_its_handler() -> None:
    assert set(typing.get_args(io.Input)) == set(_FEED)


def test_every_command_is_carried_out_once() -> None:
    commands = set(typing.get_args(io.Command))
    assert commands == set(THROUGH_PORTS) | set(_OWN)
    assert not set(THROUGH_PORTS) & set(_OWN)


@pytest.mark.parametrize("command", sorted(THROUGH_PORTS, key=lambda kind: kind.__name__),
                         ids=lambda kind: kind.__name__)
def test_a_port_method_takes_the_call_then_the_commands_fields(command: type) -> None:
    port, method = THROUGH_PORTS[command]
    parameters = list(inspect.signature(getattr(PORTS[port], method)).parameters)
    assert parameters == ["self", "call", *(f.name for f in fields(command))]


def test_every_port_method_has_its_command() -> None:
    used = {(port, method) for port, method in THROUGH_PORTS.values()}
    declared = {(port, name) for port, protocol in PORTS.items() for name, value in vars(protocol).items()
                if callable(value) and not name.startswith("_")}
    assert declared == used
