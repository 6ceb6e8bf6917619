"""Who is at the desk and which agent a transfer target rings. Pure.

A ``desk:`` target names an agent (``desk:alice``) or a queue (``desk:sales``, the
config's ``desk.queues``); a queue rings its first *available* agent, in the order the
config lists them. An agent is available when signed in (a WebSocket is open), set to
available, and not already ringing or on a call; presence moves to ``busy`` while
ringing or talking and back to what the agent chose afterwards.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Presence(enum.Enum):
    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"


@dataclass(eq=False)
class DeskAgent:
    name: str
    chosen: Presence = Presence.AWAY
    """What the agent set on the page (available or away)."""
    connections: int = 0
    """Open WebSockets (a second tab counts; the agent is online while any is open)."""
    engaged: object | None = field(default=None, repr=False)
    """The offer or call the agent is ringing for or talking on."""

    @property
    def online(self) -> bool:
        return self.connections > 0

    @property
    def presence(self) -> Presence:
        if self.engaged is not None:
            return Presence.BUSY
        return self.chosen

    @property
    def available(self) -> bool:
        return self.online and self.presence is Presence.AVAILABLE


class Roster:
    def __init__(self, agents: list[str], queues: dict[str, tuple[str, ...]]) -> None:
        self.agents = {name: DeskAgent(name) for name in agents}
        self.queues = {name: tuple(members) for name, members in queues.items()}

    def known(self, target: str) -> bool:
        """Whether ``desk:<target>`` names an agent or a queue of the config."""
        return target in self.agents or target in self.queues

    def pick(self, target: str) -> DeskAgent | None:
        """The agent a ``desk:`` target rings now, or None (``no_agent``)."""
        if target in self.agents:
            agent = self.agents[target]
            return agent if agent.available else None
        for name in self.queues.get(target, ()):
            agent = self.agents.get(name)
            if agent is not None and agent.available:
                return agent
        return None


__all__ = ["DeskAgent", "Presence", "Roster"]
