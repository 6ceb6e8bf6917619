"""What the control API serves, without HTTP: calls, transfers, totals, transcripts.

One :class:`Control` per daemon. It watches every call's timeline (the engine's
``listeners``) to keep

- the calls of the last while (``keep_ended`` ended calls after the engine forgets
  them, so ``voicegw call show`` works after a hang-up): the engine's ``Call`` while
  the engine holds it, then an immutable view of it (api/views.py), so that an ended
  call keeps none of its engine objects (legs, media endpoints, players) alive;
- the transfers by id (for ``GET /transfers/{id}`` and the in-flight count), views
  of them too once their call is forgotten;
- totals by outcome and by method, fallback actions, RTP counters of ended calls.

The HTTP layer (:mod:`voicegw.api.app`) and the metrics collector
(:mod:`voicegw.metrics`) only read from here. Everything runs on the daemon's loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..engine.call import Call, CallState
from ..engine.events import (
    CallDisposed,
    CallEnded,
    CallEvent,
    CallStarted,
    FallbackDecided,
    FallbackPromptPlayed,
    LegEvent,
    TransferFailed,
    TransferStarted,
    TransferSucceeded,
)
from ..media.relay import Bridge
from .trace import SipTrace
from .transcripts import TranscriptLinks
from .views import CallView, TransferView, call_ids, call_view, transfer_view

if TYPE_CHECKING:
    from ..engine.b2bua import Engine
    from ..engine.transfer_state import Transfer


@dataclass
class RtpTotals:
    relayed: int = 0
    """RTP packets the bridges forwarded, both directions."""
    dropped: int = 0
    """RTP packets dropped by bridges and endpoints (wrong source, malformed, no peer)."""


#: Seconds after a call ends before its ladder is saved (see _save_ladder_later).
LADDER_DELAY = 2.0


class Control:
    def __init__(self, engine: Engine, *, daemon: Any = None, trace: SipTrace | None = None,
                 transcripts: TranscriptLinks | None = None, keep_ended: int = 500) -> None:
        self.engine = engine
        self.daemon = daemon
        self.trace = trace or SipTrace()
        self.transcripts = transcripts or TranscriptLinks()
        self.keep_ended = keep_ended
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.version = __version__
        self.recent: OrderedDict[str, Call | CallView] = OrderedDict()
        """Every call seen, by key; ended ones beyond ``keep_ended`` dropped oldest first.
        A call the engine has forgotten is kept as its view."""
        self.transfers: OrderedDict[str, Transfer | TransferView] = OrderedDict()
        """Transfers by id, the last ``4 * keep_ended``; views once their call is forgotten."""
        self._call_transfers: dict[str, list[str]] = {}
        """Call key -> its transfers' ids, until the call is forgotten (then they become views)."""
        self.outcomes: Counter[str] = Counter()
        """Ended calls by cause (hung up, failed, cancelled, media_timeout)."""
        self.transfer_outcomes: Counter[tuple[str, str]] = Counter()
        """(method, started|succeeded|failed) -> transfers."""
        self.fallback_actions: Counter[str] = Counter()
        self.dispositions: Counter[tuple[str, str, str]] = Counter()
        """(flow, channel, disposition) -> ended calls ("" for a flow or channel of None)."""
        self.rtp_ended = RtpTotals()
        self.reloads: Counter[str] = Counter()
        self.transfer_context: dict[str, dict[str, str]] = {}
        """Transfer id -> the context the API gave it (transcript link, summary)."""
        self.public_url = ""
        self.desk: Any = None
        """The agent desk (voicegw/desk/service.DeskService) when configured: /desk."""
        """Base URL of the transcript links (set by the API server)."""
        self._ended: deque[str] = deque()
        """Keys of ended calls, oldest first (what ``_trim`` forgets)."""
        self.leg_call_ids: dict[str, set[str]] = {}
        """Call key -> SIP Call-IDs of every leg it had (failed agent legs are dropped
        from the call, but their messages belong in its ladder)."""
        self._ladders_due: dict[str, tuple[asyncio.TimerHandle, str, tuple[str, ...]]] = {}
        """Ended calls whose ladder is saved to the records in LADDER_DELAY seconds:
        key -> (timer, caller's Call-ID, the legs' Call-IDs)."""
        engine.listeners.append(self._on_timeline)
        forgotten = getattr(engine, "forgotten", None)
        if forgotten is not None:  # (tests build a Control on a stand-in engine)
            forgotten.append(self._on_forgotten)
        engine.transfers.context_source = self.transcript_context

    def transcript_context(self, call: Call) -> dict[str, str]:
        """The call's transcript link and summary, for the agent of any transfer."""
        link = self.transcripts.for_call(call.key)
        if link is None:
            return {}
        return {"transcript_url": f"{self.public_url}/t/{link.token}", "summary": link.summary}

    # ------------------------------------------------------------------ watching
    def _on_timeline(self, call: Call, now: float, event: CallEvent) -> None:
        if isinstance(event, LegEvent):
            ids = self.leg_call_ids.setdefault(call.key, set())
            for leg in call.legs():
                if leg.invite is not None:
                    ids.add(leg.invite.call_id)
        match event:
            case CallStarted():
                self.recent[call.key] = call
            case CallEnded():
                self.outcomes[event.cause or "ended"] += 1
                self._count_rtp(call)
                self._ended.append(call.key)
                self._trim()
                self._save_ladder_later(call)
            case TransferStarted():
                transfer = call.transfer
                if transfer is not None:
                    self.transfers[transfer.id] = transfer
                    self._call_transfers.setdefault(call.key, []).append(transfer.id)
                    while len(self.transfers) > self.keep_ended * 4:
                        old, _ = self.transfers.popitem(last=False)
                        self.transfer_context.pop(old, None)
                    self.transfer_outcomes[(transfer.method.value, "started")] += 1
            case TransferSucceeded() | TransferFailed():
                transfer = self.transfers.get(event.transfer_id)
                method = transfer.method.value if transfer is not None else "unknown"
                outcome = "succeeded" if isinstance(event, TransferSucceeded) else "failed"
                self.transfer_outcomes[(method, outcome)] += 1
            case CallDisposed():
                self.dispositions[(event.flow or "", event.channel or "", event.disposition)] += 1
            case FallbackDecided():
                self.fallback_actions[event.action] += 1
            case FallbackPromptPlayed():
                self.fallback_actions["prompt"] += 1

    def _on_forgotten(self, call: Call) -> None:
        """The engine let go of the call (engine/b2bua.py ``forgotten``): nothing happens
        to it any more, so keep its view instead of the call, and views of its transfers."""
        key = call.key
        for transfer_id in self._call_transfers.pop(key, ()):
            transfer = self.transfers.get(transfer_id)
            if transfer is not None:
                self.transfers[transfer_id] = transfer_view(transfer)
        if self.recent.get(key) is call:
            self.recent[key] = call_view(call, tuple(self.leg_call_ids.pop(key, ())))
        else:
            self.leg_call_ids.pop(key, None)

    def record(self, call: Call | CallView, event: CallEvent) -> None:
        """An event the API adds to a call's timeline (a transcript attached): through
        the engine's listeners while the engine holds the call; on a forgotten call's
        view and straight into the records (a bot posts the transcript after the hang-up)."""
        now = self.engine_now()
        if not isinstance(call, CallView):
            call.record(now, event)
            return
        if self.recent.get(call.key) is call:
            self.recent[call.key] = replace(call, timeline=(*call.timeline, (now, event)))
        store = self.store
        if store is not None:
            store.record(call.key, call.id, event)

    def _trim(self) -> None:
        """Forget the oldest ended calls beyond ``keep_ended`` (O(1) per call: this runs
        on the signalling path for every call)."""
        while len(self._ended) > self.keep_ended:
            key = self._ended.popleft()
            self.recent.pop(key, None)
            self.leg_call_ids.pop(key, None)

    # ------------------------------------------------------------------ ladders
    def _save_ladder_later(self, call: Call) -> None:
        """The ladder goes to the records a little after the call ends: the 200 to our
        BYE and the last ACKs cross the wire after CallEnded. Only the call's Call-IDs
        wait for it, not the call."""
        if self.store is None or call.key in self._ladders_due:
            return
        ids = tuple(self.sip_call_ids(call))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (the app built alone in tests): save now
            self._write_ladder(call.key, call.id, ids)
            return
        self._ladders_due[call.key] = (loop.call_later(LADDER_DELAY, self.save_ladder, call.key), call.id, ids)

    def save_ladder(self, key: str) -> None:
        """Write the call's SIP messages (as the trace kept them) to the records."""
        due = self._ladders_due.pop(key, None)
        if due is None:
            return
        handle, call_id, ids = due
        handle.cancel()
        self._write_ladder(key, call_id, ids)

    def _write_ladder(self, key: str, call_id: str, ids: tuple[str, ...]) -> None:
        store = self.store
        if store is None:
            return
        messages = [
            {"at": self.wall(e.time), "direction": e.direction, "peer": e.peer, "sip_call_id": cid,
             "first_line": e.first_line, "message": e.data.decode("utf-8", "replace")}
            for cid, e in self.trace.messages_for(list(ids))]
        store.save_ladder(key, call_id, messages)

    def save_pending_ladders(self) -> None:
        """At shutdown, before the records close: the ladders not yet saved."""
        for key in list(self._ladders_due):
            self.save_ladder(key)

    def _count_rtp(self, call: Call) -> None:
        relayed, dropped = rtp_counts(call)
        self.rtp_ended.relayed += relayed
        self.rtp_ended.dropped += dropped

    # ------------------------------------------------------------------ queries
    def find_call(self, call_id: str) -> Call | CallView | None:
        """By key ("Call-ID;tag") or by the caller's Call-ID, the latest such call: the
        engine's while it holds it, else the view kept of it."""
        call = self.engine.find_call(call_id)
        if call is not None:
            return call
        if call_id in self.recent:
            return self.recent[call_id]
        return next((c for c in reversed(self.recent.values()) if c.id == call_id), None)

    def calls(self, state: str = "all") -> list[Call | CallView]:
        seen: dict[str, Call | CallView] = dict(self.recent)
        for call in self.engine.calls.values():
            seen.setdefault(call.key, call)
        found = sorted(seen.values(), key=lambda c: c.created)
        if state == "active":
            return [c for c in found if c.state is not CallState.ENDED]
        if state == "ended":
            return [c for c in found if c.state is CallState.ENDED]
        return found

    def transfers_in_flight(self) -> int:
        return sum(1 for t in self.transfers.values() if not t.done)

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def wall(self, loop_time: float) -> float:
        """A loop time as wall-clock seconds."""
        return time.time() - (self.engine_now() - loop_time)

    def engine_now(self) -> float:
        try:
            return self.engine.now()
        except RuntimeError:  # no running loop (tests that build the app alone)
            return time.monotonic()

    def rtp_totals(self) -> RtpTotals:
        totals = RtpTotals(self.rtp_ended.relayed, self.rtp_ended.dropped)
        for call in self.engine.active_calls():
            relayed, dropped = rtp_counts(call)
            totals.relayed += relayed
            totals.dropped += dropped
        return totals

    def view(self, call: Call | CallView) -> CallView:
        """The call as the routes show it (a live call's view is taken now)."""
        return call_view(call, tuple(self.leg_call_ids.get(call.key, ())))

    def sip_call_ids(self, call: Call | CallView) -> list[str]:
        """The SIP Call-IDs of the call's legs (a B2BUA: one per leg)."""
        return list(call_ids(call, tuple(self.leg_call_ids.get(call.key, ()))))

    @property
    def store(self) -> Any:
        return getattr(self.daemon, "store", None) if self.daemon is not None else None


def rtp_counts(call: Call) -> tuple[int, int]:
    """(relayed, dropped) RTP packets of one call's bridges and endpoints so far."""
    relayed = dropped = 0
    for resource in call.resources:
        if not isinstance(resource, Bridge):
            continue
        stats = resource.statistics()
        for flow in (stats.a_to_b, stats.b_to_a):
            relayed += flow.packets_out
            dropped += flow.dropped
    for leg in call.legs():
        if leg.endpoint is not None:
            dropped += leg.endpoint.statistics().dropped
    return relayed, dropped
