"""The engine's timers: named per call, due at a loop time, fired with ``now``.

The one place where the engine's helpers arm a timer on the event loop (aioquic's
adapter: the machine says when, the adapter waits and calls back). A handler is
told the time it fired at, as a timer input (DESIGN.md: "a timer fired at now"),
so what it decides needs no clock of its own. A name holds one timer per call:
arming it again replaces the previous one. ``Engine.end`` cancels every timer a call
still holds (``Call.timers``); a timer that fired is forgotten at once, so its
handle never keeps the call alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .call import Call

TimerHandler = Callable[[float], None]
"""Called with the loop time the timer fired at."""


class CallTimers:
    def __init__(self, loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self._loop = loop

    def arm(self, call: Call, name: str, due: float, fire: TimerHandler) -> None:
        """Fire ``fire(now)`` at loop time ``due`` (at once if it is past)."""
        call.cancel_timer(name)
        call.timers[name] = self._loop().call_at(due, self._fire, call, name, fire)

    def after(self, call: Call, name: str, delay: float, fire: TimerHandler) -> None:
        """Fire ``fire(now)`` ``delay`` seconds from now."""
        self.arm(call, name, self._loop().time() + delay, fire)

    def _fire(self, call: Call, name: str, fire: TimerHandler) -> None:
        call.timers.pop(name, None)
        fire(self._loop().time())


__all__ = ["CallTimers", "TimerHandler"]
