"""The INVITE session's state and the actions its table names.

:class:`SessionActions` holds one session's state (offer/answer, the dialog, timers,
what is in flight) and one ``_do_<action>`` method per
:class:`~voicegw.sip.invite_session_table.Action`; the subclass
:class:`~voicegw.sip.invite_session.InviteSession` classifies inputs and applies the
table, calling these in the order a row lists them. Actions append wire actions and
events to ``self._out`` and set timers in ``self.timers``; they never choose the next
state. Read :mod:`voicegw.sip.invite_session` first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import invite_session_io as io
from .build import make_response, new_branch
from .dialog import Dialog, make_dialog_response
from .dialog_table import DialogRole
from .errors import SipError
from .invite_session_io import Authorizer, HeaderList, Modify, Output, SessionInput
from .invite_session_table import Input, InviteSessionError, State
from .message import Headers, Request, Response
from .offer_answer import NegotiatedMedia, OAState, OfferAnswer, negotiate
from .request_auth import RequestAuth, resend
from .sdp import SessionDescription
from .session_expires import Negotiated, uac_headers, uac_negotiated, uas_negotiate
from .transaction import T1, T2
from .uri import Uri

I, S = Input, State
SDP = "application/sdp"


@dataclass(frozen=True)
class SessionConfig:
    local_via: str
    """Our sent-protocol and sent-by, e.g. ``"SIP/2.0/UDP 192.0.2.1:5060;rport"``."""
    contact: str
    """The Contact header value of our requests and responses."""
    over_tls: bool = False
    session_expires: int | None = None
    """UAC: ask for a session timer with this interval (RFC 4028 7.1); None: do not ask.
    A UAS always follows what the INVITE asks for."""
    min_se: int = 90
    """Our Min-SE: shorter intervals are refused with 422 (RFC 4028 8.1)."""
    allow: str = ""
    """The Allow value our 2xx to an INVITE carries (13.3.1.4: it "SHOULD contain the
    Allow header field"; the core's list); "" for none. A peer that sees UPDATE in it
    gets our session refreshes as UPDATE (RFC 4028 9)."""
    reliable_provisional: bool = True
    """UAC: ``Supported: 100rel`` in our INVITE, and a PRACK for each reliable 1xx
    (RFC 3262 4)."""


@dataclass
class _Context:
    """What the classifier learnt about the input, for the actions."""

    item: SessionInput | None
    now: float
    request: Request | None = None
    response: Response | None = None
    transaction_id: str = ""
    status: int | None = None
    reason: str = ""
    headers: HeaderList = ()
    sdp: SessionDescription | None = None
    media: NegotiatedMedia | None = None
    answer: SessionDescription | None = None
    """UAC, delayed offer: our answer to the offer in the 2xx, for the ACK."""


def _sdp(body: bytes) -> SessionDescription | None:
    """The body as SDP; None when there is none or it does not parse."""
    if not body:
        return None
    try:
        return SessionDescription.parse(body)
    except SipError:
        return None


def _reliable(response: Response) -> int | None:
    """The RSeq of a reliable provisional response (RFC 3262 3: 101-199 with a To tag,
    ``Require: 100rel`` and RSeq); None for any other."""
    if not 100 < response.status < 200 or not response.to.tag:
        return None
    required = {t.strip().lower() for v in response.headers.values("require") for t in v.split(",")}
    value = (response.headers.get("rseq") or "").strip()
    if "100rel" not in required or not value.isdigit() or not 1 <= int(value) <= 2**31 - 1:
        return None
    return int(value)


def _tags(message: Request, name: str) -> set[str]:
    return {t.strip().lower() for v in message.headers.values(name) for t in v.split(",")}


def _rack(request: Request) -> tuple[int, int, str] | None:
    """A PRACK's RAck: the RSeq, CSeq number and method it acknowledges (RFC 3262 7.2)."""
    parts = (request.headers.get("rack") or "").split()
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1]), parts[2].upper()


def _allows_update(message: Request | Response) -> bool:
    return any(m.strip().upper() == "UPDATE" for v in message.headers.values("allow") for m in v.split(","))


