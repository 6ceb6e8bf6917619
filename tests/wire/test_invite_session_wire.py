"""The INVITE session layer (sip/invite_session*.py) against PJSIP over real UDP.

The engine does not use the layer yet, so these tests run it on its own:
:class:`SessionApp` is a minimal executor, one UA core behind a real
``transport.SipEndpoint`` on a loopback port, in a thread with its own event loop. It
answers each call (180, then 200 with its SDP answer) unless told to let it ring,
accepts every re-INVITE and UPDATE, and re-arms one loop timer for the sessions. PJSIP
(pjsua2, one process per UA) is the far end; the assertions are on what PJSIP sent and
received and on the sessions' events.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Self

import pytest
from peers.pjsua import Pjsua
from peers.sipp import run_sipp

from voicegw.sip.build import new_call_id
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.dialog_table import DialogRole
from voicegw.sip.events import (
    Address,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from voicegw.sip.invite_session import InviteSession
from voicegw.sip.invite_session_actions import SessionConfig
from voicegw.sip.invite_session_io import (
    Accept,
    Bye,
    IncomingCancel,
    IncomingRequest,
    IncomingResponse,
    Invite,
    MediaUpdated,
    Modify,
    ModifyCompleted,
    ModifyReceived,
    Output,
    Progress,
    RequestTimedOut,
    RetransmitResponse,
    SendRequest,
    SendResponse,
    Terminated,
)
from voicegw.sip.invite_session_table import Cause, State
from voicegw.sip.message import Headers, Request
from voicegw.sip.offer_answer import OAState, make_answer
from voicegw.sip.sdp import SdpBuilder
from voicegw.sip.sdp_fields import Direction
from voicegw.transport.endpoint import SipEndpoint

pytestmark = pytest.mark.wire
HOST = "127.0.0.1"
MEDIA_PORT = 40000  # nobody listens: these tests are about signalling


class SessionApp:
    def __init__(self, *, answer: bool = True, cross_reinvite: bool = False) -> None:
        self.answer = answer
        self.cross_reinvite = cross_reinvite
        """When the peer's first re-INVITE arrives, send ours (hold) just before the
        session sees it: the two cross as in glare, but deterministically."""
        self.port = 0
        self.sessions: dict[str, InviteSession] = {}  # by Call-ID: one call per test
        self.outputs: dict[str, list[Output]] = {}
        self.sdp = SdpBuilder(session_id=4242, address=HOST)
        self._requests: dict[str, tuple[str, str, int]] = {}  # client tx -> call, method, seq
        self._server: dict[str, str] = {}  # server tx -> call
        self._peers: dict[str, Address] = {}
        self._registered: set[tuple[str, str, str]] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ life
    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(5), "the endpoint did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.endpoint = SipEndpoint(on_event=self._on_event)
        await self.endpoint.start(HOST, 0, None)
        address = self.endpoint.udp_address
        assert address is not None
        self.port = address.port
        self.core = UserAgentCore(CoreConfig(host=HOST, udp_port=self.port))
        self.endpoint.core = self.core
        self.config = SessionConfig(local_via=f"SIP/2.0/UDP {HOST}:{self.port};rport",
                                    contact=f"<sip:voicegw@{HOST}:{self.port}>",
                                    allow=self.core.allow_header)
        self._ready.set()
        await self._stop.wait()
        await self.endpoint.close()

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the endpoint's loop and return its result."""
        async def call() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(5)

    # ------------------------------------------------------------------ the executor
    def _on_event(self, event: Event) -> None:
        now = self.loop.time()
        if isinstance(event, RequestReceived):
            request = event.request
            call = request.call_id
            if request.method == "INVITE" and request.to.tag is None and call not in self.sessions:
                self.sessions[call] = InviteSession(DialogRole.UAS, self.config, randint=lambda a, b: a,
                                                    local_tag="vg-tag")
                self._peers[call] = event.source
            if call not in self.sessions:
                return
            if event.transaction_id:
                self._server[event.transaction_id] = call
            if self.cross_reinvite and request.method == "INVITE" and request.to.tag:
                self.cross_reinvite = False
                self.feed(call, Modify(self.sdp.offer(port=MEDIA_PORT, direction=Direction.SENDONLY)), now)
            self.feed(call, IncomingRequest(request, event.transaction_id), now)
            if request.method == "INVITE" and request.to.tag is None:
                self.feed(call, Progress(180), now)
                if self.answer:
                    self.feed(call, Accept(self._answer(self.sessions[call])), now)
        elif isinstance(event, ResponseReceived):
            call = event.response.call_id
            if call in self.sessions:
                self.feed(call, IncomingResponse(event.response), now)
        elif isinstance(event, CancelReceived):
            call = self._server.get(event.transaction_id)
            if call is not None:
                self.feed(call, IncomingCancel(event.transaction_id), now)
        elif isinstance(event, TransactionTimedOut) and event.transaction_id in self._requests:
            call, method, seq = self._requests[event.transaction_id]
            self.feed(call, RequestTimedOut(method, seq, 503 if event.timer == "transport" else 408), now)

    def feed(self, call: str, item: Any, now: float | None = None) -> list[Output]:
        session = self.sessions[call]
        outputs = session.handle(item, self.loop.time() if now is None else now)
        self._carry_out(call, outputs)
        return outputs

    def _carry_out(self, call: str, outputs: list[Output]) -> None:
        session = self.sessions[call]
        self.outputs.setdefault(call, []).extend(outputs)
        for output in outputs:
            if isinstance(output, SendRequest):
                tx = self.endpoint.send_request(output.request, self._peers[call])
                if tx:
                    self._requests[tx] = (call, output.request.method, output.request.cseq.seq)
            elif isinstance(output, (SendResponse, RetransmitResponse)):
                self.endpoint.send_response(output.transaction_id, output.response)
            elif isinstance(output, ModifyReceived):
                self.feed(call, Accept(self._answer(session)))
        if session.dialog is not None:
            key = (session.dialog.id.call_id, session.dialog.id.local_tag, session.dialog.id.remote_tag)
            if key not in self._registered:
                self._registered.add(key)
                self.core.register_dialog(*key)
        self._rearm()

    def _answer(self, session: InviteSession):
        if session.oa.state is OAState.REMOTE_OFFER_RECEIVED and session.oa.pending_offer is not None:
            draft = make_answer(session.oa.pending_offer, origin=self.sdp.origin, address=HOST,
                                port=MEDIA_PORT)
            return self.sdp.stamp(draft.sdp)
        return self.sdp.offer(port=MEDIA_PORT)

    def _rearm(self) -> None:
        due = [t for s in self.sessions.values() if (t := s.get_timer()) is not None]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due:
            self._timer = self.loop.call_at(min(due), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self.loop.time()
        for call, session in list(self.sessions.items()):
            self._carry_out(call, session.handle_timer(now))
        self._rearm()

    # ------------------------------------------------------------------ for the tests
    def dial(self, uri: str, peer: tuple[str, int]) -> str:
        call = new_call_id(HOST)
        invite = Request("INVITE", uri, Headers([
            ("From", f"<sip:voicegw@{HOST}>;tag=vg-uac"), ("To", f"<{uri}>"),
            ("Call-ID", call), ("CSeq", "1 INVITE"), ("Contact", self.config.contact),
            ("Max-Forwards", "70"), ("Allow", self.core.allow_header),
        ]))
        invite.set_body(bytes(self.sdp.offer(port=MEDIA_PORT)), "application/sdp")

        def start() -> None:
            self.sessions[call] = InviteSession(DialogRole.UAC, self.config, randint=lambda a, b: a)
            self._peers[call] = Address("udp", *peer)
            self.feed(call, Invite(invite))
        self.run(start)
        return call

    def command(self, call: str, item: Any) -> list[Output]:
        return self.run(lambda: self.feed(call, item))

    def events(self, call: str, kind: type) -> list:
        """Usable from the test's thread and inside :meth:`wait` (a list copy is atomic)."""
        return [o for o in list(self.outputs.get(call, [])) if isinstance(o, kind)]

    def wait(self, what: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.run(what)
            if result:
                return result
            time.sleep(0.02)
        raise AssertionError(f"not in {timeout} s: {self.outputs}")

    def the_call(self) -> str:
        return self.wait(lambda: next(iter(self.sessions), None))


def test_pjsip_calls_holds_unholds_and_hangs_up(tmp_path) -> None:
    with SessionApp() as app, Pjsua(tmp_path, "caller").start() as ua:
        call = ua.call(f"sip:voicegw@{HOST}:{app.port}")
        call.wait_confirmed()
        key = app.the_call()
        app.wait(lambda: app.sessions[key].state is State.CONFIRMED)  # the ACK came
        call.hold()
        ua.wait_sip("INVITE", "in", status=200, count=2)
        call.unhold()
        ua.wait_sip("INVITE", "in", status=200, count=3)
        call.hangup()
        call.wait_disconnected()
        app.wait(lambda: app.sessions[key].terminated)
        directions = [e.media.direction for e in app.events(key, MediaUpdated)]
        assert directions[0] is Direction.SENDRECV and directions[-1] is Direction.SENDRECV
        assert Direction.RECVONLY in directions or Direction.INACTIVE in directions
        assert [e.cause for e in app.events(key, Terminated)] == [Cause.REMOTE_BYE]
        held = [m for m in ua.responses("INVITE", "in") if m.status == 200][1]
        assert b"a=recvonly" in held.body or b"a=inactive" in held.body  # RFC 3264 6.1
        assert len(ua.requests("ACK", "out")) == 3  # one per 2xx, none retransmitted
        assert app.run(lambda: app.sessions[key].get_timer()) is None


def test_we_call_pjsip_put_it_on_hold_and_hang_up(tmp_path) -> None:
    with SessionApp() as app, Pjsua(tmp_path, "bot").start() as ua:
        key = app.dial(f"sip:bot@{HOST}:{ua.port}", (HOST, ua.port))
        pj = ua.incoming()
        pj.wait_confirmed()
        app.wait(lambda: app.sessions[key].state is State.CONFIRMED)
        app.command(key, Modify(app.sdp.offer(port=MEDIA_PORT, direction=Direction.SENDONLY)))
        (done,) = app.wait(lambda: app.events(key, ModifyCompleted))
        assert done.media is not None and done.media.direction is Direction.SENDONLY
        reinvite = ua.requests("INVITE", "in")[-1]
        assert b"a=sendonly" in reinvite.body and reinvite.header("cseq") == "2 INVITE"
        acks = ua.wait_sip("ACK", "in", count=2)
        assert [m.header("cseq") for m in acks] == ["1 ACK", "2 ACK"]
        app.command(key, Bye())
        pj.wait_disconnected()
        assert ua.requests("BYE", "in") and app.sessions[key].terminated
        assert [e.cause for e in app.events(key, Terminated)] == [Cause.LOCAL_BYE]


def test_pjsip_cancels_while_it_rings(tmp_path) -> None:
    with SessionApp(answer=False) as app, Pjsua(tmp_path, "caller").start() as ua:
        call = ua.call(f"sip:voicegw@{HOST}:{app.port}")
        ua.wait_sip("INVITE", "in", status=180)
        key = app.the_call()
        call.hangup()
        call.wait_disconnected()
        app.wait(lambda: app.sessions[key].terminated)
        assert ua.requests("CANCEL", "out")
        ua.wait_sip("INVITE", "in", status=487)  # 9.2
        assert not [m for m in ua.responses("INVITE", "in") if m.status == 200]
        assert [e.cause for e in app.events(key, Terminated)] == [Cause.CANCELLED]
        assert app.run(lambda: app.sessions[key].get_timer()) is None


def test_reinvite_glare_with_sipp(tmp_path) -> None:
    """14.1/14.2 against sipp: each side's re-INVITE gets 491; voicegw, as the UAS not
    owning the Call-ID, backs off 0-2 s (0 drawn here) and retries with CSeq + 1."""
    with SessionApp(cross_reinvite=True) as app:
        result = run_sipp((HOST, app.port), "invite_session_glare.xml", tmp_path, calls=1, rate=1,
                          timeout=20)
        assert result.successful == 1 and result.failed == 0, result.output
        key = app.the_call()
        app.wait(lambda: app.sessions[key].terminated)
        statuses = [(o.response.cseq.seq, o.response.status) for o in app.events(key, SendResponse)
                    if o.response.cseq.method == "INVITE" and o.response.status >= 200]
        assert statuses == [(1, 200), (2, 491)]  # ours to its INVITE and its re-INVITE
        ours = [o.request for o in app.events(key, SendRequest) if o.request.method == "INVITE"]
        assert [r.cseq.seq for r in ours] == [1, 2]  # the retry is a new transaction
        (done,) = app.events(key, ModifyCompleted)
        assert done.media is not None and done.media.direction is Direction.SENDONLY
        assert app.sessions[key].last_backoff == 0.0
        assert [e.cause for e in app.events(key, Terminated)] == [Cause.REMOTE_BYE]
