"""INVITE sessions over two real UA cores (sip/core.py) on a virtual clock.

:class:`Leg` is the glue the engine's executor will be, written sans-I/O: it feeds a
core's events for one leg into its session as typed inputs, hands the session's wire
actions to the core, registers the session's dialog with the core (so in-dialog
requests are not answered 481) and maps a client transaction's timeout back to the
request it was for. Everything crosses the fake network as bytes.
"""

from __future__ import annotations

import ipaddress
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.dialog_table import DialogRole
from voicegw.sip.events import (
    Address,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from voicegw.sip.invite_session import InviteSession
from voicegw.sip.invite_session_actions import SessionConfig
from voicegw.sip.invite_session_io import (
    Accept,
    Bye,
    Cancel,
    IncomingCancel,
    IncomingRequest,
    IncomingResponse,
    Invite,
    Modify,
    Output,
    Progress,
    Reject,
    RequestTimedOut,
    RetransmitResponse,
    SendRequest,
    SendResponse,
    Terminated,
)
from voicegw.sip.invite_session_table import Cause, InviteSessionError, State
from voicegw.sip.message import Headers, Request
from voicegw.sip.offer_answer import make_answer
from voicegw.sip.sdp import SdpBuilder
from voicegw.sip.sdp_fields import Direction
from voicegw.sip.uri import SipUri

A_ADDR = Address("udp", "127.0.0.1", 5060)
B_ADDR = Address("udp", "127.0.0.2", 5060)


class Leg:
    """One core, one session, one peer."""

    def __init__(self, host: str, peer: Address, role: DialogRole, steps: int) -> None:
        self.core = UserAgentCore(CoreConfig(host=host, udp_port=5060))
        self.peer = peer
        self.config = SessionConfig(local_via=f"SIP/2.0/UDP {host}:5060;rport",
                                    contact=f"<sip:{role.value}@{host}:5060>",
                                    allow=self.core.allow_header)
        self.session: InviteSession | None = None
        self.role, self.steps = role, steps
        self.sdp = SdpBuilder(session_id=7, address=host)
        self.requests: dict[str, tuple[str, int]] = {}  # client tx -> (method, CSeq number)
        self.registered: set[tuple[str, str, str]] = set()
        self.outputs: list[Output] = []

    def new_session(self) -> InviteSession:
        self.session = InviteSession(self.role, self.config, randint=lambda lo, hi: lo + self.steps,
                                     local_tag=f"{self.role.value}-tag")
        return self.session

    def do(self, item, now: float) -> None:
        assert self.session is not None
        self.carry_out(self.session.handle(item, now), now)

    def carry_out(self, outputs: list[Output], now: float) -> None:
        self.outputs += outputs
        for output in outputs:
            if isinstance(output, SendRequest):
                tx = self.core.send_request(output.request, self.destination(output.next_hop), now)
                if tx:
                    self.requests[tx] = (output.request.method, output.request.cseq.seq)
            elif isinstance(output, (SendResponse, RetransmitResponse)):
                self.core.send_response(output.transaction_id, output.response, now)
        dialog = self.session.dialog if self.session is not None else None
        if dialog is not None:
            key = (dialog.id.call_id, dialog.id.local_tag, dialog.id.remote_tag)
            if key not in self.registered:
                self.registered.add(key)
                self.core.register_dialog(*key)

    def destination(self, hop) -> Address:
        if isinstance(hop, SipUri):
            try:
                ipaddress.ip_address(hop.host)
                return Address(hop.transport or "udp", hop.host, hop.port or 5060)
            except ValueError:
                pass
        return self.peer

    def pump(self, now: float) -> None:
        while (event := self.core.next_event()) is not None:
            item = None
            if isinstance(event, RequestReceived):
                if self.session is None:
                    self.new_session()
                item = IncomingRequest(event.request, event.transaction_id)
            elif isinstance(event, ResponseReceived):
                item = IncomingResponse(event.response)
            elif isinstance(event, CancelReceived):
                item = IncomingCancel(event.transaction_id)
            elif isinstance(event, TransactionTimedOut) and event.transaction_id in self.requests:
                method, seq = self.requests[event.transaction_id]
                item = RequestTimedOut(method, seq, 503 if event.timer == "transport" else 408)
            # a server transaction's Timer H/L: the session has its own no-ACK timer
            if item is not None and self.session is not None:
                self.do(item, now)

    def handle_timers(self, now: float) -> None:
        self.core.handle_timer(now)
        if self.session is not None:
            self.carry_out(self.session.handle_timer(now), now)

    def next_timer(self) -> float | None:
        due = [t for t in (self.core.get_timer(), self.session and self.session.get_timer()) if t]
        return min(due) if due else None

    def events(self, kind: type) -> list:
        return [o for o in self.outputs if isinstance(o, kind)]


class Network:
    def __init__(self, *, steps_a: int = 0, steps_b: int = 0) -> None:
        self.now = 0.0
        self.a = Leg("127.0.0.1", B_ADDR, DialogRole.UAC, steps_a)
        self.b = Leg("127.0.0.2", A_ADDR, DialogRole.UAS, steps_b)
        self.lost = 0

    def run(self, *, drop=lambda data: False) -> None:
        """Deliver until quiet (bounded)."""
        for _ in range(50):
            moved = False
            for src, dst, addr in ((self.a, self.b, A_ADDR), (self.b, self.a, B_ADDR)):
                for data, _to in src.core.datagrams_to_send(self.now):
                    moved = True
                    if drop(data):
                        self.lost += 1
                        continue
                    dst.core.receive_datagram(data, addr, self.now)
                    dst.pump(self.now)
            if not moved:
                return

    def wait(self, seconds: float, *, drop=lambda data: False) -> None:
        end = self.now + seconds
        for _ in range(10_000):
            due = [t for t in (self.a.next_timer(), self.b.next_timer()) if t is not None]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            self.a.handle_timers(self.now)
            self.b.handle_timers(self.now)
            self.a.pump(self.now)
            self.b.pump(self.now)
            self.run(drop=drop)
        self.now = end

    def call(self) -> None:
        invite = Request("INVITE", "sip:uas@127.0.0.2:5060", Headers([
            ("From", "<sip:uac@127.0.0.1>;tag=uac-tag"), ("To", "<sip:uas@127.0.0.2>"),
            ("Call-ID", "core-pair-1@127.0.0.1"), ("CSeq", "1 INVITE"),
            ("Contact", "<sip:uac@127.0.0.1:5060>"), ("Allow", self.a.core.allow_header),
        ]))
        invite.set_body(bytes(self.a.sdp.offer(port=40000)), "application/sdp")
        self.a.new_session()
        self.a.do(Invite(invite), self.now)

    def answer(self, leg: Leg):
        session = leg.session
        assert session is not None and session.oa.pending_offer is not None
        return make_answer(session.oa.pending_offer, origin=leg.sdp.origin,
                           address=leg.sdp.address, port=50000).sdp


def test_call_hold_glare_and_bye_through_two_cores() -> None:
    net = Network(steps_a=150, steps_b=50)  # back-offs: A 3.6 s (owner), B 0.5 s
    net.call()
    net.run()
    b = net.b.session
    assert b is not None and b.state is State.INCOMING
    net.b.do(Progress(180), net.now)
    net.run()
    net.b.do(Accept(net.answer(net.b)), net.now)
    net.run()
    a = net.a.session
    assert a is not None and a.state is State.CONFIRMED and b.state is State.CONFIRMED
    # both re-INVITE at once: 491 each way (14.2), then B (not the Call-ID's owner)
    # retries first and A, still backing off, accepts it
    net.a.do(Modify(net.a.sdp.offer(port=40000, direction=Direction.SENDONLY)), net.now)
    net.b.do(Modify(net.b.sdp.offer(port=50000, direction=Direction.SENDONLY)), net.now)
    net.run()
    assert a.state is State.GLARE and b.state is State.GLARE
    for leg in (net.a, net.b):
        assert [o.response.status for o in leg.events(SendResponse)][-1] == 491
    assert (a.last_backoff, b.last_backoff) == (3.6, 0.5)
    net.wait(0.5)
    assert a.state is State.REINVITED
    net.a.do(Accept(net.answer(net.a)), net.now)
    net.run()
    assert a.state is State.CONFIRMED and b.state is State.CONFIRMED
    net.b.do(Bye(), net.now)
    net.run()
    assert a.state is State.DISCONNECTED and b.state is State.DISCONNECTED
    assert [e.cause for e in net.a.events(Terminated)] == [Cause.REMOTE_BYE]
    net.wait(64.0)  # the cores' transactions finish too
    for leg in (net.a, net.b):
        assert leg.next_timer() is None
        assert leg.core.statistics().pending_transactions == 0


def test_cancel_reaches_the_invite_through_the_cores() -> None:
    net = Network()
    net.call()
    net.a.do(Cancel(), net.now)  # before the 100: held (9.1)
    assert net.a.session is not None and net.a.session.state is State.CANCEL_PENDING
    net.run()
    a, b = net.a.session, net.b.session
    assert b is not None
    assert a.state is State.DISCONNECTED and b.state is State.DISCONNECTED
    assert [e.cause for e in net.b.events(Terminated)] == [Cause.CANCELLED]
    (end,) = net.a.events(Terminated)
    assert (end.cause, end.status) == (Cause.CANCELLED, 487)
    net.wait(64.0)
    assert net.a.next_timer() is None and net.b.next_timer() is None


def test_lost_acks_end_the_call_with_a_bye_after_64_t1() -> None:
    net = Network()
    net.call()
    net.run()
    net.b.do(Accept(net.answer(net.b)), net.now)
    no_ack = lambda data: data.startswith(b"ACK ")
    net.run(drop=no_ack)
    net.wait(40.0, drop=no_ack)
    a, b = net.a.session, net.b.session
    assert a is not None and b is not None
    assert [e.cause for e in net.b.events(Terminated)] == [Cause.NO_ACK]
    assert a.state is State.DISCONNECTED  # B's BYE reached A
    assert net.lost > 5  # each 2xx retransmission got an ACK that was lost


def command(net: Network, side: str, choice: int):
    leg = net.a if side == "a" else net.b
    session = leg.session
    port = 40000 if side == "a" else 50000
    pending = session is not None and session.oa.pending_offer is not None
    answer = net.answer(leg) if pending and session.oa.state.name == "REMOTE_OFFER_RECEIVED" else None
    return [
        lambda: Progress(180), lambda: Accept(answer or leg.sdp.offer(port=port)),
        lambda: Reject(486), lambda: Bye(), lambda: Cancel(),
        lambda: Modify(leg.sdp.offer(port=port, direction=Direction.SENDONLY)),
        lambda: Modify(None, "UPDATE"), lambda: Modify(leg.sdp.offer(port=port), "UPDATE"),
    ][choice % 8]()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(["a", "b", "run", "wait"]), st.integers(0, 100),
                                st.floats(0, 1)), max_size=25),
       steps_a=st.integers(0, 190), steps_b=st.integers(0, 200))
def test_lossy_network_never_leaves_a_session_transaction_or_timer(steps, steps_a, steps_b) -> None:
    """Commands in any order over a network losing some datagrams: when both sides
    hang up and the network heals, every session ends and the cores keep nothing."""
    net = Network(steps_a=steps_a, steps_b=steps_b)
    net.call()
    for what, choice, loss in steps:
        drop = (lambda data, loss=loss: zlib.crc32(data) % 100 < loss * 50)  # up to half
        if what in ("a", "b"):
            leg = net.a if what == "a" else net.b
            if leg.session is None:
                continue
            try:
                leg.do(command(net, what, choice), net.now)
            except InviteSessionError:
                pass
        elif what == "run":
            net.run(drop=drop)
        else:
            net.wait(choice / 10, drop=drop)
    for _ in range(10):
        for leg in (net.a, net.b):
            if leg.session is not None:
                leg.carry_out(leg.session.end(net.now), net.now)
        net.run()
        net.wait(40.0)
    for leg in (net.a, net.b):
        if leg.session is not None:
            assert leg.session.terminated and len(leg.events(Terminated)) == 1
        assert leg.next_timer() is None
        assert leg.core.statistics().pending_transactions == 0
