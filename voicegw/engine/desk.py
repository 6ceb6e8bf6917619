"""INVITE-style transfers to the agent desk: the ``desk:AGENT`` / ``desk:QUEUE`` targets.

The same attempt as an INVITE to a SIP agent (engine/transfer.py ``_by_invite``), with
the desk in place of the INVITE: the caller hears ringback while the agent's page
rings, the transfer machine gets DIALLED, then CONNECTED or FAILED, and everything
after (bridge swap, BYE to the bot, fallback rules, post-agent flow) is the machine's.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..media.endpoint import open_endpoint
from ..media.player import Player, hold_player
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
        if transfer.method is not TransferMethod.INVITE:
            transfers.agent_failed(call, transfer, None, "policy",
                                   f"desk targets take invite transfers, not {transfer.method.value}")
            return
        await self.engine.recorded()  # written before acting, as every transfer
        if transfer.done or call.state is not CallState.CONNECTED:
            transfers.feed(call, transfer, Input.CALLER_GONE, "call_ended", "the call ended before the transfer left")
            return
        if not desk.available(name):
            transfers.agent_failed(call, transfer, None, "no_agent", f"no desk agent available for {name}")
            return
        try:
            endpoint = await open_endpoint(self.engine.config.policy.rtp_host, self.engine.pool)
        except PortPoolExhausted:
            transfers.agent_failed(call, transfer, None, 503, "no media ports")
            return
        if transfer.done or call.state is not CallState.CONNECTED:
            endpoint.close()
            if not transfer.done:
                transfers.feed(call, transfer, Input.CALLER_GONE, "call_ended", "the caller hung up")
            return
        endpoint.dtmf_payload_type = None  # the desk leg is PCMU only (desk/audio.py)
        leg = Leg("agent", desk_peer(name), endpoint=endpoint)
        call.agent = leg
        transfers.agent_ringing(call, transfer)
        call.record(self.engine.now(), LegDialing("agent", transfer.target, transfer.id))
        events = DeskLegEvents(
            answered=lambda: transfers.agent_taken(call, transfer, leg, "desk agent accepted"),
            failed=lambda status, reason: transfers.agent_failed(call, transfer, leg, status, reason),
            hung_up=lambda: self._hung_up(call, leg),
            hold=lambda on: self._hold(call, leg, on),
        )
        timeout = transfer.options.ring_timeout or transfers.config.ring_timeout
        context = {**context, "channel": getattr(call.channel, "name", "") or "",
                   "flow": getattr(getattr(call.channel, "flow", None), "name", "") or ""}
        if desk.ring(name, context, endpoint, timeout, events) is None:
            transfers.agent_failed(call, transfer, leg, "no_agent", f"no desk agent available for {name}")

    def _hung_up(self, call: Call, leg: Leg) -> None:
        self._hold(call, leg, False)
        self.engine.leg_hung_up(call, leg)

    def _hold(self, call: Call, leg: Leg, on: bool) -> None:
        """The agent's hold: the caller hears the hold player (it takes the caller's
        endpoint from the bridge, which takes it back when the player stops)."""
        player = self._holds.pop(leg, None)
        if player is not None:
            player.stop()
        endpoint = call.caller.endpoint
        if on and endpoint is not None and call.state is CallState.CONNECTED and not leg.ended:
            self._holds[leg] = player = hold_player(endpoint)
            call.resources.append(player)


__all__ = ["DeskTransfers"]
