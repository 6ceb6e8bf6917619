"""The engine in-process: voicegw's own SIP endpoint, UA core and engine on a virtual
clock (peers/vloop.py), talking to in-process SIP user agents over an in-memory UDP
network, for tests/engine/.

The engine is driven at its outer boundary only: bytes in and out of its SIP endpoint
(``transport/endpoint.py``, the real one, on the loop's fake UDP) and RTP in and out
of its media endpoints (the real ones, bound on the same fake network). Nothing of
the engine's inside is touched, so the tests hold while the engine is rebuilt.

- :class:`Lab` owns the loop, the engine and the peers (``caller``, ``bot``,
  ``agent``), runs virtual time (``run_for``, ``run_until``) and checks that nothing
  is left behind (:meth:`Lab.leftovers`), counted as ``GET /debug/objects`` counts
  (engine and UA core statistics, as tests/wire/test_leak_wire.py asserts them) plus
  what only the virtual loop can see: every armed timer, every task, every socket
  still bound, every RTP packet sent after the call ended.
- :class:`Peer` is a SIP UA built from voicegw/sip/ (UA core, dialogs, REFER
  notifier) behind its own ``SipEndpoint``: it places calls (``call``, ``cancel``,
  ``hang_up``, ``refer``), answers them as :class:`Answer` says, accepts REFERs as a
  carrier would (``refer_outcome``), and keeps what it saw as plain lists.
- :class:`MediaSink` is a peer's RTP socket: it counts what arrives (prompts,
  ringback, relayed audio) and sends RTP or RFC 4733 digits into a call.

No TTS engine runs in the harness (a subprocess has no place on a virtual clock):
``Lab`` points the engine's TTS at a command that does not exist, so every spoken
prompt is the 1 s beep the engine falls back to.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Self

from voicegw.engine.b2bua import Engine
from voicegw.engine.outbound import Dialing
from voicegw.media.endpoint import MediaEndpoint
from voicegw.media.player import Player
from voicegw.media.relay import Bridge
from voicegw.media.rtp import build_rtp
from voicegw.settings import EngineConfig, TransferConfig
from voicegw.sip.build import make_response, new_call_id, new_tag
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.dialog import Dialog, make_dialog_response
from voicegw.sip.dialog_table import DialogId
from voicegw.sip.errors import SipError
from voicegw.sip.events import (
    Address,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from voicegw.sip.message import Headers, Request, Response
from voicegw.sip.offer_answer import make_answer
from voicegw.sip.referee import IncomingRefer
from voicegw.sip.sdp import SdpBuilder, SessionDescription
from voicegw.sip.sipfrag import SipFrag
from voicegw.sip.transaction import ClientTransaction, ServerTransaction
from voicegw.transport.endpoint import SipEndpoint

from .vloop import Datagram, VirtualLoop

HOST = "127.0.0.1"
"""voicegw's SIP and RTP address."""
SIP_PORT = 5060
RTP_LOW, RTP_HIGH = 20000, 20099
PEER_RTP_PORT = 30000
HOSTS = {"caller": "127.0.0.2", "bot": "127.0.0.3", "agent": "127.0.0.4", "agent2": "127.0.0.5"}
SUPPORTED = ("timer", "norefersub", "replaces")
"""What the daemon's core supports (daemon.py), and the peers' cores with it."""
FORGET_AFTER = 32.0
"""64*T1: an ended call stays indexed this long for late retransmissions."""

ENGINE_ZERO = ("calls", "legs", "dialogs", "transaction_handlers", "media_endpoints", "bridges", "players",
               "timers", "tasks", "transfers_in_flight")
"""The engine statistics the wire leak test asserts back at 0 (GET /debug/objects)."""
CORE_ZERO = ("server_transactions", "client_transactions", "pending_transactions", "dialogs", "accepted",
             "timer_entries")
"""The UA core statistics it asserts back at 0."""


def peer_uri(role: str) -> str:
    return f"sip:{role}@{HOSTS[role]}:{SIP_PORT}"


