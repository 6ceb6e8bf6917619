"""The REFER usage of a dialog (RFC 3515): the referrer side, with no I/O.

How this works
--------------
A REFER asks the peer to send a request (for us: an INVITE) to the URI in Refer-To,
and by default creates an implicit subscription to the ``refer`` event package: the
peer (the *notifier*) reports the progress of that request in NOTIFYs whose bodies
are message/sipfrag status lines (RFC 3515 2.4.4, 2.4.5; RFC 3420). Requests of the
usage share the dialog's CSeq space (RFC 5057), so this module builds them with
:meth:`Dialog.create_request` and answers with :meth:`Dialog.respond`; the caller
still feeds every mid-dialog request to :meth:`Dialog.receive_request` first.

**Referrer side** (voicegw sends REFER on the caller leg): :class:`ReferSubscriptions`
holds the REFERs sent on one dialog, builds each REFER (:func:`build_refer`), routes
the responses and NOTIFYs to the right :class:`OutgoingRefer` and answers each
NOTIFY. One :class:`OutgoingRefer` is this machine, ``(state, input) -> (actions,
next state)``; **anything not in the table is ignored** (a 2xx to the REFER that
arrives after its first NOTIFY, a NOTIFY after the outcome is known)::

    SENT --2xx--> ACCEPTED --NOTIFY 1xx--> PROCEEDING --NOTIFY 2xx--> SUCCEEDED
     |  \\--2xx with Refer-Sub: false--> UNCONFIRMED
     +-- 3xx-6xx / timer ------------------+--NOTIFY 3xx-6xx / terminated without
                                           |  a final / timer -----------> FAILED

Each REFER ends with exactly one of :class:`ReferSucceeded`, :class:`ReferFailed`
or :class:`ReferUnconfirmed`. Decisions, with the pitfalls of issue 4 in mind:

- A 202 is not success; only a 2xx sipfrag is. A REFER answered 3xx-6xx fails at
  once with that status: there will be no NOTIFY to wait for.
- ``Subscription-State: terminated`` without a final sipfrag (no body, or a 1xx) is
  ``ReferFailed("no_final")``: nobody told us the reference worked, and a failure
  keeps the caller up for the fallback, where a wrong "success" would drop them.
- A peer that sends ``100 Trying`` and then nothing: the notify timer runs from the
  2xx (or first NOTIFY) and is not re-armed by progress, so it ends as ``timeout``.
- NOTIFYs are matched by the Event ``id`` (the REFER's CSeq, RFC 3515 2.4.6). One
  without ``id`` belongs to the dialog's first REFER; when that one is over, to the
  only REFER still live. One whose Event header an SBC stripped is accepted when
  exactly one REFER subscription is live, else answered 400 (ambiguous) or 481.
- A bad NOTIFY gets 400/415/489 and never touches the call. 481 only for an id we
  never sent or whose subscription ended: answering 481 for a subscription the peer
  still holds could make it end the whole dialog (RFC 3261 12.2.1.2).
- A 2xx carrying ``Refer-Sub: false`` means no subscription (RFC 4488 4), whether or
  not we asked; a 2xx without it means there is one even if we asked for none (a
  peer that does not know RFC 4488 ignores the header).

**Referee side** (the bot sends REFER on its leg): :mod:`voicegw.sip.referee`.
Both sides use the header helpers of :mod:`voicegw.sip.refer_headers` (building the
REFER, Event, Subscription-State).

Order rule on success (issue 4): as referrer, answer the final NOTIFY (the Response
:meth:`ReferSubscriptions.receive_notify` returns) before sending the BYE of that
dialog; :attr:`OutgoingRefer.subscription_terminated` says whether it ended the
subscription.

Timers are inputs, as in :mod:`voicegw.sip.transaction`: ``get_timer()`` says when,
``handle_timer(now)`` fires what is due. Nothing here reads a clock.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from .build import reason_phrase
from .dialog import Dialog
from .errors import ParseError, SipError
from .message import Request, Response
from .refer_headers import (
    EventHeader,
    SubscriptionState,
    build_refer,
)
from .sipfrag import SipFrag
from .uri import Uri

#: Referrer defaults (seconds). A REFER with no final response is also ended by the
#: transaction's Timer F (64*T1 = 32 s); the engine may ask for less.
DEFAULT_RESPONSE_TIMEOUT = 32.0
#: From the 2xx to the final NOTIFY: covers the target ringing.
DEFAULT_NOTIFY_TIMEOUT = 60.0

FailureStatus = int | Literal["timeout", "no_final"]


# =====================================================================================
# Events (referrer side)
# =====================================================================================


@dataclass(frozen=True, slots=True)
class ReferAccepted:
    """The peer accepted a REFER we sent. Not success: only a 2xx sipfrag is."""

    refer_id: int
    """The REFER's CSeq number, the Event ``id`` of its NOTIFYs (RFC 3515 2.4.6)."""
    status: int | None
    """The 2xx, or None when a NOTIFY overtook it (RFC 6665 4.1.2.4)."""
    subscription: bool
    """False when the 2xx carried ``Refer-Sub: false``: no NOTIFY will come."""


