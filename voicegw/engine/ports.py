"""What the engine's helpers need of the call host, as ``typing.Protocol`` ports.

The call host is :class:`voicegw.engine.b2bua.Engine`: it owns the calls, the SIP
endpoint and the media port pool. Its helpers (Transfers, WarmTransfers, the
FlowExecutor, the fallback runner, the Replaces handling) get it as a
:class:`CallHost` and never import b2bua, so the engine's modules import each other
in one direction only (b2bua -> helpers -> ports; a test in tests/test_layers.py
fails on any cycle). Each port lists what its users call, nothing more: dial and hang
up legs (``outbound``), send a request and hear its outcome, answer a request,
find and end a call's bridge, play (``render``), record (``recorded``), end a call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import numpy as np

from ..media.plane import MediaPlane
from ..media.ports import PortPool
from ..media.relay import Bridge
from ..settings import EngineConfig, TransferConfig
from ..sip.dialog_table import DialogId
from ..sip.events import Address, Event
from ..sip.message import Request, Response
from ..sip.sdp import SdpBuilder, SessionDescription
from ..transport.dns import Resolver
from .call import Call, CallInput, Leg
from .control_io import Input
from .desk_leg import AgentDesk
from .outbound import OutboundLegs
from .transfer_state import Transfer, TransferMethod, TransferOptions


class TransferPort(Protocol):
    """The host's transfers (engine/transfer.py), as the fallback runner and warm
    transfers use them: start an attempt, report on it."""

    @property
    def config(self) -> TransferConfig: ...

    def start(self, call: Call, target: str, method: TransferMethod | str = ..., *,
              trigger: str = ..., context: dict[str, str] | None = None,
              options: TransferOptions | None = None) -> Transfer: ...

    def progress(self, call: Call, transfer: Transfer, status: int) -> None: ...

    def identity(self, call: Call, transfer: Transfer, peer: Address, headers: list[tuple[str, str]]) -> str: ...

    def finish(self, call: Call, transfer: Transfer, status: Any, reason: str) -> None: ...

    async def settled(self, transfer: Transfer) -> None:
        """Return once the attempt succeeded or failed."""
        ...

    def connect_agent(self, call: Call, transfer: Transfer, leg: Leg) -> None:
        """Switch the caller's media to ``leg``; the bot's fate by the one rule."""
        ...

    def pump_refers(self, call: Call) -> None: ...


class CallHost(Protocol):
    """What a helper needs of the engine that hosts the call."""

    @property
    def config(self) -> EngineConfig: ...

    desk: AgentDesk | None
    """The agent desk, when the daemon runs one (``desk:`` targets)."""

    def leg_hung_up(self, call: Call, leg: Leg) -> None:
        """A leg without a SIP session (a desk agent) hung up."""

    @property
    def outbound(self) -> OutboundLegs:
        """Dials a leg, CANCELs, gives up on or hangs up one (engine/outbound.py)."""
        ...

    @property
    def pool(self) -> PortPool:
        """Where a new leg's RTP endpoint takes its ports (the in-process relay)."""
        ...

    @property
    def media(self) -> MediaPlane:
        """Opens legs' endpoints, bridges them, plays to them (media/plane.py)."""
        ...

    @property
    def transfers(self) -> TransferPort: ...

    @property
    def resolver(self) -> Resolver:
        """RFC 3263 lookups, cached (transport/dns.py)."""
        ...

    gateways: Any
    """The carrier gateways' health (voicegw/gateways.GatewayStates), or None."""

    def control(self, call: Call, event: Input) -> None:
        """Feed the call's controller one input; the executor carries out what it
        answers (engine/executor.py)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def now(self) -> float: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], call: Call | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the call owns (cancelled when it ends)."""
        ...

    def send_request(self, request: Request, destination: Address,
                     on_event: Callable[[Event], None], call: Call | None = None, *,
                     leg: Leg | None = None,
                     on_resent: Callable[[Request, Request], None] | None = None) -> str:
        """Send ``request``; its responses and time-out go to ``on_event`` (the
        handler is forgotten with ``call``). On a ``leg`` whose peer has ``auth``, its
        digest challenges are answered first; ``on_resent`` is told of each retry."""
        ...

    def respond(self, transaction_id: str, response: Response) -> None: ...

    def bridge(self, call: Call) -> Bridge | None:
        """The call's open media bridge, if any."""
        ...

    def end(self, call: Call, cause: CallInput, reason: str,
            caller_headers: list[tuple[str, str]] | None = None) -> None: ...

    async def render(self, text: str) -> np.ndarray:
        """Text spoken by the TTS engine, as 8 kHz samples (a beep when it fails)."""
        ...

    async def recorded(self) -> None:
        """Return once the call's records so far are on disk (bounded)."""
        ...


class ReplacesHost(CallHost, Protocol):
    """What taking over a dialog with an INVITE carrying Replaces (RFC 3891) needs
    besides: the host's own answer to a new INVITE."""

    def admission(self, invite: Request, source: Address) -> Response | None: ...

    def dialog_owner(self, dialog_id: DialogId) -> tuple[Call, Leg] | None: ...

    def answer(self, leg: Leg, offer: SessionDescription) -> Any: ...

    def contact(self, peer: Address) -> str: ...

    def sdp_builder(self, peer: Address) -> SdpBuilder: ...

    def register(self, call: Call, leg: Leg) -> None: ...

    async def run_flow(self, call: Call, at: str | None = None) -> None: ...


__all__ = ["CallHost", "ReplacesHost", "TransferPort"]