def engine_config(**overrides: Any) -> EngineConfig:
    """An engine config for the lab: voicegw on HOST, a small RTP range, transfers
    allowed to the agents, short timeouts; ``transfer`` may be a dict of overrides."""
    transfer = overrides.pop("transfer", {})
    base = TransferConfig(allow=(peer_uri("agent"), peer_uri("agent2")), ring_timeout=10.0,
                          refer_timeout=8.0, notify_timeout=20.0)
    config = EngineConfig(host=HOST, sip_port=SIP_PORT, rtp_port_min=RTP_LOW, rtp_port_max=RTP_HIGH,
                          bot_answer_timeout=10.0, tts_cache_dir="/nonexistent/voicegw-harness-tts",
                          transfer=replace(base, **transfer) if isinstance(transfer, dict) else transfer)
    return replace(config, **overrides)


# ------------------------------------------------------------------------------ media
class MediaSink:
    """A peer's RTP socket on the fake network: counts packets by source, sends RTP."""

    def __init__(self, host: str, port: int = PEER_RTP_PORT) -> None:
        self.address = (host, port)
        self.received: dict[tuple[str, int], int] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._seq = itertools.count(random.Random(port).randrange(1 << 15))
        self.ssrc = port * 7919 & 0xFFFFFFFF

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received[addr] = self.received.get(addr, 0) + 1

    def error_received(self, exc: Exception) -> None:  # pragma: no cover - no ICMP here
        pass

    @property
    def total(self) -> int:
        return sum(self.received.values())

    def send_audio(self, to: tuple[str, int], packets: int = 5) -> None:
        assert self.transport is not None
        for _ in range(packets):
            seq = next(self._seq)
            self.transport.sendto(build_rtp(0, seq, seq * 160, self.ssrc, b"\xff" * 160), to)

    def send_digit(self, to: tuple[str, int], digit: str, payload_type: int = 101) -> None:
        """One RFC 4733 event: three packets with the end bit (as phones retransmit it)."""
        assert self.transport is not None
        event = "0123456789*#".index(digit)
        ts = next(self._seq) * 160
        for end in (False, True, True, True):
            flags = 0x80 if end else 0
            payload = bytes([event, flags | 10]) + (800).to_bytes(2, "big")
            self.transport.sendto(build_rtp(payload_type, next(self._seq), ts, self.ssrc, payload), to)


# ------------------------------------------------------------------------------ SIP peers
@dataclass
class Answer:
    """How a peer answers an INVITE: ``status`` after ``after`` seconds (None: never),
    a 180 first when ``ring``."""

    status: int = 200
    after: float | None = 0.0
    ring: bool = True


@dataclass(eq=False)
class PeerCall:
    """One call at a peer, as the peer sees it."""

    call_id: str
    outgoing: bool
    invite: Request
    transaction_id: str
    sdp: SdpBuilder
    dialog: Dialog | None = None
    statuses: list[int] = field(default_factory=list)
    """Responses to our INVITE (outgoing) or that we sent (incoming), in order."""
    state: str = "calling"
    """calling, early, confirmed, ended (BYE either way), failed (final non-2xx), cancelled."""
    remote_media: tuple[str, int] | None = None
    requests: list[Request] = field(default_factory=list)
    """In-dialog requests received (BYE, REFER, NOTIFY, re-INVITE...)."""
    responses: dict[str, list[int]] = field(default_factory=dict)
    """Responses to our in-dialog requests, by method."""
    answer_handle: asyncio.TimerHandle | None = None
    cancelled: bool = False
    """We sent CANCEL: a 2xx that crosses it is ACKed and then BYEd (RFC 3261 15)."""
    refers: list[IncomingRefer] = field(default_factory=list)

    @property
    def notifies(self) -> list[int]:
        """Status codes of the sipfrag bodies of NOTIFYs received."""
        return [SipFrag.parse(r.body).status for r in self.requests if r.method == "NOTIFY" and r.body]

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


