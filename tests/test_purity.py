"""The pure/adapter boundary of DESIGN.md: the protocol core does no I/O.

sip/, the RTP packet and codec code, flow/, the fallback, consult and transfer machines, the
call controller with its inputs and commands, the phone-number normaliser and the engine's
plain settings may not import
asyncio, socket, time, pydantic or structlog (trio enforces the same for its core).
The check reads the source with ``ast``, so a forbidden import hidden in a function
body is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "voicegw"
FORBIDDEN = {"asyncio", "socket", "time", "pydantic", "structlog", "selectors", "threading", "uvloop"}

PURE_PACKAGES = ["sip", "flow"]
PURE_MODULES = [
    "media/rtp.py", "media/g711.py", "media/mixer.py", "media/dtmf.py", "media/tones.py", "media/wav.py",
    "engine/fallback.py", "engine/consult.py", "engine/transfer_machine.py", "engine/events.py",
    "engine/controller.py", "engine/control_io.py",
    "numbers.py", "settings.py",
]


def pure_files() -> list[Path]:
    files: list[Path] = []
    for package in PURE_PACKAGES:
        files.extend(sorted((ROOT / package).glob("**/*.py")))
    files.extend(ROOT / module for module in PURE_MODULES if (ROOT / module).exists())
    return files


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_sip_package_is_checked() -> None:
    names = {p.name for p in pure_files()}
    assert {"core.py", "invite_session.py", "invite_session_actions.py",
            "invite_session_table.py", "invite_session_io.py", "session_expires.py"} <= names


@pytest.mark.parametrize("name", ["invite_session.py", "invite_session_actions.py",
                                  "invite_session_table.py", "session_expires.py"])
def test_invite_session_draws_no_random_number(name: str) -> None:
    """RFC 3261 14.1's back-off and 14.2's Retry-After come from the randint the
    session is given, so tests and the executor control them."""
    assert not imported_modules(ROOT / "sip" / name) & {"random", "secrets"}


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_does_no_io(path: Path) -> None:
    bad = imported_modules(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: keep I/O in the adapters"


CONTROLLER = ["engine/controller.py", "engine/control_io.py"]
CLOCK_READS = {"time", "monotonic", "perf_counter", "now", "get_running_loop", "get_event_loop"}


@pytest.mark.parametrize("name", CONTROLLER)
def test_the_controller_reads_no_clock(name: str) -> None:
    """Timers are inputs with ``now`` (DESIGN.md): no call of a clock, whatever it was
    imported as (a ``now()`` handed in would be a clock too)."""
    tree = ast.parse((ROOT / name).read_text(), filename=name)
    calls = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
             for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not calls & CLOCK_READS, f"{name} calls {sorted(calls & CLOCK_READS)}"


LOOP_TIMERS = {"call_at", "call_later"}
#: The engine modules that arm loop timers: the executor for the controller's commands
#: and the helpers' named timers; the INVITE session's glue for the session's own
#: (RFC 3261 and 4028 timers of sip/invite_session.py, each ``handle_timer(now)``).
TIMER_ADAPTERS = {"executor.py", "leg_session.py"}


def test_only_the_executor_arms_the_engines_timers() -> None:
    armed = set()
    for path in sorted((ROOT / "engine").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        if any(isinstance(node, ast.Attribute) and node.attr in LOOP_TIMERS for node in ast.walk(tree)):
            armed.add(path.name)
    assert armed == TIMER_ADAPTERS, f"loop timers armed in {sorted(armed - TIMER_ADAPTERS)}"
