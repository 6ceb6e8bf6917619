"""The INVITE session (sip/invite_session*.py): its table, one test per RFC rule it
implements, and hypothesis runs over (state, input) sequences.

Two sessions talk to each other through :class:`Pair`, which does what the UA core
between them would: it serialises and parses every message, answers each INVITE with
100 Trying, answers a CANCEL 200 and tells the INVITE's side (9.2), matches responses
to client transactions, lets a dropped request or final response end its transaction
with a timeout (Timer B/F), and keeps a virtual clock. A is voicegw's UAC side (it
owns the Call-ID), B the UAS side.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicegw.sip.build import make_response
from voicegw.sip.dialog_table import DialogRole
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
    MediaUpdated,
    Modify,
    ModifyCompleted,
    ModifyFailed,
    ModifyReceived,
    Output,
    Progress,
    ProgressReceived,
    Reject,
    RequestTimedOut,
    RetransmitResponse,
    SendRequest,
    SendResponse,
    SessionRefreshed,
    StateChanged,
    Terminated,
)
from voicegw.sip.invite_session_table import (
    IGNORED,
    INVALID,
    TABLE,
    Action,
    Cause,
    Input,
    InviteSessionError,
    State,
)
from voicegw.sip.message import Headers, Request, Response
from voicegw.sip.offer_answer import OAState, make_answer
from voicegw.sip.parser import parse_message
from voicegw.sip.sdp import SdpBuilder, SessionDescription
from voicegw.sip.sdp_fields import Direction
from voicegw.sip.transaction import T1, T2

CFG_A = SessionConfig(local_via="SIP/2.0/UDP 10.0.0.1:5060", contact="<sip:gw@10.0.0.1:5060>")
CFG_B = SessionConfig(local_via="SIP/2.0/UDP 10.0.0.2:5060", contact="<sip:bot@10.0.0.2:5060>",
                      allow="INVITE, ACK, CANCEL, BYE, UPDATE")
BUILDERS = {"a": SdpBuilder(session_id=1, address="10.0.0.1"),
            "b": SdpBuilder(session_id=2, address="10.0.0.2")}


def low(lo: int, hi: int) -> int:
    return lo


def offer(side: str, direction: Direction = Direction.SENDRECV) -> SessionDescription:
    return BUILDERS[side].offer(port=40000 if side == "a" else 50000, direction=direction)


def answer_to(session: InviteSession, side: str) -> SessionDescription:
    """Our answer to the peer's pending offer, or an offer when none is pending."""
    pending = session.oa.pending_offer
    if session.oa.state is OAState.REMOTE_OFFER_RECEIVED and pending is not None:
        builder = BUILDERS[side]
        return make_answer(pending, origin=builder.origin, address=builder.address,
                           port=40000 if side == "a" else 50000).sdp
    return offer(side)


def new_invite(headers: tuple[tuple[str, str], ...] = (), body: bool = True) -> Request:
    invite = Request("INVITE", "sip:bot@10.0.0.2:5060", Headers([
        ("From", "<sip:caller@10.0.0.1>;tag=atag"),
        ("To", "<sip:bot@10.0.0.2>"),
        ("Call-ID", "call-1@10.0.0.1"),
        ("CSeq", "1 INVITE"),
        ("Contact", "<sip:gw@10.0.0.1:5060>"),
        ("Max-Forwards", "70"),
        ("Allow", "INVITE, ACK, CANCEL, BYE, UPDATE"),
        *headers,
    ]))
    if body:
        invite.set_body(bytes(offer("a")), "application/sdp")
    return invite


def wire(message: Request | Response) -> Request | Response:
    return parse_message(bytes(message))


def tx_key(message: Request | Response) -> str:
    method = message.cseq.method
    return f"{message.top_via.branch}|{'INVITE' if method == 'ACK' else method}"