class Peer:
    """An in-process SIP UA at ``HOSTS[role]``:5060 with an RTP sink at :30000."""

    def __init__(self, lab: Lab, role: str) -> None:
        self.lab = lab
        self.role = role
        self.host = HOSTS[role]
        self.address = Address("udp", self.host, SIP_PORT)
        self.uri = peer_uri(role)
        self.core = UserAgentCore(CoreConfig(host=self.host, udp_port=SIP_PORT, tcp_port=SIP_PORT,
                                             user_agent=f"peer-{role}", supported=SUPPORTED))
        self.endpoint = SipEndpoint(core=self.core, on_event=self._on_event)
        self.media = MediaSink(self.host)
        self.answer = Answer()
        """How incoming INVITEs are answered."""
        self.refer_outcome: list[int] | int | None = [100, 200]
        """A REFER received (we are the carrier): a list = 202 then a NOTIFY per status;
        an int = that final response (405...); None = no answer at all."""
        self.on_request: Callable[[PeerCall, Request], None] | None = None
        """Called after each in-dialog request is handled (scripted reactions)."""
        self.calls: dict[str, PeerCall] = {}
        self._by_tx: dict[str, tuple[PeerCall, str]] = {}

    async def start(self, loop: VirtualLoop) -> None:
        await self.endpoint.start(self.host, SIP_PORT, None, lag_probe=False)
        await loop.create_datagram_endpoint(lambda: self.media, local_addr=self.media.address)  # type: ignore[arg-type,return-value]

    @property
    def last(self) -> PeerCall:
        return list(self.calls.values())[-1]

    # -- as a UAC ---------------------------------------------------------------------
    def call(self, to: str = f"sip:bot@{HOST}:{SIP_PORT}", *, headers: list[tuple[str, str]] = ()) -> PeerCall:
        """INVITE voicegw with an SDP offer for our RTP sink."""
        sdp = SdpBuilder(session_id=random.getrandbits(32), address=self.host)
        offer = sdp.offer(port=self.media.address[1])
        call_id = new_call_id(self.host)
        invite = Request("INVITE", to, Headers([
            ("From", f"<sip:{self.role}@{self.host}>;tag={new_tag()}"), ("To", f"<{to}>"),
            ("Call-ID", call_id), ("CSeq", "1 INVITE"), ("Contact", f"<{self.uri}>"),
            ("Max-Forwards", "70"), *headers]))
        invite.set_body(bytes(offer), "application/sdp")
        transaction_id = self.endpoint.send_request(invite, Address("udp", HOST, SIP_PORT))
        call = PeerCall(call_id, True, invite, transaction_id, sdp)
        self.calls[call_id] = call
        self._by_tx[transaction_id] = (call, "INVITE")
        return call

    def cancel(self, call: PeerCall) -> None:
        call.cancelled = True
        invite = call.invite
        headers = Headers([("Via", invite.headers.values("via")[0])])
        for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("max-forwards", "Max-Forwards")):
            headers.add(name, invite.headers.get(key) or "")
        headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        self.endpoint.send_request(Request("CANCEL", invite.uri, headers), Address("udp", HOST, SIP_PORT))

    def request(self, call: PeerCall, method: str, *, headers: list[tuple[str, str]] = (),
                body: bytes = b"", content_type: str | None = None) -> None:
        """An in-dialog request (BYE, REFER, re-INVITE, INFO...)."""
        assert call.dialog is not None, f"{self.role}: no dialog to send {method} on"
        request, _hop = call.dialog.create_request(method, body=body, content_type=content_type,
                                                   extra_headers=headers)
        transaction_id = self.endpoint.send_request(request, Address("udp", HOST, SIP_PORT))
        self._by_tx[transaction_id] = (call, method)
        if method == "BYE":
            call.state = "ended"

    def hang_up(self, call: PeerCall | None = None, headers: list[tuple[str, str]] = ()) -> None:
        """BYE when the call is up; CANCEL while it rings (outgoing) or a 486 (incoming)."""
        call = call or self.last
        if call.state in ("ended", "failed", "cancelled"):
            return
        if call.dialog is not None and call.state == "confirmed":
            self.request(call, "BYE", headers=headers)
        elif call.outgoing:
            self.cancel(call)
        else:
            self._respond_invite(call, 486)

    def refer(self, call: PeerCall, target: str, headers: list[tuple[str, str]] = ()) -> None:
        """REFER on the call (a bot asking voicegw to transfer the caller)."""
        self.request(call, "REFER", headers=[("Refer-To", f"<{target}>"),
                                              ("Referred-By", f"<{self.uri}>"), *headers])

    # -- events -------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event)
        elif isinstance(event, ResponseReceived):
            self._on_response(event)
        elif isinstance(event, TransactionTimedOut):
            found = self._by_tx.pop(event.transaction_id, None)
            if found is not None:
                call, method = found
                call.responses.setdefault(method, []).append(408)
                if method == "INVITE" and call.state in ("calling", "early"):
                    call.state = "failed"
        elif isinstance(event, CancelReceived):
            call = next((c for c in self.calls.values() if c.transaction_id == event.transaction_id), None)
            if call is not None and call.state in ("calling", "early"):
                self._respond_invite(call, 487)
                call.state = "cancelled"

    def _on_response(self, event: ResponseReceived) -> None:
        found = self._by_tx.get(event.transaction_id)
        if found is None:
            return
        call, method = found
        response = event.response
        if method != "INVITE":
            if response.status >= 200:
                call.responses.setdefault(method, []).append(response.status)
                self._by_tx.pop(event.transaction_id, None)
            return
        call.statuses.append(response.status)
        if response.status < 200:
            if response.status > 100 and call.state == "calling":
                call.state = "early"
            return
        if response.status >= 300:
            call.state = "cancelled" if response.status == 487 else "failed"
            return
        if call.dialog is None:
            call.dialog = Dialog.from_uac_response(call.invite, response, local_via=self._via(),
                                                   contact=f"<{self.uri}>", over_tls=False)
            self.core.register_dialog(*_key(call.dialog.id))
        ack, _hop = call.dialog.create_ack(call.invite.cseq.seq)
        self.endpoint.send_request(ack, Address("udp", HOST, SIP_PORT))
        if call.state in ("calling", "early"):
            call.state = "confirmed"
            call.remote_media = _media_address(response.body)
            if call.cancelled:
                self.request(call, "BYE")

    def _on_request(self, event: RequestReceived) -> None:
        request = event.request
        if request.to.tag is None and request.method == "INVITE":
            self._incoming_invite(event)
            return
        call = self.calls.get(request.call_id)
        if call is None or call.dialog is None:
            if request.method != "ACK":
                self.endpoint.send_response(event.transaction_id, _response(request, 481))
            return
        if request.method == "ACK":
            return
        call.requests.append(request)
        dialog = call.dialog
        try:
            dialog.receive_request(request)
        except SipError as error:
            self.endpoint.send_response(event.transaction_id, dialog.respond(request, error.status))
            return
        method = request.method
        if method == "BYE":
            call.state = "ended"
            self.endpoint.send_response(event.transaction_id, dialog.respond(request, 200))
        elif method in ("INVITE", "UPDATE") and request.body:
            offer = SessionDescription.parse(request.body)
            answer = make_answer(offer, origin=call.sdp.origin, address=self.host, port=self.media.address[1])
            call.remote_media = _media_address(request.body)
            self.endpoint.send_response(event.transaction_id, dialog.respond(
                request, 200, body=bytes(call.sdp.stamp(answer.sdp)), content_type="application/sdp"))
        elif method == "REFER":
            self._refer_received(call, event)
        else:  # NOTIFY, INFO, OPTIONS, UPDATE without offer
            self.endpoint.send_response(event.transaction_id, dialog.respond(request, 200))
        if self.on_request is not None:
            self.on_request(call, request)

    def _incoming_invite(self, event: RequestReceived) -> None:
        request = event.request
        sdp = SdpBuilder(session_id=random.getrandbits(32), address=self.host)
        call = PeerCall(request.call_id, False, request, event.transaction_id, sdp,
                        remote_media=_media_address(request.body))
        self.calls[request.call_id] = call
        plan = self.answer
        if plan.ring:
            self._respond_invite(call, 180)
        if plan.after is not None:
            loop = self.lab.loop
            call.answer_handle = loop.call_later(plan.after, self._respond_invite, call, plan.status)

    def _respond_invite(self, call: PeerCall, status: int) -> None:
        call.answer_handle = None
        if call.state not in ("calling", "early"):
            return
        invite = call.invite
        tag = call.dialog.id.local_tag if call.dialog is not None else new_tag()
        body, content_type = b"", None
        if status == 200:
            answer = make_answer(SessionDescription.parse(invite.body), origin=call.sdp.origin,
                                 address=self.host, port=self.media.address[1])
            body, content_type = bytes(call.sdp.stamp(answer.sdp)), "application/sdp"
        response = make_dialog_response(invite, status, local_tag=tag, contact=f"<{self.uri}>",
                                        body=body, content_type=content_type)
        if 100 < status < 300 and call.dialog is None:
            call.dialog = Dialog.from_uas_response(invite, response, local_via=self._via(), over_tls=False)
            self.core.register_dialog(*_key(call.dialog.id))
        elif call.dialog is not None and status >= 200:
            call.dialog.respond(invite, status)
        call.statuses.append(status)
        call.state = "early" if status < 200 else "confirmed" if status < 300 else "failed"
        self.endpoint.send_response(call.transaction_id, response)

    def _refer_received(self, call: PeerCall, event: RequestReceived) -> None:
        outcome = self.refer_outcome
        assert call.dialog is not None
        if outcome is None:
            return  # silent: voicegw's REFER times out
        incoming = IncomingRefer.receive(event.request, call.dialog)
        if isinstance(outcome, int):
            self.endpoint.send_response(event.transaction_id, incoming.reject(outcome))
            return
        response, notify = incoming.accept(self.lab.loop.time())
        call.refers.append(incoming)
        self.endpoint.send_response(event.transaction_id, response)
        notifies = [notify] if notify is not None else []
        for status in outcome:
            later = incoming.notify(status, self.lab.loop.time())
            if later is not None:
                notifies.append(later)
        for request, _hop in notifies:
            transaction_id = self.endpoint.send_request(request, Address("udp", HOST, SIP_PORT))
            self._by_tx[transaction_id] = (call, "NOTIFY")

    def _via(self) -> str:
        return f"SIP/2.0/UDP {self.host}:{SIP_PORT};rport"


