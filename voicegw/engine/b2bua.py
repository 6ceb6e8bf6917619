"""The B2BUA: caller (leg A) <-> voicegw <-> bot (leg B), with media through voicegw.

The engine reacts to UA-core events (``handle_event``) and answers through the SIP
endpoint. Each leg is its own dialog with its own SDP: voicegw answers the caller
with its own media address and offers the bot its own, so the caller-facing RTP
address never changes when the far side does (TRANSFERS.md).

Without a bot configured the call runs the built-in flow locally (greeting, DTMF
menu), which is what the embedded default config does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import structlog

from ..flow.runner import DEMO_FLOW, EndCall, Flow, FlowRunner, PlayPrompt, WaitForDigit
from ..media import tones
from ..media.endpoint import MediaEndpoint, open_endpoint
from ..media.player import play_samples
from ..media.ports import PortPool, PortPoolExhausted
from ..media.relay import Bridge
from ..media.tts import EspeakTts, TtsError
from ..sip.build import make_response, new_branch, new_call_id, new_tag
from ..sip.dialog import Dialog, DialogId, make_dialog_response
from ..sip.errors import SipError
from ..sip.events import (
    Address,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from ..sip.message import Headers, Request, Response
from ..sip.offer_answer import NegotiatedMedia, make_answer, negotiate
from ..sip.sdp import SdpBuilder, SessionDescription
from ..sip.uri import SipUri, parse_uri
from .call import Call, CallInput, CallState, Leg

log = structlog.get_logger("voicegw.engine")


class SipSender(Protocol):
    core: Any

    def send_response(self, transaction_id: str, response: Response) -> None: ...
    def send_request(self, request: Request, destination: Address) -> str: ...


@dataclass
class EngineConfig:
    host: str = "127.0.0.1"
    """Address for SIP Contact/Via and for RTP."""
    sip_port: int = 5060
    rtp_port_min: int = 20000
    rtp_port_max: int = 21998
    trusted_sources: tuple[str, ...] = ("127.0.0.0/8",)
    """Carriers/SBCs allowed to place calls (CIDRs); others get 403."""
    bot_uri: str | None = None
    """The bot's SIP URI (host an IP literal); None runs ``flow`` locally."""
    bot_answer_timeout: float = 30.0
    flow: Flow = DEMO_FLOW
    tts_cache_dir: str = "var/tts"


#: Bot leg final status -> what the caller is told (B2BUA status mapping).
_EXACT_MAP = {486: 486, 600: 600, 603: 603, 488: 488, 606: 488, 404: 404, 484: 484}


