"""What the executor needs to carry out a transfer attempt's commands, as a port.

The controller (engine/controller.py) turns the transfer machine's (and the warm
consult machine's) actions into
commands (engine/control_io.py); the executor (engine/executor.py) carries them out
through a :class:`TransferEffects`, which engine/transfer.py's ``Transfers`` is (a
:class:`ConsultEffects`: engine/warm.py's ``WarmTransfers``). The
port keeps the imports one way: transfer.py -> ports -> executor -> this, never the
executor importing the transfers.
"""

from __future__ import annotations

from typing import Any, Protocol

from .call import Call
from .control_io import FailureStatus


class TransferEffects(Protocol):
    """One method per transfer command; ``transfer`` and ``leg`` are the command's
    (a ``Transfer``, a ``Leg``)."""

    def record_progress(self, call: Call, transfer: Any, status: FailureStatus | None) -> None: ...

    def record_accepted(self, call: Call, transfer: Any, status: FailureStatus | None, subscription: Any) -> None: ...

    def notify_bot(self, call: Call, transfer: Any) -> None: ...

    def stop_play(self, call: Call, transfer: Any) -> None: ...

    def swap_bridge(self, call: Call, transfer: Any, leg: Any) -> None: ...

    def drop_leg(self, call: Call, transfer: Any, leg: Any) -> None: ...

    def hand_back(self, call: Call, transfer: Any, headers: tuple[tuple[str, str], ...] | None) -> None: ...

    def leave(self, call: Call, transfer: Any) -> None: ...

    def release_bot(self, call: Call, transfer: Any) -> None: ...

    def settle(self, call: Call, transfer: Any, succeeded: bool, status: FailureStatus, reason: str) -> None: ...

    def tick_refers(self, call: Call, now: float) -> None: ...


class ConsultEffects(Protocol):
    """One method per consult command; ``warm`` is the command's ``WarmTransfer``
    (engine/warm.py's ``WarmTransfers`` is this port)."""

    def record_consult(self, call: Call, warm: Any, state: Any, happened: Any) -> None: ...

    def play_briefing(self, call: Call, warm: Any) -> None: ...

    def connect(self, call: Call, warm: Any) -> None: ...

    def hang_up_agent(self, call: Call, warm: Any) -> None: ...

    def stop_hold(self, call: Call, warm: Any) -> None: ...

    def settle(self, call: Call, warm: Any, failed: bool, status: FailureStatus, reason: str) -> None: ...

    def end_live_briefing(self, call: Call, warm: Any) -> None: ...


class ByeEffects(Protocol):
    """What a leg's BYE leads to, one method per command (the engine is this port)."""

    def let_bot_go(self, call: Call, leg: Any) -> None: ...

    def take_context(self, call: Call, context: tuple[tuple[str, str], ...]) -> None: ...

    def bot_node_over(self, call: Call, leg: Any, flow: Any, status: FailureStatus | None) -> None: ...

    def consult_agent_gone(self, call: Call, leg: Any) -> None: ...

    def resume_after_agent(self, call: Call, leg: Any) -> None: ...

    def end_call(self, call: Call, reason: str) -> None: ...


class MediaEffects(Protocol):
    """The RTP inactivity check (engine/media_watch.py; the engine is this port)."""

    def check_media(self, call: Call, now: float) -> None: ...


__all__ = ["ByeEffects", "ConsultEffects", "MediaEffects", "TransferEffects"]