class Pair:
    def __init__(self, *, randint_a=low, randint_b=low, cfg_a: SessionConfig = CFG_A,
                 cfg_b: SessionConfig = CFG_B, authorizer=None) -> None:
        self.now = 0.0
        self.sessions: dict[str, InviteSession | None] = {
            "a": InviteSession(DialogRole.UAC, cfg_a, randint=randint_a, authorizer=authorizer),
            "b": None,
        }
        self.randint_b, self.cfg_b = randint_b, cfg_b
        self.flight: list[tuple[str, str, object]] = []  # (to, kind, payload)
        self.out: dict[str, list[Output]] = {"a": [], "b": []}
        self.client: dict[str, dict] = {}  # tx -> {side, method, seq, final}
        self.server_final: dict[str, bool] = {}

    @property
    def a(self) -> InviteSession:
        session = self.sessions["a"]
        assert session is not None
        return session

    @property
    def b(self) -> InviteSession:
        session = self.sessions["b"]
        assert session is not None
        return session

    def sent(self, side: str, kind: type = SendRequest) -> list:
        return [o for o in self.out[side] if isinstance(o, kind)]

    def requests(self, side: str, method: str) -> list[Request]:
        return [o.request for o in self.sent(side) if o.request.method == method]

    def responses(self, side: str, status: int | None = None) -> list[Response]:
        found = [o.response for o in self.out[side] if isinstance(o, (SendResponse, RetransmitResponse))]
        return [r for r in found if status is None or r.status == status]

    def events(self, side: str, kind: type) -> list:
        return [o for o in self.out[side] if isinstance(o, kind)]

    # ------------------------------------------------------------------ driving
    def do(self, side: str, item) -> list[Output]:
        session = self.sessions[side]
        assert session is not None
        return self._take(side, session.handle(item, self.now))

    def start(self, invite: Request | None = None) -> None:
        self.do("a", Invite(invite or new_invite()))

    def _take(self, side: str, outputs: list[Output]) -> list[Output]:
        other = "b" if side == "a" else "a"
        for output in outputs:
            self.out[side].append(output)
            if isinstance(output, SendRequest):
                request = wire(output.request)
                if request.method not in ("ACK", "CANCEL"):
                    self.client[tx_key(request)] = {"side": side, "method": request.method,
                                                    "seq": request.cseq.seq, "final": False}
                self.flight.append((other, "request", request))
            elif isinstance(output, (SendResponse, RetransmitResponse)):
                if output.response.status >= 200:
                    self.server_final[output.transaction_id] = True
                self.flight.append((other, "response", wire(output.response)))
        return outputs

    def deliver(self, index: int = 0) -> None:
        to, kind, payload = self.flight.pop(index)
        back = "b" if to == "a" else "a"
        if kind == "timeout":
            method, seq = payload  # type: ignore[misc]
            self.do(to, RequestTimedOut(method, seq))
            return
        if kind == "response":
            assert isinstance(payload, Response)
            client = self.client.get(tx_key(payload))
            if client is None or (client["final"] and payload.status >= 300):
                return  # 17.1.3: no transaction; Completed absorbs repeats
            if payload.status >= 200:
                client["final"] = True
            if self.sessions[to] is not None:
                self.do(to, IncomingResponse(payload))
            return
        assert isinstance(payload, Request)
        request = payload
        if request.method == "CANCEL":
            self.flight.append((back, "response", wire(make_response(request, 200, to_tag="btag"))))
            invite_tx = tx_key(request).rsplit("|", 1)[0] + "|INVITE"
            if self.sessions[to] is not None and invite_tx in self.server_final \
                    and not self.server_final[invite_tx]:
                self.do(to, IncomingCancel(invite_tx))
            return
        if to == "b" and self.sessions["b"] is None:
            if request.method != "INVITE" or request.to.tag:
                return
            self.sessions["b"] = InviteSession(DialogRole.UAS, self.cfg_b, randint=self.randint_b,
                                               local_tag="btag")
        tx = "" if request.method == "ACK" else tx_key(request)
        if request.method == "INVITE":
            self.server_final.setdefault(tx, False)
            self.flight.append((back, "response", wire(make_response(request, 100))))
        self.do(to, IncomingRequest(request, tx))

    def drop(self, index: int = 0) -> None:
        if self.flight[index][1] == "timeout":
            self.deliver(index)  # the core's own report is never lost
            return
        _, kind, payload = self.flight.pop(index)
        if kind == "request" and isinstance(payload, Request) and payload.method not in ("ACK", "CANCEL"):
            self._time_out(tx_key(payload))
        elif (kind == "response" and isinstance(payload, Response) and payload.status >= 200
              and not (payload.cseq.method == "INVITE" and payload.status < 300)):
            self._time_out(tx_key(payload))  # a lost 2xx to an INVITE is repeated instead

    def _time_out(self, tx: str) -> None:
        client = self.client.get(tx)
        if client is not None and not client["final"]:
            client["final"] = True
            self.flight.append((client["side"], "timeout", (client["method"], client["seq"])))

    def run(self) -> None:
        while self.flight:
            self.deliver(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for side, session in self.sessions.items():
            if session is not None:
                self._take(side, session.handle_timer(self.now))

    def connect(self) -> None:
        self.start()
        self.run()
        self.do("b", Accept(answer_to(self.b, "b")))
        self.run()
        assert self.a.state is State.CONFIRMED and self.b.state is State.CONFIRMED

    def flush(self) -> None:
        """Both hang up; the network delivers everything; clocks run; stuck client
        transactions time out (Timer B/F). Bounded."""
        for round_ in range(60):
            for side, session in self.sessions.items():
                if session is not None:
                    self._take(side, session.end(self.now))
            for _ in range(200):
                if not self.flight:
                    break
                self.deliver(0)
            self.advance(33.0)
            if round_ > 2:
                for tx in list(self.client):
                    self._time_out(tx)
            live = [s for s in self.sessions.values() if s is not None and not s.terminated]
            if not live and not self.flight:
                return


# ------------------------------------------------------------------------ the table
def test_every_pair_is_a_row_ignored_or_invalid() -> None:
    everything = {(s, i) for s in State for i in Input}
    rows, ignored, invalid = set(TABLE), set(IGNORED), set(INVALID)
    assert rows | ignored | invalid == everything
    assert not rows & ignored and not rows & invalid and not ignored & invalid


def test_disconnected_keeps_no_timer_and_only_acks() -> None:
    timers = [i for i in Input if i.name.startswith("TIMER_")]
    assert not [t for t in timers if (State.DISCONNECTED, t) in TABLE]
    for (state, _), (_, target, cause) in TABLE.items():
        assert (cause is not None) == (target is State.DISCONNECTED and state is not State.DISCONNECTED)


S, I, A = State, Input, Action
#: The rows each cited rule asks for: (state, input, actions, next state, rule).
RULES = [
    (S.CALLING, I.CANCEL, (), S.CANCEL_PENDING, "9.1: no provisional yet, the CANCEL waits"),
    (S.CANCEL_PENDING, I.RECV_100, (A.SEND_CANCEL,), S.CANCELLING, "9.1: a 100 lets it go"),
    (S.EARLY, I.CANCEL, (A.SEND_CANCEL,), S.CANCELLING, "9.1"),
    (S.CANCELLING, I.RECV_2XX, (A.ACK_AND_BYE,), S.DISCONNECTED, "9.1, 15: 2xx crossed CANCEL"),
    (S.CANCELLING, I.TIMER_CANCEL, (), S.DISCONNECTED, "9.1: 64*T1 after CANCEL"),
    (S.EARLY, I.RECV_CANCEL, (A.SEND_487,), S.DISCONNECTED, "9.2: 487 to the INVITE"),
    (S.EARLY, I.RECV_2XX, (A.ACK_2XX,), S.CONFIRMED, "13.2.2.4: ACK the 2xx"),
    (S.CONFIRMED, I.RECV_2XX_AGAIN, (A.RESEND_ACK,), S.CONFIRMED, "13.2.2.4: every 2xx"),
    (S.CONFIRMED, I.RECV_2XX, (A.ACK_AND_BYE,), S.CONFIRMED, "13.2.2.4: another fork"),
    (S.EARLY, I.ACCEPT, (A.SEND_2XX,), S.CONNECTING, "13.3.1.4: 2xx, then wait for ACK"),
    (S.CONNECTING, I.TIMER_2XX, (A.RESEND_2XX,), S.CONNECTING, "13.3.1.4: T1 doubling to T2"),
    (S.CONNECTING, I.TIMER_NO_ACK, (A.SEND_BYE,), S.DISCONNECTED, "13.3.1.4: 64*T1 -> BYE"),
    (S.REINVITING, I.MODIFY_CHALLENGE, (A.RETRY_MODIFY_AUTHORIZED,), S.REINVITING, "22.2: the offer again"),
    (S.DISCONNECTED, I.BYE_CHALLENGE, (A.RETRY_BYE,), S.DISCONNECTED, "22.2: the BYE again, still over (15)"),
    (S.DISCONNECTED, I.BYE_FAILED, (A.BYE_FAILED,), S.DISCONNECTED, "15: over all the same, said why"),
    (S.CONNECTING, I.RECV_ACK, (A.ACK_RECEIVED,), S.CONFIRMED, "13.3.1.4: the ACK stops it"),
    (S.CONNECTING, I.BYE, (), S.DISCONNECTING, "15: the callee waits for the ACK"),
    (S.DISCONNECTING, I.RECV_ACK, (A.ACK_RECEIVED, A.SEND_BYE), S.DISCONNECTED, "15"),
    (S.EARLY, I.RECV_BYE, (A.ANSWER_BYE,), S.DISCONNECTED, "15, 15.1.2: BYE on an early dialog"),
    (S.DISCONNECTED, I.RECV_BYE, (A.ANSWER_BYE,), S.DISCONNECTED, "RFC 5407: a BYE crossing ours, 200"),
    (S.REINVITING, I.MODIFY_491, (A.START_GLARE,), S.GLARE, "14.1: back off"),
    (S.GLARE, I.TIMER_GLARE, (A.RESEND_MODIFY,), S.REINVITING, "14.1: then resend"),
    (S.GLARE, I.RECV_REINVITE, (A.DROP_GLARE, A.TAKE_MODIFY), S.REINVITED, "14.1: theirs won"),
    (S.REINVITING, I.MODIFY_FAILED, (A.MODIFY_ROLLBACK,), S.CONFIRMED, "14.1: unchanged"),
    (S.REINVITING, I.MODIFY_GONE, (A.END_DIALOG,), S.DISCONNECTED, "12.2.1.2: 481/408"),
    (S.REINVITED, I.RECV_CANCEL, (A.CANCEL_MODIFY,), S.CONFIRMED, "9.2: 487 to the re-INVITE"),
    (S.NULL, I.RECV_UNACCEPTABLE, (A.REFUSE,), S.DISCONNECTED, "RFC 4028 8.1: 422 + Min-SE"),
    (S.CALLING, I.RECV_TOO_BRIEF, (A.RETRY_LONGER,), S.CALLING, "RFC 4028 7.4: retry"),
    (S.CONFIRMED, I.TIMER_REFRESH, (A.REFRESH,), S.REINVITING, "RFC 4028 10: refresh at SE/2"),
    (S.REINVITED, I.TIMER_REFRESH, (A.OWE_REFRESH,), S.REINVITED, "RFC 4028 10: once idle"),
    (S.CONFIRMED, I.TIMER_EXPIRE, (A.SEND_BYE,), S.DISCONNECTED, "RFC 4028 10: BYE before expiry"),
    (S.CONFIRMED, I.RECV_REFRESH, (A.ANSWER_REFRESH,), S.CONFIRMED, "RFC 4028 9: UPDATE refresh"),
    (S.EARLY, I.RECV_CHALLENGE, (A.RETRY_AUTHORIZED,), S.CALLING, "22.2: resend, credentials"),
]


@pytest.mark.parametrize(("state", "kind", "actions", "target", "rule"), RULES,
                         ids=[rule for *_, rule in RULES])
def test_the_table_has_the_row_each_rule_asks_for(state, kind, actions, target, rule) -> None:
    assert TABLE[(state, kind)][:2] == (actions, target)


def test_invalid_requests_carry_the_rfc_status() -> None:
    assert INVALID[(State.REINVITING, Input.RECV_REINVITE)] == 491  # 14.2
    assert INVALID[(State.REINVITED, Input.RECV_REINVITE)] == 500  # 14.2
    assert INVALID[(State.REINVITED, Input.RECV_UPDATE_OFFER)] == 500  # RFC 3311 5.2
    assert INVALID[(State.DISCONNECTED, Input.RECV_REINVITE)] == 481  # 12.2.2


# ------------------------------------------------------------------- UAC, 13.2.2.4
def test_uac_acks_the_2xx_and_again_each_retransmission() -> None:
    pair = Pair()
    pair.connect()
    acks = pair.requests("a", "ACK")
    assert len(acks) == 1 and acks[0].cseq.seq == 1 and acks[0].cseq.method == "ACK"
    assert pair.events("a", MediaUpdated) and pair.events("b", MediaUpdated)
    pair.do("a", IncomingResponse(pair.responses("b", 200)[0]))  # a retransmission
    again = pair.requests("a", "ACK")
    assert len(again) == 2 and bytes(again[1]) == bytes(again[0])


def test_uac_progress_reports_early_media() -> None:
    pair = Pair()
    pair.start()
    pair.run()
    pair.do("b", Progress(183, sdp=answer_to(pair.b, "b")))
    pair.run()
    (progress,) = pair.events("a", ProgressReceived)
    assert progress.response.status == 183 and progress.early_media is not None
    assert pair.a.state is State.EARLY


def test_uac_unusable_answer_is_acked_then_byed() -> None:
    pair = Pair()
    pair.start()
    pair.run()
    invite = pair.b._invite
    assert invite is not None
    ok = make_response(invite, 200, to_tag="btag", headers=Headers([("Contact", "<sip:bot@10.0.0.2>")]))
    ok.set_body(b"v=0\r\n", "application/sdp")
    pair.do("a", IncomingResponse(wire(ok)))
    assert [r.method for r in pair.requests("a", "ACK") + pair.requests("a", "BYE")] == ["ACK", "BYE"]
    (end,) = pair.events("a", Terminated)
    assert end.cause is Cause.FAILED and end.status == 488


def test_a_2xx_from_another_fork_is_acked_and_byed_and_ours_goes_on() -> None:
    """13.2.2.4: each 2xx creates its own dialog and is ACKed; we keep the first."""
    pair = Pair()
    pair.connect()
    invite = pair.requests("a", "INVITE")[0]
    other = make_response(invite, 200, to_tag="fork2",
                          headers=Headers([("Contact", "<sip:other@10.0.0.3>")]))
    other.set_body(pair.responses("b", 200)[0].body, "application/sdp")
    pair.do("a", IncomingResponse(wire(other)))
    ack, bye = pair.sent("a")[-2:]
    assert (ack.request.method, bye.request.method) == ("ACK", "BYE")
    assert bye.request.to.tag == "fork2" and str(bye.next_hop) == "sip:other@10.0.0.3"
    assert pair.a.state is State.CONFIRMED and pair.a.dialog.id.remote_tag == "btag"  # type: ignore[union-attr]


# -------------------------------------------------------------- UAS, 13.3.1.4
def test_uas_retransmits_the_2xx_doubling_to_t2_then_byes_at_64_t1() -> None:
    pair = Pair()
    pair.start()
    pair.run()
    pair.do("b", Accept(answer_to(pair.b, "b")))
    pair.flight.clear()  # the 2xx and everything after it are lost
    sent_at = []
    while pair.b.get_timer() is not None and pair.now < 40:
        pair.now = pair.b.get_timer()  # type: ignore[assignment]
        before = len(pair.out["b"])
        pair._take("b", pair.b.handle_timer(pair.now))
        if any(isinstance(o, RetransmitResponse) for o in pair.out["b"][before:]):
            sent_at.append(pair.now)
    gaps = [round(b - a, 3) for a, b in zip([0.0, *sent_at], sent_at)]
    assert gaps[:5] == [T1, 2 * T1, 4 * T1, T2, T2]
    assert all(gap == T2 for gap in gaps[3:])
    assert sent_at[-1] < 64 * T1
    assert len(pair.requests("b", "BYE")) == 1
    (end,) = pair.events("b", Terminated)
    assert end.cause is Cause.NO_ACK and pair.b.get_timer() is None


def test_uas_ack_stops_the_retransmissions() -> None:
    pair = Pair()
    pair.connect()
    assert pair.b.get_timer() is None
    pair.advance(64 * T1)
    assert not pair.sent("b", RetransmitResponse) and pair.b.state is State.CONFIRMED


def test_uas_bye_waits_for_the_ack() -> None:
    """15: the callee must not BYE before the ACK for its 2xx (or the timeout)."""
    pair = Pair()
    pair.start()
    pair.run()
    pair.do("b", Accept(answer_to(pair.b, "b")))
    pair.do("b", Bye())
    assert pair.b.state is State.DISCONNECTING and not pair.requests("b", "BYE")
    pair.run()
    assert pair.requests("b", "BYE") and pair.b.state is State.DISCONNECTED
    pair.run()
    assert pair.a.state is State.DISCONNECTED


# -------------------------------------------------------------------- CANCEL, 9.1
def test_cancel_before_any_provisional_waits_for_one() -> None:
    pair = Pair()
    pair.start()
    assert pair.do("a", Cancel()) == [StateChanged(State.CALLING, State.CANCEL_PENDING)]
    assert not pair.requests("a", "CANCEL")
    pair.deliver(0)  # the INVITE reaches B, which answers 100 (the core)
    pair.deliver(0)  # the 100 reaches A: now the CANCEL goes
    (cancel,) = pair.requests("a", "CANCEL")
    (invite,) = pair.requests("a", "INVITE")
    assert cancel.headers.values("via")[0] == invite.headers.values("via")[0]
    assert (cancel.cseq.seq, cancel.cseq.method) == (invite.cseq.seq, "CANCEL")
    assert cancel.uri == invite.uri and cancel.call_id == invite.call_id
    pair.run()
    assert pair.responses("b", 487)
    assert pair.events("a", Terminated)[0].cause is Cause.CANCELLED
    assert pair.events("b", Terminated)[0].cause is Cause.CANCELLED
    assert pair.a.get_timer() is None and pair.b.get_timer() is None


def test_a_2xx_crossing_the_cancel_is_acked_and_byed() -> None:
    pair = Pair()
    pair.start()
    pair.run()
    pair.do("b", Accept(answer_to(pair.b, "b")))
    pair.do("a", Cancel())  # the 2xx is still in flight
    pair.run()
    assert pair.requests("a", "ACK") and pair.requests("a", "BYE")
    assert pair.a.state is State.DISCONNECTED and pair.b.state is State.DISCONNECTED
    assert pair.events("a", Terminated)[0].cause is Cause.CANCELLED


def test_no_final_response_64_t1_after_cancel_gives_up() -> None:
    pair = Pair()
    pair.start()
    pair.run()
    pair.do("b", Progress(180))
    pair.run()
    pair.do("a", Cancel())
    pair.flight.clear()
    pair.advance(64 * T1)
    assert pair.a.state is State.DISCONNECTED and pair.a.get_timer() is None


# ------------------------------------------------------------- re-INVITE, 14.1/14.2
def test_reinvite_hold_and_its_answer() -> None:
    pair = Pair()
    pair.connect()
    pair.do("a", Modify(offer("a", Direction.SENDONLY)))
    pair.run()
    (received,) = pair.events("b", ModifyReceived)
    assert received.offer is not None
    pair.do("b", Accept(answer_to(pair.b, "b")))
    pair.run()
    (done,) = pair.events("a", ModifyCompleted)
    assert done.media is not None and done.media.direction is Direction.SENDONLY
    reinvite = pair.requests("a", "INVITE")[-1]
    assert [a.cseq.seq for a in pair.requests("a", "ACK")] == [1, reinvite.cseq.seq]


def test_failed_reinvite_leaves_the_session_as_it_was() -> None:
    pair = Pair()
    pair.connect()
    before = pair.a.oa.negotiated
    pair.do("a", Modify(offer("a", Direction.INACTIVE)))
    pair.run()
    pair.do("b", Reject(488))
    pair.run()
    assert pair.events("a", ModifyFailed) == [ModifyFailed(488, "Not Acceptable Here")]
    assert pair.a.oa.state is OAState.NEGOTIATED and pair.a.oa.negotiated == before
    assert pair.a.state is State.CONFIRMED


@pytest.mark.parametrize(("owner_steps", "other_steps"), [(210, 0), (400, 200), (300, 123)])
def test_glare_491_both_ways_then_back_off_in_the_rfc_ranges(owner_steps: int, other_steps: int) -> None:
    pair = Pair(randint_a=lambda lo, hi: owner_steps, randint_b=lambda lo, hi: other_steps)
    pair.connect()
    pair.do("a", Modify(offer("a", Direction.SENDONLY)))
    pair.do("b", Modify(offer("b", Direction.SENDONLY)))
    pair.run()
    assert len(pair.responses("a", 491)) == 1 and len(pair.responses("b", 491)) == 1
    assert pair.a.state is State.GLARE and pair.b.state is State.GLARE
    # 14.1: the owner of the Call-ID (A, the UAC) waits 2.1-4 s, the other 0-2 s
    assert pair.a.last_backoff == owner_steps / 100 and pair.b.last_backoff == other_steps / 100
    pair.advance(other_steps / 100)  # B retries first; A, still backing off, accepts it
    pair.run()
    assert pair.a.state is State.REINVITED and pair.events("a", ModifyFailed)[-1].status == 491
    pair.do("a", Accept(answer_to(pair.a, "a")))
    pair.run()
    assert pair.a.state is State.CONFIRMED and pair.b.state is State.CONFIRMED
    assert pair.a.get_timer() is None


def test_second_reinvite_before_the_first_is_answered_gets_500_retry_after() -> None:
    pair = Pair(randint_b=lambda lo, hi: 7)
    pair.connect()
    pair.do("a", Modify(offer("a", Direction.SENDONLY)))
    pair.run()
    second = pair.requests("a", "INVITE")[-1]
    headers = Headers([(n, v) for n, v in second.headers if n.lower() not in ("cseq", "via")])
    headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsecond")
    headers.add("CSeq", f"{second.cseq.seq + 1} INVITE")
    again = Request("INVITE", second.uri, headers, second.body)
    pair.do("b", IncomingRequest(wire(again), "tx-second"))  # type: ignore[arg-type]
    (refused,) = pair.responses("b", 500)
    assert refused.headers.get("retry-after") == "7" and pair.b.state is State.REINVITED


def test_peer_cancels_its_reinvite() -> None:
    pair = Pair()
    pair.connect()
    pair.do("a", Modify(offer("a", Direction.SENDONLY)))
    pair.run()
    (received,) = pair.events("b", ModifyReceived)
    pair.do("b", IncomingCancel(tx_key(received.request)))
    assert pair.responses("b", 487) and pair.b.state is State.CONFIRMED
    pair.run()
    assert pair.a.state is State.CONFIRMED and pair.events("a", ModifyFailed)[0].status == 487


def test_481_to_a_reinvite_ends_the_session() -> None:
    """12.2.1.2: 481 or 408 to a mid-dialog request: the UAC terminates the dialog."""
    pair = Pair()
    pair.connect()
    pair.do("a", Modify(offer("a")))
    reinvite = pair.requests("a", "INVITE")[-1]
    pair.do("a", IncomingResponse(wire(make_response(reinvite, 481, to_tag="btag"))))
    assert pair.a.state is State.DISCONNECTED
    assert pair.events("a", Terminated)[0].cause is Cause.DIALOG_GONE and not pair.requests("a", "BYE")


def test_a_transport_failure_counts_as_a_503() -> None:
    """RFC 3261 8.1.3.1: the INVITE fails with 503; a re-INVITE fails, the call goes on."""
    pair = Pair()
    pair.start()
    pair.flight.clear()
    pair.do("a", RequestTimedOut("INVITE", 1, status=503))
    (end,) = pair.events("a", Terminated)
    assert (end.cause, end.status) == (Cause.FAILED, 503)
    pair = Pair()
    pair.connect()
    pair.do("a", Modify(offer("a", Direction.SENDONLY)))
    pair.flight.clear()
    pair.do("a", RequestTimedOut("INVITE", pair.requests("a", "INVITE")[-1].cseq.seq, status=503))
    assert pair.events("a", ModifyFailed) == [ModifyFailed(503, "transport failure")]
    assert pair.a.state is State.CONFIRMED and pair.a.oa.state is OAState.NEGOTIATED


def test_update_with_an_offer_is_answered_like_a_reinvite() -> None:
    pair = Pair()
    pair.connect()
    pair.do("a", Modify(offer("a", Direction.SENDONLY), method="UPDATE"))
    pair.run()
    pair.do("b", Accept(answer_to(pair.b, "b")))
    pair.run()
    assert pair.events("a", ModifyCompleted) and not pair.requests("a", "ACK")[1:]


# -------------------------------------------------------------------------- BYE, 15
def test_bye_from_either_side() -> None:
    for side in ("a", "b"):
        pair = Pair()
        pair.connect()
        pair.do(side, Bye())
        pair.run()
        other = "b" if side == "a" else "a"
        assert pair.events(side, Terminated)[0].cause is Cause.LOCAL_BYE
        assert pair.events(other, Terminated)[0].cause is Cause.REMOTE_BYE
        assert pair.responses(other, 200)[-1].cseq.method == "BYE"


def test_crossing_byes_are_both_answered_200() -> None:
    """RFC 5407's crossing BYEs: each side sent BYE before it got the other's; the
    dialog lasts until a BYE's final response (15.1.1), so each BYE gets 200 (15.1.2);
    each side ends once, by its own BYE."""
    pair = Pair()
    pair.connect()
    pair.do("a", Bye())
    pair.do("b", Bye())
    pair.run()
    for side in ("a", "b"):
        assert [e.cause for e in pair.events(side, Terminated)] == [Cause.LOCAL_BYE]
        assert [r.status for r in pair.responses(side) if r.cseq.method == "BYE"] == [200]


def test_caller_byes_an_early_dialog_and_the_invite_gets_487() -> None:
    """15.1.2: the UAS answers the BYE and 487s the INVITE still pending."""
    pair = Pair()
    pair.start()
    pair.run()
    pair.do("b", Progress(180))
    pair.run()
    dialog = pair.a.dialog
    assert dialog is not None
    bye, _ = dialog.create_request("BYE")
    pair.do("b", IncomingRequest(wire(bye), "tx-bye"))  # type: ignore[arg-type]
    assert [r.status for r in pair.responses("b")][-2:] == [200, 487]
    assert pair.b.state is State.DISCONNECTED


def test_commands_the_state_forbids_raise() -> None:
    pair = Pair()
    pair.start()
    with pytest.raises(InviteSessionError):
        pair.do("a", Modify(offer("a")))
    with pytest.raises(InviteSessionError):
        pair.do("a", Accept(offer("a")))
    pair.run()
    with pytest.raises(InviteSessionError):
        pair.do("b", Cancel())
    with pytest.raises(InviteSessionError):
        pair.do("b", Accept(None))  # the offer needs an answer
    assert pair.b.state is State.INCOMING


# ------------------------------------------------------------------ RFC 4028 timers
def timer_invite(interval: int, refresher: str | None = None) -> Request:
    value = f"{interval}" + (f";refresher={refresher}" if refresher else "")
    return new_invite((("Supported", "timer"), ("Session-Expires", value)))


@pytest.mark.parametrize(("interval", "bye_at"), [(1800, 1800 - 32), (90, 60), (120, 88)])
def test_uas_lets_the_caller_refresh_and_byes_before_expiry(interval: int, bye_at: float) -> None:
    """RFC 4028 9 and 10: refresher=uac with Require: timer; BYE min(32, SE/3) early."""
    pair = Pair()
    pair.start(timer_invite(interval))
    pair.run()
    pair.do("b", Accept(answer_to(pair.b, "b")))
    pair.run()
    ok = pair.responses("b", 200)[0]
    assert ok.headers.get("session-expires") == f"{interval};refresher=uac"
    assert ok.headers.get("require") == "timer"
    assert pair.events("a", SessionRefreshed) == [SessionRefreshed(interval, True)]
    assert pair.events("b", SessionRefreshed) == [SessionRefreshed(interval, False)]
    assert pair.b.get_timer() == bye_at
    stats = pair.b.statistics()
    assert (stats.state, stats.session_interval, stats.we_refresh, stats.timers) == (
        State.CONFIRMED, interval, False, ("TIMER_EXPIRE",))
    pair.flight.clear()
    pair.a.timers.clear()  # A never refreshes
    pair.advance(bye_at)
    assert pair.requests("b", "BYE") and pair.events("b", Terminated)[0].cause is Cause.SESSION_EXPIRED
    assert pair.b.get_timer() is None


def test_uac_refreshes_at_half_the_interval_with_update() -> None:
    pair = Pair(cfg_a=SessionConfig(CFG_A.local_via, CFG_A.contact, session_expires=600))
    pair.connect()
    assert pair.a.timers[Input.TIMER_REFRESH] == 300
    pair.advance(300)
    pair.run()
    (update,) = pair.requests("a", "UPDATE")
    assert update.headers.get("session-expires") == "600;refresher=uac" and not update.body
    assert pair.responses("b", 200)[-1].headers.get("session-expires") == "600;refresher=uac"
    assert pair.a.timers[Input.TIMER_REFRESH] == 600 and pair.b.timers[Input.TIMER_EXPIRE] == 300 + 568
    assert not pair.events("a", ModifyCompleted)  # a refresh is not the user's modify


def test_uac_refreshes_with_reinvite_when_update_is_not_allowed() -> None:
    invite = new_invite()
    invite.headers.remove("allow")
    cfg = SessionConfig(CFG_A.local_via, CFG_A.contact, session_expires=600)
    pair = Pair(cfg_a=cfg, cfg_b=cfg)  # no Allow in B's 2xx
    pair.start(invite)
    pair.run()
    pair.do("b", Accept(answer_to(pair.b, "b")))  # B's 2xx has no Allow either
    pair.run()
    pair.advance(300)
    pair.run()
    reinvite = pair.requests("a", "INVITE")[-1]
    assert reinvite.cseq.seq == 2 and reinvite.body and not pair.requests("a", "UPDATE")


def test_too_brief_interval_gets_422_and_the_uac_retries_with_min_se() -> None:
    """RFC 4028 8.1 (422 with Min-SE) and 7.4 (retry with it, CSeq + 1)."""
    cfg_a = SessionConfig(CFG_A.local_via, CFG_A.contact, session_expires=60, min_se=60)
    cfg_b = SessionConfig(CFG_B.local_via, CFG_B.contact, min_se=300)
    pair = Pair(cfg_a=cfg_a, cfg_b=cfg_b)
    pair.start()
    pair.deliver(0)
    assert pair.responses("b", 422)[0].headers.get("min-se") == "300"
    assert pair.b.state is State.DISCONNECTED
    pair.sessions["b"] = None  # the core forgets a rejected INVITE; the retry is new
    pair.run()
    first, second = pair.requests("a", "INVITE")
    assert second.cseq.seq == first.cseq.seq + 1 and second.call_id == first.call_id
    assert second.headers.get("session-expires") == "300" and second.headers.get("min-se") == "300"
    assert second.top_via.branch != first.top_via.branch
    pair.do("b", Accept(answer_to(pair.b, "b")))
    pair.run()
    assert pair.a.state is State.CONFIRMED and pair.a.session_timer is not None


# ------------------------------------------------------------ challenge retry, 22.2
def challenge(pair: Pair, status: int) -> None:
    pair.start()
    pair.deliver(0)
    invite = pair.b._invite
    assert invite is not None
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    refusal = make_response(invite, status, to_tag="proxy",
                            headers=Headers([(header, 'Digest realm="r", nonce="n"')]))
    pair.flight.clear()
    pair.do("a", IncomingResponse(wire(refusal)))


def test_a_challenge_without_an_authorizer_fails_with_its_status() -> None:
    pair = Pair()
    challenge(pair, 407)
    (end,) = pair.events("a", Terminated)
    assert (end.cause, end.status) == (Cause.FAILED, 407)


def test_the_authorizer_hook_resends_the_invite_with_credentials() -> None:
    seen = []

    def authorizer(request: Request, refusal: Response):
        seen.append((request.cseq.seq, refusal.status))
        return [("Proxy-Authorization", 'Digest username="u", realm="r"')]

    pair = Pair(authorizer=authorizer)
    challenge(pair, 407)
    first, second = pair.requests("a", "INVITE")
    assert seen == [(1, 407)] and pair.a.state is State.CALLING
    assert second.cseq.seq == 2 and second.from_.tag == first.from_.tag and second.call_id == first.call_id
    assert second.headers.get("proxy-authorization", "").startswith("Digest")
    assert second.body == first.body and second.top_via.branch != first.top_via.branch


# ----------------------------------------------------------------------- hypothesis
def a_command(pair: Pair, choice: int):
    a = pair.a
    return [
        lambda: Cancel(), lambda: Bye(), lambda: Modify(offer("a", Direction.SENDONLY)),
        lambda: Modify(None, "UPDATE"), lambda: Modify(offer("a"), "UPDATE"),
        lambda: Accept(answer_to(a, "a")), lambda: Reject(488), lambda: Accept(None),
    ][choice % 8]()


def b_command(pair: Pair, choice: int):
    b = pair.b
    return [
        lambda: Progress(180), lambda: Progress(183, sdp=answer_to(b, "b")),
        lambda: Accept(answer_to(b, "b")), lambda: Reject(486), lambda: Bye(),
        lambda: Modify(offer("b", Direction.SENDONLY)), lambda: Modify(None, "UPDATE"),
        lambda: Reject(488),
    ][choice % 8]()


#: (what, which, seconds): a command of A or B, delivering or dropping a message in
#: flight (any one: the network reorders), or time passing. Delivery is likelier, so
#: sequences get somewhere.
STEP = st.tuples(
    st.sampled_from(["a", "b", "deliver", "deliver", "deliver", "drop", "advance"]),
    st.integers(0, 1000),
    st.one_of(st.sampled_from([T1, T2, 64 * T1]), st.floats(0, 40, allow_nan=False)),
)


def check_invariants(pair: Pair, seen_backoffs: list[tuple[str, float]]) -> None:
    for side, session in pair.sessions.items():
        if session is None:
            continue
        if session.terminated:
            assert session.get_timer() is None, session
        if session.state is State.GLARE and session.last_backoff is not None:
            seen_backoffs.append((side, session.last_backoff))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, max_size=50), seed=st.integers(0, 2**32 - 1),
       session_timer=st.sampled_from([None, 90, 600]), connected=st.booleans())
