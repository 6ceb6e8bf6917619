"""INVITE-style transfers to the agent desk: the ``desk:AGENT`` / ``desk:QUEUE`` targets.

The same attempt as an INVITE to a SIP agent (engine/transfer.py ``_by_invite``), with
the desk in place of the INVITE: the caller hears ringback while the agent's page
rings, the transfer machine gets DIALLED, then CONNECTED or FAILED, and everything
after (bridge swap, BYE to the bot, fallback rules, post-agent flow) is the machine's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..media.endpoint import open_endpoint
from ..media.player import Player
from ..media.ports import PortPoolExhausted
from .call import Call, CallState, Leg
from .desk_leg import DeskLegEvents, desk_name, desk_peer
from .events import LegDialing
from .outbound import FailureStatus
from .ports import CallHost
from .transfer_machine import Input
from .transfer_state import Transfer, TransferMethod


class AgentLegs(Protocol):
    """What this module needs of engine/transfer.py's Transfers (no import: a cycle)."""

    @property
    def config(self) -> Any: ...

    @property
    def warm(self) -> Any: ...

    def feed(self, call: Call, transfer: Transfer, event: Input, status: FailureStatus | None = None,
             reason: str = "", **kwargs: Any) -> None: ...

    def agent_ringing(self, call: Call, transfer: Transfer) -> None: ...

    def agent_failed(self, call: Call, transfer: Transfer, leg: Leg | None, status: FailureStatus,
                     reason: str) -> None: ...

    def agent_taken(self, call: Call, transfer: Transfer, leg: Leg, reason: str) -> None: ...


class DeskTransfers:
    def __init__(self, engine: CallHost, transfers: AgentLegs) -> None:
        self.engine = engine
        self.transfers = transfers
        self._holds: dict[Leg, Player] = {}

    async def run(self, call: Call, transfer: Transfer, context: dict[str, str]) -> None:
        transfers, desk = self.transfers, self.engine.desk
        name = desk_name(transfer.target) or ""
        transfer.uri = transfer.target
        if desk is None or not desk.known(name):
            transfers.agent_failed(call, transfer, None, "policy", f"no desk agent or queue {name!r}")
            return
        if transfer.method not in (TransferMethod.INVITE, TransferMethod.WARM):
            transfers.agent_failed(call, transfer, None, "policy",
                                   f"desk targets take invite or warm transfers, not {transfer.method.value}")
            return
        await self.engine.recorded()  # written before acting, as every transfer
        if transfer.done or call.state is not CallState.CONNECTED:
            transfers.feed(call, transfer, Input.CALLER_GONE, "call_ended", "the call ended before the transfer left")
            return
        if transfer.method is TransferMethod.WARM:
            transfers.feed(call, transfer, Input.CONSULTING)
            await transfers.warm.run_desk(call, transfer, transfers.config.warm, context, self)
            return

        def events(leg: Leg) -> DeskLegEvents:
            return DeskLegEvents(
                answered=lambda: transfers.agent_taken(call, transfer, leg, "desk agent accepted"),
                failed=lambda status, reason: transfers.agent_failed(call, transfer, leg, status, reason),
                hung_up=lambda: self.hung_up(call, leg),
                hold=lambda on: self.hold(call, leg, on),
            )

        rung = await self.ring(call, transfer, context, dialling=LegDialing("agent", transfer.target, transfer.id),
                               prepare=lambda leg: transfers.agent_ringing(call, transfer), events=events)
        if not isinstance(rung, Leg):
            status, reason, leg = rung
            if status == "call_ended":
                if not transfer.done:
                    transfers.feed(call, transfer, Input.CALLER_GONE, status, reason)
            else:
                transfers.agent_failed(call, transfer, leg, status, reason)

    async def ring(self, call: Call, transfer: Transfer, context: dict[str, str], *, dialling: Any,
                   prepare: Callable[[Leg], None], events: Callable[[Leg], DeskLegEvents],
                   ) -> Leg | tuple[FailureStatus, str, Leg | None]:
        """Ring the target's agent on a new agent leg (INVITE or warm consult); the leg,
        or (status, reason, leg or None) when nothing rang."""
        desk = self.engine.desk
        name = desk_name(transfer.target) or ""
        if desk is None or not desk.available(name):
            return "no_agent", f"no desk agent available for {name}", None
        try:
            endpoint = await open_endpoint(self.engine.config.policy.rtp_host, self.engine.pool)
        except PortPoolExhausted:
            return 503, "no media ports", None
        if transfer.done or call.state is not CallState.CONNECTED:
            endpoint.close()
            return "call_ended", "the caller hung up", None
        endpoint.dtmf_payload_type = None  # the desk leg is PCMU only (desk/audio.py)
        leg = Leg("agent", desk_peer(name), endpoint=endpoint)
        call.agent = leg
        prepare(leg)
        call.record(self.engine.now(), dialling)
        timeout = transfer.options.ring_timeout or self.transfers.config.ring_timeout
        context = {**context, "channel": getattr(call.channel, "name", "") or "",
                   "flow": getattr(getattr(call.channel, "flow", None), "name", "") or ""}
        if desk.ring(name, context, endpoint, timeout, events(leg)) is None:
            return "no_agent", f"no desk agent available for {name}", leg
        return leg

    def hung_up(self, call: Call, leg: Leg) -> None:
        self.hold(call, leg, False)
        self.engine.leg_hung_up(call, leg)

    def hold(self, call: Call, leg: Leg, on: bool) -> None:
        """The agent's hold: the caller hears the hold player (it takes the caller's
        endpoint from the bridge, which takes it back when the player stops)."""
        player = self._holds.pop(leg, None)
        if player is not None:
            player.stop()
        endpoint = call.caller.endpoint
        if on and endpoint is not None and call.state is CallState.CONNECTED and not leg.ended:
            music = getattr(self.engine.desk, "hold_music", None)
            self._holds[leg] = player = self.engine.media.hold(endpoint, music)
            call.resources.append(player)


__all__ = ["DeskTransfers"]
