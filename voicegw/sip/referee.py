"""The referee side of REFER (RFC 3515): a REFER voicegw received, and its NOTIFYs.

The bot on leg B asks to be replaced by sending REFER. :class:`IncomingRefer`
validates it (:class:`ReferRequest`: exactly one Refer-To, a sip/sips/tel URI, the
Refer-Sub and Require rules of RFC 4488), answers it (202, or the error the engine
chooses, e.g. 403 for a target off the allow-list) and builds the NOTIFYs that
report the *real* progress of the new leg: ``100 Trying`` at once, then each 1xx,
then the final status, which ends the subscription (issue 4: not a BYE right away).

``NOTIFIER_TABLE`` maps ``(state, input) -> (actions, next state)`` and lists every
call the engine may make in each state; **anything not in it is a bug of the
caller** (ProtocolViolation, status 500). The order rule: BYE the referrer's dialog
only once :attr:`IncomingRefer.subscription_over` (the final NOTIFY was answered,
or the subscriber is gone). The referrer side is in :mod:`voicegw.sip.refer`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .dialog import Dialog
from .errors import ParseError, ProtocolViolation, SipError
from .headers import NameAddr, parse_token_list
from .message import Request, Response
from .refer_headers import (
    NOREFERSUB,
    SIPFRAG_CONTENT_TYPE,
    SubscriptionState,
    parse_embedded_headers,
)
from .sipfrag import SipFrag
from .uri import AbsoluteUri, SipUri, Uri

#: The duration we grant the implicit subscription (RFC 3515 leaves it to the
#: notifier; it must outlast the new leg's own ring timeout).
DEFAULT_SUBSCRIPTION_EXPIRES = 180


@dataclass(frozen=True, slots=True)
class ReferRequest:
    """What a valid incoming REFER asks for."""

    refer_id: int
    """Its CSeq number: the Event id of our NOTIFYs (RFC 3515 2.4.6)."""
    target: Uri
    """The Refer-To URI without its ``?headers`` part."""
    embedded_headers: tuple[tuple[str, str], ...]
    """Headers the referrer wants in our INVITE (19.1.5), unescaped."""
    referred_by: NameAddr | None
    """RFC 3892; informational (a malformed one is ignored, we do not act on it)."""
    refer_sub: bool
    """False when the REFER carried ``Refer-Sub: false`` (RFC 4488): no NOTIFYs."""

    @classmethod
    def parse(cls, request: Request) -> ReferRequest:
        """Validate a REFER; a SipError's ``status`` is the answer to send."""
        if request.method != "REFER":
            raise ProtocolViolation("not a REFER", status=500)
        values = request.headers.get_all("refer-to")
        # RFC 3515 2.4.2: "An agent responding to a REFER method MUST return a 400 (Bad
        # Request) if the request contained zero or more than one Refer-To header field values."
        if not values:
            raise ParseError("missing Refer-To")
        if len(values) > 1:
            raise ParseError("more than one Refer-To")
        address = NameAddr.parse(values[0])  # a list of two fails here too: 400
        uri = address.uri
        if isinstance(uri, AbsoluteUri):
            raise ProtocolViolation(f"cannot refer to a {uri.scheme}: URI", status=416)
        embedded: list[tuple[str, str]] = []
        if isinstance(uri, SipUri):
            method = uri.params.get("method")
            # 19.1.1: the method parameter says which request to send; we only INVITE
            if method is not None and method.upper() != "INVITE":
                raise ProtocolViolation(f"Refer-To method {method} not supported", status=501)
            embedded = parse_embedded_headers(uri.headers)
            params = {k: v for k, v in uri.params.items() if k != "method"}
            uri = uri.copy(headers=None, params=params)
        referred_by: NameAddr | None = None
        by = request.headers.get("referred-by")
        if by is not None:
            try:
                referred_by = NameAddr.parse(by)
            except SipError:
                referred_by = None
        refer_sub = True
        sub_text = request.headers.get("refer-sub")
        if sub_text is not None:
            # Refer-Sub = "Refer-Sub" HCOLON refer-sub-value *(SEMI exten); "true" / "false"
            value = sub_text.split(";")[0].strip().lower()
            if value not in ("true", "false"):
                raise ParseError("bad Refer-Sub")
            refer_sub = value == "true"
        required = [t for v in request.headers.get_all("require") for t in parse_token_list(v)]
        unsupported = [t for t in required if t.lower() != NOREFERSUB]
        if unsupported:  # RFC 3261 8.2.2.3
            raise ProtocolViolation(f"unsupported {', '.join(unsupported)}", status=420)
        return cls(request.cseq.seq, uri, tuple(embedded), referred_by, refer_sub)