@dataclass(frozen=True, slots=True)
class ReferProgressed:
    """A NOTIFY reported a 1xx of the referred request (``SIP/2.0 180 Ringing``)."""

    refer_id: int
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReferSucceeded:
    """A NOTIFY reported a 2xx: the reference worked. Answer it, then BYE the dialog."""

    refer_id: int
    status: int
    reason: str
    subscription_terminated: bool
    """Whether that NOTIFY also ended the subscription (RFC 3515 2.4.7 says it should)."""


@dataclass(frozen=True, slots=True)
class ReferFailed:
    """The REFER failed; the dialog is untouched, so the fallback can run."""

    refer_id: int
    status: FailureStatus
    """The REFER's 3xx-6xx, a 3xx-6xx sipfrag, ``"timeout"`` (nothing final in time),
    or ``"no_final"`` (the subscription ended without a final sipfrag)."""
    reason: str
    """The reason phrase, or what was missing."""


@dataclass(frozen=True, slots=True)
class ReferUnconfirmed:
    """Accepted with ``Refer-Sub: false`` (RFC 4488): the 2xx is all we will learn."""

    refer_id: int
    status: int


ReferEvent = ReferAccepted | ReferProgressed | ReferSucceeded | ReferFailed | ReferUnconfirmed


# =====================================================================================
# The referrer's machine: one REFER we sent
# =====================================================================================


class ReferState(enum.Enum):
    SENT = "sent"  # REFER sent, no final response yet
    ACCEPTED = "accepted"  # 2xx (or a first NOTIFY): subscription on, nothing reported yet
    PROCEEDING = "proceeding"  # a 1xx sipfrag reported
    SUCCEEDED = "succeeded"  # a 2xx sipfrag: the reference worked
    FAILED = "failed"  # 3xx-6xx response or sipfrag, timer, terminated without a final
    UNCONFIRMED = "unconfirmed"  # 2xx with Refer-Sub: false: no NOTIFY will come


class ReferInput(enum.Enum):
    PROVISIONAL = "1xx to the REFER"
    ACCEPTED = "2xx to the REFER"
    ACCEPTED_NO_SUB = "2xx to the REFER with Refer-Sub: false"
    REJECTED = "3xx-6xx to the REFER"
    NOTIFY_EMPTY = "NOTIFY without a sipfrag, subscription not terminated"
    NOTIFY_PROGRESS = "NOTIFY with a 1xx sipfrag"
    NOTIFY_SUCCESS = "NOTIFY with a 2xx sipfrag"
    NOTIFY_FAILURE = "NOTIFY with a 3xx-6xx sipfrag"
    NOTIFY_NO_FINAL = "NOTIFY terminating the subscription without a final sipfrag"
    TIMEOUT = "timer, or the REFER's transaction timed out"


class ReferAction(enum.Enum):
    ACCEPTED = enum.auto()  # emit ReferAccepted
    PROGRESSED = enum.auto()  # emit ReferProgressed
    SUCCEEDED = enum.auto()  # emit ReferSucceeded
    FAILED = enum.auto()  # emit ReferFailed
    UNCONFIRMED = enum.auto()  # emit ReferUnconfirmed
    ARM_NOTIFY_TIMER = enum.auto()  # the final NOTIFY is due within notify_timeout


_RS, _RI, _RA = ReferState, ReferInput, ReferAction