def test_no_sequence_breaks_the_sessions(steps, seed: int, session_timer: int | None,
                                         connected: bool) -> None:
    """Whatever the commands, losses and reorderings: only InviteSessionError escapes,
    a terminated session has no timer, back-offs stay in range, and once both sides
    hang up and the network drains, both end exactly once with no timer left."""
    rng = random.Random(seed)
    cfg_a = SessionConfig(CFG_A.local_via, CFG_A.contact, session_expires=session_timer)
    pair = Pair(randint_a=rng.randint, randint_b=rng.randint, cfg_a=cfg_a)
    if connected:
        pair.connect()
    else:
        pair.start()
    backoffs: list[tuple[str, float]] = []
    for what, choice, seconds in steps:
        if what in ("a", "b"):
            if pair.sessions[what] is None:
                continue
            command = a_command(pair, choice) if what == "a" else b_command(pair, choice)
            try:
                pair.do(what, command)
            except InviteSessionError:
                pass  # the declared invalid error; nothing else may escape
        elif what in ("deliver", "drop") and pair.flight:
            (pair.deliver if what == "deliver" else pair.drop)(choice % len(pair.flight))
        elif what == "advance":
            pair.advance(seconds)
        check_invariants(pair, backoffs)
    pair.flush()
    for side, session in pair.sessions.items():
        if session is not None:
            assert session.terminated, (side, session)
            assert session.get_timer() is None
            assert len(pair.events(side, Terminated)) == 1
    for side, backoff in backoffs:
        low_, high_ = (2.1, 4.0) if side == "a" else (0.0, 2.0)
        # units of 10 ms: steps / 100 (2.2 * 100 is 220.00000000000003 in binary floats)
        assert low_ <= backoff <= high_ and abs(round(backoff * 100) - backoff * 100) < 1e-9


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_glare_back_off_draws_stay_in_their_ranges(data) -> None:
    draws: list[tuple[int, int]] = []

    def randint(lo: int, hi: int) -> int:
        draws.append((lo, hi))
        return data.draw(st.integers(lo, hi))

    pair = Pair(randint_a=randint, randint_b=randint)
    pair.connect()
    pair.do("a", Modify(offer("a", Direction.SENDONLY)))
    pair.do("b", Modify(offer("b", Direction.SENDONLY)))
    pair.run()
    assert sorted(draws) == [(0, 200), (210, 400)]
    assert 2.1 <= pair.a.last_backoff <= 4.0 and 0 <= pair.b.last_backoff <= 2.0  # type: ignore[operator]
    pair.advance(4.0)
    pair.run()
    pair.flush()
    assert pair.a.get_timer() is None and pair.b.get_timer() is None


