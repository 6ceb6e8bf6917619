"""Calls and transfers as the control API shows them: small immutable views.

The API answers ``GET /calls``, ``GET /calls/{id}`` (timeline and SIP ladder) and
``GET /transfers/{id}`` for its last ended calls long after the engine has let go of
them. Keeping the engine's ``Call`` for that would keep its legs, their closed media
endpoints and sockets, players, dialogs and parsed INVITEs (issue 16: about 500 calls'
worth of engine objects held on purpose). Instead :class:`Control` takes a view of a
call when the engine forgets it, and the routes render live calls through the same
views, so there is one way a call is shown.

A view holds strings, numbers, enum members and the timeline's events (frozen
dataclasses of plain values, engine/events.py): nothing that references a socket, a
timer or another call's object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.call import CallState
from ..engine.events import CallEnded, CallEvent, CallStarted
from ..engine.transfer_state import TransferState

if TYPE_CHECKING:
    from ..engine.call import Call, Leg
    from ..engine.outbound import FailureStatus
    from ..engine.transfer_state import Transfer


@dataclass(frozen=True, slots=True)
class LegView:
    role: str
    peer: str
    """transport:host:port where its in-dialog requests went."""
    sip_call_id: str | None
    ended: bool


@dataclass(frozen=True, slots=True)
class TransferView:
    id: str
    call_key: str
    method: str
    target: str
    uri: str
    trigger: str
    state: TransferState
    status: FailureStatus | None
    reason: str
    started: float
    """Loop time the attempt started (as ``Transfer.started``)."""
    ended: float | None
    progress: tuple[int, ...]
    done: bool


@dataclass(frozen=True, slots=True)
class CallView:
    id: str
    key: str
    state: CallState
    caller: str
    """The user part of the caller's From URI (or the whole URI)."""
    created: float
    """Loop time the INVITE arrived."""
    ended: float | None
    """Loop time of the CallEnded event, None while the call is up."""
    end_reason: str
    legs: tuple[LegView, ...]
    transfer: TransferView | None
    """The transfer in progress or last done."""
    flow: str | None
    channel: str | None
    carrier: str | None
    """The carrier profile the call came from (CallStarted.carrier)."""
    timeline: tuple[tuple[float, CallEvent], ...]
    sip_call_ids: tuple[str, ...]
    """The SIP Call-IDs of every leg it had (a B2BUA: one per leg): its ladder."""


def transfer_view(transfer: Transfer | TransferView) -> TransferView:
    if isinstance(transfer, TransferView):
        return transfer
    return TransferView(
        id=transfer.id, call_key=transfer.call_key, method=transfer.method.value, target=transfer.target,
        uri=transfer.uri, trigger=transfer.trigger, state=TransferState(transfer.state),
        status=transfer.status, reason=transfer.reason, started=transfer.started, ended=transfer.ended,
        progress=tuple(transfer.progress), done=transfer.done)


def call_view(call: Call | CallView, sip_call_ids: tuple[str, ...] = ()) -> CallView:
    """The call as it is now; ``sip_call_ids``: Call-IDs of legs it no longer has (a
    failed agent leg is dropped from the call, its messages belong in the ladder)."""
    if isinstance(call, CallView):
        return call
    legs = call.legs()
    timeline = tuple(call.timeline)
    ended = next((t for t, event in reversed(timeline) if isinstance(event, CallEnded)), None)
    started = next((event for _, event in timeline if isinstance(event, CallStarted)), None)
    return CallView(
        id=call.id, key=call.key, state=call.state, caller=_caller(call), created=call.created, ended=ended,
        end_reason=call.end_reason, legs=tuple(_leg_view(leg) for leg in legs),
        transfer=transfer_view(call.transfer) if call.transfer is not None else None,
        flow=started.flow if started is not None else None,
        channel=started.channel if started is not None else None,
        carrier=started.carrier if started is not None else None,
        timeline=timeline, sip_call_ids=call_ids(call, sip_call_ids))


def call_ids(call: Call | CallView, more: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The SIP Call-IDs of the call's legs, the caller's first, then ``more``."""
    if isinstance(call, CallView):
        return tuple(dict.fromkeys((*call.sip_call_ids, *more)))
    ids = [call.id]
    for leg in call.legs():
        if leg.dialog is not None:
            ids.append(leg.dialog.id.call_id)
        elif leg.invite is not None:
            ids.append(leg.invite.call_id)
    ids.extend(more)
    return tuple(dict.fromkeys(ids))


def _leg_view(leg: Leg) -> LegView:
    sip_call_id = (leg.dialog.id.call_id if leg.dialog is not None
                   else leg.invite.call_id if leg.invite is not None else None)
    return LegView(role=leg.role, peer=f"{leg.peer.transport}:{leg.peer.host}:{leg.peer.port}",
                   sip_call_id=sip_call_id, ended=leg.ended)


def _caller(call: Call) -> str:
    invite = call.caller.invite
    uri = invite.from_.uri if invite is not None else None
    return getattr(uri, "user", None) or (str(uri) if uri is not None else "")


__all__ = ["CallView", "LegView", "TransferView", "call_ids", "call_view", "transfer_view"]