def _key(dialog_id: DialogId) -> tuple[str, str, str]:
    return dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag


def _response(request: Request, status: int) -> Response:
    return make_response(request, status, to_tag=request.to.tag or new_tag())


def _media_address(body: bytes) -> tuple[str, int] | None:
    if not body:
        return None
    sdp = SessionDescription.parse(body)
    audio = next((m for m in sdp.media if m.media == "audio"), None)
    if audio is None:
        return None
    host = audio.connection_address
    return (host, audio.port) if host else None


# ------------------------------------------------------------------------------ the lab
class Lab:
    """voicegw's engine and its peers on one virtual loop."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.loop = VirtualLoop()
        asyncio.set_event_loop(self.loop)
        self.config = config or engine_config()
        self.endpoint = SipEndpoint()
        self.engine: Engine = None  # type: ignore[assignment]
        self.peers = {role: Peer(self, role) for role in HOSTS}
        self.ended_at: float | None = None
        self.late_rtp: list[Datagram] = []
        """RTP voicegw sent after every call had ended (a player ticking on)."""
        self.loop.network.tap = self._watch
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        await self.endpoint.start(HOST, SIP_PORT, None, lag_probe=False)
        self.endpoint.core = UserAgentCore(CoreConfig(host=HOST, udp_port=SIP_PORT, tcp_port=SIP_PORT,
                                                      supported=SUPPORTED))
        self.engine = Engine(self.endpoint, self.config)
        self.engine.tts.command = "voicegw-harness-has-no-tts"
        self.endpoint.on_event = self.engine.handle_event
        for peer in self.peers.values():
            await peer.start(self.loop)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def caller(self) -> Peer:
        return self.peers["caller"]

    @property
    def bot(self) -> Peer:
        return self.peers["bot"]

    @property
    def agent(self) -> Peer:
        return self.peers["agent"]

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()
        asyncio.set_event_loop(None)

    # -- time ---------------------------------------------------------------------------
    def now(self) -> float:
        return self.loop.time()

    def run_for(self, seconds: float) -> None:
        self.loop.run_for(seconds)

    def run_until(self, condition: Callable[[], bool], within: float = 60.0, step: float = 0.05) -> bool:
        """Run until ``condition()`` holds (checked every ``step`` s of virtual time),
        for at most ``within`` s; whether it held."""
        deadline = self.now() + within
        while not condition():
            if self.now() >= deadline:
                return False
            self.run_for(step)
        return True

    # -- what the engine holds ---------------------------------------------------------
    def calls(self) -> list[Any]:
        return list(self.engine.calls.values())

    def call(self) -> Any:
        """The one call the engine holds."""
        (call,) = self.engine.calls.values()
        return call

    def events(self) -> list[str]:
        """The one call's timeline as event names."""
        return [event.name for _, event in self.call().timeline]

    def _watch(self, datagram: Datagram) -> None:
        source_host, source_port = datagram.source
        if (self.ended_at is not None and source_host == HOST and RTP_LOW <= source_port <= RTP_HIGH + 1
                and datagram.at > self.ended_at):
            self.late_rtp.append(datagram)

    def settle(self) -> None:
        """Every call over: run past the time ended calls stay indexed (64*T1), and
        the transactions' last timers, with the late-RTP watch on."""
        assert self.run_until(lambda: not self.engine.active_calls(), within=120.0), self.describe()
        self.ended_at = self.now()
        self.run_for(FORGET_AFTER + 10.0)

    def leftovers(self, *, instances: bool = False) -> dict[str, Any]:
        """Everything still held that should not be, by name (empty: nothing left).
        The engine's and UA core's counters as GET /debug/objects serves them; the
        virtual loop's armed timers and live tasks; sockets still bound on voicegw's
        RTP ports; RTP voicegw sent after the calls ended. ``instances``: also walk the
        collector's objects, as /debug/objects?instances does (slower)."""
        left: dict[str, Any] = {}
        stats = self.engine.statistics()
        for key in ENGINE_ZERO:
            if getattr(stats, key):
                left[f"engine.{key}"] = getattr(stats, key)
        cores = {"voicegw": self.endpoint.core, **{role: p.core for role, p in self.peers.items()}}
        for name, core in cores.items():
            core_stats = core.statistics()
            for key in CORE_ZERO:
                if key == "dialogs" and name != "voicegw":
                    continue  # the peers never forget a dialog: not voicegw's business
                if getattr(core_stats, key):
                    left[f"core[{name}].{key}"] = getattr(core_stats, key)
        timers = [h for h in self.loop.pending_timers()]
        if timers:
            left["loop.timers"] = [repr(h) for h in timers]
        current = asyncio.current_task(self.loop) if self.loop.is_running() else None
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not current and not t.done()]
        if tasks:
            left["loop.tasks"] = [repr(t) for t in tasks]
        bound = [addr for addr in self.loop.network.bound if addr[0] == HOST and addr[1] != SIP_PORT]
        if bound:
            left["rtp.bound"] = bound
        if self.late_rtp:
            left["rtp.after_end"] = len(self.late_rtp)
        if instances:
            left.update(_instances())
        return left

    def assert_clean(self, *, instances: bool = False) -> None:
        """Settle, then nothing is left behind (see :meth:`leftovers`)."""
        self.settle()
        left = self.leftovers(instances=instances)
        assert left == {}, f"left behind: {left}\n{self.describe()}"

    def describe(self) -> str:
        """The calls' timelines and the peers' views, for assertion messages."""
        lines = []
        for call in self.calls():
            lines.append(f"call {call.id} {call.state.value}: "
                         + " ".join(f"{at - 1000:.2f}:{event.name}" for at, event in call.timeline))
        for role, peer in self.peers.items():
            for pc in peer.calls.values():
                lines.append(f"{role} {pc.call_id[:8]} {pc.state} statuses={pc.statuses} "
                             f"requests={pc.methods()} responses={pc.responses}")
        return "\n".join(lines)


def _instances() -> dict[str, int]:
    """Live engine objects the collector can still reach after a full collection."""
    gc.collect()
    kinds = {Dialing: "Dialing", Player: "Player", ClientTransaction: "ClientTransaction",
             ServerTransaction: "ServerTransaction", MediaEndpoint: "MediaEndpoint", Bridge: "Bridge"}
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = kinds.get(type(obj))
        if name is not None and not (name == "Player" and not obj.running):
            counts[f"live.{name}"] = counts.get(f"live.{name}", 0) + 1
    return counts

