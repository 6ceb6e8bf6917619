"""The dialog state machine (RFC 3261 section 12): states, inputs, and the one table.

The state machine is ``TRANSITIONS``: ``(state, input) -> next state``, one row per
rule, and anything not in the table is invalid (as in h2's ``stream.py``)::

    EARLY --SUCCESS--> CONFIRMED --BYE_SENT / BYE_RECEIVED / GONE / TERMINATE--> TERMINATED
      |                                                                              ^
      +--FAILURE / BYE_SENT / BYE_RECEIVED / GONE / TERMINATE------------------------+

Inputs are the same on both sides; the few rules that depend on the role (a callee
never sends BYE on an early dialog, section 15) are checked by the
:class:`~voicegw.sip.dialog.Dialog` that applies the table. An invalid input
(:func:`transition`) raises :class:`DialogError` (481) on a terminated dialog and
:class:`ProtocolViolation` otherwise, so the UA core can answer a request with it.

Also here: the dialog's identity (:class:`DialogId`) and its statistics snapshot.
Importers take these names from here; :mod:`voicegw.sip.dialog` applies the table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import DialogError, ProtocolViolation
from .message import Request, Response


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogRole(enum.Enum):
    """Which side of the dialog-creating INVITE we were on."""

    UAC = "uac"  # we sent the INVITE (bot and agent legs)
    UAS = "uas"  # we received it (caller leg)


class DialogInput(enum.Enum):
    """What can happen to a dialog. Responses here are to the dialog-creating INVITE
    unless named otherwise; "sent" and "received" are from our point of view."""

    PROVISIONAL = "1xx with a To tag"
    SUCCESS = "2xx"
    FAILURE = "non-2xx final response"
    REQUEST_SENT = "mid-dialog request sent"
    REQUEST_RECEIVED = "mid-dialog request received"
    RESPONSE = "response to a mid-dialog request"
    GONE = "481 or 408 to a mid-dialog request"
    ACK_SENT = "ACK for a 2xx sent"
    ACK_RECEIVED = "ACK for a 2xx received"
    BYE_SENT = "BYE sent"
    BYE_RECEIVED = "BYE received"
    TERMINATE = "ended locally"


_S = DialogState
_I = DialogInput

TRANSITIONS: dict[tuple[DialogState, DialogInput], DialogState] = {
    # 12.1: "only 2xx and 101-199 responses with a To tag, where the request was
    # INVITE, will establish a dialog"; more 1xx keep it early.
    (_S.EARLY, _I.PROVISIONAL): _S.EARLY,
    # 12.1: "a dialog established by a 1xx is in the early state"; the 2xx confirms it
    (_S.EARLY, _I.SUCCESS): _S.CONFIRMED,
    # 1xx overtaken by the 2xx, and 2xx retransmissions (13.2.2.4): nothing changes
    (_S.CONFIRMED, _I.PROVISIONAL): _S.CONFIRMED,
    (_S.CONFIRMED, _I.SUCCESS): _S.CONFIRMED,
    # 12.3: "if a request outside of a dialog generates a non-2xx final response,
    # any early dialogs created through provisional responses to that request are terminated"
    (_S.EARLY, _I.FAILURE): _S.TERMINATED,
    # Mid-dialog requests: UPDATE, PRACK, INFO are allowed in early dialogs (RFC 3311,
    # RFC 3262); re-INVITE, REFER, NOTIFY... in confirmed ones.
    (_S.EARLY, _I.REQUEST_SENT): _S.EARLY,
    (_S.EARLY, _I.REQUEST_RECEIVED): _S.EARLY,
    (_S.CONFIRMED, _I.REQUEST_SENT): _S.CONFIRMED,
    (_S.CONFIRMED, _I.REQUEST_RECEIVED): _S.CONFIRMED,
    (_S.EARLY, _I.RESPONSE): _S.EARLY,
    (_S.CONFIRMED, _I.RESPONSE): _S.CONFIRMED,
    # 13.2.2.4: the ACK for a 2xx is a mid-dialog request of its own
    (_S.CONFIRMED, _I.ACK_SENT): _S.CONFIRMED,
    (_S.CONFIRMED, _I.ACK_RECEIVED): _S.CONFIRMED,
    # 15: "the caller's UA MAY send a BYE for either confirmed or early dialogs"
    (_S.EARLY, _I.BYE_SENT): _S.TERMINATED,
    (_S.EARLY, _I.BYE_RECEIVED): _S.TERMINATED,
    (_S.CONFIRMED, _I.BYE_SENT): _S.TERMINATED,
    (_S.CONFIRMED, _I.BYE_RECEIVED): _S.TERMINATED,
    # 12.2.1.2: "If the response for a request within a dialog is a 481 or a 408,
    # the UAC SHOULD terminate the dialog."
    (_S.EARLY, _I.GONE): _S.TERMINATED,
    (_S.CONFIRMED, _I.GONE): _S.TERMINATED,
    # Local decisions: the UA core ends early dialogs of a fork when another branch
    # answers (12.3, 13.2.2.4), a leg is torn down, a transaction times out.
    (_S.EARLY, _I.TERMINATE): _S.TERMINATED,
    (_S.CONFIRMED, _I.TERMINATE): _S.TERMINATED,
    (_S.TERMINATED, _I.TERMINATE): _S.TERMINATED,
    # Stragglers after the end: responses to our BYE (or a 481/408 to it), the final
    # response to an INVITE whose early dialog we BYE'd or cancelled, and a 2xx that
    # crossed our BYE, which still has to be ACKed to stop its retransmissions (13.3.1.4).
    (_S.TERMINATED, _I.RESPONSE): _S.TERMINATED,
    (_S.TERMINATED, _I.GONE): _S.TERMINATED,
    (_S.TERMINATED, _I.PROVISIONAL): _S.TERMINATED,
    (_S.TERMINATED, _I.SUCCESS): _S.TERMINATED,
    (_S.TERMINATED, _I.FAILURE): _S.TERMINATED,
    (_S.TERMINATED, _I.ACK_SENT): _S.TERMINATED,
    (_S.TERMINATED, _I.ACK_RECEIVED): _S.TERMINATED,
    # the peer's BYE crossing ours (RFC 5407's crossing BYEs): the dialog lasts until our
    # BYE's final response (15.1.1), so theirs is in it and gets 200 (15.1.2)
    (_S.TERMINATED, _I.BYE_RECEIVED): _S.TERMINATED,
}


@dataclass(frozen=True, slots=True)
class DialogId:
    """``(Call-ID, local tag, remote tag)`` (12). A missing tag (RFC 2543 peers) is ""."""

    call_id: str
    local_tag: str
    remote_tag: str

    @classmethod
    def from_request(cls, request: Request) -> DialogId | None:
        """The dialog an incoming request names: our tag is in To, theirs in From (12.2.2).

        None when To has no tag: the request is outside any dialog (12.2).
        """
        local = request.to.tag
        if local is None:
            return None
        return cls(request.call_id, local, request.from_.tag or "")

    @classmethod
    def from_response(cls, response: Response) -> DialogId | None:
        """The dialog a response to our request names: our tag is in From, theirs in To.

        None when To has no tag (a 100 Trying; 12.1: such responses create no dialog).
        """
        remote = response.to.tag
        if remote is None:
            return None
        return cls(response.call_id, response.from_.tag or "", remote)


@dataclass(frozen=True, slots=True)
class DialogStatistics:
    """A snapshot for the control API (trio-style ``statistics()``)."""

    state: DialogState
    """Current state."""
    role: DialogRole
    """Whether we were UAC or UAS of the dialog-creating INVITE."""
    local_seq: int | None
    """Last CSeq number we used; None until our first request (UAS, 12.1.1)."""
    remote_seq: int | None
    """Last CSeq number the peer used; None until its first request (UAC, 12.1.2)."""
    route_set_length: int
    """Number of Route entries our requests carry."""
    secure: bool
    """The secure flag (sips over TLS)."""


def transition(state: DialogState, event: DialogInput) -> DialogState:
    """The state ``event`` leads to from ``state``; raises if the table has no such row."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        if state is DialogState.TERMINATED:
            raise DialogError(f"dialog terminated ({event.value})") from None
        raise ProtocolViolation(
            f"{event.value} not allowed in {state.value} dialog"
        ) from None


__all__ = [
    "TRANSITIONS",
    "DialogId",
    "DialogInput",
    "DialogRole",
    "DialogState",
    "DialogStatistics",
    "transition",
]