def _reliable(invite: Request, status: int, rseq: int, sdp: SessionDescription | None = None) -> Response:
    response = make_response(invite, status, to_tag="btag", headers=Headers([
        ("Contact", "<sip:bot@10.0.0.2:5060>"), ("Require", "100rel"), ("RSeq", str(rseq))]))
    if sdp is not None:
        response.set_body(bytes(sdp), "application/sdp")
    return wire(response)  # type: ignore[return-value]


def test_uac_pracks_each_reliable_provisional_once_in_order() -> None:
    """RFC 3262: our INVITE says Supported: 100rel; each reliable 1xx (Require: 100rel,
    RSeq) gets a PRACK in its early dialog with RAck = RSeq, CSeq number, method (7.2);
    a retransmission or an RSeq out of order is neither PRACKed nor processed (4)."""
    pair = Pair()
    pair.start()
    pair.run()
    (invite,) = pair.requests("a", "INVITE")
    assert "100rel" in [t.strip() for v in invite.headers.values("supported") for t in v.split(",")]
    answer = answer_to(pair.b, "b")
    first = _reliable(invite, 183, 7, answer)
    pair.do("a", IncomingResponse(first))
    (prack,) = pair.requests("a", "PRACK")
    assert prack.headers.get("rack") == "7 1 INVITE" and prack.cseq.method == "PRACK" and prack.cseq.seq > 1
    assert prack.to.tag == "btag" and prack.call_id == invite.call_id and prack.uri == "sip:bot@10.0.0.2:5060"
    (progress,) = pair.events("a", ProgressReceived)
    assert progress.early_media is not None  # RFC 3262 5: the answer to our offer
    assert pair.a.oa.state is OAState.NEGOTIATED
    pair.do("a", IncomingResponse(first))  # a retransmission (our PRACK was slow)
    pair.do("a", IncomingResponse(_reliable(invite, 180, 9)))  # out of order
    assert len(pair.requests("a", "PRACK")) == 1 and len(pair.events("a", ProgressReceived)) == 1
    pair.do("a", IncomingResponse(_reliable(invite, 180, 8)))
    assert [p.headers.get("rack") for p in pair.requests("a", "PRACK")] == ["7 1 INVITE", "8 1 INVITE"]
    ok = make_response(invite, 200, to_tag="btag", headers=Headers([("Contact", "<sip:bot@10.0.0.2:5060>")]))
    pair.do("a", IncomingResponse(wire(ok)))  # no SDP: the answer came in the 183
    assert pair.a.state is State.CONFIRMED and len(pair.requests("a", "ACK")) == 1
    (media,) = pair.events("a", MediaUpdated)
    assert media.media.remote_port == 50000