class SessionActions:
    """One INVITE session's state, and what each table action does to it."""

    def __init__(self, role: DialogRole, config: SessionConfig, *,
                 randint: Callable[[int, int], int], local_tag: str = "",
                 authorizer: Authorizer | None = None) -> None:
        self.role = role
        self.config = config
        self.state = S.NULL
        self.oa = OfferAnswer()
        self.dialog: Dialog | None = None
        self.timers: dict[Input, float] = {}
        self.session_timer: Negotiated | None = None
        self.last_backoff: float | None = None
        """The last 491 back-off drawn (14.1), in seconds."""
        if role is DialogRole.UAS and not local_tag:
            raise InviteSessionError("a UAS session needs the To tag of its responses")
        self._randint = randint
        self._local_tag = local_tag  # UAS: the To tag of our responses
        self._authorizer = authorizer
        self._invite: Request | None = None
        self._invite_tx = ""  # UAS: the INVITE's server transaction
        self._auth_retries = 0
        self._asked_interval = config.session_expires
        self._min_se = config.min_se  # raised by a 422's Min-SE (RFC 4028 7.4)
        self._uas_timer: Negotiated | None = None  # what the INVITE's Session-Expires settled
        self._uas_timer_headers: HeaderList = ()
        self._peer_allows_update = False
        self._rseq: int | None = None  # UAC: the last in-order reliable 1xx we PRACKed (RFC 3262 4)
        self._answer_in_1xx = False  # UAC: our offer was answered in a reliable 1xx
        self._answerer: io.Answerer | None = None  # UAC, delayed offer: answers the peer's offer
        self._early_sdp: SessionDescription | None = None  # our last 1xx's SDP
        # UAS, RFC 3262: what the INVITE said of 100rel ("require", "supported" or ""),
        # our next RSeq, the reliable 1xx awaiting its PRACK (RSeq, response), a 1xx
        # queued behind it and a 2xx held for it
        self._peer_100rel = ""
        self._next_rseq: int | None = None
        self._reliable_out: tuple[int, Response] | None = None
        self._reliable_interval = T1
        self._queued_progress: io.Progress | None = None
        self._held_accept: _Context | None = None
        self._acks: dict[tuple[int, str], tuple[Request, Uri | None]] = {}
        self._unacked: tuple[str, Response] | None = None  # our 2xx awaiting its ACK
        self._retransmit_interval = T1
        self._modify: Request | None = None  # our re-INVITE/UPDATE in flight
        self._modify_auth = 0  # challenges answered for it (22.2)
        self._bye: Request | None = None  # our BYE, until its final response
        self._bye_auth = 0
        self._prack_out: Request | None = None  # UAC: our last PRACK (RFC 3262 7.2)
        self._prack_auth = 0
        self._modify_spec: Modify | None = None
        self._modify_is_refresh = False
        self._remote: tuple[Request, str] | None = None  # the peer's, awaiting our answer
        self._refresh_owed = False
        self._out: list[Output] = []

    # ----------------------------------------------------------------------- actions

    def _fits(self, body: bytes) -> tuple[SessionDescription, NegotiatedMedia] | None:
        """``body`` as the answer to our pending offer, and what it settles; None if
        it is unusable."""
        answer = _sdp(body)
        if answer is None or self.oa.pending_offer is None:
            return None
        try:
            return answer, negotiate(self.oa.pending_offer, answer, local_is_offerer=True)
        except SipError:
            return None

    def _unfit(self, body: bytes) -> str:
        """Why ``body`` does not answer our pending offer (for the failure's reason:
        e.g. an RTP/SAVP offer answered with plain RTP)."""
        answer = _sdp(body)
        if answer is None or self.oa.pending_offer is None:
            return "no SDP"
        try:
            negotiate(self.oa.pending_offer, answer, local_is_offerer=True)
        except SipError as error:
            return error.reason
        return "fits"

    # UAC ---------------------------------------------------------------------------
    def _do_send_invite(self, ctx: _Context) -> None:
        invite = ctx.request
        assert invite is not None
        if "via" not in invite.headers:
            invite.headers.insert_first("Via", f"{self.config.local_via};branch={new_branch()}")
        if self._asked_interval is not None and "session-expires" not in invite.headers:
            for name, value in uac_headers(self._asked_interval, self._min_se, None):
                invite.headers.add(name, value)
        if self.config.reliable_provisional:
            invite.headers.add("Supported", "100rel")  # RFC 3262 3: we PRACK reliable 1xx
        offer = _sdp(invite.body)
        if offer is not None:
            self.oa.local_offer(offer)
        elif isinstance(ctx.item, io.Invite):
            self._answerer = ctx.item.answerer  # delayed offer (13.2.1)
        self._invite = invite
        self._out.append(io.SendRequest(invite, None))

    def _reissue(self, ctx: _Context, replace: HeaderList) -> None:
        """The INVITE again as a new transaction: CSeq + 1, a new branch, same Call-ID
        and From tag (22.2, RFC 4028 7.4). Any early dialog of the old one is over."""
        old = self._invite
        assert old is not None
        headers = Headers()
        replaced = {name.lower() for name, _ in replace}
        for name, value in old.headers:
            key = name.lower()
            if key in replaced or key in ("cseq", "via", "content-length"):
                continue
            headers.add(name, value)
        headers.insert_first("Via", f"{self.config.local_via};branch={new_branch()}")
        headers.add("CSeq", f"{old.cseq.seq + 1} INVITE")
        for name, value in replace:
            headers.add(name, value)
        invite = Request("INVITE", old.uri, headers)
        invite.set_body(old.body, old.content_type)
        if self.dialog is not None:
            self.dialog.terminate()
            self.dialog = None
        self._rseq = None  # RSeq counts per dialog (RFC 3262 3)
        self._prack_out = None
        self._invite = invite
        self._out.append(io.SendRequest(invite, None))

    def _do_retry_authorized(self, ctx: _Context) -> None:
        self._auth_retries += 1
        self._reissue(ctx, ctx.headers)

    def _do_retry_longer(self, ctx: _Context) -> None:
        assert self._asked_interval is not None
        self._reissue(ctx, uac_headers(self._asked_interval, self._min_se, None))

    def _uac_dialog(self, response: Response) -> Dialog:
        assert self._invite is not None
        return Dialog.from_uac_response(self._invite, response, local_via=self.config.local_via,
                                        contact=self.config.contact, over_tls=self.config.over_tls)

    def _do_progress_received(self, ctx: _Context) -> None:
        response = ctx.response
        assert response is not None
        if response.status == 100:
            return
        if response.to.tag:
            try:
                if self.dialog is None:
                    self.dialog = self._uac_dialog(response)
                else:
                    self.dialog.receive_response(response)
            except SipError:
                pass  # another fork's early dialog: we follow the first
        rseq = _reliable(response)
        if rseq is not None and self.config.reliable_provisional:
            answered = self._answer_offer(response.body) if self._awaits_offer() else None
            if not self._prack(response, rseq, answered):
                return  # a retransmission, or out of order: "MUST NOT be processed further" (RFC 3262 4)
            if answered is not None:
                # RFC 3262 5: the offer in a reliable 1xx to our INVITE without SDP is
                # answered in the PRACK; the media is settled now
                self._answer_in_1xx = True
                self._out.append(io.ProgressReceived(response, answered[1]))
                return
            if response.body and self.oa.state is OAState.LOCAL_OFFER_SENT:
                fits = self._fits(response.body)
                if fits is not None:
                    # RFC 3262 5: the SDP of a reliable 1xx is the answer to our offer;
                    # the 2xx then carries none (or the same) and the media is settled now
                    media = self.oa.remote_answer(*fits)
                    self._answer_in_1xx = True
                    self._out.append(io.ProgressReceived(response, media))
                    return
        early = self._fits(response.body) if response.body else None
        self._out.append(io.ProgressReceived(response, None if early is None else early[1]))

    def _awaits_offer(self) -> bool:
        """UAC: our INVITE had no SDP and no offer has come yet (13.2.1)."""
        return self._answerer is not None and self.oa.state is OAState.NO_OFFER

    def _answer_offer(self, body: bytes) -> tuple[SessionDescription, NegotiatedMedia] | None:
        """The peer's offer in ``body`` answered through the answerer, the offer/answer
        state moved on; None (nothing changed) when there is no usable offer."""
        offer = _sdp(body)
        if offer is None or self._answerer is None:
            return None
        answer = self._answerer(offer)
        if answer is None:
            return None
        try:
            media = negotiate(offer, answer, local_is_offerer=False)
        except SipError:
            return None
        self.oa.remote_offer(offer)
        return answer, self.oa.local_answer(answer, media)

    def _prack(self, response: Response, rseq: int,
               answered: tuple[SessionDescription, NegotiatedMedia] | None = None) -> bool:
        """PRACK a reliable 1xx of our dialog: RAck is its RSeq, CSeq number and method
        (RFC 3262 7.2); only the first, then each one higher than the last (RFC 3262 4:
        a retransmission is not PRACKed again: our PRACK's own transaction retransmits).
        False when the response is not to be processed."""
        dialog = self.dialog
        if dialog is None or dialog.id.remote_tag != response.to.tag:
            return False  # another fork's: we follow the first dialog only
        if self._rseq is not None and rseq != self._rseq + 1:
            return False
        self._rseq = rseq
        body = bytes(answered[0]) if answered is not None else b""
        prack, hop = dialog.create_request(
            "PRACK", body=body, content_type=SDP if body else None,
            extra_headers=[("RAck", f"{rseq} {response.cseq.seq} {response.cseq.method}")])
        self._preload(prack)  # the PRACK is a request of the INVITE's dialog usage
        self._prack_out, self._prack_auth = prack, 0
        self._out.append(io.SendRequest(prack, hop))
        return True

    def _do_retry_prack(self, ctx: _Context) -> None:
        """22.2: the same PRACK (RAck, and any answer in its body) as the dialog's next
        request with credentials; a proxy on the route may challenge it like any other."""
        assert self._prack_out is not None
        self._prack_auth += 1
        self._prack_out = self._resend(self._prack_out, ctx.headers)

    def _ack(self, dialog: Dialog, response: Response, answer: SessionDescription | None = None) -> None:
        seq = response.cseq.seq
        ack, hop = dialog.create_ack(seq, extra_headers=self._credentials_of(seq))
        if answer is not None:
            ack.set_body(bytes(answer), SDP)  # the answer to the 2xx's offer (13.2.1)
        self._acks[(seq, response.to.tag or "")] = (ack, hop)
        self._out.append(io.SendRequest(ack, hop))

    def _do_ack_2xx(self, ctx: _Context) -> None:
        response = ctx.response
        assert response is not None
        if self.dialog is not None and self.dialog.id.remote_tag == response.to.tag:
            self.dialog.receive_response(response)
        else:
            if self.dialog is not None:
                self.dialog.terminate()
            self.dialog = self._uac_dialog(response)
        if ctx.answer is not None:
            # delayed offer: the classifier answered the 2xx's offer; the ACK carries it
            assert ctx.sdp is not None
            self.oa.remote_offer(ctx.sdp)
            self._ack(self.dialog, response, ctx.answer)
            self._out.append(io.MediaUpdated(self.oa.local_answer(ctx.answer, ctx.media)))
            self._peer_allows_update = _allows_update(response)
            self._arm_session_timer(uac_negotiated(response), ctx.now)
            return
        self._ack(self.dialog, response)
        self._peer_allows_update = _allows_update(response)
        if self.oa.state is OAState.LOCAL_OFFER_SENT:
            assert ctx.sdp is not None  # the classifier checked that it fits
            self._out.append(io.MediaUpdated(self.oa.remote_answer(ctx.sdp, ctx.media)))
        elif self._answer_in_1xx and self.oa.negotiated is not None:
            self._answer_in_1xx = False  # answered in a reliable 1xx: the call is up with it
            self._out.append(io.MediaUpdated(self.oa.negotiated))
        self._arm_session_timer(uac_negotiated(response), ctx.now)  # RFC 4028 7.2

    def _do_ack_and_bye(self, ctx: _Context) -> None:
        response = ctx.response
        assert response is not None
        dialog = self._uac_dialog(response)
        self._ack(dialog, response)
        bye, hop = dialog.create_request("BYE")
        self._out.append(io.SendRequest(bye, hop))

    def _credentials_of(self, seq: int) -> HeaderList:
        """13.2.2.4: "The ACK MUST contain the same credentials as the INVITE": those of
        our INVITE or re-INVITE with CSeq number ``seq``."""
        for request in (self._invite, self._modify):
            if request is not None and request.method == "INVITE" and request.cseq.seq == seq:
                return [(name, value) for name, value in request.headers
                        if name.lower() in ("authorization", "proxy-authorization")]
        return []

    def _do_resend_ack(self, ctx: _Context) -> None:
        response = ctx.response
        assert response is not None
        key = (response.cseq.seq, response.to.tag or "")
        if key not in self._acks:  # a re-INVITE's first 2xx after we hung up (13.2.2.4)
            if self.dialog is None:
                return
            self._acks[key] = self.dialog.create_ack(response.cseq.seq,
                                                     extra_headers=self._credentials_of(response.cseq.seq))
        ack, hop = self._acks[key]
        self._out.append(io.SendRequest(ack, hop))

    def _do_send_cancel(self, ctx: _Context) -> None:
        """9.1: the INVITE's Request-URI, Call-ID, To, From, CSeq number, top Via (the
        same branch) and Route; no final response 64*T1 later ends the wait."""
        invite = self._invite
        assert invite is not None
        headers = Headers([("Via", invite.headers.values("via")[0])])
        for value in invite.headers.get_all("route"):
            headers.add("Route", value)
        for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"),
                          ("max-forwards", "Max-Forwards")):
            headers.add(name, invite.headers.get(key) or "70")
        headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        cancel_headers = ctx.item.headers if isinstance(ctx.item, io.Cancel) else ()
        for name, value in cancel_headers:
            headers.add(name, value)
        headers.add("Content-Length", "0")
        self._out.append(io.SendRequest(Request("CANCEL", invite.uri, headers), None))
        self.timers[I.TIMER_CANCEL] = ctx.now + 64 * T1

    # UAS ---------------------------------------------------------------------------
    def _do_take_invite(self, ctx: _Context) -> None:
        invite = ctx.request
        assert invite is not None
        self._invite, self._invite_tx = invite, ctx.transaction_id
        self._peer_allows_update = _allows_update(invite)
        if ctx.sdp is not None:
            self.oa.remote_offer(ctx.sdp)
        decision = uas_negotiate(invite, self.config.min_se)
        self._uas_timer, self._uas_timer_headers = decision.negotiated, decision.headers
        if "100rel" in _tags(invite, "require"):
            self._peer_100rel = "require"
        elif "100rel" in _tags(invite, "supported"):
            self._peer_100rel = "supported"

    def _respond_invite(self, status: int, reason: str | None, *, sdp: SessionDescription | None = None,
                        headers: HeaderList = ()) -> Response:
        invite = self._invite
        assert invite is not None
        body = bytes(sdp) if sdp is not None else b""
        content_type = SDP if body else None
        if self.dialog is None and status < 300:
            response = make_dialog_response(invite, status, reason, local_tag=self._local_tag,
                                            contact=self.config.contact, body=body,
                                            content_type=content_type, extra_headers=headers)
            self.dialog = Dialog.from_uas_response(invite, response, local_via=self.config.local_via,
                                                   contact=self.config.contact,
                                                   over_tls=self.config.over_tls)
        elif self.dialog is not None:
            response = self.dialog.respond(invite, status, reason, body=body,
                                           content_type=content_type, extra_headers=headers)
        else:
            response = make_response(invite, status, reason, to_tag=self._local_tag,
                                     headers=Headers(headers))
        self._out.append(io.SendResponse(self._invite_tx, response))
        return response

    def _do_send_provisional(self, ctx: _Context) -> None:
        item = ctx.item
        assert isinstance(item, io.Progress)
        self._provisional(item, ctx.now)

    def _provisional(self, item: io.Progress, now: float) -> None:
        if item.sdp is not None:
            self._early_sdp = item.sdp
        if not self._wants_reliable(item):
            self._respond_invite(item.status, item.reason, sdp=item.sdp, headers=item.headers)
            return
        # RFC 3262 3: the first RSeq uniformly in 1..2**31-1, then one more each time
        rseq = self._randint(1, 2**31 - 1) if self._next_rseq is None else self._next_rseq
        self._next_rseq = rseq + 1
        headers = (*item.headers, ("Require", "100rel"), ("RSeq", str(rseq)))
        response = self._respond_invite(item.status, item.reason, sdp=item.sdp, headers=headers)
        self._reliable_out = (rseq, response)
        self._reliable_interval = T1
        self.timers[I.TIMER_1XX] = now + T1
        self.timers[I.TIMER_NO_PRACK] = now + 64 * T1

    def _wants_reliable(self, item: io.Progress) -> bool:
        """RFC 3262 3: every 1xx reliably when the INVITE requires 100rel; when it
        only supports it, the 1xx that carry SDP (their early media must not be lost)."""
        if self.role is not DialogRole.UAS:
            return False
        return self._peer_100rel == "require" or (self._peer_100rel == "supported" and item.sdp is not None)

    def _queue_progress(self, item: io.Progress) -> None:
        """A 1xx while the last reliable one is not PRACKed waits for that PRACK; only
        the latest waits, but one with SDP is not replaced by one without."""
        queued = self._queued_progress
        if queued is None or item.sdp is not None or queued.sdp is None:
            self._queued_progress = item

    def _do_resend_1xx(self, ctx: _Context) -> None:
        """RFC 3262 3: "an interval that starts at T1 seconds and doubles for each
        retransmission" (no T2 cap), until the PRACK or 64*T1."""
        if self._reliable_out is None:
            return
        self._out.append(io.RetransmitResponse(self._invite_tx, self._reliable_out[1]))
        self._reliable_interval *= 2
        self.timers[I.TIMER_1XX] = ctx.now + self._reliable_interval

    def _do_answer_prack(self, ctx: _Context) -> None:
        request = ctx.request
        assert request is not None and self.dialog is not None
        self._out.append(io.SendResponse(ctx.transaction_id, self.dialog.respond(request, 200)))
        self._reliable_out = None
        self.timers.pop(I.TIMER_1XX, None)
        self.timers.pop(I.TIMER_NO_PRACK, None)
        queued, self._queued_progress = self._queued_progress, None
        if queued is not None and not isinstance(ctx.item, io.Accept):
            self._provisional(queued, ctx.now)  # the 1xx that waited (a held 2xx supersedes it)

    def _do_hold_2xx(self, ctx: _Context) -> None:
        self._held_accept = ctx

    def _do_send_no_prack(self, ctx: _Context) -> None:
        reason = "Reliable Provisional Response Not Acknowledged"
        self._respond_invite(500, reason)
        ctx.status, ctx.reason = 500, "no PRACK for our reliable 1xx in 64*T1"

    def _do_send_2xx(self, ctx: _Context) -> None:
        item = ctx.item
        assert isinstance(item, io.Accept)
        headers = (*self._uas_timer_headers, *item.headers)
        if self.config.allow:
            headers += (("Allow", self.config.allow),)
        response = self._respond_invite(200, None, sdp=ctx.sdp, headers=headers)
        self._start_2xx(self._invite_tx, response, ctx.now)
        self._settle_local(ctx)
        self._arm_session_timer(self._uas_timer, ctx.now)

    def _settle_local(self, ctx: _Context) -> None:
        """Our SDP in a 2xx: the answer to the peer's offer, or our own offer."""
        if ctx.sdp is None:
            return
        if self.oa.state is OAState.REMOTE_OFFER_RECEIVED:
            self._out.append(io.MediaUpdated(self.oa.local_answer(ctx.sdp, ctx.media)))
        else:
            self.oa.local_offer(ctx.sdp)  # the answer comes in the ACK (13.2.1)

    def _start_2xx(self, transaction_id: str, response: Response, now: float) -> None:
        """13.3.1.4: retransmit "with an interval that starts at T1 seconds and doubles
        for each retransmission until it reaches T2 seconds" until the ACK; give up
        after 64*T1."""
        self._unacked = (transaction_id, response)
        self._retransmit_interval = T1
        self.timers[I.TIMER_2XX] = now + T1
        self.timers[I.TIMER_NO_ACK] = now + 64 * T1

    def _do_resend_2xx(self, ctx: _Context) -> None:
        if self._unacked is None:
            return
        self._out.append(io.RetransmitResponse(*self._unacked))
        self._retransmit_interval = min(self._retransmit_interval * 2, T2)
        self.timers[I.TIMER_2XX] = ctx.now + self._retransmit_interval

    def _do_ack_received(self, ctx: _Context) -> None:
        ack = ctx.request
        assert ack is not None
        if self._unacked is None or ack.cseq.seq != self._unacked[1].cseq.seq:
            return  # a retransmitted ACK
        self._unacked = None
        self.timers.pop(I.TIMER_2XX, None)
        self.timers.pop(I.TIMER_NO_ACK, None)
        if self.oa.state is OAState.LOCAL_OFFER_SENT:
            answer = _sdp(ack.body)
            if answer is not None:
                try:
                    self._out.append(io.MediaUpdated(self.oa.remote_answer(answer)))
                except SipError:
                    self.oa.rollback()

    def _do_send_final(self, ctx: _Context) -> None:
        item = ctx.item
        assert isinstance(item, io.Reject)
        self._respond_invite(item.status, item.reason, headers=item.headers)
        ctx.reason = item.reason or f"rejected with {item.status}"

    def _do_send_487(self, ctx: _Context) -> None:
        self._respond_invite(487, None)  # 9.2
        ctx.status, ctx.reason = 487, "cancelled by the caller"

    def _do_refuse(self, ctx: _Context) -> None:
        assert ctx.request is not None and ctx.status is not None
        self._refuse(ctx.request, ctx.transaction_id, ctx.status, ctx.headers)
        ctx.reason = f"refused with {ctx.status}"

    def _refuse(self, request: Request, transaction_id: str, status: int,
                headers: HeaderList = ()) -> None:
        extra = list(headers)
        if status == 500:
            # 14.2: "a Retry-After header field with a randomly chosen value of between
            # 0 and 10 seconds"
            extra.append(("Retry-After", str(self._randint(0, 10))))
        if self.dialog is not None and request.to.tag:
            response = self.dialog.respond(request, status, extra_headers=extra)
        else:
            response = make_response(request, status, to_tag=request.to.tag or self._local_tag or None,
                                     headers=Headers(extra))
        self._out.append(io.SendResponse(transaction_id, response))

    # both roles ----------------------------------------------------------------------
    def _do_send_bye(self, ctx: _Context) -> None:
        if self._remote is not None:  # never leave the peer's request unanswered
            self._answer_remote(487)
        assert self.dialog is not None
        headers = ctx.item.headers if isinstance(ctx.item, io.Bye) else ()
        bye, hop = self.dialog.create_request("BYE", extra_headers=headers)
        self._preload(bye)
        self._bye, self._bye_auth = bye, 0
        self._out.append(io.SendRequest(bye, hop))

    def _preload(self, request: Request) -> None:
        """Credentials ahead for a realm that challenged this dialog (RFC 7616 3.4)."""
        if isinstance(self._authorizer, RequestAuth):
            self._authorizer.preload(request)

    def _resend(self, request: Request, credentials: HeaderList) -> Request:
        """``request`` again with credentials, as the dialog's next request (12.2.1.1:
        CSeq one above the last; a new branch), sent where the dialog sends (8.1.2)."""
        assert self.dialog is not None
        seq = max(self.dialog.local_seq or 0, request.cseq.seq) + 1
        self.dialog.local_seq = seq
        again = resend(request, credentials, seq)
        self._out.append(io.SendRequest(again, self.dialog.next_hop()))
        return again

    def _do_retry_bye(self, ctx: _Context) -> None:
        assert self._bye is not None
        self._bye_auth += 1
        self._bye = self._resend(self._bye, ctx.headers)

    def _do_bye_done(self, ctx: _Context) -> None:
        self._bye = None

    def _do_bye_failed(self, ctx: _Context) -> None:
        self._bye = None
        status = ctx.status if ctx.status is not None else 500
        self._out.append(io.ByeFailed(status, ctx.reason or f"BYE answered {status}"))

    def _do_answer_bye(self, ctx: _Context) -> None:
        request = ctx.request
        assert request is not None and self.dialog is not None
        self._out.append(io.SendResponse(ctx.transaction_id, self.dialog.respond(request, 200)))
        # 15.1.2: "the UAS MUST still respond to any pending requests received for that
        # dialog. It is RECOMMENDED that a 487 (Request Terminated) response be generated"
        if self.role is DialogRole.UAS and self.state in (S.INCOMING, S.EARLY):
            self._respond_invite(487, None)
        if self._remote is not None:
            self._answer_remote(487)
        ctx.reason = "the peer hung up"

    def _answer_remote(self, status: int, sdp: SessionDescription | None = None,
                       headers: HeaderList = ()) -> Response:
        assert self._remote is not None and self.dialog is not None
        request, transaction_id = self._remote
        self._remote = None
        body = bytes(sdp) if sdp is not None else b""
        response = self.dialog.respond(request, status, body=body, content_type=SDP if body else None,
                                       extra_headers=headers)
        self._out.append(io.SendResponse(transaction_id, response))
        if status >= 300 and self.oa.state is OAState.REMOTE_OFFER_RECEIVED:
            self.oa.rollback()  # 14.2: a refused re-INVITE leaves the session as it was
        return response

    # our re-INVITE / UPDATE ------------------------------------------------------------
    def _do_send_modify(self, ctx: _Context) -> None:
        assert isinstance(ctx.item, Modify)
        self._modify_spec, self._modify_is_refresh = ctx.item, False
        self._send_modify(ctx.item)

    def _send_modify(self, spec: Modify) -> None:
        assert self.dialog is not None
        headers = list(spec.headers)
        timer = self.session_timer
        if timer is not None:
            # RFC 4028 7.4: every re-INVITE/UPDATE we send keeps the timer (and is a refresh)
            interval = max(timer.interval, self._asked_interval or 0)
            headers += uac_headers(interval, self._min_se, "uac" if timer.we_refresh else "uas")
        body = bytes(spec.sdp) if spec.sdp is not None else b""
        if spec.sdp is not None:
            self.oa.local_offer(spec.sdp)
        request, hop = self.dialog.create_request(spec.method, body=body,
                                                  content_type=SDP if body else None,
                                                  extra_headers=headers)
        self._preload(request)
        self._modify, self._modify_auth = request, 0
        self._out.append(io.SendRequest(request, hop))

    def _do_resend_modify(self, ctx: _Context) -> None:
        assert self._modify_spec is not None
        self._send_modify(self._modify_spec)

    def _do_retry_modify_authorized(self, ctx: _Context) -> None:
        """22.2: the same re-INVITE/UPDATE (the offer unchanged, still pending) as a
        new transaction with credentials; the 401/407 was ACKed by the transaction
        (17.1.1.3)."""
        assert self._modify is not None
        self._modify_auth += 1
        self._modify = self._resend(self._modify, ctx.headers)

    def _do_retry_modify_longer(self, ctx: _Context) -> None:
        self._rollback_offer()
        self._do_resend_modify(ctx)

    def _rollback_offer(self) -> None:
        if self.oa.state is OAState.LOCAL_OFFER_SENT:
            self.oa.rollback()

    def _do_modify_done(self, ctx: _Context) -> None:
        response = ctx.response
        assert response is not None and self.dialog is not None and self._modify is not None
        self.dialog.receive_response(response)  # 12.2.1.2: the remote target may move
        if self._modify.method == "INVITE":
            self._ack(self.dialog, response)
        self._modify = None
        media = None
        if self.oa.state is OAState.LOCAL_OFFER_SENT:
            fits = self._fits(response.body)
            if fits is None:
                self.oa.rollback()
                self._out.append(io.ModifyFailed(488, "unusable answer in the 2xx"))
                return
            media = self.oa.remote_answer(*fits)
            self._out.append(io.MediaUpdated(media))
        if self.session_timer is not None:
            self._arm_session_timer(uac_negotiated(response), ctx.now)
        if not self._modify_is_refresh:
            self._out.append(io.ModifyCompleted(media))

    def _do_modify_rollback(self, ctx: _Context) -> None:
        assert ctx.status is not None
        self._modify = None
        self._rollback_offer()
        self._out.append(io.ModifyFailed(ctx.status, ctx.reason))

    def _do_start_glare(self, ctx: _Context) -> None:
        """14.1: "If the UAC is the owner of the Call-ID of the dialog ID (meaning it
        generated the value), T has a randomly chosen value between 2.1 and 4 seconds
        in units of 10 ms. If the UAC is not the owner ... between 0 and 2 seconds"."""
        self._rollback_offer()
        self._modify = None
        low, high = (210, 400) if self.role is DialogRole.UAC else (0, 200)
        steps = self._randint(low, high)
        if not low <= steps <= high:
            raise ValueError(f"randint({low}, {high}) returned {steps}")
        self.last_backoff = steps / 100
        self.timers[I.TIMER_GLARE] = ctx.now + self.last_backoff

    def _do_drop_glare(self, ctx: _Context) -> None:
        self.timers.pop(I.TIMER_GLARE, None)
        self._modify_spec = None
        if not self._modify_is_refresh:
            self._out.append(io.ModifyFailed(491, "the peer's request came first"))

    def _do_end_dialog(self, ctx: _Context) -> None:
        self._modify = None
        ctx.reason = "the dialog is gone (481/408)"  # 12.2.1.2: no BYE, it is over

    def _do_refresh(self, ctx: _Context) -> None:
        """RFC 4028 7.4/9: UPDATE (no offer) if the peer allows it, else a re-INVITE
        with our current SDP."""
        use_update = self._peer_allows_update or self.oa.local_sdp is None
        spec = Modify(None, "UPDATE") if use_update else Modify(self.oa.local_sdp, "INVITE")
        self._modify_spec, self._modify_is_refresh = spec, True
        self._send_modify(spec)

    def _do_owe_refresh(self, ctx: _Context) -> None:
        self._refresh_owed = True

    # the peer's re-INVITE / UPDATE ------------------------------------------------------
    def _do_take_modify(self, ctx: _Context) -> None:
        request = ctx.request
        assert request is not None
        self._remote = (request, ctx.transaction_id)
        if ctx.sdp is not None:
            self.oa.remote_offer(ctx.sdp)
        self._out.append(io.ModifyReceived(request, ctx.sdp))

    def _do_answer_modify(self, ctx: _Context) -> None:
        assert self._remote is not None and isinstance(ctx.item, io.Accept)
        request, transaction_id = self._remote
        decision = uas_negotiate(request, self.config.min_se)
        response = self._answer_remote(200, ctx.sdp, (*decision.headers, *ctx.item.headers))
        if request.method == "INVITE":
            self._start_2xx(transaction_id, response, ctx.now)
        self._settle_local(ctx)
        self._arm_session_timer(decision.negotiated, ctx.now)

    def _do_refuse_modify(self, ctx: _Context) -> None:
        assert isinstance(ctx.item, io.Reject)
        self._answer_remote(ctx.item.status, headers=ctx.item.headers)

    def _do_cancel_modify(self, ctx: _Context) -> None:
        self._answer_remote(487)  # 9.2

    def _do_answer_refresh(self, ctx: _Context) -> None:
        request = ctx.request
        assert request is not None and self.dialog is not None
        decision = uas_negotiate(request, self.config.min_se)
        response = self.dialog.respond(request, 200, extra_headers=decision.headers)
        self._out.append(io.SendResponse(ctx.transaction_id, response))
        self._arm_session_timer(decision.negotiated, ctx.now)

    # session timers -------------------------------------------------------------------
    def _arm_session_timer(self, negotiated: Negotiated | None, now: float) -> None:
        """RFC 4028 10: each 2xx to a refresh restarts the timer; the refresher refreshes
        at half the interval, and BYE goes out before expiry if nothing came."""
        self.session_timer = negotiated
        self.timers.pop(I.TIMER_REFRESH, None)
        self.timers.pop(I.TIMER_EXPIRE, None)
        self._refresh_owed = False
        if negotiated is None:
            return
        self.timers[I.TIMER_EXPIRE] = now + negotiated.expire_after()
        if negotiated.we_refresh:
            self.timers[I.TIMER_REFRESH] = now + negotiated.refresh_after()
        self._out.append(io.SessionRefreshed(negotiated.interval, negotiated.we_refresh))
