"""The B2BUA: caller (leg A) <-> voicegw <-> bot (leg B), with media through voicegw.

The engine reacts to UA-core events (``handle_event``) and answers through the SIP
endpoint. Each leg is its own dialog with its own SDP: voicegw answers the caller
with its own media address and offers the bot its own, so the caller-facing RTP
address never changes when the far side does (TRANSFERS.md).

Without a bot configured the call runs the built-in flow locally (greeting, DTMF
menu), which is what the embedded default config does. Transfers to agents live in
:mod:`voicegw.engine.transfer`; placing outgoing legs in :mod:`voicegw.engine.outbound`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars

from ..flow.router import CallFacts
from ..media.plane import BRIDGES, MediaPlane, RelayPlane
from ..media.ports import PortPool, PortPoolExhausted
from ..media.relay import Bridge
from ..media.srtp import new_key as new_srtp_key
from ..media.tts import EspeakTts
from ..settings import EngineConfig, LegPolicy
from ..sip.build import make_response, new_tag
from ..sip.dialog_table import DialogId
from ..sip.digest import Credentials, DigestServer, Verdict
from ..sip.errors import SipError
from ..sip.events import (
    Address,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from ..sip.invite_session_io import (
    Accept,
    ByeFailed,
    IncomingCancel,
    IncomingRequest,
    MediaUpdated,
    ModifyReceived,
    Output,
    Progress,
    Reject,
    Terminated,
)
from ..sip.invite_session_io import SessionRefreshed as SessionTimerStarted
from ..sip.invite_session_table import Cause as SessionCause
from ..sip.invite_session_table import State as SessionState
from ..sip.message import Headers, Request, Response
from ..sip.offer_answer import NegotiatedMedia, make_answer, negotiate
from ..sip.refusal import REFUSALS, Cause, refusal_response
from ..sip.sdp import SdpBuilder, SessionDescription
from ..sip.sdp_fields import Direction
from ..sip.transaction import T1
from ..sip.uri import SipUri, parse_uri
from ..transport.dns import Resolver
from .bot_context import context_from_bot
from .call import Call, CallInput, CallState, EventListener, Leg
from .challenged import Resent, send_on_leg
from .control_io import ByeReceived, CallEnded, LegsSettled, MediaCheckDue, Who
from .control_io import Input as ControlInput
from .desk_leg import AgentDesk
from .dial import LegInvite, NotDialled, dial_leg
from .event_log import EventLog
from .events import (
    CallEvent,
    CallStarted,
    LegAcked,
    LegAnswered,
    LegByeFailed,
    LegByeSent,
    LegDialing,
    LegEarlyMedia,
    LegFailed,
    LegHungUp,
    LegProgress,
    LegReinvited,
    LegReofferSent,
    LegRequestReceived,
    SessionExpired,
    SessionRefreshed,
)
from .executor import Executor
from .flow_exec import FlowExecutor
from .media_watch import MediaWatch
from .outbound import FailureStatus, OutboundLegs, apply_media, offer_on
from .refusals import Refusals
from .replaces import replacing_invite
from .stats import EngineStatistics, engine_statistics
from .transfer import Transfers

log = structlog.get_logger("voicegw.engine")



class SipSender(Protocol):
    core: Any

    def send_response(self, transaction_id: str, response: Response) -> None: ...
    def send_request(self, request: Request, destination: Address) -> str: ...


#: Bot leg final status -> what the caller is told (B2BUA status mapping).
_EXACT_MAP = {486: 486, 600: 600, 603: 603, 488: 488, 606: 488, 404: 404, 484: 484}


def caller_status(bot_status: FailureStatus) -> int:
    if not isinstance(bot_status, int):
        return 480  # timeout: the bot is "temporarily unavailable" to the caller
    if bot_status in _EXACT_MAP:
        return _EXACT_MAP[bot_status]
    return {4: 480, 5: 503, 6: 603}.get(bot_status // 100, 500)


class Engine:
    FORGET_AFTER = 64 * T1
    """Seconds, at most, an ended call stays indexed when a leg's INVITE session is not
    over at the end (a CANCEL awaiting its 487, our BYE held for an ACK, RFC 3261 15);
    one whose sessions are all over is forgotten at once (copies of a 2xx are the UA
    core's to ACK again, 13.2.2.4)."""

    def __init__(self, sip: SipSender, config: EngineConfig | None = None) -> None:
        self.sip = sip
        self.config = config or EngineConfig()
        self.pool = PortPool(self.config.rtp_port_min, self.config.rtp_port_max)
        self.tts = EspeakTts(self.config.tts_cache_dir)
        self.media: MediaPlane = RelayPlane(self.config.policy.rtp_host, self.pool)
        """Where legs' media lives: the in-process relay, or rtpengine (the daemon sets it)."""
        self.calls: dict[str, Call] = {}
        self._by_dialog: dict[DialogId, tuple[Call, Leg]] = {}
        self._by_transaction: dict[str, Callable[[Event], None]] = {}
        self._by_server_transaction: dict[str, Call] = {}
        """The caller's INVITE server transaction -> its call, for a CANCEL (9.2): one
        look-up per CANCEL instead of a scan of every call held."""
        self._trusted = [ipaddress.ip_network(c) for c in self.config.trusted_sources]
        self._digest = DigestServer(self.config.auth_realm, secrets.token_bytes(32))
        self._tasks: set[asyncio.Task[Any]] = set()
        self.totals = {"calls": 0, "answered": 0, "failed": 0}
        self.outbound = OutboundLegs(
            addresses=self.config.policy, sip_port=self.config.sip_port, tls_port=self.config.tls_port,
            send=lambda request, dest: self.sip.send_request(request, dest),
            register=self.register, track=self._track, respond=self.respond,
            dialog_events=self._session_event,
            feed=lambda call, event: self.executor.feed(call, event), now=self.now,
            settled=self._leg_settled,
        )
        self.executor = Executor(lambda: self.loop, self.outbound, self._forget, self.FORGET_AFTER)
        """Feeds each call's controller (engine/controller.py) and carries out its commands."""
        self.desk: AgentDesk | None = None
        """The agent desk (voicegw/desk/) when the daemon runs it: ``desk:`` targets."""
        self.transfers = Transfers(self)
        self.executor.transfers = self.transfers
        self.executor.consults = self.transfers.warm
        self.executor.byes = self
        self.executor.media = self
        self.flows = FlowExecutor(self, self.tts)
        self.durable: Callable[[], Any] | None = None
        """Awaitable that returns once every record so far is committed (the store's
        ``durable``); the engine awaits it before a transfer leaves."""
        self.draining = False
        """Set when the daemon shuts down: new calls get 503 + Retry-After."""
        self.refusals = Refusals()
        """Calls refused, by cause (the engine's and, through the daemon, the UA core's)."""
        self.gateways: Any = None
        """The carrier gateways' health (voicegw/gateways.py), set by the daemon while
        serving: the dial path skips gateways marked down."""
        self._resolver: Resolver | None = None
        self.listeners: list[EventListener] = [EventLog()]
        """Watchers of every call's timeline (the log; the daemon adds the records, the
        API and metrics), called with (call, time, typed event). A listener must not
        block: it runs on the signalling path."""
        self.forgotten: list[Callable[[Call], None]] = []
        """Called with each ended call the engine lets go of (after its last event):
        the API keeps a view of it instead of the call (api/views.py)."""

    @property
    def resolver(self) -> Resolver:
        """RFC 3263 lookups for the dial path (transport/dns.py), with their cache; made
        at first use (the system resolver reads resolv.conf)."""
        if self._resolver is None:
            self._resolver = Resolver(self.config.dns, lambda: self.loop.time())
        return self._resolver

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        # The engine may be built before the loop runs (the daemon's factory); events
        # only ever arrive from inside it.
        return asyncio.get_running_loop()

    def control(self, call: Call, event: ControlInput) -> None:
        """Feed the call's controller one input (engine/executor.py)."""
        self.executor.feed(call, event)

    def now(self) -> float:
        return self.loop.time()

    # ------------------------------------------------------------------ dispatch
    def handle_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._request(event)
        elif isinstance(event, (ResponseReceived, TransactionTimedOut)):
            handler = self._by_transaction.get(event.transaction_id)
            if handler is not None:
                handler(event)
                if isinstance(event, TransactionTimedOut) or (
                    event.response.status >= 200
                    and not (event.response.status < 300 and event.response.cseq.method == "INVITE")
                ):
                    # INVITE 2xx handlers stay until the call is forgotten: retransmitted
                    # 2xx must be ACKed again
                    self._by_transaction.pop(event.transaction_id, None)
            # a server transaction's Timer L (no ACK for our 2xx): the caller's session
            # has its own no-ACK timer (13.3.1.4) and ends the call
        elif isinstance(event, CancelReceived):
            call = self._call_by_server_transaction(event.transaction_id)
            if call is not None and call.caller.session is not None:
                with bound_contextvars(call_id=call.id, leg="caller"):
                    call.caller.session.handle(IncomingCancel(event.transaction_id))

    def _request(self, event: RequestReceived) -> None:
        request = event.request
        dialog_id = DialogId.from_request(request)
        if dialog_id is None:
            if request.method == "INVITE" and "replaces" in request.headers:
                self.spawn(replacing_invite(self, event))
            elif request.method == "INVITE":
                self.spawn(self._new_call(event))
            elif request.method != "ACK":
                self.respond(event.transaction_id, make_response(request, 405, to_tag=new_tag()))
            return
        found = self._by_dialog.get(dialog_id)
        if found is None:
            if request.method != "ACK":
                self.respond(event.transaction_id, make_response(request, 481, to_tag=dialog_id.local_tag))
            return
        call, leg = found
        with bound_contextvars(call_id=call.id, leg=leg.role):  # on every log line of it
            self._in_dialog(call, leg, event)

    def _emit(self, call: Call, now: float, event: CallEvent) -> None:
        for listener in self.listeners:
            try:
                listener(call, now, event)
            except Exception as error:  # noqa: BLE001 - a broken watcher never breaks a call
                log.error("engine.listener_failed", error=repr(error), event_name=event.name)

    def reconfigure(self, config: EngineConfig) -> None:
        """Use ``config`` for calls that start from now on (SIGHUP reload); calls in
        progress keep what they started with, except the transfer allow-list, which
        always applies as it is now. Media ports and the SIP address do not change."""
        if (config.host, config.sip_port, config.rtp_port_min, config.rtp_port_max, config.policy) != (
            self.config.host, self.config.sip_port, self.config.rtp_port_min, self.config.rtp_port_max,
            self.config.policy,
        ):
            raise ValueError("the SIP and media addresses and the RTP port range need a restart")
        self.config = config
        self._trusted = [ipaddress.ip_network(c) for c in config.trusted_sources]
        self._digest = DigestServer(config.auth_realm, self._digest.secret)

    def active_calls(self) -> list[Call]:
        return [c for c in self.calls.values() if c.state is not CallState.ENDED]

    async def recorded(self, timeout: float = 1.0) -> None:
        """Wait until the records so far are on disk (no store: at once). Bounded: a
        slow disk delays a transfer by at most ``timeout``, never blocks it."""
        if self.durable is None:
            return
        try:
            await asyncio.wait_for(self.durable(), timeout)
        except TimeoutError:
            log.warning("store.slow", waited=timeout)

    def find_call(self, call_id: str) -> Call | None:
        """A call by its key or by the caller's Call-ID (the API's call id)."""
        return self.calls.get(call_id) or next((c for c in self.calls.values() if c.id == call_id), None)

    def hang_up(self, call: Call, reason: str = "operator") -> bool:
        """End a call from outside (API, drain): BYE every leg."""
        if call.state is CallState.SETUP:
            # 480, as a callee that went away would (a drain refuses new calls with
            # 503, but this one already had its 100 Trying)
            cause = Cause.DRAINING if reason == "shutdown" else Cause.OPERATOR
            self._refuse_setup(call, cause, status=480, detail=reason)
            return True
        before = call.state
        self.end(call, CallInput.HUNG_UP, reason)
        return before is not call.state

    def spawn(self, coro: Any, call: Call | None = None) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        holder = call.tasks if call is not None else self._tasks
        holder.add(task)
        task.add_done_callback(holder.discard)
        task.add_done_callback(_log_task_error)
        return task

    def _track(self, transaction_id: str, handler: Callable[[Event], None], call: Call | None = None) -> None:
        self._by_transaction[transaction_id] = handler
        if call is not None:
            call.transaction_ids.append(transaction_id)

    def send_request(self, request: Request, destination: Address,
                     on_event: Callable[[Event], None], call: Call | None = None, *,
                     leg: Leg | None = None, on_resent: Resent | None = None) -> str:
        """Send ``request``; its responses and time-out go to ``on_event`` (forgotten
        with ``call``). On a ``leg`` whose peer's profile has ``auth``, its digest
        challenges are answered first (engine/challenged.py; ``on_resent`` is told)."""
        def send(message: Request, where: Address, handler: Callable[[Event], None]) -> str:
            transaction_id = self.sip.send_request(message, where)
            self._track(transaction_id, handler, call)
            return transaction_id

        if leg is not None:
            return send_on_leg(send, request, destination, on_event, leg, on_resent)
        return send(request, destination, on_event)

    def _call_by_server_transaction(self, transaction_id: str) -> Call | None:
        call = self._by_server_transaction.get(transaction_id)
        # a caller leg replaced since (RFC 3891) has a new INVITE, already answered
        return call if call is not None and call.caller.transaction_id == transaction_id else None

    # ------------------------------------------------------------------ new calls
    async def _new_call(self, event: RequestReceived) -> None:
        invite, source = event.request, event.source
        # this task's context, copied into every task the call spawns: each log line
        # of the call carries its Call-ID
        bind_contextvars(call_id=invite.call_id)
        try:  # a call to the binding a carrier registered is that carrier's (its line)
            line = self.config.peers.line_of(invite.request_uri())
        except SipError:
            line = None
        reject = self.admission(invite, source, line)
        if reject is not None:
            self.respond(event.transaction_id, reject)
            return
        offer = SessionDescription.parse(invite.body) if invite.body else None
        now = self.now()
        call = Call(id=invite.call_id, caller=Leg("caller", source, invite=invite, transaction_id=event.transaction_id),
                    created=now, local_tag=new_tag(), listener=self._emit)
        # the caller's INVITE session: it refuses a too brief Session-Expires itself
        # (422, RFC 4028 8.1), and then there is no call
        # the carrier's auth, for our requests to it
        account = self.config.peers.accounts.get(line) if line else self.config.peers.for_source(source.host)
        if self.outbound.take(call, call.caller, event.transaction_id, call.local_tag, account).terminated:
            return
        self.calls[call.key] = call
        self._by_server_transaction[event.transaction_id] = call
        call.transaction_ids.append(event.transaction_id)  # forgotten with the call, even once replaced
        self.totals["calls"] += 1
        call.channel = channel = self.config.channel_for(CallFacts.of(invite, source.host, line))
        call.carrier = line or self.config.peers.carrier_of(None, source.host)
        flow = None if channel.bot_uri else channel.flow.name
        call.record(now, CallStarted(str(source), str(invite.uri), _user(invite.from_.uri), flow, channel.name,
                                     call.carrier))
        leg = call.caller
        try:
            leg.endpoint = await self.media.open_endpoint(call.id, "caller")
            leg.sdp = self.sdp_builder(leg.peer)
            leg.srtp_key = new_srtp_key()
            answer = self.answer(leg, offer) if offer is not None else None
        except SipError as error:
            return self._fail_setup(call, 488, f"Not Acceptable Here ({error.reason})")
        except PortPoolExhausted:
            return self._refuse_setup(call, Cause.PORT_POOL)
        if call.state is CallState.ENDED:  # CANCEL arrived while we opened the port
            leg.endpoint.close()
            return
        if answer is not None:
            call.caller_sdp = leg.sdp.stamp(answer.sdp)
            apply_media(leg.endpoint, answer.negotiated)
        else:
            # delayed offer (RFC 3261 13.2.1): our offer goes in the 2xx, and the media
            # is set when the caller's answer arrives in the ACK (MediaUpdated)
            call.caller_sdp = offer_on(leg)
        if channel.bot_uri:
            await self._dial_bot(call, invite)
        else:
            # a key pressed once our 2xx is out, before the flow's task takes its first
            # step, is kept for the flow (under load that can be more than one loop pass)
            leg.endpoint.on_dtmf = call.hold_digit
            self._answer_caller(call)
            call.flow_task = self.spawn(self.run_flow(call), call)

    def admission(self, invite: Request, source: Address, line: str | None = None) -> Response | None:
        """Who may call and with what: a response refusing the INVITE, or None. A call
        to a carrier's registered binding (``line``: that carrier) is trusted as that
        carrier's, whatever its source address (a registrar forwards it)."""
        if self.draining:
            self.refusals.note(Cause.DRAINING, 503, call_id=invite.call_id, source=str(source))
            return refusal_response(invite, Cause.DRAINING, to_tag=new_tag())
        if line is None and not any(ipaddress.ip_address(source.host) in net for net in self._trusted):
            refusal = self._authenticate(invite)  # a stranger learns nothing else first
            if refusal is not None:
                return refusal
        problem = remote_target_problem(invite)
        if problem is not None:
            self.refusals.note(Cause.BAD_REQUEST, 400, call_id=invite.call_id, detail=problem, source=str(source))
            return make_response(invite, 400, f"Bad Request ({problem})", to_tag=new_tag())
        if not invite.body:
            return None  # delayed offer: ours goes in the 2xx, the answer comes in the ACK (13.2.1)
        try:
            SessionDescription.parse(invite.body)
        except SipError as error:
            return make_response(invite, 488, f"Not Acceptable Here ({error.reason})", to_tag=new_tag())
        return None

    def answer(self, leg: Leg, offer: SessionDescription) -> Any:
        """Our answer to ``offer`` on ``leg``: RTP/AVP, or RTP/SAVP with SDES keys when
        the peer offers SRTP and the leg has a key (carriers that require it)."""
        assert leg.endpoint is not None and leg.sdp is not None
        protos = ("RTP/AVP", "RTP/SAVP") if leg.srtp_key is not None else ("RTP/AVP",)
        address = self.config.policy.advertised(leg.peer.host).media_host
        return make_answer(offer, origin=leg.sdp.origin, address=address, port=leg.endpoint.port,
                           protos=protos, srtp_key=leg.srtp_key)

    def _authenticate(self, invite: Request) -> Response | None:
        """Digest authentication for a source we do not trust by address. Every failure
        gets the same fresh challenge, whether the user exists or the password is wrong
        (no enumeration; Asterisk's identical-challenge rule); a stale nonce says so."""
        if not self.config.auth_users:
            return make_response(invite, 403, "Forbidden (untrusted source)", to_tag=new_tag())
        now = time.time()  # nonces must outlive a restart: wall clock, not loop time
        stale = False
        value = invite.headers.get("authorization")
        if value is not None:
            try:
                credentials = Credentials.parse(value)
            except SipError:
                credentials = None
            password = self.config.auth_users.get(credentials.username) if credentials else None
            if credentials is not None and password is not None:
                verdict = self._digest.verify(credentials, method=invite.method, password=password, now=now)
                if verdict is Verdict.OK:
                    return None
                stale = verdict is Verdict.STALE
        challenge = Headers([("WWW-Authenticate", str(c)) for c in self._digest.challenges(now=now, stale=stale)])
        return make_response(invite, 401, to_tag=new_tag(), headers=challenge)

    def contact(self, peer: Address) -> str:
        """Our Contact for a leg to ``peer`` (over TLS: the TLS port; behind a NAT:
        the address ``peer`` can reach)."""
        return self.outbound.contact_for(peer)

    def sdp_builder(self, peer: Address) -> SdpBuilder:
        """A leg's SDP with the media address ``peer`` is told (o= and c=)."""
        address = self.config.policy.advertised(peer.host).media_host
        return SdpBuilder(session_id=random.getrandbits(48), address=address)

    def _answer_caller(self, call: Call) -> None:
        """200 with our answer; the session adds Allow and the session timer the INVITE
        asked for (RFC 4028 9), retransmits it until the ACK (13.3.1.4)."""
        session = call.caller.session
        assert session is not None
        if session.terminated:
            return
        session.handle(Accept(call.caller_sdp))
        call.apply(CallInput.ANSWERED, self.now())
        self.totals["answered"] += 1
        self._watch_media(call)

    def _watch_media(self, call: Call) -> None:
        """From the answer on, a leg that stops sending RTP ends the call
        (engine/media_watch.py; ``media.inactivity_timeout``, ``media.hold_timeout``)."""
        if not self.media.watches_rtp:
            return  # rtpengine counts the packets, not voicegw (docs/scaling.md)
        call.media_watch = MediaWatch.of(self.config.media_inactivity_timeout, self.config.media_hold_timeout)
        if call.media_watch is not None:
            self.control(call, MediaCheckDue(self.now() + call.media_watch.interval))

    def check_media(self, call: Call, now: float) -> None:
        """The controller's media timer fired (``CheckMedia``): a silent leg ends the
        call, else the next check is due an interval later."""
        watch = call.media_watch
        if call.state is not CallState.CONNECTED or watch is None:
            return
        silence = watch.check(call, (r for r in call.resources if isinstance(r, BRIDGES)), now)
        if silence is None:
            self.control(call, MediaCheckDue(now + watch.interval))
            return
        log.warning("call.media_timeout", call_id=call.id, leg=silence.role, silent_for=round(silence.seconds, 1),
                    held=silence.held)
        self.end(call, CallInput.MEDIA_TIMEOUT, f"no RTP from the {silence.role} for {silence.seconds:.0f} s"
                 + (" (on hold)" if silence.held else ""))

    def register(self, call: Call, leg: Leg) -> None:
        assert leg.dialog is not None
        dialog_id = leg.dialog.id
        self._by_dialog[dialog_id] = (call, leg)
        call.dialog_ids.append(dialog_id)
        self.sip.core.register_dialog(dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag)

    def _refuse_setup(self, call: Call, cause: Cause, *, status: int | None = None, detail: str | None = None,
                      cause_code: int | None = None) -> None:
        """Refuse a call being set up for ``cause``: the answer says why (Reason), the
        refusal is counted and logged (``call.refused``), the call ends."""
        invite = call.caller.invite
        assert invite is not None
        response = refusal_response(invite, cause, to_tag=call.local_tag, status=status, detail=detail,
                                    cause_code=cause_code)
        self.refusals.note(cause, response.status, call_id=call.id, source=str(call.caller.peer),
                           detail=detail or REFUSALS[cause].detail)
        self._end_setup(call, response, response.reason)

    def _fail_setup(self, call: Call, status: int, reason: str) -> None:
        invite = call.caller.invite
        assert invite is not None
        self._end_setup(call, make_response(invite, status, reason, to_tag=call.local_tag), reason)

    def _end_setup(self, call: Call, response: Response, reason: str) -> None:
        session = call.caller.session
        if session is not None and not session.terminated:
            # the final response ends the caller's (early) dialog: no BYE
            session.handle(Reject(response.status, response.reason, _extra_headers(response)))
        self.totals["failed"] += 1
        self.end(call, CallInput.FAILED, reason, status=response.status)

    # ------------------------------------------------------------------ the bot leg
    async def _dial_bot(self, call: Call, caller_invite: Request) -> None:
        uri = parse_uri(call.channel.bot_uri or "")
        if not isinstance(uri, SipUri):
            return self._fail_setup(call, 500, "Server Internal Error (bot URI)")
        leg = await dial_leg(
            self, call, "bot", uri, LegInvite(
                answer_timeout=self.config.bot_answer_timeout, caller_user=_user(caller_invite.from_.uri),
                max_forwards=(caller_invite.max_forwards or 70) - 1,
                policy=self.config.transfer.legs.get(str(uri)) or LegPolicy()),
            while_in=CallState.SETUP,  # the caller may cancel while the port opens: end() has run
            dialling=LegDialing("bot", str(uri)),
            on_progress=lambda response, early: self._bot_progress(call, response, early),
            on_answer=lambda response, media: self._bot_answered(call, media),
            on_failure=lambda status, reason: self._bot_failed(call, status, reason),
        )
        if leg is NotDialled.NO_PORTS:
            self._refuse_setup(call, Cause.PORT_POOL)

    def _bot_progress(self, call: Call, response: Response, early: NegotiatedMedia | None = None) -> None:
        if call.state is not CallState.SETUP:
            return
        call.record(self.now(), LegProgress("bot", response.status))
        bot = call.bot
        if response.body and response.content_type == "application/sdp" and self.bridge(call) is None:
            self._early_media(call, response)
        elif early is not None and bot is not None and bot.endpoint is not None and bot.early_address is not None:
            # another fork's 183 (or new SDP): its early media is the one heard now
            address = (early.remote_address, early.remote_port)
            if address != bot.early_address:
                apply_media(bot.endpoint, early, repoint=True)
                bot.early_address = address
        elif call.caller.dialog is None or response.status == 180:
            self._caller_progress(call, Progress(180))

    @staticmethod
    def _caller_progress(call: Call, progress: Progress) -> None:
        session = call.caller.session
        if session is not None and session.state in (SessionState.INCOMING, SessionState.EARLY):
            session.handle(progress)

    def _early_media(self, call: Call, response: Response) -> None:
        """A 18x with SDP from the bot: bridge now and give the caller a 183 with our
        SDP, so announcements the bot plays before answering are heard."""
        leg = call.bot
        assert leg is not None and leg.endpoint is not None and call.caller.endpoint is not None
        try:
            media = negotiate(leg.dialing.offer, SessionDescription.parse(response.body), local_is_offerer=True)
        except SipError:
            return  # unusable early SDP: wait for the 2xx
        apply_media(leg.endpoint, media)
        leg.early_address = (media.remote_address, media.remote_port)
        call.resources.append(self.media.bridge(call.caller.endpoint, leg.endpoint))
        # no SDP in an unreliable 183 when the caller sent no offer: ours belongs in the 2xx
        delayed = call.caller.invite is not None and not call.caller.invite.body
        self._caller_progress(call, Progress(183, None if delayed else call.caller_sdp))
        call.record(self.now(), LegEarlyMedia("bot"))

    def _bot_answered(self, call: Call, media: NegotiatedMedia) -> None:
        leg = call.bot
        assert leg is not None and leg.endpoint is not None and call.caller.endpoint is not None
        if call.state is not CallState.SETUP:
            self.outbound.hang_up(leg)
            return
        # the 2xx's SDP is the answer (RFC 3960 3): an address other than the early
        # media's re-points the leg, which latched the early source
        moved = leg.early_address is not None and (media.remote_address, media.remote_port) != leg.early_address
        apply_media(leg.endpoint, media, repoint=moved)
        bridge = self.bridge(call)
        if bridge is None:
            call.resources.append(self.media.bridge(call.caller.endpoint, leg.endpoint))
        else:
            bridge.refresh()  # early media already flows; the 2xx's SDP is the final answer
        call.record(self.now(), LegAnswered("bot"))
        self._answer_caller(call)

    def _bot_failed(self, call: Call, status: FailureStatus, reason: str) -> None:
        if call.state is not CallState.SETUP:
            return
        mapped = caller_status(status)
        call.record(self.now(), LegFailed("bot", status, reason))
        log.info("call.bot_failed", call_id=call.id, status=status, caller_status=mapped)
        # the Reason carries the bot's own status (408: it never answered in time)
        self._refuse_setup(call, Cause.BOT_FAILED, status=mapped, detail=f"bot: {status}",
                           cause_code=status if isinstance(status, int) else 408)

    # ------------------------------------------------------------------ in-dialog
    def _in_dialog(self, call: Call, leg: Leg, event: RequestReceived) -> None:
        request = event.request
        assert leg.dialog is not None
        method = request.method
        if method in _SESSION_METHODS and leg.session is not None:
            # the INVITE session's: ACK, BYE, re-INVITE, UPDATE (refresh or offer)
            if method == "ACK":
                call.record(self.now(), LegAcked(leg.role))
            ended = leg.session.terminated
            leg.session.handle(IncomingRequest(request, event.transaction_id))
            if method == "BYE" and not ended and leg.session.terminated:
                self._hung_up(call, leg, request)
            return
        if method == "ACK":
            return
        try:
            leg.dialog.receive_request(request)
        except SipError as error:
            self.respond(event.transaction_id, make_response(request, error.status, to_tag=leg.dialog.id.local_tag))
            return
        if method in ("OPTIONS", "INFO"):
            # INFO bodies (dtmf-relay, bot metadata) are accepted and recorded, not relayed yet
            call.record(self.now(), LegRequestReceived(leg.role, method, request.content_type))
            self.respond(event.transaction_id, leg.dialog.respond(request, 200))
        elif method in ("REFER", "NOTIFY") and self.transfers.handles(call, leg, request):
            self.transfers.receive(call, leg, event)
        else:
            self.respond(event.transaction_id, leg.dialog.respond(request, 501))

    def leg_hung_up(self, call: Call, leg: Leg) -> None:
        """A leg without a SIP session ended from its side (a desk agent hung up on
        the page, engine/desk_leg.py): what a BYE from it would do."""
        if not leg.ended and call.state is not CallState.ENDED:
            self._hung_up(call, leg, None)

    def _hung_up(self, call: Call, leg: Leg, bye: Request | None) -> None:
        """The leg's peer sent BYE (its session answered it 200): what it means is the
        controller's (engine/controller.py bye_commands), told what the call knows."""
        call.record(self.now(), LegHungUp(leg.role))
        who = Who.BOT if leg is call.bot else Who.AGENT if leg is call.agent else Who.OTHER
        context = context_from_bot(bye.headers, ()) if who is Who.BOT and bye is not None else {}
        self.control(call, ByeReceived(
            leg, who, leg.role, agent_connected=call.agent is not None,
            consulting=self.transfers.warm.consulting(call),
            post_agent=self.flows.can_resume_after_agent(call), context=tuple(context.items())))

    # the ByeEffects port (engine/effects.py): what a BYE leads to
    def let_bot_go(self, call: Call, leg: Leg) -> None:
        self.transfers.bot_left(call)  # the bot leaving after a transfer ends nothing else

    def take_context(self, call: Call, context: tuple[tuple[str, str], ...]) -> None:
        call.context.update(context)  # a bot may hand its context back on its BYE

    def bot_node_over(self, call: Call, leg: Leg, flow: Any, status: FailureStatus | None) -> None:
        self.flows.bot_over(call, leg, flow, status)  # the flow that dialled the bot goes on with the caller

    def consult_agent_gone(self, call: Call, leg: Leg) -> None:
        self.transfers.warm.agent_hung_up(call)  # the warm transfer decides what follows

    def resume_after_agent(self, call: Call, leg: Leg) -> None:
        self.flows.resume_after_agent(call)

    def end_call(self, call: Call, reason: str) -> None:
        self.end(call, CallInput.HUNG_UP, reason)

    def _session_event(self, call: Call, leg: Leg, output: Output) -> None:
        """What a leg's INVITE session reports once the leg is set up (or, for the
        caller, from its INVITE on)."""
        if isinstance(output, ModifyReceived):
            self._reinvite(call, leg, output)
        elif isinstance(output, MediaUpdated) and leg is call.caller and leg.endpoint is not None:
            # the answer to our offer: in the ACK of a delayed-offer INVITE (13.2.1)
            apply_media(leg.endpoint, output.media)
            bridge = self.bridge(call)
            if bridge is not None:
                bridge.refresh()
        elif isinstance(output, ByeFailed):
            # the call ended when the BYE left (15); the record says why the peer may not know
            log.warning("leg.bye_failed", leg=leg.role, status=output.status, reason=output.reason)
            call.record(self.now(), LegByeFailed(leg.role, output.status, output.reason))
        elif isinstance(output, SessionTimerStarted):
            if leg is call.caller and call.state is CallState.CONNECTED:
                call.record(self.now(), SessionRefreshed())
        elif isinstance(output, Terminated):
            if output.cause is SessionCause.CANCELLED and leg is call.caller:
                self.end(call, CallInput.CANCELLED, "caller cancelled", status=487)
            elif output.cause is SessionCause.SESSION_EXPIRED:
                call.record(self.now(), SessionExpired())
                self.end(call, CallInput.HUNG_UP, "session timer expired")
            elif output.cause is SessionCause.NO_ACK:
                # 13.3.1.4: our 2xx was never ACKed: the peer is gone
                self.end(call, CallInput.HUNG_UP, f"{leg.role} never acknowledged the answer")
            elif output.cause is SessionCause.NO_PRACK and leg is call.caller:
                # RFC 3262 3: the session already failed the INVITE with a 500
                self.totals["failed"] += 1
                self.end(call, CallInput.FAILED, "the caller never PRACKed our reliable 1xx", status=500)
            elif output.cause is SessionCause.DIALOG_GONE:
                # 12.2.1.2: 481/408 to our re-INVITE: the peer's dialog is gone
                self.end(call, CallInput.HUNG_UP, f"{leg.role} dialog gone")

    def _reinvite(self, call: Call, leg: Leg, received: ModifyReceived) -> None:
        """A re-INVITE or UPDATE offer from either side (hold/unhold, a new codec, a new
        address): answered here per RFC 3264, since voicegw anchors the media; the
        endpoint follows the new address and payload type (the relay transcodes
        PCMU/PCMA when the legs differ). Hold and unhold are relayed to the other side.
        Glare (491), a second offer (500) and session-timer headers are the session's."""
        session = leg.session
        assert session is not None
        if leg.endpoint is None:
            session.handle(Reject(488, "Not Acceptable Here (no media)"))
            return
        if leg.sdp is None:
            leg.sdp = self.sdp_builder(leg.peer)
        offer = received.offer
        if offer is None:  # a re-INVITE without offer wants ours (13.2.1): not supported yet
            session.handle(Reject(488, "Not Acceptable Here (re-INVITE without SDP offer)"))
            return
        try:
            answer = self.answer(leg, offer)
        except SipError as error:
            session.handle(Reject(488, f"Not Acceptable Here ({error.reason})"))
            return
        held_before = leg.held
        leg.held = answer.negotiated.remote_hold
        apply_media(leg.endpoint, answer.negotiated)
        bridge = self.bridge(call)
        if bridge is not None:
            bridge.refresh()
        call.record(self.now(), LegReinvited(leg.role, answer.negotiated.remote_hold))
        session.handle(Accept(leg.sdp.stamp(answer.sdp)))
        if leg.held != held_before:
            self._relay_hold(call, leg, offer)

    def _relay_hold(self, call: Call, leg: Leg, offer: SessionDescription) -> None:
        """Hold and unhold reach the other side of the bridge: voicegw re-offers it the
        direction the holding side asked for (sendonly/inactive, then sendrecv), from
        its own address, so a bot or agent knows the caller is on hold."""
        bridge = self.bridge(call)
        if bridge is None:
            return
        far_endpoint = bridge.b if leg.endpoint is bridge.a else bridge.a
        far = next((other for other in call.legs()
                    if other is not leg and other.endpoint is far_endpoint and not other.ended), None)
        if far is None or far.endpoint is None or far.sdp is None or far.session is None:
            return
        audio = next((m for m in offer.media if m.media == "audio" and not m.is_rejected), None)
        direction = audio.direction if audio is not None and leg.held else Direction.SENDRECV
        if leg.held and direction is Direction.SENDRECV:
            direction = Direction.SENDONLY  # c=0.0.0.0 style hold: say it explicitly
        reoffer = offer_on(far, direction)
        self.outbound.reoffer(call, far, reoffer, lambda media: self._far_answered(call, far, media))
        call.record(self.now(), LegReofferSent(far.role, direction.value))

    def _far_answered(self, call: Call, leg: Leg, media: NegotiatedMedia) -> None:
        if leg.endpoint is not None and not leg.ended:
            apply_media(leg.endpoint, media)
            bridge = self.bridge(call)
            if bridge is not None:
                bridge.refresh()

    @staticmethod
    def bridge(call: Call) -> Bridge | None:
        return next((r for r in call.resources if isinstance(r, BRIDGES) and not r.closed), None)

    # ------------------------------------------------------------------ ending
    def end(self, call: Call, cause: CallInput, reason: str,
            caller_headers: list[tuple[str, str]] | None = None, status: int | None = None) -> None:
        """End the call: every leg still up gets BYE (or CANCEL while it rings), media
        and timers are released. ``caller_headers`` go on the caller's BYE (hand-back);
        ``status`` is the final response the caller got when it ends in setup."""
        if not call.apply(cause, self.now(), reason, status):
            return
        for name in list(call.timers):
            call.cancel_timer(name)
        self.transfers.call_ended(call)
        for leg in call.legs():
            if leg.ended:
                continue
            if leg.dialing is not None:  # still ringing: the controller CANCELs it
                self.outbound.give_up(leg.dialing)
            elif not leg.up:  # BYE only on a set-up leg (the caller's held for its ACK, 15)
                self.outbound.hang_up(leg)  # CANCEL, a final response, or nothing to end
            else:
                self.outbound.hang_up(leg, caller_headers if leg is call.caller else None)
                call.record(self.now(), LegByeSent(leg.role))
        for resource in call.resources:
            if hasattr(resource, "close"):
                resource.close()
            else:
                resource.stop()
        for leg in call.legs():
            if leg.endpoint is not None:
                leg.endpoint.close()
        current = asyncio.current_task()
        for task in list(call.tasks):
            if task is not current:
                task.cancel()
        # a cancelled task keeps its CancelledError, whose traceback holds the flow's
        # frames and their locals (prompts, players): the ended call, which the API
        # keeps a while, must not keep the task
        call.flow_task = None
        call.lighten()
        # forgotten at once when every leg's session is over, else when the last one is
        self.executor.feed(call, CallEnded(self.now(), settled=_sessions_over(call)))

    def _leg_settled(self, call: Call) -> None:
        """A leg's INVITE session is over: an ended call whose sessions are all over is
        forgotten now (the controller ignores this before the end)."""
        if call.state is CallState.ENDED and _sessions_over(call):
            self.executor.feed(call, LegsSettled())

    def _forget(self, call: Call) -> None:
        """Drop every index entry of an ended call: its dialogs (legs replaced or
        dropped during the call included) and its transaction handlers. Late requests
        in its dialogs get 481 from the UA core (12.2.2); copies of a 2xx we ACKed are
        ACKed again by the core (13.2.2.4)."""
        for name in list(call.timers):  # the forget backstop, if it was armed
            call.cancel_timer(name)
        for transaction_id in (*call.transaction_ids, *(leg.transaction_id for leg in call.legs())):
            self._by_transaction.pop(transaction_id, None)
            self._by_server_transaction.pop(transaction_id, None)
        for dialog_id in call.dialog_ids:
            self._by_dialog.pop(dialog_id, None)
            self.sip.core.forget_dialog(dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag)
        self.calls.pop(call.key, None)
        for watcher in self.forgotten:
            try:
                watcher(call)
            except Exception as error:  # noqa: BLE001 - a broken watcher never breaks the engine
                log.error("engine.forgotten_watcher_failed", error=repr(error))

    # ------------------------------------------------------------------ helpers
    async def run_flow(self, call: Call, at: str | None = None) -> None:
        await self.flows.run(call, at)

    async def render(self, text: str) -> np.ndarray:
        return await self.flows.render(text)

    def dialog_owner(self, dialog_id: DialogId) -> tuple[Call, Leg] | None:
        return self._by_dialog.get(dialog_id)

    def respond(self, transaction_id: str, response: Response) -> None:
        if transaction_id:
            self.sip.send_response(transaction_id, response)

    def statistics(self) -> EngineStatistics:
        """What the engine holds now (engine/stats.py): calls, legs, dialogs, handlers,
        media endpoints, bridges, players, timers, tasks."""
        return engine_statistics(
            self.calls.values(), tasks=self._tasks, dialogs=len(self._by_dialog),
            handlers=len(self._by_transaction) + len(self._by_server_transaction), pool=self.pool, totals=self.totals)


#: In-dialog requests that are the INVITE session's (the dialog keeps REFER, NOTIFY,
#: INFO and OPTIONS).
_SESSION_METHODS = ("ACK", "BYE", "INVITE", "UPDATE", "PRACK")


def _extra_headers(response: Response) -> tuple[tuple[str, str], ...]:
    """What a response built for a request carries beyond what the session puts in
    every response (Reason, Retry-After, Min-SE, WWW-Authenticate...)."""
    return tuple((name, value) for name, value in response.headers
                 if name.lower() not in _BASE_HEADERS)


_BASE_HEADERS = frozenset({"via", "from", "to", "call-id", "cseq", "content-length", "content-type", "contact"})


def remote_target_problem(invite: Request) -> str | None:
    """Why ``invite`` cannot start a call, or None. RFC 3261 8.1.1.8: a request that
    establishes a dialog carries exactly one Contact with a SIP or SIPS URI (our remote
    target for BYE and re-INVITE); "*" belongs to REGISTER (10.2.2); and we call back
    From's and the Request-URI's peers only over SIP."""
    values = invite.headers.get_all("contact")
    if not values:
        return "missing Contact"
    if any(value.strip() == "*" for value in values):
        return "Contact * outside REGISTER"
    try:
        contacts = invite.contacts
    except SipError as error:
        return f"bad Contact: {error.reason}"
    if len(contacts) != 1:
        return "more than one Contact"
    if not isinstance(contacts[0].uri, SipUri):
        return "Contact is not a SIP or SIPS URI"
    return None


def _sessions_over(call: Call) -> bool:
    """No leg of ``call`` has an INVITE session still running."""
    return all(leg.session is None or leg.session.settled for leg in call.legs())


def _user(uri: Any) -> str:
    return getattr(uri, "user", None) or "anonymous"


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("engine.task_failed", error=repr(task.exception()))


__all__ = ["Engine", "caller_status"]