def test_uac_unreliable_provisional_gets_no_prack() -> None:
    pair = Pair()
    pair.start()
    pair.run()
    (invite,) = pair.requests("a", "INVITE")
    plain = make_response(invite, 180, to_tag="btag", headers=Headers([("RSeq", "1")]))  # no Require
    pair.do("a", IncomingResponse(wire(plain)))
    assert not pair.requests("a", "PRACK") and pair.a.state is State.EARLY


# ------------------------------------------------- UAS reliable 1xx (RFC 3262 3)
def _rseq_of(response: Response) -> str | None:
    return response.headers.get("rseq")


def test_uas_sends_its_sdp_1xx_reliably_and_holds_the_2xx_for_the_prack() -> None:
    """RFC 3262 3: an INVITE with Supported: 100rel gets the 183 with SDP reliably
    (Require: 100rel, RSeq); the 2xx is not sent before that 183 is PRACKed."""
    pair = Pair()
    pair.start()
    pair.run()
    sdp = answer_to(pair.b, "b")
    pair.do("b", Progress(183, sdp))
    (early,) = pair.responses("b", 183)
    assert early.headers.get("require") == "100rel" and _rseq_of(early) == "1"
    pair.do("b", Accept(sdp))  # the PRACK has not come: held
    assert not pair.responses("b", 200) and pair.b.state is State.EARLY
    pair.run()  # A PRACKs; B answers it 200, then sends the 2xx
    statuses = [(r.status, r.cseq.method) for r in pair.responses("b")]
    assert statuses == [(183, "INVITE"), (200, "PRACK"), (200, "INVITE")], statuses
    assert pair.a.state is State.CONFIRMED and pair.b.state is State.CONFIRMED
    (prack,) = pair.requests("a", "PRACK")
    assert prack.headers.get("rack") == "1 1 INVITE"