class NotifierState(enum.Enum):
    RECEIVED = "received"  # parsed, not answered
    REJECTED = "rejected"  # answered 3xx-6xx
    NO_SUBSCRIPTION = "no subscription"  # accepted with Refer-Sub: false (RFC 4488)
    ACTIVE = "active"  # accepted; NOTIFYs report progress
    TERMINATING = "terminating"  # final NOTIFY sent, its response not in yet
    TERMINATED = "terminated"  # subscription over


class NotifierInput(enum.Enum):
    ACCEPT = "accept"
    ACCEPT_NO_SUB = "accept with Refer-Sub: false"
    REJECT = "reject"
    PROGRESS = "new leg 1xx"
    FINAL = "new leg final status"
    EXPIRE = "subscription expired"
    NOTIFY_ANSWERED = "2xx to a progress NOTIFY"
    FINAL_ANSWERED = "any final response to the terminating NOTIFY"
    NOTIFY_GONE = "481, 408 or a timeout for a NOTIFY"


class NotifierAction(enum.Enum):
    SEND_NOTIFY = enum.auto()  # Subscription-State: active;expires=...
    SEND_FINAL_NOTIFY = enum.auto()  # Subscription-State: terminated;reason=noresource
    SEND_EXPIRY_NOTIFY = enum.auto()  # Subscription-State: terminated;reason=timeout


_NS, _NI, _NA = NotifierState, NotifierInput, NotifierAction

NOTIFIER_TABLE: dict[tuple[NotifierState, NotifierInput], tuple[tuple[NotifierAction, ...], NotifierState]] = {
    (_NS.RECEIVED, _NI.ACCEPT): ((_NA.SEND_NOTIFY,), _NS.ACTIVE),  # the first NOTIFY: 100
    (_NS.RECEIVED, _NI.ACCEPT_NO_SUB): ((), _NS.NO_SUBSCRIPTION),
    (_NS.RECEIVED, _NI.REJECT): ((), _NS.REJECTED),
    (_NS.ACTIVE, _NI.PROGRESS): ((_NA.SEND_NOTIFY,), _NS.ACTIVE),
    # RFC 3515 2.4.7: the NOTIFY with the final status ends the subscription
    (_NS.ACTIVE, _NI.FINAL): ((_NA.SEND_FINAL_NOTIFY,), _NS.TERMINATING),
    # RFC 6665 4.2.2: an expiring subscription ends with reason=timeout
    (_NS.ACTIVE, _NI.EXPIRE): ((_NA.SEND_EXPIRY_NOTIFY,), _NS.TERMINATING),
    (_NS.ACTIVE, _NI.NOTIFY_ANSWERED): ((), _NS.ACTIVE),
    # RFC 6665 4.2.2: a 481 or a timed-out NOTIFY means the subscriber is gone
    (_NS.ACTIVE, _NI.NOTIFY_GONE): ((), _NS.TERMINATED),
    (_NS.TERMINATING, _NI.NOTIFY_ANSWERED): ((), _NS.TERMINATING),  # an earlier NOTIFY's 200
    (_NS.TERMINATING, _NI.FINAL_ANSWERED): ((), _NS.TERMINATED),
    (_NS.TERMINATING, _NI.NOTIFY_GONE): ((), _NS.TERMINATED),
    # RFC 4488 4: no subscription, so no NOTIFY; the engine may report progress regardless
    (_NS.NO_SUBSCRIPTION, _NI.PROGRESS): ((), _NS.NO_SUBSCRIPTION),
    (_NS.NO_SUBSCRIPTION, _NI.FINAL): ((), _NS.NO_SUBSCRIPTION),
    # After the end (expired, subscriber gone, a second final): nothing more is sent
    (_NS.TERMINATING, _NI.PROGRESS): ((), _NS.TERMINATING),
    (_NS.TERMINATING, _NI.FINAL): ((), _NS.TERMINATING),
    (_NS.TERMINATED, _NI.PROGRESS): ((), _NS.TERMINATED),
    (_NS.TERMINATED, _NI.FINAL): ((), _NS.TERMINATED),
    (_NS.TERMINATED, _NI.NOTIFY_ANSWERED): ((), _NS.TERMINATED),
    (_NS.TERMINATED, _NI.FINAL_ANSWERED): ((), _NS.TERMINATED),
    (_NS.TERMINATED, _NI.NOTIFY_GONE): ((), _NS.TERMINATED),
}
"""Anything not in the table is a bug of the caller (answering twice, notifying a
rejected REFER...): ProtocolViolation with status 500."""


