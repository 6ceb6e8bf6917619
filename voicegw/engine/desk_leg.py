"""The engine's seam to the agent desk (voicegw/desk/, issue 15): a ``desk:AGENT`` or
``desk:QUEUE`` transfer target rings an agent in a browser instead of sending an INVITE.

The leg is an ordinary agent ``Leg`` with its own media endpoint and no SIP session;
the desk reports its outcome through :class:`DeskLegEvents`, which feed the same
transfer machine inputs as a SIP agent's 2xx or final failure, so the bridge swap, the
bot's fate, the fallback rules and the post-agent flow are unchanged. Failures:
``no_agent`` at once when nobody can take the call, ``no_answer`` when the agent does
not accept in time, 603 when the agent declines. The engine learns the leg is over
from ``hung_up``; the desk learns it from the endpoint closing (``on_close``), which
every end of an agent leg does (the call's end, a dropped or replaced agent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..sip.events import Address

if TYPE_CHECKING:
    import numpy as np

    from ..media.endpoint import MediaEndpoint

PREFIX = "desk:"


@dataclass(frozen=True)
class DeskLegEvents:
    """What the desk tells the engine about one ringing agent leg."""

    answered: Callable[[], None]
    """The agent accepted: the caller's media switches to the leg."""
    failed: Callable[[int | str, str], None]
    """Not taken: 603 declined, ``no_answer``, 480 the agent went away."""
    hung_up: Callable[[], None]
    """The agent hung up on the page (the engine's BYE-from-agent path)."""
    hold: Callable[[bool], None]
    """The agent put the caller on hold (True) or took them off it (False)."""
    warm: Callable[[str], None] | None = None
    """A warm transfer's consult leg: the agent's ``accept``, ``decline``, ``complete``
    or ``cancel`` (engine/warm.py feeds them to the consult machine)."""


class AgentDesk(Protocol):
    hold_music: np.ndarray | None
    """Looped to the caller while the agent holds the call; None: the hold beep."""

    def known(self, name: str) -> bool:
        """``desk:<name>`` names an agent or a queue of the config."""

    def available(self, name: str) -> bool:
        """Someone could take a call for ``name`` right now."""

    def ring(self, name: str, context: dict[str, str], endpoint: MediaEndpoint, timeout: float,
             events: DeskLegEvents) -> str | None:
        """Offer the call to an available agent; the agent's name, or None if nobody can."""


def desk_name(target: str) -> str | None:
    return target[len(PREFIX):] if target.startswith(PREFIX) else None


def desk_peer(agent: str) -> Address:
    """A desk leg's ``peer``: never used for SIP, named for the logs and the API."""
    return Address("desk", agent, 0)


__all__ = ["PREFIX", "AgentDesk", "DeskLegEvents", "desk_name", "desk_peer"]