def test_uas_without_an_sdp_180_unreliable_unless_required() -> None:
    supported = Pair()
    supported.start()
    supported.run()
    supported.do("b", Progress(180))
    (ringing,) = supported.responses("b", 180)
    assert _rseq_of(ringing) is None and "require" not in ringing.headers
    required = Pair()
    required.start(new_invite((("Require", "100rel"),)))
    required.run()
    required.do("b", Progress(180))
    (ringing,) = required.responses("b", 180)
    assert ringing.headers.get("require") == "100rel" and _rseq_of(ringing) == "1"
    plain = Pair(cfg_a=SessionConfig(local_via=CFG_A.local_via, contact=CFG_A.contact, reliable_provisional=False))
    plain.start()
    plain.run()
    plain.do("b", Progress(183, answer_to(plain.b, "b")))
    (early,) = plain.responses("b", 183)
    assert _rseq_of(early) is None  # no 100rel in the INVITE: nothing reliable


def test_uas_retransmits_the_reliable_1xx_doubling_then_fails_the_invite_500() -> None:
    """RFC 3262 3: retransmitted at T1, doubling (no T2 cap) until the PRACK; after
    64*T1 without one the INVITE is rejected with a 5xx."""
    pair = Pair()
    pair.start()
    pair.run()
    pair.do("b", Progress(183, answer_to(pair.b, "b")))
    pair.flight.clear()  # the 183 and its retransmissions are lost
    sent_at = []
    while pair.b.get_timer() is not None and pair.now < 40:
        pair.now = pair.b.get_timer()  # type: ignore[assignment]
        before = len(pair.out["b"])
        pair._take("b", pair.b.handle_timer(pair.now))
        pair.flight.clear()
        if any(isinstance(o, RetransmitResponse) for o in pair.out["b"][before:]):
            sent_at.append(pair.now)
    gaps = [round(b - a, 3) for a, b in zip([0.0, *sent_at], sent_at)]
    assert gaps == [T1 * 2**n for n in range(6)], gaps
    assert [r.status for r in pair.responses("b") if r.status >= 200] == [500]
    (end,) = pair.events("b", Terminated)
    assert end.cause is Cause.NO_PRACK and end.status == 500 and pair.now == 64 * T1
    assert pair.b.get_timer() is None