#: Rows shared by the two states where a subscription is on and nothing final is known.
_SUBSCRIBED_ROWS: dict[ReferInput, tuple[tuple[ReferAction, ...], ReferState]] = {
    _RI.NOTIFY_EMPTY: ((), _RS.ACCEPTED),  # stays ACCEPTED, or see PROCEEDING below
    _RI.NOTIFY_PROGRESS: ((_RA.PROGRESSED,), _RS.PROCEEDING),
    # the final sipfrag decides (RFC 3515 2.4.5); the timer is no longer needed
    _RI.NOTIFY_SUCCESS: ((_RA.SUCCEEDED,), _RS.SUCCEEDED),
    _RI.NOTIFY_FAILURE: ((_RA.FAILED,), _RS.FAILED),
    _RI.NOTIFY_NO_FINAL: ((_RA.FAILED,), _RS.FAILED),
    _RI.TIMEOUT: ((_RA.FAILED,), _RS.FAILED),
}

REFER_TABLE: dict[tuple[ReferState, ReferInput], tuple[tuple[ReferAction, ...], ReferState]] = {
    # RFC 3261 17.1.2: a 1xx to a non-INVITE request changes nothing for its user
    (_RS.SENT, _RI.PROVISIONAL): ((), _RS.SENT),
    # RFC 3515 2.4.4: accepting the REFER creates the subscription; NOTIFYs follow
    (_RS.SENT, _RI.ACCEPTED): ((_RA.ACCEPTED, _RA.ARM_NOTIFY_TIMER), _RS.ACCEPTED),
    # RFC 4488 4: a 2xx with Refer-Sub: false means no implicit subscription was created
    (_RS.SENT, _RI.ACCEPTED_NO_SUB): ((_RA.ACCEPTED, _RA.UNCONFIRMED), _RS.UNCONFIRMED),
    # A REFER rejected directly resolves at once: no NOTIFY will come (issue 4)
    (_RS.SENT, _RI.REJECTED): ((_RA.FAILED,), _RS.FAILED),
    (_RS.SENT, _RI.TIMEOUT): ((_RA.FAILED,), _RS.FAILED),
    # RFC 6665 4.1.2.4: a NOTIFY may arrive before the 2xx; it shows the REFER accepted
    (_RS.SENT, _RI.NOTIFY_EMPTY): ((_RA.ACCEPTED, _RA.ARM_NOTIFY_TIMER), _RS.ACCEPTED),
    (_RS.SENT, _RI.NOTIFY_PROGRESS): (
        (_RA.ACCEPTED, _RA.ARM_NOTIFY_TIMER, _RA.PROGRESSED), _RS.PROCEEDING),
    (_RS.SENT, _RI.NOTIFY_SUCCESS): ((_RA.ACCEPTED, _RA.SUCCEEDED), _RS.SUCCEEDED),
    (_RS.SENT, _RI.NOTIFY_FAILURE): ((_RA.ACCEPTED, _RA.FAILED), _RS.FAILED),
    (_RS.SENT, _RI.NOTIFY_NO_FINAL): ((_RA.ACCEPTED, _RA.FAILED), _RS.FAILED),
    **{(_RS.ACCEPTED, i): row for i, row in _SUBSCRIBED_ROWS.items()},
    **{(_RS.PROCEEDING, i): row for i, row in _SUBSCRIBED_ROWS.items()},
    # progress is not undone by a later NOTIFY without a body
    (_RS.PROCEEDING, _RI.NOTIFY_EMPTY): ((), _RS.PROCEEDING),
}
"""Not in the table, ignored: a 2xx or 3xx-6xx to the REFER after a NOTIFY overtook it;
any input in SUCCEEDED, FAILED or UNCONFIRMED (late NOTIFYs, stale timers). The
NOTIFYs themselves are still answered (see ReferSubscriptions.receive_notify)."""

FINAL_STATES = frozenset({_RS.SUCCEEDED, _RS.FAILED, _RS.UNCONFIRMED})


