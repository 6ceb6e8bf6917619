"""Dialogs (RFC 3261 section 12), as each leg of the B2BUA sees them.

How this works
--------------
A dialog is the peer-to-peer relationship an INVITE sets up between two UAs. It is
identified by Call-ID, local tag and remote tag (12), and holds what the RFC calls
the dialog state: local and remote sequence numbers, local and remote URIs, the
remote target (the peer's Contact), the route set (from Record-Route) and the
secure flag. On the caller leg voicegw is the UAS and builds the dialog from the
INVITE it received and the 1xx/2xx it answers (12.1.1); on the bot and agent legs
it is the UAC and builds it from a 1xx-with-tag or 2xx to its INVITE (12.1.2).

The state machine (``TRANSITIONS``, ``(state, input) -> next state``) and its states
and inputs are in :mod:`voicegw.sip.dialog_table` (import them from there); the few rules
that depend on the role (a callee never sends BYE on an early dialog, section 15) are
checked by :class:`Dialog` next to where it applies the table.

What is not here: transactions and 2xx/ACK retransmission (the UA core), CANCEL
(9.1: it belongs to the INVITE client transaction, not the dialog), session timers
and subscriptions. A dialog may later carry several *usages* (RFC 5057): the INVITE
session and REFER subscriptions (RFC 3515) share one dialog and its CSeq space; they
will live beside it and keep the dialog alive until the last one ends. For now BYE
ends the dialog outright.

Randomness (branches) comes from :mod:`voicegw.sip.build`; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from .build import make_response, new_branch
from .dialog_table import (
    DialogId,
    DialogInput,
    DialogRole,
    DialogState,
    DialogStatistics,
    transition,
)
from .errors import DialogError, ProtocolViolation
from .headers import CSEQ_MAX, NameAddr
from .message import Headers, Request, Response
from .uri import SipUri, Uri

#: 8.1.1.6: "A UAC MUST insert a Max-Forwards header field ... SHOULD be 70".
MAX_FORWARDS = 70

#: Requests whose Contact replaces the remote target: re-INVITE (12.2), UPDATE
#: (RFC 3311), SUBSCRIBE and NOTIFY (RFC 6665 3.1, 3.2: "target refresh requests").
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY"})

#: Requests we send with our Contact: the target refreshes (12.2.1.1: "the Contact
#: header field MUST be present in a target refresh request") and REFER, which
#: creates a subscription usage whose NOTIFYs must find their way back (RFC 3515).
_CONTACT_METHODS = TARGET_REFRESH_METHODS | {"REFER"}

#: URI parameters not allowed in a Request-URI (19.1.1 table: method; headers too).
_NOT_IN_REQUEST_URI = ("method",)


def _bare(address: NameAddr) -> NameAddr:
    """The address without header parameters (tag...), always in angle brackets."""
    return NameAddr(uri=address.uri, display_name=address.display_name, params={}, angle=True)


def _first_contact(message: Request | Response) -> Uri | None:
    contacts = message.contacts
    return contacts[0].uri if contacts else None


def _is_sips(uri: Uri) -> bool:
    return isinstance(uri, SipUri) and uri.scheme == "sips"


def make_dialog_response(
    invite: Request,
    status: int,
    reason: str | None = None,
    *,
    local_tag: str,
    contact: str,
    body: bytes = b"",
    content_type: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """A 1xx/2xx (or final error) to a request, with our tag and, where it matters, Contact.

    12.1.1: the UAS copies Record-Route into the 1xx/2xx (``make_response`` does),
    adds a tag to To, and "MUST add a Contact header field to the response".
    Contact goes on 101-299 responses to target refresh requests (INVITE, UPDATE...)
    and REFER; never on 100 Trying or on error responses.
    """
    headers = Headers(extra_headers)
    if 100 < status < 300 and invite.method in _CONTACT_METHODS:
        headers.insert_first("Contact", contact)
    response = make_response(invite, status, reason, to_tag=local_tag, headers=headers)
    if body:
        if content_type is None and "content-type" not in response.headers:
            raise ProtocolViolation("response body without Content-Type", status=500)
        response.set_body(body, content_type)
    return response


class Dialog:
    """One dialog's state (12) and the rules that move it.

    Create with :meth:`from_uac_response` or :meth:`from_uas_response`. Then feed it
    incoming mid-dialog requests (:meth:`receive_request`) and responses to our
    requests (:meth:`receive_response`), and build our requests with
    :meth:`create_request` / :meth:`create_ack` and our responses with :meth:`respond`.

    ``local_via`` is our sent-protocol and sent-by ("SIP/2.0/UDP 192.0.2.1:5060",
    plus ";rport" if wanted); each request gets it with a fresh branch. ``contact`` is
    the Contact header value we put in target refresh requests and responses.
    """

    def __init__(
        self,
        *,
        role: DialogRole,
        state: DialogState,
        id: DialogId,
        local_address: NameAddr,
        remote_address: NameAddr,
        remote_target: Uri,
        route_set: list[NameAddr],
        local_seq: int | None,
        remote_seq: int | None,
        secure: bool,
        local_via: str,
        contact: str,
        invite_seq: int,
        initial_local_seq: int = 1,
    ) -> None:
        self.role = role
        self.state = state
        self.id = id
        #: The local and remote URIs (12.1.1/12.1.2), display names kept, no tag.
        self.local_address = local_address
        self.remote_address = remote_address
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self.local_via = local_via
        self.contact = contact
        #: CSeq number of the dialog-creating INVITE (for telling its responses apart).
        self.invite_seq = invite_seq
        #: 12.2.1.1: "If the local sequence number is empty, an initial value MUST be
        #: chosen using the guidelines of Section 8.1.1.5" (any value below 2**31).
        self.initial_local_seq = initial_local_seq

    # --- creation -------------------------------------------------------------------
    @classmethod
    def from_uac_response(
        cls,
        invite: Request,
        response: Response,
        *,
        local_via: str,
        contact: str,
        over_tls: bool = True,
    ) -> Dialog:
        """12.1.2: the dialog a 101-199-with-tag or 2xx to our INVITE creates.

        ``over_tls``: whether the INVITE went over TLS; with a sips Request-URI it
        sets the secure flag ("If the request was sent over TLS, and the Request-URI
        contained a SIPS URI, the secure flag is set to TRUE").
        """
        if invite.method != "INVITE" or response.cseq.method != "INVITE":
            raise ProtocolViolation("only INVITE creates dialogs here (12.1)", status=500)
        if response.cseq.seq != invite.cseq.seq or response.call_id != invite.call_id:
            raise ProtocolViolation("response does not match the INVITE", status=500)
        if not 100 < response.status < 300:
            raise ProtocolViolation("only 101-299 responses create dialogs (12.1)", status=500)
        dialog_id = DialogId.from_response(response)
        if dialog_id is None:
            raise ProtocolViolation("response without To tag creates no dialog (12.1)")
        request_uri = invite.request_uri()
        # "The remote target MUST be set to the URI from the Contact header field of
        # the response." A 180 without Contact is common in the wild: fall back to
        # the Request-URI until a response brings one.
        target = _first_contact(response) or request_uri
        return cls(
            role=DialogRole.UAC,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
            id=dialog_id,
            local_address=_bare(invite.from_),
            remote_address=_bare(invite.to),
            remote_target=target,
            # "The route set MUST be set to the list of URIs in the Record-Route header
            # field from the response, taken in reverse order and preserving all URI parameters."
            route_set=list(reversed(response.route_set())),
            # "The local sequence number MUST be set to the value of the sequence number
            # in the CSeq header field of the request. The remote sequence number MUST be empty."
            local_seq=invite.cseq.seq,
            remote_seq=None,
            secure=over_tls and _is_sips(request_uri),
            local_via=local_via,
            contact=contact,
            invite_seq=invite.cseq.seq,
        )

    @classmethod
    def from_uas_response(
        cls,
        invite: Request,
        response: Response,
        *,
        local_via: str,
        contact: str | None = None,
        over_tls: bool = True,
        initial_local_seq: int = 1,
    ) -> Dialog:
        """12.1.1: the dialog our 101-199 or 2xx to an incoming INVITE creates.

        Build ``response`` with :func:`make_dialog_response`; ``contact`` defaults to
        the Contact in it. ``over_tls``: whether the INVITE arrived over TLS.
        """
        if invite.method != "INVITE":
            raise ProtocolViolation("only INVITE creates dialogs here (12.1)", status=500)
        if not 100 < response.status < 300:
            raise ProtocolViolation("only 101-299 responses create dialogs (12.1)", status=500)
        local_tag = response.to.tag
        if local_tag is None:
            raise ProtocolViolation("our response has no To tag (12.1.1)", status=500)
        if contact is None:
            contact = response.headers.get("contact")
            if contact is None:
                raise ProtocolViolation("our response has no Contact (12.1.1)", status=500)
        # 8.1.1.8: the INVITE "MUST contain exactly one SIP or SIPS URI" in Contact
        target = _first_contact(invite)
        if target is None:
            raise ProtocolViolation("INVITE without Contact (8.1.1.8)")
        request_uri = invite.request_uri()
        return cls(
            role=DialogRole.UAS,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
            # "The remote tag MUST be set to the value of the tag in the From header
            # field of the request", null when absent.
            id=DialogId(invite.call_id, local_tag, invite.from_.tag or ""),
            local_address=_bare(invite.to),
            remote_address=_bare(invite.from_),
            remote_target=target,
            # "The route set MUST be set to the list of URIs in the Record-Route header
            # field from the request, taken in order and preserving all URI parameters."
            route_set=invite.route_set(),
            # "The remote sequence number MUST be set to the value of the sequence number
            # in the CSeq header field of the request. The local sequence number MUST be empty."
            local_seq=None,
            remote_seq=invite.cseq.seq,
            secure=over_tls and _is_sips(request_uri),
            local_via=local_via,
            contact=contact,
            invite_seq=invite.cseq.seq,
            initial_local_seq=initial_local_seq,
        )

    # --- the table --------------------------------------------------------------------
    def _next(self, event: DialogInput) -> DialogState:
        """The state ``event`` leads to; raises if the table has no such row."""
        return transition(self.state, event)

    def _fire(self, event: DialogInput) -> DialogState:
        self.state = self._next(event)
        return self.state

    def terminate(self) -> None:
        """End the dialog locally (fork losers, leg teardown, timeouts)."""
        self._fire(DialogInput.TERMINATE)

    # --- incoming -----------------------------------------------------------------------
    def receive_request(self, request: Request) -> None:
        """12.2.2: an incoming request within this dialog (after the transaction layer).

        Raises DialogError (481) when the request is not for this dialog or the dialog
        is over, ProtocolViolation (500) when its CSeq is out of order.
        """
        if DialogId.from_request(request) != self.id:
            raise DialogError("request does not match the dialog")
        method = request.method
        if method == "ACK":
            event = DialogInput.ACK_RECEIVED
        elif method == "BYE":
            event = DialogInput.BYE_RECEIVED
        elif method == "CANCEL":
            # 9.2: CANCEL matches the INVITE server transaction, not the dialog
            raise ProtocolViolation("CANCEL is handled by the transaction layer", status=500)
        else:
            event = DialogInput.REQUEST_RECEIVED
        next_state = self._next(event)
        seq = request.cseq.seq
        # ACK (and CANCEL) carry the INVITE's CSeq number, so they are never "in order"
        # against later requests and do not move the remote sequence number.
        # "If the remote sequence number was not empty, but the sequence number of
        # the request is lower than the remote sequence number, the request is out
        # of order and MUST be rejected with a 500 (Server Internal Error) response."
        if event is not DialogInput.ACK_RECEIVED and self.remote_seq is not None and seq < self.remote_seq:
            raise ProtocolViolation("CSeq lower than the dialog's remote sequence", status=500)
        self.state = next_state
        if event is not DialogInput.ACK_RECEIVED:
            self.remote_seq = seq
        # "When a UAS receives a target refresh request, it MUST replace the dialog's
        # remote target URI with the URI from the Contact header field in that request,
        # if present."
        if method in TARGET_REFRESH_METHODS:
            target = _first_contact(request)
            if target is not None:
                self.remote_target = target

    def receive_response(self, response: Response) -> None:
        """A response to a request we sent on this dialog, or to the dialog-creating INVITE.

        Responses to the creating INVITE move the state (12.1, 13.2.2.4, 12.3); 2xx to a
        target refresh update the remote target and 481/408 end the dialog (12.2.1.2).
        """
        cseq = response.cseq
        status = response.status
        initial = (
            self.role is DialogRole.UAC and cseq.method == "INVITE" and cseq.seq == self.invite_seq
        )
        if DialogId.from_response(response) != self.id:
            # 12.3: a non-2xx final response to the INVITE ends its early dialogs, whatever
            # its To tag (a proxy, or another branch of a fork, may have sent it).
            ours = response.call_id == self.id.call_id and (
                response.from_.tag or ""
            ) == self.id.local_tag
            if not (initial and status >= 300 and ours):
                raise DialogError("response does not match the dialog")
        if initial:
            if status < 200:
                event = DialogInput.PROVISIONAL
            elif status < 300:
                event = DialogInput.SUCCESS
            else:
                event = DialogInput.FAILURE
        elif status in (408, 481):
            event = DialogInput.GONE
        else:
            event = DialogInput.RESPONSE
        before = self.state
        self._fire(event)
        if self.state is DialogState.TERMINATED or not 100 < status < 300:
            return
        if initial and before is DialogState.EARLY:
            # 13.2.2.4: on the 2xx "the route set for the dialog MUST be recomputed based
            # on the 2xx response" (the RFC's pointer to 12.2.1.2 means 12.1.2). After that
            # it is fixed: mid-dialog requests "do not cause the dialog's route set to be
            # modified, although they may modify the remote target URI" (12.2).
            if status >= 200:
                self.route_set = list(reversed(response.route_set()))
            target = _first_contact(response)
            if target is not None:
                self.remote_target = target
        elif not initial and status >= 200 and cseq.method in TARGET_REFRESH_METHODS:
            # 12.2.1.2: "When a UAC receives a 2xx response to a target refresh request,
            # it MUST replace the dialog's remote target URI with the URI from the
            # Contact header field in that response, if present."
            target = _first_contact(response)
            if target is not None:
                self.remote_target = target

    # --- outgoing -----------------------------------------------------------------------
    def respond(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Response:
        """Our response to a request on this dialog: the creating INVITE (UAS side; its
        1xx/2xx/final move the state as in 12.1.1 and 12.3) or a mid-dialog request."""
        initial = (
            self.role is DialogRole.UAS and request.method == "INVITE" and request.to.tag is None
        )
        if initial and status > 100:
            if status < 200:
                event = DialogInput.PROVISIONAL
            elif status < 300:
                event = DialogInput.SUCCESS
            else:
                event = DialogInput.FAILURE
            # The table lets a late 1xx/2xx *arrive* on a terminated dialog; we only
            # ever send the final error for an INVITE whose dialog is over.
            if self.state is DialogState.TERMINATED and event is not DialogInput.FAILURE:
                raise DialogError("dialog terminated")
            self._fire(event)
        return make_dialog_response(
            request,
            status,
            reason,
            local_tag=self.id.local_tag,
            contact=self.contact,
            body=body,
            content_type=content_type,
            extra_headers=extra_headers,
        )

    def create_request(
        self,
        method: str,
        *,
        branch: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> tuple[Request, Uri]:
        """12.2.1.1: a new request within the dialog, and the URI to send it to (8.1.2).

        The CSeq number is the local sequence number plus one. BYE moves the dialog to
        TERMINATED (15.1.1). Use :meth:`create_ack` for ACK; CANCEL is not built here.
        """
        method = method.upper()
        if method == "ACK":
            raise ProtocolViolation("use create_ack for the ACK of a 2xx", status=500)
        if method == "CANCEL":
            raise ProtocolViolation("CANCEL belongs to the INVITE client transaction (9.1)",
                                    status=500)
        if method == "BYE":
            # 15: "the callee's UA MAY send a BYE on confirmed dialogs, but MUST NOT
            # send a BYE on early dialogs" (it answers the INVITE with an error instead).
            if self.role is DialogRole.UAS and self.state is DialogState.EARLY:
                raise ProtocolViolation("callee must not BYE an early dialog (15)", status=500)
            event = DialogInput.BYE_SENT
        else:
            event = DialogInput.REQUEST_SENT
        next_state = self._next(event)
        # 12.2.1.1: "The CSeq header field value MUST be strictly greater than the
        # sequence number of the previous request"; empty -> an initial value (8.1.1.5).
        seq = self.initial_local_seq if self.local_seq is None else self.local_seq + 1
        if seq > CSEQ_MAX:
            raise ProtocolViolation("local CSeq space exhausted (8.1.1.5)", status=500)
        request, next_hop = self._build(method, seq, branch, body, content_type, extra_headers)
        self.local_seq = seq
        self.state = next_state
        return request, next_hop

    def create_ack(
        self,
        invite_seq: int,
        *,
        branch: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> tuple[Request, Uri]:
        """13.2.2.4: the ACK for a 2xx to the INVITE whose CSeq number is ``invite_seq``.

        Built like any mid-dialog request, but "the sequence number of the CSeq header
        field MUST be the same as the INVITE being acknowledged, but the CSeq method MUST
        be ACK". It is its own transaction, so it gets a fresh branch. ``body`` carries
        the answer when the INVITE had no offer (13.2.2.4 / RFC 3264).
        """
        if not 0 <= invite_seq <= CSEQ_MAX:
            raise ProtocolViolation("bad INVITE CSeq number", status=500)
        self._fire(DialogInput.ACK_SENT)
        return self._build("ACK", invite_seq, branch, body, content_type, extra_headers)

    def _build(
        self,
        method: str,
        seq: int,
        branch: str | None,
        body: bytes,
        content_type: str | None,
        extra_headers: Iterable[tuple[str, str]],
    ) -> tuple[Request, Uri]:
        extra = Headers(extra_headers)
        if body and content_type is None and "content-type" not in extra:
            raise ProtocolViolation("request body without Content-Type", status=500)
        request_uri, routes, next_hop = self._routing()
        headers = Headers()
        headers.add("Via", f"{self.local_via};branch={branch or new_branch()}")
        headers.add("Max-Forwards", str(MAX_FORWARDS))
        for route in routes:
            headers.add("Route", route)
        # "The URI in the To field of the request MUST be set to the remote URI from the
        # dialog state. The tag in the To header field of the request MUST be set to the
        # remote tag of the dialog ID. The From URI ... local URI ... local tag."
        headers.add("To", self._address(self.remote_address, self.id.remote_tag))
        headers.add("From", self._address(self.local_address, self.id.local_tag))
        headers.add("Call-ID", self.id.call_id)
        headers.add("CSeq", f"{seq} {method}")
        if method in _CONTACT_METHODS:
            headers.add("Contact", self.contact)
        for name, value in extra:
            headers.add(name, value)
        request = Request(method, request_uri, headers)
        request.set_body(body, content_type)
        return request, next_hop

    def _routing(self) -> tuple[str, list[str], Uri]:
        """Request-URI, Route values and next hop, per 12.2.1.1."""
        # "If the route set is empty, the UAC MUST place the remote target URI into the
        # Request-URI. The UAC MUST NOT add a Route header field to the request."
        if not self.route_set:
            return str(self.remote_target), [], self.remote_target
        first = self.route_set[0].uri
        # "If the route set is not empty, and the first URI in the route set contains
        # the lr parameter, the UAC MUST place the remote target URI into the
        # Request-URI and MUST include a Route header field containing the route set
        # values in order, including all parameters."
        if isinstance(first, SipUri) and "lr" in first.params:
            return str(self.remote_target), [str(r) for r in self.route_set], first
        # Strict router: "the UAC MUST place the first URI from the route set into the
        # Request-URI, stripping any parameters that are not allowed in a Request-URI.
        # The UAC MUST add a Route header field containing the remainder of the route
        # set values in order, including all parameters. The UAC MUST then place the
        # remote target URI into the Route header field as the last value."
        # 8.1.2: the request then goes to that Request-URI.
        if isinstance(first, SipUri):
            params = {k: v for k, v in first.params.items() if k not in _NOT_IN_REQUEST_URI}
            first = first.copy(params=params, headers=None)
        routes = [str(r) for r in self.route_set[1:]]
        routes.append(f"<{self.remote_target}>")
        return str(first), routes, first

    @staticmethod
    def _address(address: NameAddr, tag: str) -> str:
        params: dict[str, str | None] = {"tag": tag} if tag else {}
        return str(NameAddr(address.uri, address.display_name, params, angle=True))

    # --- views ----------------------------------------------------------------------------
    @property
    def local_uri(self) -> Uri:
        return self.local_address.uri

    @property
    def remote_uri(self) -> Uri:
        return self.remote_address.uri

    def next_hop(self) -> Uri:
        """Where a request built now would go (8.1.2): first Route if loose, else the target."""
        return self._routing()[2]

    def statistics(self) -> DialogStatistics:
        return DialogStatistics(
            state=self.state,
            role=self.role,
            local_seq=self.local_seq,
            remote_seq=self.remote_seq,
            route_set_length=len(self.route_set),
            secure=self.secure,
        )

    def __repr__(self) -> str:
        return (
            f"<Dialog {self.role.name} {self.state.name} call_id={self.id.call_id!r} "
            f"local_tag={self.id.local_tag!r} remote_tag={self.id.remote_tag!r} "
            f"local_seq={self.local_seq} remote_seq={self.remote_seq} "
            f"target={str(self.remote_target)!r} routes={len(self.route_set)}"
            f"{' secure' if self.secure else ''}>"
        )


__all__ = ["MAX_FORWARDS", "TARGET_REFRESH_METHODS", "Dialog", "make_dialog_response"]
