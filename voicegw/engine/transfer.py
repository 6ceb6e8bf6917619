"""Transfers to a human agent (TRANSFERS.md): by INVITE (bridge), REFER or BYE.

A :class:`Transfer` is one attempt by one method to one target. It fails with a
status (the SIP code, ``"timeout"``, ``"policy"``...) that the fallback machine maps
to what happens next; a failed attempt never drops the caller.

Targets are resolved and checked before anything is sent: a target that matches no
pattern of the allow-list fails with ``policy`` and never leaves the box (toll fraud).
"""

from __future__ import annotations

import asyncio
import enum
import fnmatch
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from ..media.endpoint import open_endpoint
from ..media.player import Player, hold_player, ringback_player
from ..media.ports import PortPoolExhausted
from ..media.relay import Bridge
from ..sip.errors import SipError
from ..sip.events import RequestReceived
from ..sip.message import Request
from ..sip.uri import SipUri, parse_uri
from .call import Call, CallInput, CallState, Leg
from .outbound import FailureStatus

if TYPE_CHECKING:
    from .b2bua import Engine

log = structlog.get_logger("voicegw.transfer")


class TransferMethod(str, enum.Enum):
    INVITE = "invite"
    REFER = "refer"
    BYE = "bye"


class TransferState(str, enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class TransferConfig:
    allow: tuple[str, ...] = ()
    """Patterns (shell-style) a target must match, over the E.164 number ("+4930*")
    or the SIP URI ("sip:*@pbx.example.com"). Empty: no transfer is allowed."""
    trunk: str | None = None
    """Carrier trunk for phone numbers: a URI template with ``{number}``."""
    country_code: str = ""
    """Turns national numbers ("030 1234") into E.164 ("+49301234") when set ("49")."""
    ring_timeout: float = 30.0
    ringback: str = "ringback"
    """What the caller hears while the agent rings: ringback, hold or silence."""
    context_headers: dict[str, str] = field(default_factory=lambda: {
        "X-VG-Caller": "caller", "X-VG-Call-ID": "call_id",
    })
    """Header name -> context key (caller, call_id, bot_session, summary, transcript_url...)."""
    bye_destination_header: str = "X-Transfer-Destination"
    """On a BYE hand-back, the header that names where the upstream should route."""


@dataclass(eq=False)
class Transfer:
    id: str
    call_key: str
    method: TransferMethod
    target: str
    uri: str = ""
    trigger: str = "api"
    state: TransferState = TransferState.PENDING
    status: FailureStatus | None = None
    reason: str = ""
    started: float = 0.0
    ended: float | None = None
    player: Player | None = None
    listeners: list[Callable[[Transfer], None]] = field(default_factory=list)
    progress: list[int] = field(default_factory=list)
    """Provisional statuses seen (for the bot's NOTIFYs and the records)."""

    @property
    def done(self) -> bool:
        return self.state is not TransferState.PENDING


_ids = itertools.count(1)
_NUMBER_RE = re.compile(r"^\+?[0-9][0-9 ().\-]*$")


def normalise_number(text: str, country_code: str) -> str | None:
    """A dialled number as E.164 (``+CC...``), or None when it is not a number."""
    if not _NUMBER_RE.match(text.strip()):
        return None
    digits = re.sub(r"[ ().\-]", "", text.strip())
    if digits.startswith("+"):
        return digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    if digits.startswith("0") and country_code:
        return f"+{country_code}{digits[1:]}"
    return digits


class Transfers:
    """The engine's transfer methods. One instance per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def config(self) -> TransferConfig:
        return self.engine.config.transfer

    # ------------------------------------------------------------------ entry point
    def start(self, call: Call, target: str, method: TransferMethod | str = TransferMethod.INVITE, *,
              trigger: str = "api", context: dict[str, str] | None = None) -> Transfer:
        """Start a transfer; its outcome arrives through ``transfer.listeners``."""
        transfer = Transfer(f"t{next(_ids)}", call.key, TransferMethod(method), target,
                            trigger=trigger, started=self.engine.now())
        call.transfer = transfer
        call.record(transfer.started, "transfer.started", transfer_id=transfer.id,
                    method=transfer.method.value, target=target, trigger=trigger)
        log.info("transfer.started", call_id=call.id, transfer_id=transfer.id, method=transfer.method.value, target=target)
        if call.state is not CallState.CONNECTED:
            self._finish(call, transfer, "call_state", "the call is not connected")
            return transfer
        uri, why = self.resolve(target)
        if uri is None:
            self._finish(call, transfer, "policy", why)
            return transfer
        transfer.uri = str(uri)
        headers = self.context_headers(call, context or {})
        if transfer.method is TransferMethod.INVITE:
            self.engine.spawn(self._by_invite(call, transfer, uri, headers), call)
        elif transfer.method is TransferMethod.BYE:
            self._by_bye(call, transfer, uri, headers)
        else:
            self._finish(call, transfer, 501, "REFER transfers are not available yet")
        return transfer

    def resolve(self, target: str) -> tuple[SipUri | None, str]:
        """The URI to dial and, when refused, why. Policy first: nothing unlisted leaves."""
        number = normalise_number(target, self.config.country_code)
        if number is not None:
            if not any(fnmatch.fnmatchcase(number, p) for p in self.config.allow):
                return None, f"{number} is not on the allow-list"
            if not self.config.trunk:
                return None, "no trunk is configured for phone numbers"
            target = self.config.trunk.format(number=number)
        elif not any(fnmatch.fnmatchcase(target, p) for p in self.config.allow):
            return None, f"{target} is not on the allow-list"
        try:
            uri = parse_uri(target)
        except SipError as error:
            return None, f"bad target URI: {error.reason}"
        if not isinstance(uri, SipUri) or uri.headers:
            # embedded headers in a target could smuggle Route/Replaces: refused
            return None, "target must be a sip: URI without headers"
        return uri, ""

    def context_headers(self, call: Call, extra: dict[str, str]) -> list[tuple[str, str]]:
        invite = call.caller.invite
        values = {
            "caller": invite.from_.uri.user if invite is not None and isinstance(invite.from_.uri, SipUri) else "",
            "call_id": call.id,
            **extra,
        }
        headers = []
        for name, key in self.config.context_headers.items():
            value = values.get(key)
            if value:
                headers.append((name, _header_safe(str(value))))
        return headers

    # ------------------------------------------------------------------ INVITE (bridge)
    async def _by_invite(self, call: Call, transfer: Transfer, uri: SipUri, headers: list[tuple[str, str]]) -> None:
        from .b2bua import peer_of

        engine = self.engine
        caller = call.caller
        assert caller.endpoint is not None
        try:
            endpoint = await open_endpoint(engine.config.host, engine.pool)
        except PortPoolExhausted:
            self._finish(call, transfer, 503, "no media ports")
            return
        if call.state is not CallState.CONNECTED:
            endpoint.close()
            return
        if transfer.trigger == "flow":
            self._stop_prompts(call)  # the flow waits for the outcome
        else:
            self._stop_flow(call)
        transfer.player = self._waiting_audio(caller)
        leg = Leg("agent", peer_of(uri), endpoint=endpoint)
        call.agent = leg
        user = caller.invite.from_.uri.user if caller.invite and isinstance(caller.invite.from_.uri, SipUri) else None
        leg.dialing = engine.outbound.dial(
            leg, uri, caller_user=user or "voicegw", max_forwards=70,
            answer_timeout=self.config.ring_timeout, extra_headers=headers,
            on_progress=lambda response: self._progress(call, transfer, response.status),
            on_answer=lambda response, media: self._agent_answered(call, transfer, leg, media),
            on_failure=lambda status, reason: self._agent_failed(call, transfer, leg, status, reason),
        )
        call.record(engine.now(), "leg.agent.dialing", uri=str(uri), transfer_id=transfer.id)

    def _waiting_audio(self, caller: Leg) -> Player | None:
        assert caller.endpoint is not None
        if self.config.ringback == "ringback":
            return ringback_player(caller.endpoint)
        if self.config.ringback == "hold":
            return hold_player(caller.endpoint)
        return None

    def _progress(self, call: Call, transfer: Transfer, status: int) -> None:
        transfer.progress.append(status)
        call.record(self.engine.now(), "transfer.progress", transfer_id=transfer.id, status=status)
        self._notify(transfer)

    def _agent_answered(self, call: Call, transfer: Transfer, leg: Leg, media: Any) -> None:
        from .b2bua import apply_media

        engine = self.engine
        if transfer.player is not None:
            transfer.player.stop()
        assert leg.endpoint is not None and call.caller.endpoint is not None
        apply_media(leg.endpoint, media)
        bridge = engine.bridge(call)
        if bridge is not None:
            old = bridge.replace_b(leg.endpoint)  # the caller hears one continuous stream
            if call.bot is not None and not call.bot.ended:
                engine.outbound.hang_up(call.bot)
                call.record(engine.now(), "leg.bot.bye_sent")
            old.close()
        else:
            call.resources.append(Bridge(call.caller.endpoint, leg.endpoint))
        self._finish(call, transfer, 200, "agent answered")

    def _agent_failed(self, call: Call, transfer: Transfer, leg: Leg, status: FailureStatus, reason: str) -> None:
        if transfer.player is not None:
            transfer.player.stop()  # the bot's audio (or silence) comes back
        if leg.endpoint is not None:
            leg.endpoint.close()
        leg.ended = True
        if call.agent is leg:
            call.agent = None
        self._finish(call, transfer, status, reason)

    # ------------------------------------------------------------------ BYE (hand back)
    def _by_bye(self, call: Call, transfer: Transfer, uri: SipUri, headers: list[tuple[str, str]]) -> None:
        """BYE on leg A naming the destination: the upstream SBC routes on it. voicegw
        is out of the call at once and no feedback is possible (TRANSFERS.md)."""
        caller_headers = [(self.config.bye_destination_header, f"<{uri}>"), *headers]
        self._finish(call, transfer, 200, "handed back by BYE")
        self.engine.end(call, CallInput.HUNG_UP, "transferred by BYE", caller_headers=caller_headers)

    # ------------------------------------------------------------------ REFER / NOTIFY
    def handles(self, call: Call, leg: Leg, request: Request) -> bool:
        """Whether an in-dialog REFER/NOTIFY is ours to take (none yet: answered 501)."""
        return False

    def receive(self, call: Call, leg: Leg, event: RequestReceived) -> None:
        raise AssertionError("handles() said no")

    # ------------------------------------------------------------------ outcome
    @staticmethod
    def _stop_prompts(call: Call) -> None:
        for resource in call.resources:
            if isinstance(resource, Player):
                resource.stop()

    def _stop_flow(self, call: Call) -> None:
        """An operator's transfer takes the call from the flow: its prompt stops and
        its task ends."""
        self._stop_prompts(call)
        if call.flow_task is not None and call.flow_task is not asyncio.current_task():
            call.flow_task.cancel()

    def _finish(self, call: Call, transfer: Transfer, status: FailureStatus, reason: str) -> None:
        if transfer.done:
            return
        transfer.status = status
        transfer.reason = reason
        transfer.ended = self.engine.now()
        ok = isinstance(status, int) and 200 <= status < 300
        transfer.state = TransferState.SUCCEEDED if ok else TransferState.FAILED
        event = "transfer.succeeded" if ok else "transfer.failed"
        call.record(transfer.ended, event, transfer_id=transfer.id, status=status, reason=reason)
        log.info(event, call_id=call.id, transfer_id=transfer.id, method=transfer.method.value,
                 status=status, reason=reason)
        self._notify(transfer)

    @staticmethod
    def _notify(transfer: Transfer) -> None:
        for listener in list(transfer.listeners):
            listener(transfer)

    def call_ended(self, call: Call) -> None:
        transfer = call.transfer
        if transfer is not None and not transfer.done:
            self._finish(call, transfer, "call_ended", "the caller hung up")


def _header_safe(value: str) -> str:
    return re.sub(r"[\r\n\x00]", " ", value)[:256]
