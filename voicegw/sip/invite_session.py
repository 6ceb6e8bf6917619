"""The INVITE session: one INVITE dialog usage, sans-I/O (PJSIP's inv layer).

It sits above the dialog (:mod:`voicegw.sip.dialog`) and the UA core's transactions,
and below the engine. It owns what RFC 3261 gives the "UA core" of one call: the
offer/answer state (:class:`~voicegw.sip.offer_answer.OfferAnswer`), the 2xx
retransmission and its ACK (13.2.2.4, 13.3.1.4), CANCEL (9.1, 9.2), re-INVITE and
UPDATE with 491 glare and its randomised back-off (14.1, 14.2, RFC 3311), session
timers (RFC 4028), BYE (15), and the place where a 401/407 to a request of the session
(the INVITE, a re-INVITE or UPDATE, a PRACK, the BYE) is answered with credentials
(22.2; an :class:`~voicegw.sip.invite_session_io.Authorizer`, in production a
:class:`~voicegw.sip.request_auth.RequestAuth`); the ACK of a 2xx carries the
credentials of the INVITE it acknowledges (13.2.2.4). A BYE is followed to its final
response when a challenge to it can be answered (``settled``); one that fails is
reported (``ByeFailed``), the session having ended when it left (15).

How to use it: ``handle(input, now)`` takes one typed input
(:mod:`voicegw.sip.invite_session_io`) and returns the outputs it caused, in order:
wire actions for the executor (send a request, a response, retransmit a 2xx) and
events for the controller. ``get_timer()`` says when the next session timer is due
and ``handle_timer(now)`` runs the due ones. Nothing here reads a clock, does I/O or
draws a random number: the 491 back-off (14.1) and the Retry-After of a 500 (14.2)
come from the ``randint`` the session is given (``random.randint`` in production).

How it works: :meth:`InviteSession._classify` turns an input into one
:class:`~voicegw.sip.invite_session_table.Input` (making the few data-dependent
choices there), :meth:`InviteSession._apply` looks the pair up in the table of
:mod:`voicegw.sip.invite_session_table` and performs the row's actions. That is the
one place where the table is applied. An invalid request from the peer is answered
with the status the table gives; an invalid command raises ``InviteSessionError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dialog_table import DialogRole
from .errors import DialogError, SipError
from .invite_session_actions import SDP, SessionActions, _Context, _rack, _sdp
from .invite_session_io import (
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
    SessionInput,
    StateChanged,
    Terminated,
)
from .invite_session_table import TABLE, Action, Input, InviteSessionError, State, lookup
from .message import Request, Response
from .offer_answer import NegotiatedMedia, OAState, negotiate
from .sdp import SessionDescription
from .session_expires import min_se, uas_negotiate

A, I, S = Action, Input, State
#: Challenge retries per INVITE (22.2: do not loop on credentials that were refused).
MAX_AUTH_RETRIES = 2


@dataclass(frozen=True, slots=True)
class InviteSessionStatistics:
    """A snapshot for the control API (trio-style ``statistics()``)."""

    state: State
    role: DialogRole
    offer_answer: OAState
    """Where the offer/answer exchange stands (RFC 3264)."""
    session_interval: int | None
    """The RFC 4028 session interval in force, None without a session timer."""
    we_refresh: bool
    """Whether we are the refresher."""
    timers: tuple[str, ...]
    """The session timers running (their ``Input`` names)."""
    last_backoff: float | None
    """The last 491 back-off drawn (14.1), in seconds."""


class InviteSession(SessionActions):
    # ------------------------------------------------------------------ entry points
    def handle(self, item: SessionInput, now: float) -> list[Output]:
        kind, ctx = self._classify(item, now)
        if kind is not None:
            self._apply(kind, ctx)
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return min(self.timers.values()) if self.timers else None

    def handle_timer(self, now: float) -> list[Output]:
        while self.timers:
            kind, due = min(self.timers.items(), key=lambda entry: entry[1])
            if due > now:
                break
            del self.timers[kind]
            self._apply(kind, _Context(None, now))
        out, self._out = self._out, []
        return out

    def end(self, now: float, status: int = 480) -> list[Output]:
        """End the session whatever its state allows (PJSIP's ``end_session``): CANCEL
        while a UAC rings, a ``status`` final response while a UAS rings, else BYE."""
        if self.state in (S.NULL, S.DISCONNECTED):
            return []
        if self.role is DialogRole.UAC and self.state in (S.CALLING, S.EARLY, S.CANCEL_PENDING,
                                                          S.CANCELLING):
            return self.handle(Cancel(), now)
        if self.state in (S.INCOMING, S.EARLY):
            return self.handle(Reject(status), now)
        return self.handle(Bye(), now)

    @property
    def terminated(self) -> bool:
        return self.state is S.DISCONNECTED

    @property
    def settled(self) -> bool:
        """Over, and no request of ours waits for an answer we could still act on: a
        BYE is followed to its final response when a challenge to it can be answered
        (22.2); without an authorizer the session is settled once it is over."""
        return self.terminated and (self._bye is None or self._authorizer is None)

    def statistics(self) -> InviteSessionStatistics:
        timer = self.session_timer
        return InviteSessionStatistics(
            state=self.state, role=self.role, offer_answer=self.oa.state,
            session_interval=None if timer is None else timer.interval,
            we_refresh=timer is not None and timer.we_refresh,
            timers=tuple(sorted(kind.name for kind in self.timers)),
            last_backoff=self.last_backoff,
        )

    # ------------------------------------------------------- input -> table input
    def _classify(self, item: SessionInput, now: float) -> tuple[Input | None, _Context]:
        ctx = _Context(item, now)
        uac = self.role is DialogRole.UAC
        if isinstance(item, Invite):
            self._require(uac and item.request.method == "INVITE", "only a UAC sends the INVITE")
            # An INVITE without offer wants the peer's in the 2xx and our answer in the
            # ACK (13.2.1): the answerer gives that answer
            self._require(bool(item.request.body) or item.answerer is not None,
                          "an INVITE without offer needs an answerer")
            ctx.request = item.request
            return I.INVITE, ctx
        if isinstance(item, (Progress, Accept, Reject)):
            initial = self.state in (S.NULL, S.INCOMING, S.EARLY, S.CONNECTING)
            self._require(not (uac and initial), "only the UAS answers the INVITE")
            if isinstance(item, Progress):
                self._require(item.status in range(101, 200), "a provisional status is 101-199")
                ctx.media = self._check_answer(item.sdp)
                if self._reliable_out is not None and self._wants_reliable(item):
                    # RFC 3262 3: no second reliable 1xx before the first is PRACKed
                    self._queue_progress(item)
                    return None, ctx
                return I.PROGRESS, ctx
            if isinstance(item, Reject):
                self._require(item.status in range(300, 700), "a final error is 300-699")
                ctx.status, ctx.headers = item.status, item.headers
                return I.REJECT, ctx
            sdp = item.sdp if item.sdp is not None else self._early_sdp
            if self.state is S.REINVITED:
                sdp = item.sdp
            ctx.sdp, ctx.media = sdp, self._check_answer(sdp, required=True)
            if self._reliable_out is not None and self.state is S.EARLY:
                return I.ACCEPT_HELD, ctx  # RFC 3262 3: the 2xx waits for the PRACK
            return I.ACCEPT, ctx
        if isinstance(item, Cancel):
            self._require(uac, "only a UAC cancels its INVITE")
            return I.CANCEL, ctx
        if isinstance(item, Bye):
            ctx.headers = item.headers
            return I.BYE, ctx
        if isinstance(item, Modify):
            self._require(item.method in ("INVITE", "UPDATE"), "modify with INVITE or UPDATE")
            self._require(item.method == "UPDATE" or item.sdp is not None,
                          "a re-INVITE without offer is not supported")
            # 14.1: no re-INVITE "while another INVITE transaction is in progress in
            # either direction": ours waits for the ACK of our last 2xx
            self._require(item.method == "UPDATE" or self._unacked is None,
                          "the ACK for our 2xx has not come yet (14.1)")
            return I.MODIFY, ctx
        if isinstance(item, IncomingRequest):
            ctx.request, ctx.transaction_id = item.request, item.transaction_id
            return self._classify_request(item.request, ctx)
        if isinstance(item, IncomingCancel):
            pending = [self._invite_tx] if self.state in (S.INCOMING, S.EARLY) else []
            if self._remote is not None:
                pending.append(self._remote[1])
            return (I.RECV_CANCEL if item.transaction_id in pending else I.RECV_OTHER), ctx
        if isinstance(item, IncomingResponse):
            ctx.response, ctx.status, ctx.reason = item.response, item.response.status, item.response.reason
            return self._classify_response(item.response, ctx)
        assert isinstance(item, RequestTimedOut)
        timeout = item.status == 408
        ctx.status, ctx.reason = item.status, "no response" if timeout else "transport failure"
        if self._invite is not None and uac and (item.method, item.seq) == ("INVITE", self._invite.cseq.seq):
            return (I.NO_RESPONSE if timeout else I.RECV_FAILURE), ctx
        if self._modify is not None and (item.method, item.seq) == (self._modify.method, self._modify.cseq.seq):
            # 12.2.1.2: no response at all ends the dialog; a transport failure is a 503
            return (I.MODIFY_GONE if timeout else I.MODIFY_FAILED), ctx
        if self._bye is not None and (item.method, item.seq) == ("BYE", self._bye.cseq.seq):
            ctx.reason = "no response to our BYE" if timeout else "transport failure on our BYE"
            return I.BYE_FAILED, ctx
        return I.RECV_OTHER, ctx

    def _classify_request(self, request: Request, ctx: _Context) -> tuple[Input | None, _Context]:
        method = request.method
        if method == "INVITE" and request.to.tag is None:
            self._require(self.role is DialogRole.UAS, "a UAC session takes no INVITE")
            if self.state is not S.NULL:
                return I.RECV_INVITE, ctx  # ignored: retransmissions are the core's
            return self._classify_offer(request, ctx, I.RECV_INVITE)
        if method not in ("ACK", "BYE", "INVITE", "UPDATE", "PRACK"):
            raise InviteSessionError(f"{method} is not the INVITE session's")
        # The dialog's own checks come first (12.2.2): that it exists and is this one
        # (481) and the order of CSeq numbers (500); they also move the remote target.
        try:
            if self.dialog is None:
                raise DialogError("no dialog yet")
            self.dialog.receive_request(request)
        except SipError as error:
            if method != "ACK":  # never answer an ACK (17.2.3)
                self._refuse(request, ctx.transaction_id, error.status)
            return None, ctx
        if method == "ACK":
            return I.RECV_ACK, ctx
        if method == "BYE":
            return I.RECV_BYE, ctx
        if method == "PRACK":
            return self._classify_prack(request, ctx)
        if method == "INVITE":
            if self._unacked is not None:
                # our 2xx to the last INVITE is not ACKed: that INVITE is still in
                # progress (14.2, RFC 6026's Accepted state)
                ctx.status = 491
                return I.RECV_UNACCEPTABLE, ctx
            return self._classify_offer(request, ctx, I.RECV_REINVITE)
        if not request.body:
            return self._classify_offer(request, ctx, I.RECV_REFRESH)
        return self._classify_offer(request, ctx, I.RECV_UPDATE_OFFER)

    def _classify_prack(self, request: Request, ctx: _Context) -> tuple[Input, _Context]:
        """RFC 3262 7.2: RAck is the RSeq, CSeq number and method of the 1xx it
        acknowledges; one that matches no unacknowledged reliable 1xx gets 481 (3)."""
        pending = self._reliable_out
        if pending is None or _rack(request) != (pending[0], pending[1].cseq.seq, "INVITE"):
            ctx.status = 481
            return I.RECV_PRACK_UNMATCHED, ctx
        held = self._held_accept
        if held is None:
            return I.RECV_PRACK, ctx
        self._held_accept = None
        ctx.item, ctx.sdp, ctx.media = held.item, held.sdp, held.media
        return I.RECV_PRACK_RELEASE, ctx

    def _classify_offer(self, request: Request, ctx: _Context, kind: Input) -> tuple[Input, _Context]:
        """A request we may take: refused first for its Session-Expires (422, RFC 4028
        8.1), an offer that does not parse (488) or one that crosses ours (491/500)."""
        decision = uas_negotiate(request, self.config.min_se)
        if decision.too_brief:
            ctx.status, ctx.headers = 422, decision.headers
            return I.RECV_UNACCEPTABLE, ctx
        if request.body:
            ctx.sdp = _sdp(request.body)
            if ctx.sdp is None or request.content_type != SDP:
                ctx.status = 488
                return I.RECV_UNACCEPTABLE, ctx
            if self.oa.state is OAState.LOCAL_OFFER_SENT:
                ctx.status = 491  # RFC 3311 5.2, RFC 3261 14.2
                return I.RECV_UNACCEPTABLE, ctx
            if self.oa.state is OAState.REMOTE_OFFER_RECEIVED:
                ctx.status = 500
                return I.RECV_UNACCEPTABLE, ctx
        return kind, ctx

    def _classify_response(self, response: Response, ctx: _Context) -> tuple[Input, _Context]:
        cseq = response.cseq
        status = response.status
        tag = response.to.tag or ""
        if cseq.method == "INVITE" and status < 300 and status >= 200 and (cseq.seq, tag) in self._acks:
            return I.RECV_2XX_AGAIN, ctx
        invite = self._invite
        if (self.role is DialogRole.UAC and invite is not None and cseq.method == "INVITE"
                and cseq.seq == invite.cseq.seq and response.call_id == invite.call_id):
            if status < 200:
                return (I.RECV_1XX if tag and status > 100 else I.RECV_100), ctx
            if status < 300:
                if not tag:
                    return I.RECV_FAILURE, ctx  # no dialog can come of it (12.1)
                if self.state in (S.CALLING, S.EARLY) and self._awaits_offer():
                    offer = _sdp(response.body)
                    answer = self._answerer(offer) if offer is not None and self._answerer else None
                    try:
                        if offer is None or answer is None:
                            raise SipError("no usable offer")
                        media = negotiate(offer, answer, local_is_offerer=False)
                    except SipError as error:
                        ctx.status, ctx.reason = 488, f"unusable offer in the 2xx: {error.reason}"
                        return I.RECV_2XX_BAD_SDP, ctx
                    ctx.sdp, ctx.answer, ctx.media = offer, answer, media
                    return I.RECV_2XX, ctx
                if self.state in (S.CALLING, S.EARLY) and self.oa.state is OAState.LOCAL_OFFER_SENT:
                    fits = self._fits(response.body)
                    if fits is not None:
                        ctx.sdp, ctx.media = fits
                    else:
                        ctx.status, ctx.reason = 488, f"unusable answer in the 2xx: {self._unfit(response.body)}"
                        return I.RECV_2XX_BAD_SDP, ctx
                return I.RECV_2XX, ctx
            early = self.state in (S.CALLING, S.EARLY)
            if status in (401, 407) and early and self._authorizer is not None \
                    and self._auth_retries < MAX_AUTH_RETRIES:
                credentials = self._authorizer(invite, response)
                if credentials:
                    ctx.headers = credentials
                    return I.RECV_CHALLENGE, ctx
            if status == 422 and early and self._longer(response):
                return I.RECV_TOO_BRIEF, ctx
            return I.RECV_FAILURE, ctx
        modify = self._modify
        if modify is not None and (cseq.method, cseq.seq) == (modify.method, modify.cseq.seq):
            if status < 200:
                return I.RECV_OTHER, ctx
            if status < 300:
                return I.MODIFY_2XX, ctx
            if status == 491:
                return I.MODIFY_491, ctx
            if status == 422 and self._longer(response):
                return I.MODIFY_TOO_BRIEF, ctx
            if status in (408, 481):
                return I.MODIFY_GONE, ctx  # 12.2.1.2
            if self._challenge_answered(modify, response, ctx, self._modify_auth):
                return I.MODIFY_CHALLENGE, ctx  # 22.2; the offer stays the same
            return I.MODIFY_FAILED, ctx
        bye = self._bye
        if bye is not None and (cseq.method, cseq.seq) == ("BYE", bye.cseq.seq):
            if status < 200:
                return I.RECV_OTHER, ctx
            if status < 300:
                return I.BYE_ANSWERED, ctx
            ctx.reason = f"BYE answered {status} {response.reason}".rstrip()
            if self._challenge_answered(bye, response, ctx, self._bye_auth):
                return I.BYE_CHALLENGE, ctx
            return I.BYE_FAILED, ctx
        prack = self._prack_out
        if (prack is not None and (cseq.method, cseq.seq) == ("PRACK", prack.cseq.seq)
                and self._challenge_answered(prack, response, ctx, self._prack_auth)):
            return I.PRACK_CHALLENGE, ctx
        # any other answer to our PRACK is not acted on: a UAS that did not get it
        # retransmits its 1xx and ends the INVITE with a 5xx (RFC 3262 3)
        return I.RECV_OTHER, ctx

    def _challenge_answered(self, request: Request, response: Response, ctx: _Context, tries: int) -> bool:
        """A 401/407 to ``request`` the authorizer answers (22.2), at most
        MAX_AUTH_RETRIES times per request: the credentials go in ``ctx.headers``; a
        refusal's reason in ``ctx.reason``."""
        if response.status not in (401, 407):
            return False
        if self._authorizer is None:
            ctx.reason = f"{response.status} challenge, and no credentials for this peer"
            return False
        if tries >= MAX_AUTH_RETRIES:
            ctx.reason = f"{response.status} challenge after {tries} answered"
            return False
        credentials = self._authorizer(request, response)
        if not credentials:
            why = getattr(self._authorizer, "refused", "")
            ctx.reason = f"{response.status} challenge not answered" + (f": {why}" if why else "")
            return False
        ctx.headers = credentials
        return True

    def _longer(self, response: Response) -> bool:
        """RFC 4028 7.4: a 422 whose Min-SE is above what we asked can be met; remember it."""
        floor = min_se(response)
        asked = self._asked_interval or 0
        if floor is None or floor <= asked:
            return False
        # 7.4: "The Min-SE header field in the retried request MUST contain the value
        # of the Min-SE header field in the 422 response", Session-Expires at least that
        self._min_se = max(self._min_se, floor)
        self._asked_interval = max(floor, self.config.min_se)
        return True

    def _check_answer(self, sdp: SessionDescription | None, *, required: bool = False) -> NegotiatedMedia | None:
        """Our answer must fit the peer's offer (a user error otherwise: raise now,
        before anything changed); a 2xx to an INVITE without offer carries ours (13.2.1)."""
        if self.oa.state is not OAState.REMOTE_OFFER_RECEIVED:
            if required and self.state in (S.INCOMING, S.EARLY, S.REINVITED):
                self._require(sdp is not None, "the 2xx to an INVITE without offer carries ours")
            return None
        if sdp is None:
            self._require(not required, "the peer's offer needs an answer")
            return None
        assert self.oa.pending_offer is not None
        try:
            return negotiate(self.oa.pending_offer, sdp, local_is_offerer=False)
        except SipError as error:
            raise InviteSessionError(f"our answer does not fit the offer: {error.reason}") from None

    @staticmethod
    def _require(condition: bool, reason: str) -> None:
        if not condition:
            raise InviteSessionError(reason)

    # ------------------------------------------------- the one place the table is applied
    def _apply(self, kind: Input, ctx: _Context) -> None:
        found = lookup(self.state, kind)
        if found is None:
            return  # IGNORED
        if isinstance(found, int):  # INVALID: only commands and requests are
            if isinstance(ctx.item, IncomingRequest):
                self._refuse(ctx.item.request, ctx.transaction_id, found)
                return
            raise InviteSessionError(f"{kind.value} not allowed in state {self.state.value}",
                                     status=found)
        actions, target, cause = found
        for action in actions:
            self._perform(action, ctx)
        previous = self.state
        if target is previous:
            return
        self.state = target
        # A timer the new state has no row for can never matter again: drop it, so
        # get_timer() is honest (and DISCONNECTED keeps none).
        self.timers = {k: due for k, due in self.timers.items() if (target, k) in TABLE}
        self._out.append(StateChanged(previous, target))
        if target is S.CONFIRMED and self._refresh_owed:
            self._refresh_owed = False
            if self.session_timer is not None and self.session_timer.we_refresh:
                self.timers[I.TIMER_REFRESH] = ctx.now  # due at once
        if target is S.DISCONNECTED:
            assert cause is not None
            if self.dialog is not None:
                self.dialog.terminate()
            self._out.append(Terminated(cause, ctx.status, ctx.reason or cause.value))

    def _perform(self, action: Action, ctx: _Context) -> None:
        getattr(self, f"_do_{action.name.lower()}")(ctx)

    def __repr__(self) -> str:
        return (f"<InviteSession {self.role.name} {self.state.name} "
                f"timers={sorted(k.name for k in self.timers)}>")


__all__ = ["MAX_AUTH_RETRIES", "InviteSession", "InviteSessionStatistics"]