def caller_status(bot_status: int) -> int:
    if bot_status in _EXACT_MAP:
        return _EXACT_MAP[bot_status]
    return {4: 480, 5: 503, 6: 603}.get(bot_status // 100, 500)


class Engine:
    def __init__(self, sip: SipSender, config: EngineConfig | None = None) -> None:
        self.sip = sip
        self.config = config or EngineConfig()
        self.pool = PortPool(self.config.rtp_port_min, self.config.rtp_port_max)
        self.tts = EspeakTts(self.config.tts_cache_dir)
        self.calls: dict[str, Call] = {}
        self._by_dialog: dict[DialogId, tuple[Call, Leg]] = {}
        self._by_transaction: dict[str, tuple[Call, Callable[[Event], None]]] = {}
        self._trusted = [ipaddress.ip_network(c) for c in self.config.trusted_sources]
        self.totals = {"calls": 0, "answered": 0, "failed": 0}

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        # The engine may be built before the loop runs (the daemon's factory); events
        # only ever arrive from inside it.
        return asyncio.get_running_loop()

    # ------------------------------------------------------------------ dispatch
    def handle_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            request = event.request
            dialog_id = DialogId.from_request(request)
            if dialog_id is None:
                if request.method == "INVITE":
                    self._spawn(None, self._new_call(event))
                elif request.method != "ACK":
                    self._respond(event.transaction_id, make_response(request, 405, to_tag=new_tag()))
                return
            found = self._by_dialog.get(dialog_id)
            if found is None:
                if request.method != "ACK":
                    self._respond(event.transaction_id, make_response(request, 481, to_tag=dialog_id.local_tag))
                return
            self._in_dialog(found[0], found[1], event)
        elif isinstance(event, (ResponseReceived, TransactionTimedOut)):
            handler = self._by_transaction.get(event.transaction_id)
            if handler is not None:
                handler[1](event)
                final = isinstance(event, TransactionTimedOut) or event.response.status >= 200
                if final and not (isinstance(event, ResponseReceived) and event.response.status < 300
                                  and event.response.cseq.method == "INVITE"):
                    self._by_transaction.pop(event.transaction_id, None)
        if isinstance(event, TransactionTimedOut) and event.method == "INVITE":
            for call in list(self.calls.values()):
                if call.caller.transaction_id == event.transaction_id:
                    # our 2xx was never ACKed (13.3.1.4): the caller is gone
                    self._end(call, CallInput.HUNG_UP, "caller never acknowledged the answer")
                    break
        if isinstance(event, CancelReceived):
            for call in self.calls.values():
                if call.caller.transaction_id == event.transaction_id:
                    self._caller_cancelled(call)
                    break

    def _spawn(self, call: Call | None, coro: Any) -> None:
        task = self._loop.create_task(coro)
        holder = call.tasks if call is not None else self._orphans
        holder.add(task)
        task.add_done_callback(holder.discard)
        task.add_done_callback(_log_task_error)

    _orphans: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ new calls
    async def _new_call(self, event: RequestReceived) -> None:
        invite, source = event.request, event.source
        if not any(ipaddress.ip_address(source.host) in net for net in self._trusted):
            self._respond(event.transaction_id, make_response(invite, 403, "Forbidden (untrusted source)", to_tag=new_tag()))
            return
        try:
            offer = SessionDescription.parse(invite.body) if invite.body else None
        except SipError as error:
            self._respond(event.transaction_id, make_response(invite, 488, f"Not Acceptable Here ({error.reason})", to_tag=new_tag()))
            return
        if offer is None:
            # An offerless INVITE wants our offer in the 200; not supported yet.
            self._respond(event.transaction_id, make_response(invite, 488, "Not Acceptable Here (INVITE without SDP offer)", to_tag=new_tag()))
            return
        session_expires = _session_interval(invite)
        if session_expires is not None and session_expires < MIN_SE:
            # RFC 4028 6: too brief an interval is refused, naming our minimum
            self._respond(event.transaction_id, make_response(
                invite, 422, to_tag=new_tag(), headers=Headers([("Min-SE", str(MIN_SE))])))
            return
        now = self._loop.time()
        call = Call(id=invite.call_id, caller=Leg("caller", source, invite=invite, transaction_id=event.transaction_id),
                    created=now, local_tag=new_tag())
        if session_expires is not None and _supports_timer(invite):
            call.session_expires = session_expires
        self.calls[call.key] = call
        self.totals["calls"] += 1
        call.record(now, "call.incoming", source=str(source), uri=invite.uri)
        try:
            call.caller.endpoint = await open_endpoint(self.config.host, self.pool)
            builder = SdpBuilder(session_id=random.getrandbits(48), address=self.config.host)
            answer = make_answer(offer, origin=builder.origin, address=self.config.host, port=call.caller.endpoint.port)
        except SipError as error:
            return self._fail_setup(call, 488, f"Not Acceptable Here ({error.reason})")
        except PortPoolExhausted:
            return self._fail_setup(call, 503, "Service Unavailable (no media ports)")
        call.caller_sdp = builder.stamp(answer.sdp)
        self._apply_media(call.caller.endpoint, answer.negotiated)
        if self.config.bot_uri:
            await self._dial_bot(call, invite)
        else:
            self._answer_caller(call)
            self._spawn(call, self._run_flow(call))

    def _apply_media(self, endpoint: MediaEndpoint, media: NegotiatedMedia) -> None:
        endpoint.payload_type = media.payload_type
        endpoint.dtmf_payload_type = media.telephone_event
        endpoint.set_remote(media.remote_address, media.remote_port)

    def _contact(self) -> str:
        return f"<sip:voicegw@{self.config.host}:{self.config.sip_port}>"

    def _local_via(self, transport: str = "udp") -> str:
        return f"SIP/2.0/{transport.upper()} {self.config.host}:{self.config.sip_port};rport"

    def _answer_caller(self, call: Call, status: int = 200) -> None:
        invite = call.caller.invite
        assert invite is not None
        response = make_dialog_response(
            invite, status, local_tag=call.local_tag, contact=self._contact(),
            body=bytes(call.caller_sdp), content_type="application/sdp",
            extra_headers=self._session_timer_headers(call) if status >= 200 else (),
        )
        self._caller_dialog(call, response)
        self._respond(call.caller.transaction_id, response)
        if status >= 200:
            now = self._loop.time()
            call.apply(CallInput.ANSWERED, now)
            self.totals["answered"] += 1
            self._arm_session_timer(call)

    def _caller_dialog(self, call: Call, response: Response) -> None:
        leg = call.caller
        if leg.dialog is None:
            assert leg.invite is not None
            leg.dialog = Dialog.from_uas_response(leg.invite, response, local_via=self._local_via(leg.peer.transport), contact=self._contact(), over_tls=False)
            self._register(call, leg)
        elif response.status >= 200:
            leg.dialog.respond(leg.invite, response.status)  # type: ignore[arg-type]

    def _register(self, call: Call, leg: Leg) -> None:
        assert leg.dialog is not None
        dialog_id = leg.dialog.id
        self._by_dialog[dialog_id] = (call, leg)
        self.sip.core.register_dialog(dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag)

    def _fail_setup(self, call: Call, status: int, reason: str) -> None:
        invite = call.caller.invite
        assert invite is not None
        self._respond(call.caller.transaction_id, make_response(invite, status, reason, to_tag=call.local_tag))
        self.totals["failed"] += 1
        self._end(call, CallInput.FAILED, reason)

    # ------------------------------------------------------------------ the bot leg
    async def _dial_bot(self, call: Call, caller_invite: Request) -> None:
        uri = parse_uri(self.config.bot_uri or "")
        if not isinstance(uri, SipUri):
            return self._fail_setup(call, 500, "Server Internal Error (bot URI)")
        peer = Address(uri.transport or "udp", uri.host.strip("[]"), uri.port or 5060)
        try:
            endpoint = await open_endpoint(self.config.host, self.pool)
        except PortPoolExhausted:
            return self._fail_setup(call, 503, "Service Unavailable (no media ports)")
        leg = Leg("bot", peer, endpoint=endpoint)
        call.bot = leg
        builder = SdpBuilder(session_id=random.getrandbits(48), address=self.config.host)
        offer = builder.offer(port=endpoint.port)
        call.bot_offer = offer
        max_forwards = (caller_invite.max_forwards or 70) - 1
        from_user = caller_invite.from_
        headers = Headers([
            ("From", f"<sip:{_user(from_user.uri)}@{self.config.host}>;tag={new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", new_call_id(self.config.host)),
            ("CSeq", "1 INVITE"),
            ("Contact", self._contact()),
            ("Max-Forwards", str(max(max_forwards, 0))),
        ])
        invite = Request("INVITE", str(uri), headers)
        invite.set_body(bytes(offer), "application/sdp")
        leg.invite = invite
        leg.transaction_id = self.sip.send_request(invite, peer)
        self._by_transaction[leg.transaction_id] = (call, lambda e: self._bot_invite_event(call, e))
        call.record(self._loop.time(), "leg.bot.dialing", uri=str(uri))
        call.timers["answer"] = self._loop.call_later(self.config.bot_answer_timeout, self._bot_no_answer, call)

    def _bot_invite_event(self, call: Call, event: Event) -> None:
        leg = call.bot
        assert leg is not None and leg.invite is not None
        if isinstance(event, TransactionTimedOut):
            return self._bot_failed(call, 408, "bot did not respond")
        assert isinstance(event, ResponseReceived)
        response = event.response
        status = response.status
        now = self._loop.time()
        if status < 200:
            if status > 100 and call.state is CallState.SETUP:
                call.record(now, "leg.bot.progress", status=status)
                if response.body and response.content_type == "application/sdp" and self._bridge(call) is None:
                    self._early_media(call, response)
                elif call.caller.dialog is None or status == 180:
                    ringing = make_dialog_response(call.caller.invite, 180, local_tag=call.local_tag, contact=self._contact())  # type: ignore[arg-type]
                    self._caller_dialog(call, ringing)
                    self._respond(call.caller.transaction_id, ringing)
            return
        if status >= 300:
            return self._bot_failed(call, status, response.reason)
        # 2xx: ACK it (every retransmission too, 13.2.2.4), then answer the caller once
        if leg.dialog is None:
            leg.dialog = Dialog.from_uac_response(leg.invite, response, local_via=self._local_via(leg.peer.transport), contact=self._contact(), over_tls=False)
            self._register(call, leg)
        ack, hop = leg.dialog.create_ack(leg.invite.cseq.seq)
        self.sip.send_request(ack, self._destination(hop, leg.peer))
        if call.state is not CallState.SETUP:
            if call.state is CallState.ENDED:
                self._send_bye(call, leg)  # the caller left while the bot answered
            return
        call.cancel_timer("answer")
        try:
            media = negotiate(call.bot_offer, SessionDescription.parse(response.body), local_is_offerer=True)
        except SipError as error:
            self._send_bye(call, leg)
            return self._bot_failed(call, 488, f"bot SDP: {error.reason}")
        assert leg.endpoint is not None and call.caller.endpoint is not None
        self._apply_media(leg.endpoint, media)
        bridge = self._bridge(call)
        if bridge is None:
            call.resources.append(Bridge(call.caller.endpoint, leg.endpoint))
        else:
            bridge.refresh()  # early media already flows; the 2xx's SDP is the final answer
        call.record(now, "leg.bot.answered")
        self._answer_caller(call)

    def _bot_failed(self, call: Call, status: int, reason: str) -> None:
        call.cancel_timer("answer")
        if call.state is not CallState.SETUP:
            return
        mapped = caller_status(status)
        call.record(self._loop.time(), "leg.bot.failed", status=status, reason=reason)
        log.info("call.bot_failed", call_id=call.id, status=status, caller_status=mapped)
        self._fail_setup(call, mapped, f"{_phrase(mapped)} (bot answered {status})")

    def _bot_no_answer(self, call: Call) -> None:
        if call.state is CallState.SETUP and call.bot is not None:
            self._send_cancel(call.bot)
            self._bot_failed(call, 480, "bot answer timeout")

    def _send_cancel(self, leg: Leg) -> None:
        """9.1: CANCEL copies the INVITE's Request-URI, Call-ID, To, From, CSeq number
        and top Via (same branch), and its Route headers."""
        invite = leg.invite
        assert invite is not None
        headers = Headers()
        for key in ("via", "route"):
            for value in invite.headers.values(key)[:1] if key == "via" else invite.headers.get_all(key):
                headers.add(key.title(), value)
        for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("max-forwards", "Max-Forwards")):
            headers.add(name, invite.headers.get(key) or "")
        headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        cancel = Request("CANCEL", invite.uri, headers)
        self.sip.send_request(cancel, leg.peer)

    # ------------------------------------------------------------------ in-dialog
    def _in_dialog(self, call: Call, leg: Leg, event: RequestReceived) -> None:
        request = event.request
        assert leg.dialog is not None
        method = request.method
        if method == "ACK":
            call.record(self._loop.time(), f"leg.{leg.role}.ack")
            return
        try:
            leg.dialog.receive_request(request)
        except SipError as error:
            self._respond(event.transaction_id, make_response(request, error.status, to_tag=leg.dialog.id.local_tag))
            return
        if method == "BYE":
            self._respond(event.transaction_id, leg.dialog.respond(request, 200))
            call.record(self._loop.time(), f"leg.{leg.role}.bye")
            leg.ended = True
            self._end(call, CallInput.HUNG_UP, f"{leg.role} hung up")
        elif method == "INVITE":
            self._reinvite(call, leg, event)
        elif method == "UPDATE" and not request.body:
            # a session refresh without an offer (RFC 4028 9, RFC 3311)
            headers = self._refresh_session(call, leg)
            self._respond(event.transaction_id, leg.dialog.respond(request, 200, extra_headers=headers))
        elif method in ("OPTIONS", "INFO"):
            # INFO bodies (dtmf-relay, bot metadata) are accepted and recorded, not relayed yet
            call.record(self._loop.time(), f"leg.{leg.role}.{method.lower()}", content_type=request.content_type)
            self._respond(event.transaction_id, leg.dialog.respond(request, 200))
        else:
            self._respond(event.transaction_id, leg.dialog.respond(request, 501 if method in ("REFER", "NOTIFY") else 488))

    def _reinvite(self, call: Call, leg: Leg, event: RequestReceived) -> None:
        """Hold/unhold or a new codec from either side: answered locally per RFC 3264,
        the media endpoint follows the new address and direction."""
        request = event.request
        assert leg.dialog is not None and leg.endpoint is not None
        try:
            offer = SessionDescription.parse(request.body)
            builder = SdpBuilder(session_id=random.getrandbits(48), address=self.config.host)
            answer = make_answer(offer, origin=builder.origin, address=self.config.host, port=leg.endpoint.port)
        except SipError as error:
            self._respond(event.transaction_id, leg.dialog.respond(request, 488, f"Not Acceptable Here ({error.reason})"))
            return
        self._apply_media(leg.endpoint, answer.negotiated)
        for resource in call.resources:
            if isinstance(resource, Bridge):
                resource.refresh()
        call.record(self._loop.time(), f"leg.{leg.role}.reinvite", hold=answer.negotiated.remote_hold)
        body = bytes(builder.stamp(answer.sdp))
        headers = self._refresh_session(call, leg)
        self._respond(event.transaction_id, leg.dialog.respond(
            request, 200, body=body, content_type="application/sdp", extra_headers=headers))

    def _early_media(self, call: Call, response: Response) -> None:
        """A 18x with SDP from the bot: bridge now and give the caller a 183 with our
        SDP, so announcements the bot plays before answering are heard."""
        leg = call.bot
        assert leg is not None and leg.endpoint is not None and call.caller.endpoint is not None
        try:
            media = negotiate(call.bot_offer, SessionDescription.parse(response.body), local_is_offerer=True)
        except SipError:
            return  # unusable early SDP: wait for the 2xx
        self._apply_media(leg.endpoint, media)
        call.resources.append(Bridge(call.caller.endpoint, leg.endpoint))
        progress = make_dialog_response(
            call.caller.invite, 183, local_tag=call.local_tag, contact=self._contact(),  # type: ignore[arg-type]
            body=bytes(call.caller_sdp), content_type="application/sdp")
        self._caller_dialog(call, progress)
        self._respond(call.caller.transaction_id, progress)
        call.record(self._loop.time(), "leg.bot.early_media")

    @staticmethod
    def _bridge(call: Call) -> Bridge | None:
        return next((r for r in call.resources if isinstance(r, Bridge)), None)

    # ------------------------------------------------------------------ session timers
    def _session_timer_headers(self, call: Call) -> list[tuple[str, str]]:
        if call.session_expires is None:
            return []
        # RFC 4028 9: we let the caller refresh (it said it supports timers)
        return [("Session-Expires", f"{call.session_expires};refresher=uac"), ("Require", "timer")]

    def _arm_session_timer(self, call: Call) -> None:
        if call.session_expires is None:
            return
        call.cancel_timer("session")
        interval = call.session_expires
        # RFC 4028 10: the side that is not the refresher sends BYE shortly before expiry
        delay = interval - min(32, interval / 3)
        call.timers["session"] = self._loop.call_later(delay, self._session_expired, call)

    def _refresh_session(self, call: Call, leg: Leg) -> list[tuple[str, str]]:
        if leg is not call.caller or call.session_expires is None:
            return []
        self._arm_session_timer(call)
        call.record(self._loop.time(), "call.session_refreshed")
        return self._session_timer_headers(call)

    def _session_expired(self, call: Call) -> None:
        call.record(self._loop.time(), "call.session_expired")
        log.info("call.session_expired", call_id=call.id)
        self._end(call, CallInput.HUNG_UP, "session timer expired")

    # ------------------------------------------------------------------ ending
    def _caller_cancelled(self, call: Call) -> None:
        invite = call.caller.invite
        assert invite is not None
        if call.bot is not None and call.state is CallState.SETUP:
            self._send_cancel(call.bot)
        self._respond(call.caller.transaction_id, make_response(invite, 487, to_tag=call.local_tag))
        self._end(call, CallInput.CANCELLED, "caller cancelled")

    def _end(self, call: Call, cause: CallInput, reason: str) -> None:
        if not call.apply(cause, self._loop.time(), reason):
            return
        for name in list(call.timers):
            call.cancel_timer(name)
        for leg in call.legs():
            if not leg.ended and leg.dialog is not None and cause is not CallInput.CANCELLED:
                self._send_bye(call, leg)
            leg.ended = True
        for resource in call.resources:
            resource.close() if hasattr(resource, "close") else resource.stop()
        for leg in call.legs():
            if leg.endpoint is not None:
                leg.endpoint.close()
        for task in list(call.tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self._loop.call_later(32.0, self._forget, call)  # late retransmissions still match
        log.info("call.ended", call_id=call.id, reason=call.end_reason, timeline=len(call.timeline))

    def _send_bye(self, call: Call, leg: Leg) -> None:
        assert leg.dialog is not None
        bye, hop = leg.dialog.create_request("BYE")
        self.sip.send_request(bye, self._destination(hop, leg.peer))
        leg.ended = True
        call.record(self._loop.time(), f"leg.{leg.role}.bye_sent")

    def _forget(self, call: Call) -> None:
        for leg in call.legs():
            self._by_transaction.pop(leg.transaction_id, None)
            if leg.dialog is not None:
                dialog_id = leg.dialog.id
                self._by_dialog.pop(dialog_id, None)
                self.sip.core.forget_dialog(dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag)
        self.calls.pop(call.key, None)

    # ------------------------------------------------------------------ built-in flow
    async def _run_flow(self, call: Call) -> None:
        endpoint = call.caller.endpoint
        assert endpoint is not None
        digits: asyncio.Queue[str] = asyncio.Queue()
        endpoint.on_dtmf = lambda digit: (digits.put_nowait(digit), call.record(self._loop.time(), "flow.dtmf", digit=digit), log.info("flow.dtmf", call_id=call.id, digit=digit))
        endpoint._changed()
        runner = FlowRunner(self.config.flow)
        action = runner.start()
        for _ in range(runner.max_steps):
            if call.state is not CallState.CONNECTED:
                return
            if isinstance(action, PlayPrompt):
                call.record(self._loop.time(), "flow.prompt", node=runner.current)
                player = play_samples(endpoint, await self._render(action.text))
                call.resources.append(player)
                await player.wait()
                action = runner.prompt_finished()
            elif isinstance(action, WaitForDigit):
                try:
                    digit = await asyncio.wait_for(digits.get(), action.timeout)
                except asyncio.TimeoutError:
                    action = runner.timed_out()
                else:
                    action = runner.digit(digit) or action
            else:
                assert isinstance(action, EndCall)
                call.record(self._loop.time(), "flow.end", reason=action.reason)
                self._end(call, CallInput.HUNG_UP, f"flow: {action.reason}")
                return

    async def _render(self, text: str) -> np.ndarray:
        try:
            return await self.tts.render(text)
        except TtsError as error:
            log.warning("tts.failed", error=str(error))
            return tones.ToneGenerator(tones.HOLD_BEEP).read(8000)

    # ------------------------------------------------------------------ helpers
    def _respond(self, transaction_id: str, response: Response) -> None:
        if transaction_id:
            self.sip.send_response(transaction_id, response)

    @staticmethod
    def _destination(uri: Any, fallback: Address) -> Address:
        """Where an in-dialog request goes: the next hop if it is an IP literal (no DNS
        yet), else the address the leg's peer used."""
        if isinstance(uri, SipUri):
            host = uri.host.strip("[]")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return fallback
            return Address(uri.transport or fallback.transport, host, uri.port or 5060)
        return fallback

    def statistics(self) -> dict[str, int]:
        return {"active_calls": sum(1 for c in self.calls.values() if c.state is not CallState.ENDED), **self.totals}


MIN_SE = 90  # RFC 4028 4: the minimum session interval, and our Min-SE


def _session_interval(invite: Request) -> int | None:
    value = invite.headers.get("session-expires")
    if value is None:
        return None
    number = value.split(";", 1)[0].strip()
    return int(number) if number.isdigit() and len(number) < 10 else None


def _supports_timer(invite: Request) -> bool:
    return any(tag.strip() == "timer" for value in invite.headers.values("supported") for tag in value.split(","))


def _user(uri: Any) -> str:
    return getattr(uri, "user", None) or "anonymous"


def _phrase(status: int) -> str:
    from ..sip.build import reason_phrase

    return reason_phrase(status)


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("engine.task_failed", error=repr(task.exception()))


__all__ = ["Engine", "EngineConfig", "caller_status", "new_branch"]