class IncomingRefer:
    """A REFER we received and the implicit subscription it created (we notify).

    Usage (the engine, bot leg)::

        try:
            incoming = IncomingRefer.receive(request, leg.dialog)
        except SipError as error:  # 400, 416, 420, 501
            send(leg.dialog.respond(request, error.status)); return
        response, notify = incoming.accept(now)   # or incoming.reject(403) (policy)
        send(response); if notify: send(*notify)
        ...  # as the new leg progresses:
        if (notify := incoming.notify(180, now)): send(*notify)
        incoming.receive_notify_response(response)   # for each NOTIFY answered
        if incoming.subscription_over: BYE the bot leg
    """

    def __init__(self, request: Request, refer: ReferRequest, dialog: Dialog, *,
                 expires: int = DEFAULT_SUBSCRIPTION_EXPIRES) -> None:
        self.request = request
        self.refer = refer
        self.dialog = dialog
        self.expires = expires
        self.state = NotifierState.RECEIVED
        self._expires_at: float | None = None
        self._final_seq: int | None = None
        self._last: tuple[int, str | None] = (100, None)

    @classmethod
    def receive(cls, request: Request, dialog: Dialog, *,
                expires: int = DEFAULT_SUBSCRIPTION_EXPIRES) -> IncomingRefer:
        """Validate ``request``; raises SipError whose ``status`` is the answer."""
        return cls(request, ReferRequest.parse(request), dialog, expires=expires)

    @property
    def refer_id(self) -> int:
        return self.refer.refer_id

    @property
    def subscription_over(self) -> bool:
        """No NOTIFY is outstanding or due: the dialog may be ended with BYE."""
        return self.state in (_NS.REJECTED, _NS.NO_SUBSCRIPTION, _NS.TERMINATED)

    # --- answers -----------------------------------------------------------------------
    def accept(self, now: float) -> tuple[Response, tuple[Request, Uri] | None]:
        """The 202 and the first NOTIFY (``100 Trying``; RFC 6665 4.2.1 wants one at
        once), or the 202 echoing ``Refer-Sub: false`` and no NOTIFY (RFC 4488 4: a
        recipient that suppresses the subscription says so in the 2xx)."""
        if not self.refer.refer_sub:
            self._apply(_NI.ACCEPT_NO_SUB, now)
            return self.dialog.respond(self.request, 202, extra_headers=[("Refer-Sub", "false")]), None
        self._expires_at = now + self.expires
        response = self.dialog.respond(self.request, 202)
        return response, self._apply(_NI.ACCEPT, now)

    def reject(self, status: int, reason: str | None = None) -> Response:
        """Refuse the REFER (403 for a target off the allow-list...)."""
        if status < 300:
            raise ProtocolViolation("reject needs a 3xx-6xx status", status=500)
        self._apply(_NI.REJECT, 0.0)
        return self.dialog.respond(self.request, status, reason)

    # --- NOTIFYs -----------------------------------------------------------------------
    def notify(self, status: int, now: float, reason: str | None = None) -> tuple[Request, Uri] | None:
        """Report the new leg's ``status``: 1xx keeps the subscription, a final ends it.

        Returns the NOTIFY and its next hop, or None when nothing is to be sent
        (Refer-Sub: false, or the subscription already ended).
        """
        self._last = (status, reason)
        return self._apply(_NI.PROGRESS if status < 200 else _NI.FINAL, now)

    def receive_notify_response(self, response: Response) -> None:
        """The response to one of our NOTIFYs (the caller matched it to this REFER)."""
        if response.status < 200:
            return
        final = response.cseq.seq == self._final_seq
        if response.status in (408, 481):
            self._apply(_NI.NOTIFY_GONE, 0.0)
        elif final:
            self._apply(_NI.FINAL_ANSWERED, 0.0)
        elif response.status < 300:
            self._apply(_NI.NOTIFY_ANSWERED, 0.0)
        # other errors to a progress NOTIFY: that NOTIFY is lost, the subscription stays

    def resent(self, old_seq: int, new_seq: int) -> None:
        """One of our NOTIFYs went again as ``new_seq`` (a digest challenge answered,
        RFC 3261 22.2): its response is matched by the new CSeq."""
        if self._final_seq == old_seq:
            self._final_seq = new_seq

    def notify_timed_out(self) -> None:
        """One of our NOTIFYs got no response (Timer F, transport error)."""
        self._apply(_NI.NOTIFY_GONE, 0.0)

    def get_timer(self) -> float | None:
        return self._expires_at if self.state is _NS.ACTIVE else None

    def handle_timer(self, now: float) -> tuple[Request, Uri] | None:
        """At expiry, the terminating NOTIFY (reason=timeout) with the last status."""
        if self.state is _NS.ACTIVE and self._expires_at is not None and now >= self._expires_at:
            return self._apply(_NI.EXPIRE, now)
        return None

    def _apply(self, event: NotifierInput, now: float) -> tuple[Request, Uri] | None:
        row = NOTIFIER_TABLE.get((self.state, event))
        if row is None:
            raise ProtocolViolation(f"{event.value} not allowed when {self.state.value}", status=500)
        actions, next_state = row
        out: tuple[Request, Uri] | None = None
        for action in actions:
            if action is _NA.SEND_NOTIFY:
                remaining = max(1, math.ceil((self._expires_at or now) - now))
                out = self._build_notify(SubscriptionState("active", expires=remaining))
            elif action is _NA.SEND_FINAL_NOTIFY:
                out = self._build_notify(SubscriptionState("terminated", reason="noresource"))
            elif action is _NA.SEND_EXPIRY_NOTIFY:
                out = self._build_notify(SubscriptionState("terminated", reason="timeout"))
        self.state = next_state
        if out is not None and next_state is _NS.TERMINATING:
            self._final_seq = out[0].cseq.seq
        return out

    def _build_notify(self, state: SubscriptionState) -> tuple[Request, Uri]:
        status, reason = self._last
        frag = SipFrag.status_line(status, reason)
        return self.dialog.create_request(
            "NOTIFY",
            body=bytes(frag),
            content_type=SIPFRAG_CONTENT_TYPE,
            extra_headers=[
                # RFC 3515 2.4.6: the id is the CSeq number of the REFER
                ("Event", f"refer;id={self.refer.refer_id}"),
                ("Subscription-State", str(state)),
            ],
        )

    def __repr__(self) -> str:
        return f"<IncomingRefer id={self.refer_id} {self.state.name} target={str(self.refer.target)!r}>"


__all__ = [
    "DEFAULT_SUBSCRIPTION_EXPIRES",
    "NOTIFIER_TABLE",
    "IncomingRefer",
    "NotifierAction",
    "NotifierInput",
    "NotifierState",
    "ReferRequest",
]
