"""Transfers to a human agent (TRANSFERS.md): by INVITE (bridge), REFER or BYE.

A :class:`Transfer` is one attempt by one method to one target. It fails with a
status (the SIP code, ``"timeout"``, ``"policy"``...) that the fallback machine maps
to what happens next; a failed attempt never drops the caller.

Targets are resolved and checked before anything is sent: a target that matches no
pattern of the allow-list fails with ``policy`` and never leaves the box (toll fraud).

What each outcome means (and when the bot gets its BYE) is decided by the attempt's
machine, engine/transfer_machine.py, fed through the call's controller
(:meth:`Transfers.feed`): its actions come back as commands that the executor carries
out by this class's TransferEffects methods (engine/effects.py), the one path its
outcome takes (the record, the bot's NOTIFY, the fallback runner waiting in
:meth:`Transfers.settled`). Legs are dialled by
engine/dial.py; timers go through engine/executor.py.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import re
from collections.abc import Callable
from typing import Any

from structlog.contextvars import bound_contextvars

from ..flow.fallback_policy import Attempt
from ..media.mixer import TapMixer
from ..media.player import Player
from ..media.relay import Bridge
from ..numbers import normalise_number
from ..settings import LegPolicy, TransferConfig
from ..sip.build import reason_phrase
from ..sip.caller_id import outgoing_identity
from ..sip.errors import SipError
from ..sip.events import Address, RequestReceived, TransactionTimedOut
from ..sip.locate import literal_hop
from ..sip.message import Request, Response
from ..sip.offer_answer import NegotiatedMedia
from ..sip.refer import ReferFailed, ReferSubscriptions
from ..sip.referee import IncomingRefer
from ..sip.uri import SipUri, parse_uri
from .bot_context import context_from_bot
from .call import Call, CallInput, CallState, Leg
from .challenged import challenge_reason
from .control_io import FlowStopped, ReferReported, RefersDue, ReferSent, TransferFed
from .desk import DeskTransfers
from .desk_leg import desk_name
from .dial import LegInvite, NotDialled, dial_leg
from .events import (
    LegByeSent,
    LegDialing,
    LegEarlyMedia,
    LegListening,
    TransferAccepted,
    TransferFailed,
    TransferProgress,
    TransferRefused,
    TransferStarted,
    TransferSucceeded,
)
from .fallback_runner import bot_policy, transfer_with_fallback
from .outbound import FailureStatus, apply_media, peer_of
from .ports import CallHost
from .transfer_machine import How, Input, Moment, Step, TransferMachine, bot_steps
from .transfer_state import Transfer, TransferMethod, TransferOptions, TransferState
from .warm import WarmTransfers

_ids = itertools.count(1)

class Transfers:
    """The engine's transfer methods. One instance per engine."""

    def __init__(self, engine: CallHost) -> None:
        self.engine = engine
        self.warm = WarmTransfers(engine)
        self.desk = DeskTransfers(engine, self)
        self.context_source: Callable[[Call], dict[str, str]] | None = None
        """The call's context from outside the engine (the API's transcript link and
        summary), for every transfer: flow, bot and API ones alike."""

    @property
    def config(self) -> TransferConfig:
        return self.engine.config.transfer

    # ------------------------------------------------------------------ entry point
    def start(self, call: Call, target: str, method: TransferMethod | str = TransferMethod.INVITE, *,
              trigger: str = "api", context: dict[str, str] | None = None,
              options: TransferOptions | None = None) -> Transfer:
        """Start a transfer; await ``settled(transfer)`` for its outcome.
        ``options`` are a flow node's own settings (headers, ring timeout...); a bot's
        REFER and an API transfer, which have none, take the call's channel's."""
        if options is None:
            options = channel_options(call)
        transfer = Transfer(f"{self.engine.config.transfer_id_prefix}t{next(_ids)}", call.key, TransferMethod(method), target,
                            trigger=trigger, started=self.engine.now(), options=options or TransferOptions(),
                            machine=TransferMachine(asked_by_bot=trigger == "bot"))
        with bound_contextvars(call_id=call.id, transfer_id=transfer.id):  # tasks it spawns inherit
            return self._start(call, transfer, context)

    def _start(self, call: Call, transfer: Transfer, context: dict[str, str] | None) -> Transfer:
        outside = self.context_source(call) if self.context_source is not None else {}
        context = {**outside, **call.context, **(context or {})}
        target, trigger = transfer.target, transfer.trigger
        call.transfer = transfer
        call.record(transfer.started, TransferStarted(transfer.id, transfer.method.value, target, trigger))
        if call.state is not CallState.CONNECTED:
            self.feed(call, transfer, Input.CALLER_GONE, "call_state", "the call is not connected")
            return transfer
        if desk_name(target) is not None:
            return self._to_desk(call, transfer, context)
        uri, why = self.resolve(target)
        if uri is None:
            self.feed(call, transfer, Input.FAILED, "policy", why)
            return transfer
        transfer.uri = str(uri)
        transfer.legs = self.legs_for(target, transfer.uri)
        mapping = transfer.options.context_headers
        if mapping is None:  # a bot's or the API's transfer to an agent profile's URI
            mapping = self.config.agent_context_headers.get(transfer.uri)
        headers = self.context_headers(call, context or {}, mapping)
        headers += [(name, _header_safe(value)) for name, value in transfer.options.headers]
        self.engine.spawn(self._carry_out(call, transfer, uri, headers, context), call)
        return transfer

    def _to_desk(self, call: Call, transfer: Transfer, context: dict[str, str] | None) -> Transfer:
        """A ``desk:`` target (engine/desk.py): never leaves the box, so no allow-list."""
        values = {**self._context_values(call), **(context or {})}
        self.engine.spawn(self.desk.run(call, transfer, values), call)
        return transfer

    async def _carry_out(self, call: Call, transfer: Transfer, uri: SipUri,
                         headers: list[tuple[str, str]], context: dict[str, str] | None) -> None:
        """The attempt's record is on disk before anything leaves (DESIGN: written
        before acting, so a crash never hides a transfer that was tried)."""
        await self.engine.recorded()
        if transfer.done or call.state is not CallState.CONNECTED:
            self.feed(call, transfer, Input.CALLER_GONE, "call_ended", "the call ended before the transfer left")
            return
        if transfer.method is TransferMethod.INVITE:
            await self._by_invite(call, transfer, uri, headers)
        elif transfer.method is TransferMethod.BYE:
            self._by_bye(call, transfer, uri, headers)
        elif transfer.method is TransferMethod.WARM:
            self.feed(call, transfer, Input.CONSULTING)
            await self.warm.run(call, transfer, uri, headers, self.config.warm,
                                {**self._context_values(call), **(context or {})})
        else:
            self._by_refer(call, transfer, uri, headers)

    def legs_for(self, target: str, uri: str) -> LegPolicy:
        """How a leg to ``uri`` is placed: as the agent profile with that URI says, as
        the trunk's carrier says for a phone number; else the defaults."""
        if normalise_number(target, self.config.country_code) is not None:
            return self.config.trunk_legs
        return self.config.legs.get(uri) or LegPolicy()

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

    @staticmethod
    def _context_values(call: Call) -> dict[str, str]:
        invite = call.caller.invite
        caller = invite.from_.uri.user if invite is not None and isinstance(invite.from_.uri, SipUri) else ""
        return {"caller": caller or "", "called": _called(invite), "call_id": call.id}

    def context_headers(self, call: Call, extra: dict[str, str],
                        mapping: tuple[tuple[str, str], ...] | None = None) -> list[tuple[str, str]]:
        values = {**self._context_values(call), **extra}
        headers = []
        for name, key in (mapping if mapping is not None else tuple(self.config.context_headers.items())):
            value = values.get(key)
            if not value:
                continue
            if name.lower() == "user-to-user":
                # RFC 7433 4.1: the UUI data hex-encoded, its encoding named
                headers.append((name, f"{str(value).encode('utf-8').hex()};encoding=hex"))
            else:
                headers.append((name, _header_safe(str(value))))
        return headers

    def identity(self, call: Call, transfer: Transfer, peer: Address, headers: list[tuple[str, str]]) -> str:
        """The From of an agent leg to ``peer``, per the target profile's caller ID
        (or the default carrier's); adds its identity headers to ``headers``."""
        policy = transfer.options.caller_id or self.config.caller_id
        host = self.engine.outbound.addresses.advertised(peer.host).sip_host
        identity = outgoing_identity(policy, call.caller.invite, host=host)
        headers.extend(identity.headers)
        return identity.from_

    # ------------------------------------------------------------------ INVITE (bridge)
    async def _by_invite(self, call: Call, transfer: Transfer, uri: SipUri, headers: list[tuple[str, str]]) -> None:
        caller = call.caller
        assert caller.endpoint is not None
        dialled: list[Leg] = []  # the callbacks' leg, even if call.agent moves on

        def prepare(leg: Leg) -> None:
            dialled.append(leg)
            self.agent_ringing(call, transfer)

        from_ = self.identity(call, transfer, peer_of(uri, transfer.legs.transport), headers)
        leg = await dial_leg(
            self.engine, call, "agent", uri,
            LegInvite(answer_timeout=transfer.options.ring_timeout or self.config.ring_timeout,
                      from_=from_, headers=tuple(headers), policy=transfer.legs),
            while_in=CallState.CONNECTED, prepare=prepare, dialling=LegDialing("agent", str(uri), transfer.id),
            on_progress=lambda response, early: self._agent_progress(call, transfer, dialled[0], response, early),
            on_answer=lambda response, media: self._agent_answered(call, transfer, dialled[0], media),
            on_failure=lambda status, reason: self._agent_failed(call, transfer, dialled[0], status, reason),
        )
        if leg is NotDialled.NO_PORTS:
            self.feed(call, transfer, Input.FAILED, 503, "no media ports")

    def agent_ringing(self, call: Call, transfer: Transfer) -> None:
        """An agent leg is being rung (SIP or desk): the caller hears ringback or hold."""
        assert call.caller.endpoint is not None
        self.feed(call, transfer, Input.DIALLED)
        if transfer.trigger == "flow":
            self._stop_prompts(call)  # the flow waits for the outcome
        else:
            self._stop_flow(call)
        transfer.player = self._waiting_audio(call.caller)

    def agent_failed(self, call: Call, transfer: Transfer, leg: Leg | None, status: FailureStatus,
                     reason: str) -> None:
        """The agent leg was not taken (a desk agent declined, or nobody was there)."""
        self.feed(call, transfer, Input.FAILED, status, reason, leg=leg)

    def agent_taken(self, call: Call, transfer: Transfer, leg: Leg, reason: str) -> None:
        self.feed(call, transfer, Input.CONNECTED, 200, reason, leg=leg)

    def _waiting_audio(self, caller: Leg) -> Player | None:
        assert caller.endpoint is not None
        if self.config.ringback == "ringback":
            return self.engine.media.ringback(caller.endpoint)
        if self.config.ringback == "hold":
            return self.engine.media.hold(caller.endpoint)
        return None

    def progress(self, call: Call, transfer: Transfer, status: int) -> None:
        self.feed(call, transfer, Input.PROGRESS, status)

    def _agent_progress(self, call: Call, transfer: Transfer, leg: Leg, response: Response,
                        early: NegotiatedMedia | None) -> None:
        """A 1xx from the agent leg. With SDP (a 183's early answer) and the profile's
        ``early_media: relay``, what the far side plays (a carrier's announcement, its
        own ringback) reaches the caller instead of ours; a 1xx without SDP changes
        nothing (RFC 3960 3: local ringback until early media comes)."""
        if early is not None and transfer.legs.early_media == "relay":
            self._early_media(call, transfer, leg, early)
        self.progress(call, transfer, response.status)

    def _early_media(self, call: Call, transfer: Transfer, leg: Leg, media: NegotiatedMedia) -> None:
        caller, endpoint = call.caller.endpoint, leg.endpoint
        if (transfer.done or call.state is not CallState.CONNECTED or caller is None or endpoint is None
                or endpoint.closed or leg.ended):
            return
        address = (media.remote_address, media.remote_port)
        if transfer.early is not None:
            if address != transfer.early_address:
                # another fork's 183 (or new SDP from the same one): the last one wins
                apply_media(endpoint, media, repoint=True)
                transfer.early_address = address
            return
        apply_media(endpoint, media)
        early = self.engine.media.early_media(endpoint, caller)
        if early is None:
            return  # this media plane relays none: the caller keeps our ringback
        transfer.early, transfer.early_address = early, address
        if transfer.player is not None:
            transfer.player.stop()  # already displaced by the relay as the caller's writer
        call.record(self.engine.now(), LegEarlyMedia("agent"))

    def _agent_answered(self, call: Call, transfer: Transfer, leg: Leg, media: Any) -> None:
        assert leg.endpoint is not None
        # the 2xx's SDP is the answer (RFC 3264 4; RFC 3960 3): a media address other
        # than the early media's re-points the leg before the bridge takes it
        moved = transfer.early_address is not None and (media.remote_address, media.remote_port) != transfer.early_address
        apply_media(leg.endpoint, media, repoint=moved)
        self.feed(call, transfer, Input.CONNECTED, 200, "agent answered", leg=leg)

    def connect_agent(self, call: Call, transfer: Transfer, leg: Leg) -> None:
        """The caller's media switches to ``leg`` (one continuous stream: the bridge
        keeps the caller's side); the bot's fate comes from BOT_TABLE."""
        assert leg.endpoint is not None and call.caller.endpoint is not None
        bridge = self.engine.bridge(call)
        if bridge is None:
            call.resources.append(self.engine.media.bridge(call.caller.endpoint, leg.endpoint))
            return
        old = bridge.replace_b(leg.endpoint)
        bot = call.bot
        alive = bot is not None and bot.up
        listens = (self.config.bot_listens and isinstance(bridge, Bridge) and transfer.method is TransferMethod.INVITE and alive
                   and bot is not None and bot.endpoint is old)
        steps = bot_steps(How.BRIDGED, Moment.CONNECTED, transfer.trigger == "bot", listens)
        if Step.BOT_LISTENS in steps:
            self._bot_listens(call, bridge, old)
            return
        if Step.BYE_BOT in steps and bot is not None and alive:
            self.engine.outbound.hang_up(bot)
            call.record(self.engine.now(), LegByeSent("bot"))
        old.close()

    def _bot_listens(self, call: Call, bridge: Bridge, bot_endpoint: Any) -> None:
        """The bot stays, muted: it hears caller and agent mixed into one stream (a
        player pulls the tap), and what it sends goes nowhere (the unbridged endpoint
        drops it)."""
        mixer = TapMixer()
        bridge.set_tap(mixer)
        call.resources.append(Player(bot_endpoint, mixer).start())
        call.record(self.engine.now(), LegListening("bot"))

    def bot_left(self, call: Call) -> None:
        """A listening bot hung up: stop feeding it."""
        bridge = self.engine.bridge(call)
        if bridge is not None:
            bridge.set_tap(None)
        bot = call.bot
        for resource in call.resources:
            if isinstance(resource, Player) and bot is not None and resource.endpoint is bot.endpoint:
                resource.stop()

    def _agent_failed(self, call: Call, transfer: Transfer, leg: Leg, status: FailureStatus, reason: str) -> None:
        self.feed(call, transfer, Input.FAILED, status, reason, leg=leg)

    # ------------------------------------------------------------------ BYE (hand back)
    def _by_bye(self, call: Call, transfer: Transfer, uri: SipUri, headers: list[tuple[str, str]]) -> None:
        """BYE on leg A naming the destination: the upstream SBC routes on it. voicegw
        is out of the call at once and no feedback is possible (TRANSFERS.md)."""
        destination = transfer.options.destination or f"<{uri}>"
        caller_headers = [(self.config.bye_destination_header, destination), *headers]
        self.feed(call, transfer, Input.CONNECTED, 200, "handed back by BYE", headers=caller_headers)

    # ------------------------------------------------------------------ REFER (referrer)
    def _by_refer(self, call: Call, transfer: Transfer, uri: SipUri, headers: list[tuple[str, str]]) -> None:
        """REFER on the caller's leg (RFC 3515): the carrier connects the caller to the
        target; NOTIFYs with sipfrag bodies report progress; on a 2xx sipfrag voicegw
        leaves (BYE A and B), on a failure both legs stay for the fallback."""
        leg = call.caller
        assert leg.dialog is not None
        engine = self.engine
        if call.refers is None:
            call.refers = ReferSubscriptions(leg.dialog, response_timeout=self.config.refer_timeout,
                                             notify_timeout=self.config.notify_timeout)
        # headers the carrier should put in its INVITE go into the Refer-To URI
        # (RFC 3261 19.1.5); User-to-User travels there by default (RFC 7434 4.2)
        embed = {name.lower() for name in self.config.refer_embedded_headers}
        embedded = [(n, v) for n, v in headers if n.lower() in embed]
        plain = [(n, v) for n, v in headers if n.lower() not in embed]
        request, hop, refer = call.refers.refer(uri, engine.now(), extra_headers=plain,
                                                embedded_headers=embedded,
                                                refer_sub=self.config.refer_sub)
        transfer.refer_id = refer.refer_id
        engine.control(call, ReferSent(refer.refer_id, transfer, transfer.machine))

        def resent(old: Request, again: Request) -> None:  # a challenge answered (22.2)
            if call.refers is not None:
                call.refers.resent(old.cseq.seq, again.cseq.seq)
            if transfer.refer_id == old.cseq.seq:
                transfer.refer_id = again.cseq.seq
                engine.control(call, ReferSent(again.cseq.seq, transfer, transfer.machine))

        engine.send_request(request, literal_hop(hop, leg.peer), lambda event: self._refer_response(call, event), call,
                            leg=leg, on_resent=resent)
        self.feed(call, transfer, Input.REFERRED)
        self.pump_refers(call)

    def _refer_response(self, call: Call, event: Any) -> None:
        if call.refers is None:
            return
        now = self.engine.now()
        if isinstance(event, TransactionTimedOut):
            for refer in call.refers:
                if refer.live and not refer.finished:
                    refer.transaction_timed_out(now)
        else:
            call.refers.receive_response(event.response, now)
        self.pump_refers(call)

    def pump_refers(self, call: Call) -> None:
        """What our REFER subscriptions (sip/refer.py) report, handed to the call's
        controller as inputs (``ReferReported``, then their next timeout as
        ``RefersDue``): it decides what each means to the transfer or warm transfer
        that sent the REFER (engine/controller.py refer_commands)."""
        refers = call.refers
        if refers is None:
            return
        now = self.engine.now()
        while (event := refers.next_event()) is not None:
            # a 401/407 that ended the REFER: why, from the caller leg's digest answers
            challenge = (challenge_reason(call.caller, event.status)
                         if isinstance(event, ReferFailed) and event.status in (401, 407) else "")
            self.engine.control(call, ReferReported(event, now, challenge))
        if call.state is not CallState.ENDED:  # the end cancelled every timer of the call
            self.engine.control(call, RefersDue(refers.get_timer()))

    def tick_refers(self, call: Call, now: float) -> None:
        """The REFER timer the controller armed fired (``TickRefers``)."""
        if call.refers is not None:
            call.refers.handle_timer(now)
            self.pump_refers(call)

    # ------------------------------------------------------------------ REFER from the bot
    def handles(self, call: Call, leg: Leg, request: Request) -> bool:
        """In-dialog REFER/NOTIFY this module takes: NOTIFYs for our REFERs on the
        caller's leg, and REFERs from the bot (RFC 3515: the bot asks to be replaced)."""
        if request.method == "NOTIFY":
            return leg is call.caller and call.refers is not None
        return request.method == "REFER" and leg is call.bot

    def receive(self, call: Call, leg: Leg, event: RequestReceived) -> None:
        engine = self.engine
        request = event.request
        assert leg.dialog is not None
        if request.method == "NOTIFY":
            engine.respond(event.transaction_id, call.refers.receive_notify(request, engine.now()))
            self.pump_refers(call)
            return
        try:
            incoming = IncomingRefer.receive(request, leg.dialog)
        except SipError as error:
            engine.respond(event.transaction_id, leg.dialog.respond(request, error.status, reason_phrase(error.status, error.reason)))
            return
        if call.bot_refer is not None and not call.bot_refer.subscription_over or (
            call.transfer is not None and not call.transfer.done
        ):
            engine.respond(event.transaction_id, incoming.reject(491, "Request Pending (a transfer is under way)"))
            return
        target = str(incoming.refer.target)
        if self.resolve(target)[0] is None:
            # toll fraud guard: a REFER off the allow-list never leaves the box
            engine.respond(event.transaction_id, incoming.reject(403, "Forbidden (transfer target not allowed)"))
            call.record(engine.now(), TransferRefused(target, "policy"))
            return
        response, notify = incoming.accept(engine.now())
        engine.respond(event.transaction_id, response)
        call.bot_refer = incoming
        self._send_notify(call, leg, incoming, notify)
        # the bot's UUI and X-headers, on the REFER or in its Refer-To, as context keys
        context = context_from_bot(request.headers, incoming.refer.embedded_headers)
        engine.spawn(self._for_the_bot(call, leg, incoming, target, context), call)

    async def _for_the_bot(self, call: Call, leg: Leg, incoming: IncomingRefer, target: str,
                           context: dict[str, str]) -> None:
        """Carry out the bot's REFER with the configured methods in order (e.g. REFER to
        the carrier, then INVITE if that fails), each failure through the fallback
        machine; the bot hears the progress of each attempt and the final outcome."""
        channel = call.channel.transfer if call.channel is not None else None
        methods = (channel.methods if channel is not None else ()) or self.config.bot_refer_methods or (
            self.config.bot_refer_method,)
        policy = self.config.bot_fallback or bot_policy(len(methods), self.config.retry_prompt)
        # each attempt's progress reaches the bot as it comes (the machine's TELL_BOT);
        # a final at once only when the call is ending (the bot must hear it before its
        # BYE), otherwise here, once the fallback is done
        outcome = await transfer_with_fallback(
            self.engine, call, [Attempt(m, target) for m in methods], policy, trigger="bot", context=context)
        last = outcome.transfer
        if last is not None and not incoming.subscription_over:
            self._report_to_bot(call, leg, incoming, last)

    def _report_to_bot(self, call: Call, leg: Leg, incoming: IncomingRefer, transfer: Transfer) -> None:
        """NOTIFY the bot with the real progress of the new leg (100, 180, final)."""
        if not leg.up:  # the bot hung up: its BYE ended the subscription with the dialog
            return
        now = self.engine.now()
        if transfer.done:
            status = transfer.status if isinstance(transfer.status, int) else 408
            reason = transfer.reason or None
            if transfer.state is TransferState.SUCCEEDED:
                status, reason = 200, None  # the sipfrag says "SIP/2.0 200 OK"
            self._send_notify(call, leg, incoming, incoming.notify(status, now, reason))
        elif transfer.progress:
            self._send_notify(call, leg, incoming, incoming.notify(transfer.progress[-1], now))

    def _send_notify(self, call: Call, leg: Leg, incoming: IncomingRefer, notify: Any) -> None:
        if notify is None:
            self._bot_refer_settled(call, leg, incoming)
            return
        request, hop = notify

        def answered(event: Any) -> None:
            if isinstance(event, TransactionTimedOut):
                incoming.notify_timed_out()
            else:
                incoming.receive_notify_response(event.response)
            self._bot_refer_settled(call, leg, incoming)

        self.engine.send_request(request, literal_hop(hop, leg.peer), answered, call, leg=leg,
                                 on_resent=lambda old, again: incoming.resent(old.cseq.seq, again.cseq.seq))

    def _bot_refer_settled(self, call: Call, leg: Leg, incoming: IncomingRefer) -> None:
        """After the final NOTIFY is answered, a successful transfer lets the bot go."""
        transfer = call.transfer
        if incoming.subscription_over and transfer is not None and leg.up:
            self.feed(call, transfer, Input.BOT_TOLD)

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
        self.engine.control(call, FlowStopped())  # a bot node of it no longer waits
        if call.flow_task is not None and call.flow_task is not asyncio.current_task():
            call.flow_task.cancel()

    def finish(self, call: Call, transfer: Transfer, status: FailureStatus, reason: str) -> None:
        """An outcome reported from outside the machine's own paths (a warm
        transfer's consult machine, engine/warm.py)."""
        if isinstance(status, int) and 200 <= status < 300:
            self.feed(call, transfer, Input.CONNECTED, status, reason)
        elif call.state is CallState.ENDED:
            self.feed(call, transfer, Input.CALLER_GONE, status, reason)
        else:
            self.feed(call, transfer, Input.FAILED, status, reason)

    async def settled(self, transfer: Transfer) -> None:
        """Return once the attempt succeeded or failed."""
        if transfer.done:
            return
        if transfer.settled is None:
            transfer.settled = self.engine.loop.create_future()
        await transfer.settled

    # ------------------------------------------------------------------ the machine's actions
    def feed(self, call: Call, transfer: Transfer, event: Input, status: FailureStatus | None = None,
             reason: str = "", *, leg: Leg | None = None, headers: list[tuple[str, str]] | None = None,
             subscription: Any = None) -> None:
        """Feed the attempt's machine one input, through the call's controller: it
        answers commands (engine/control_io.py) that the executor carries out by the
        methods below (the TransferEffects port, engine/effects.py)."""
        self.engine.control(call, TransferFed(transfer, transfer.machine, event, status, reason, leg,
                                              None if headers is None else tuple(headers), subscription))

    def record_progress(self, call: Call, transfer: Transfer, status: FailureStatus | None) -> None:
        assert isinstance(status, int)
        transfer.progress.append(status)
        call.record(self.engine.now(), TransferProgress(transfer.id, status))

    def record_accepted(self, call: Call, transfer: Transfer, status: FailureStatus | None, subscription: Any) -> None:
        call.record(self.engine.now(), TransferAccepted(transfer.id, status, subscription))

    def notify_bot(self, call: Call, transfer: Transfer) -> None:
        bot, incoming = call.bot, call.bot_refer
        if bot is not None and incoming is not None:
            self._report_to_bot(call, bot, incoming, transfer)

    def stop_play(self, call: Call, transfer: Transfer) -> None:
        if transfer.player is not None:
            transfer.player.stop()  # the bot's audio (or silence) comes back
        _end_early(transfer)

    def swap_bridge(self, call: Call, transfer: Transfer, leg: Leg) -> None:
        self.connect_agent(call, transfer, leg)

    def drop_leg(self, call: Call, transfer: Transfer, leg: Leg | None) -> None:
        if leg is None:
            return
        if leg.endpoint is not None:
            leg.endpoint.close()  # its session failed already; a desk leg ends with its media
        if call.agent is leg:
            call.agent = None

    def hand_back(self, call: Call, transfer: Transfer, headers: tuple[tuple[str, str], ...] | None) -> None:
        self.engine.end(call, CallInput.HUNG_UP, "transferred by BYE",
                        caller_headers=None if headers is None else list(headers))

    def leave(self, call: Call, transfer: Transfer) -> None:
        # a bot that asked for it hears the outcome (its final NOTIFY answered)
        # before its BYE, so it never sees a 481 (RFC 5589)
        bot_refer = call.bot_refer
        waiting = transfer.trigger == "bot" and bot_refer is not None and not bot_refer.subscription_over
        self._bot_steps(call, bot_steps(How.LEFT, Moment.CONNECTED, waiting, False), "transferred by REFER")

    def release_bot(self, call: Call, transfer: Transfer) -> None:
        listens = self.config.bot_listens and transfer.method is TransferMethod.INVITE
        how = How.LEFT if transfer.method is TransferMethod.REFER else How.BRIDGED
        self._bot_steps(call, bot_steps(how, Moment.BOT_TOLD, True, listens), "transferred by REFER")

    def _bot_steps(self, call: Call, steps: tuple[Step, ...], reason: str) -> None:
        for step in steps:
            if step is Step.BYE_BOT and call.bot is not None and call.bot.up:
                self.engine.outbound.hang_up(call.bot)
                call.record(self.engine.now(), LegByeSent("bot"))
            elif step is Step.BYE_CALLER:
                self.engine.outbound.hang_up(call.caller)
            elif step is Step.END_CALL:
                self.engine.end(call, CallInput.HUNG_UP, reason)

    def settle(self, call: Call, transfer: Transfer, succeeded: bool, status: FailureStatus, reason: str) -> None:
        """The attempt is over: its outcome on the attempt and in the record, and
        whoever awaits :meth:`settled` told."""
        transfer.status = status
        transfer.reason = reason
        transfer.ended = self.engine.now()
        outcome: TransferSucceeded | TransferFailed
        if succeeded:
            outcome = TransferSucceeded(transfer.id, status, reason)  # type: ignore[arg-type]
        else:
            outcome = TransferFailed(transfer.id, status, reason)
        call.record(transfer.ended, outcome)
        waiter, transfer.settled = transfer.settled, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def call_ended(self, call: Call) -> None:
        self.warm.call_ended(call)
        transfer = call.transfer
        if transfer is not None and transfer.player is not None:
            transfer.player.stop()  # ringback/hold for a caller who is gone: its endpoint closes next
        if transfer is not None:
            _end_early(transfer)
        if transfer is not None and not transfer.done:
            self.feed(call, transfer, Input.CALLER_GONE, "call_ended", "the caller hung up")


def _end_early(transfer: Transfer) -> None:
    """Stop relaying the agent's early media: answered (the bridge takes the leg),
    failed (the caller's bridge, then the fallback's prompt, take the caller back) or
    the call is over."""
    early, transfer.early = transfer.early, None
    if early is not None:
        early.close()


def _called(invite: Request | None) -> str:
    """The number (or user) the caller dialled: the Request-URI's user, which carriers
    set to it (RFC 3261 8.1.1.1), else the To user."""
    if invite is None:
        return ""
    try:
        uri = invite.request_uri()
    except SipError:  # accepted at the edge, but never let context break a transfer
        uri = None
    if not isinstance(uri, SipUri) or not uri.user:
        uri = invite.to.uri
    return (uri.user or "") if isinstance(uri, SipUri) else ""


def _header_safe(value: str) -> str:
    return re.sub(r"[\r\n\x00]", " ", value)[:256]


def channel_options(call: Call) -> TransferOptions:
    """The call's channel integration's headers and destination (flow/router.py
    ChannelTransfer), for a transfer no flow node describes."""
    channel = call.channel.transfer if call.channel is not None else None
    if channel is None:
        return TransferOptions()
    return TransferOptions(headers=channel.headers, destination=channel.destination)