def test_uas_prack_for_no_pending_1xx_gets_481_and_a_second_1xx_waits() -> None:
    pair = Pair()
    pair.start(new_invite((("Require", "100rel"),)))
    pair.run()
    pair.do("b", Progress(180))
    pair.do("b", Progress(183, answer_to(pair.b, "b")))  # waits for the 180's PRACK
    assert [r.status for r in pair.responses("b")] == [180]
    pair.deliver(len(pair.flight) - 1)  # the 180 reaches A: it PRACKs
    (prack,) = pair.requests("a", "PRACK")
    wrong = wire(prack)
    wrong.headers.set("RAck", "99 1 INVITE")
    wrong.headers.set("Via", wrong.headers.get("via").replace("branch=", "branch=x"))  # type: ignore[union-attr]
    pair.do("b", IncomingRequest(wrong, "tx-wrong"))
    assert [r.status for r in pair.responses("b") if r.cseq.method == "PRACK"] == [481]
    assert pair.b.state is State.EARLY
    pair.run()  # the real PRACK: 200, and the 183 goes out (RSeq + 1)
    early = pair.responses("b", 183)
    assert early and _rseq_of(early[0]) == "2" and early[0].headers.get("require") == "100rel"
    assert [p.headers.get("rack") for p in pair.requests("a", "PRACK")] == ["1 1 INVITE", "2 1 INVITE"]
    pair.do("b", Accept(answer_to(pair.b, "b")))
    pair.run()
    assert pair.a.state is State.CONFIRMED and pair.b.state is State.CONFIRMED