class OutgoingRefer:
    """One REFER we sent and what we learn about it (see REFER_TABLE).

    Normally driven through :class:`ReferSubscriptions`; events come out of
    :meth:`next_event`, deadlines out of :meth:`get_timer`.
    """

    def __init__(
        self,
        refer_id: int,
        now: float,
        *,
        response_timeout: float = DEFAULT_RESPONSE_TIMEOUT,
        notify_timeout: float = DEFAULT_NOTIFY_TIMEOUT,
        events: deque[ReferEvent] | None = None,
    ) -> None:
        self.refer_id = refer_id
        self.state = ReferState.SENT
        self.notify_timeout = notify_timeout
        self._deadline: float | None = now + response_timeout
        #: Shared with the other REFERs of the dialog when a ReferSubscriptions owns
        #: this one, so its next_event() returns events in the order they happened.
        self._events: deque[ReferEvent] = deque() if events is None else events
        #: The subscription's own state as the NOTIFYs told it (RFC 6665 4.1.3).
        self.subscription_terminated = False
        #: True when the REFER got a non-2xx or a Refer-Sub: false 2xx: no subscription.
        self.no_subscription = False
        #: The last terminal event, once there is one.
        self.outcome: ReferSucceeded | ReferFailed | ReferUnconfirmed | None = None

    # --- views --------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def live(self) -> bool:
        """Whether a NOTIFY for this REFER may still legitimately arrive."""
        return not (self.no_subscription or self.subscription_terminated)

    def get_timer(self) -> float | None:
        return None if self.finished else self._deadline

    def next_event(self) -> ReferEvent | None:
        return self._events.popleft() if self._events else None

    # --- inputs ----------------------------------------------------------------------
    def receive_response(self, response: Response, now: float) -> None:
        """The response to our REFER (after the transaction layer)."""
        status = response.status
        if status < 200:
            self._fire(_RI.PROVISIONAL, now, status, response.reason)
        elif status < 300:
            refer_sub = (response.headers.get("refer-sub") or "").split(";")[0].strip().lower()
            no_sub = refer_sub == "false"
            if no_sub and self.state is ReferState.SENT:
                self.no_subscription = True
            self._fire(_RI.ACCEPTED_NO_SUB if no_sub else _RI.ACCEPTED, now, status, response.reason)
        else:
            if self.state is ReferState.SENT:
                self.no_subscription = True
            self._fire(_RI.REJECTED, now, status, response.reason)

    def transaction_timed_out(self, now: float) -> None:
        """The REFER's client transaction gave up (Timer F, transport error)."""
        self._fire(_RI.TIMEOUT, now, "timeout", "no final response to the REFER")

    def handle_timer(self, now: float) -> None:
        if self._deadline is not None and now >= self._deadline and not self.finished:
            what = (
                "no final response to the REFER" if self.state is ReferState.SENT
                else f"no final NOTIFY within {self.notify_timeout:g} s"
            )
            self._fire(_RI.TIMEOUT, now, "timeout", what)

    def _notified(self, frag: SipFrag | None, terminated: bool, now: float) -> None:
        """A NOTIFY for this REFER, already matched and parsed by ReferSubscriptions."""
        if terminated:
            # RFC 6665 4.1.3: the subscription is over, whatever the body says
            self.subscription_terminated = True
        status = frag.status if frag is not None else None
        if status is None:
            if terminated:
                self._fire(_RI.NOTIFY_NO_FINAL, now, "no_final",
                           "subscription terminated without a final status")
            else:
                self._fire(_RI.NOTIFY_EMPTY, now, None, "")
            return
        assert frag is not None
        reason = frag.reason or reason_phrase(status)
        if status < 200:
            self._fire(_RI.NOTIFY_PROGRESS, now, status, reason)
            if terminated:  # a 1xx in the last NOTIFY: still no final
                self._fire(_RI.NOTIFY_NO_FINAL, now, "no_final",
                           f"subscription terminated after {status} {reason}")
        elif status < 300:
            self._fire(_RI.NOTIFY_SUCCESS, now, status, reason)
        else:
            self._fire(_RI.NOTIFY_FAILURE, now, status, reason)

    # --- the one place where the table is applied -------------------------------------
    def _fire(self, event: ReferInput, now: float, status: FailureStatus | None, reason: str) -> None:
        row = REFER_TABLE.get((self.state, event))
        if row is None:
            return  # not in the table: ignored (see REFER_TABLE)
        actions, next_state = row
        rid = self.refer_id
        for action in actions:
            if action is _RA.ACCEPTED:
                from_response = event in (_RI.ACCEPTED, _RI.ACCEPTED_NO_SUB)
                self._events.append(ReferAccepted(
                    rid, status if from_response and isinstance(status, int) else None,
                    subscription=event is not _RI.ACCEPTED_NO_SUB))
            elif action is _RA.ARM_NOTIFY_TIMER:
                self._deadline = now + self.notify_timeout
            elif action is _RA.PROGRESSED:
                assert isinstance(status, int)
                self._events.append(ReferProgressed(rid, status, reason))
            elif action is _RA.SUCCEEDED:
                assert isinstance(status, int)
                self.outcome = ReferSucceeded(rid, status, reason, self.subscription_terminated)
                self._events.append(self.outcome)
            elif action is _RA.FAILED:
                assert status is not None
                self.outcome = ReferFailed(rid, status, reason)
                self._events.append(self.outcome)
            elif action is _RA.UNCONFIRMED:
                assert isinstance(status, int)
                self.outcome = ReferUnconfirmed(rid, status)
                self._events.append(self.outcome)
        self.state = next_state

    def __repr__(self) -> str:
        return f"<OutgoingRefer id={self.refer_id} {self.state.name}>"


# =====================================================================================
# The referrer's REFERs on one dialog
# =====================================================================================


class ReferSubscriptions:
    """Every REFER we sent on one dialog; routes their responses and NOTIFYs.

    Usage (the engine)::

        refers = ReferSubscriptions(leg.dialog)
        request, next_hop, refer = refers.refer("sip:+4930123@carrier", now)
        ...  # send; then feed the REFER's responses, NOTIFYs and timers:
        refers.receive_response(response, now)
        response = refers.receive_notify(notify, now)  # send this first, then act
        refers.handle_timer(now)                       # when get_timer() is due
        while (event := refers.next_event()) is not None: ...
    """

    def __init__(
        self,
        dialog: Dialog,
        *,
        response_timeout: float = DEFAULT_RESPONSE_TIMEOUT,
        notify_timeout: float = DEFAULT_NOTIFY_TIMEOUT,
    ) -> None:
        self.dialog = dialog
        self.response_timeout = response_timeout
        self.notify_timeout = notify_timeout
        self._refers: dict[int, OutgoingRefer] = {}  # by CSeq, in the order sent
        self._events: deque[ReferEvent] = deque()  # every REFER's, in order

    def refer(
        self,
        target: Uri | str,
        now: float,
        *,
        referred_by: str | None = None,
        embedded_headers: Iterable[tuple[str, str]] = (),
        extra_headers: Iterable[tuple[str, str]] = (),
        refer_sub: bool = True,
        require_norefersub: bool = True,
        branch: str | None = None,
    ) -> tuple[Request, Uri, OutgoingRefer]:
        """Build a REFER (see :func:`build_refer`) and start following it."""
        request, next_hop = build_refer(
            self.dialog, target, referred_by=referred_by, embedded_headers=embedded_headers,
            extra_headers=extra_headers, refer_sub=refer_sub,
            require_norefersub=require_norefersub, branch=branch,
        )
        refer = OutgoingRefer(request.cseq.seq, now, response_timeout=self.response_timeout,
                              notify_timeout=self.notify_timeout, events=self._events)
        self._refers[refer.refer_id] = refer
        return request, next_hop, refer

    def resent(self, old_id: int, new_id: int) -> None:
        """The REFER ``old_id`` went again as CSeq ``new_id`` (a digest challenge
        answered, RFC 3261 22.2): its id is now the new CSeq, the one the accepted
        REFER had, which its NOTIFYs name (RFC 3515 2.4.6)."""
        refer = self._refers.get(old_id)
        if refer is not None:
            refer.refer_id = new_id
            # in place: a NOTIFY without id is the first REFER's (RFC 3515 2.4.6)
            self._refers = {new_id if k == old_id else k: r for k, r in self._refers.items()}

    def get(self, refer_id: int) -> OutgoingRefer | None:
        return self._refers.get(refer_id)

    def __iter__(self) -> Iterator[OutgoingRefer]:
        return iter(list(self._refers.values()))

    # --- inputs ----------------------------------------------------------------------
    def receive_response(self, response: Response, now: float) -> bool:
        """A response to one of our REFERs; False when it is not for one of them."""
        cseq = response.cseq
        refer = self._refers.get(cseq.seq) if cseq.method == "REFER" else None
        if refer is None:
            return False
        refer.receive_response(response, now)
        return True

    def receive_notify(self, request: Request, now: float) -> Response:
        """A NOTIFY on the dialog: update the REFER it reports on and return our answer.

        Send the answer before acting on the events it produced (the order rule: the
        final NOTIFY is answered before the BYE). Never raises for a bad NOTIFY: the
        answer says what was wrong (400, 415, 481, 489).
        """
        try:
            refer, status, reason = self._match(request)
        except SipError as error:
            return self.dialog.respond(request, error.status, reason_phrase(error.status, error.reason))
        if refer is None:
            extra = [("Allow-Events", "refer")] if status == 489 else []
            return self.dialog.respond(request, status, reason_phrase(status, reason),
                                       extra_headers=extra)
        try:
            state_text = request.headers.get("subscription-state")
            # RFC 6665 requires Subscription-State; without one, nothing says it ended
            sub = SubscriptionState.parse(state_text) if state_text else SubscriptionState("active")
        except SipError as error:
            return self.dialog.respond(request, 400, reason_phrase(400, error.reason))
        frag: SipFrag | None = None
        answer = (200, None)
        if request.body.strip():
            content_type = request.content_type
            if content_type not in (None, "message/sipfrag"):
                # RFC 3515 2.4.4: NOTIFY bodies are message/sipfrag
                refer._notified(None, sub.terminated, now)
                return self.dialog.respond(request, 415, extra_headers=[("Accept", "message/sipfrag")])
            try:
                frag = SipFrag.parse(request.body)
                if not frag.is_response:
                    # RFC 3515 2.4.5: the body "MUST begin with a SIP Response Status-Line"
                    raise ParseError("sipfrag without a status line")
            except SipError as error:
                frag = None
                answer = (400, f"bad sipfrag: {error.reason}")
        refer._notified(frag, sub.terminated, now)
        code, detail = answer
        return self.dialog.respond(request, code, reason_phrase(code, detail) if detail else None)

    def _match(self, request: Request) -> tuple[OutgoingRefer | None, int, str]:
        """The REFER a NOTIFY is for, or (None, status, reason) to answer it with."""
        live = [r for r in self._refers.values() if r.live]
        text = request.headers.get("event")
        if text is None:
            # An SBC stripped the Event header: unambiguous only with one live REFER.
            if len(live) == 1:
                return live[0], 200, ""
            if live:
                return None, 400, "NOTIFY without Event, several REFERs pending"
            return None, 481, "no REFER subscription"
        event = EventHeader.parse(text)
        if event.package != "refer":
            return None, 489, f"event package {event.package!r} not subscribed"
        if event.id is None:
            # RFC 3515 2.4.6: the id "MAY" be left out of NOTIFYs for the first REFER
            first = next(iter(self._refers.values()), None)
            if first is not None and first.live:
                return first, 200, ""
            if len(live) == 1:
                return live[0], 200, ""
            return None, 481, "no REFER subscription without id"
        refer = self._refers.get(int(event.id)) if event.id.isascii() and event.id.isdigit() else None
        if refer is None or not refer.live:
            return None, 481, f"no REFER subscription id={event.id}"
        return refer, 200, ""

    def get_timer(self) -> float | None:
        timers = [t for r in self._refers.values() if (t := r.get_timer()) is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for refer in self._refers.values():
            refer.handle_timer(now)

    def next_event(self) -> ReferEvent | None:
        """The next event of any REFER on the dialog, in the order they happened."""
        return self._events.popleft() if self._events else None

    @property
    def pending(self) -> list[OutgoingRefer]:
        """REFERs whose outcome is not known yet."""
        return [r for r in self._refers.values() if not r.finished]


__all__ = [
    "DEFAULT_NOTIFY_TIMEOUT",
    "DEFAULT_RESPONSE_TIMEOUT",
    "REFER_TABLE",
    "FailureStatus",
    "OutgoingRefer",
    "ReferAccepted",
    "ReferEvent",
    "ReferFailed",
    "ReferInput",
    "ReferProgressed",
    "ReferState",
    "ReferSubscriptions",
    "ReferSucceeded",
    "ReferUnconfirmed",
]