# ------------------------------------------------- UAC delayed offer (13.2.1)
def _answerer(answers: list[SessionDescription]):
    def answer(offered: SessionDescription) -> SessionDescription:
        builder = BUILDERS["a"]
        made = make_answer(offered, origin=builder.origin, address=builder.address, port=40000).sdp
        answers.append(made)
        return made
    return answer


def test_uac_delayed_offer_answers_the_2xx_offer_in_the_ack() -> None:
    """13.2.1: our INVITE has no SDP; the 2xx carries the peer's offer, our ACK the
    answer, and both sides settle the media from that exchange."""
    pair = Pair()
    answers: list[SessionDescription] = []
    pair.do("a", Invite(new_invite(body=False), _answerer(answers)))
    pair.run()
    (invite,) = pair.requests("a", "INVITE")
    assert not invite.body
    pair.do("b", Accept(offer("b")))  # B's offer, in its 2xx
    pair.run()
    (ack,) = pair.requests("a", "ACK")
    assert answers and ack.body == bytes(answers[0]) and ack.content_type == "application/sdp"
    assert pair.a.state is State.CONFIRMED and pair.b.state is State.CONFIRMED
    (ours,) = pair.events("a", MediaUpdated)
    assert ours.media.remote_port == 50000
    (theirs,) = pair.events("b", MediaUpdated)
    assert theirs.media.remote_port == 40000  # B took the answer in the ACK


def test_uac_delayed_offer_unusable_offer_is_acked_then_byed() -> None:
    pair = Pair()
    pair.do("a", Invite(new_invite(body=False), lambda offered: None))
    pair.run()
    pair.do("b", Accept(offer("b")))
    pair.run()
    assert pair.requests("a", "ACK") and pair.requests("a", "BYE")
    (end,) = pair.events("a", Terminated)
    assert end.cause is Cause.FAILED and end.status == 488


def test_uac_delayed_offer_answers_a_reliable_183_offer_in_the_prack() -> None:
    """RFC 3262 5: an offer in a reliable 1xx to our INVITE without SDP is answered in
    the PRACK; the 2xx then carries no SDP and the ACK none either."""
    pair = Pair()
    answers: list[SessionDescription] = []
    pair.do("a", Invite(new_invite(body=False), _answerer(answers)))
    pair.run()
    (invite,) = pair.requests("a", "INVITE")
    pair.do("a", IncomingResponse(_reliable(invite, 183, 5, offer("b"))))
    (prack,) = pair.requests("a", "PRACK")
    assert answers and prack.body == bytes(answers[0]) and prack.headers.get("rack") == "5 1 INVITE"
    (progress,) = pair.events("a", ProgressReceived)
    assert progress.early_media is not None and progress.early_media.remote_port == 50000
    ok = make_response(invite, 200, to_tag="btag", headers=Headers([("Contact", "<sip:bot@10.0.0.2:5060>")]))
    pair.do("a", IncomingResponse(wire(ok)))
    (ack,) = pair.requests("a", "ACK")
    assert not ack.body and pair.a.state is State.CONFIRMED
    (media,) = pair.events("a", MediaUpdated)
    assert media.media.remote_port == 50000


def test_an_invite_without_offer_needs_an_answerer() -> None:
    session = InviteSession(DialogRole.UAC, CFG_A, randint=low)
    with pytest.raises(InviteSessionError):
        session.handle(Invite(new_invite(body=False)), 0.0)
