"""What happens to a call, its legs and its transfers: one typed event per thing.

How to read it. Every event is a small frozen dataclass named in the past tense
(aioquic's ``quic/events.py``). The engine emits them into one stream, the call's
timeline: ``Call.record(now, event)`` appends ``(now, event)`` and hands it to every
listener of the engine (``Engine.listeners``, each called as
``listener(call, now, event)``). The consumers tell events apart by type
(``isinstance`` / ``match``), never by name:

- the store (``store/records.py``) writes the call and transfer records from them;
- the control API (``api/control.py``, ``api/app.py``) keeps its calls, transfers and
  counters (which the metrics serve) and shows the timeline;
- the guard (``transport/guard.py``) counts calls per source.

A SIP status is always a field of its own (``CallEnded.status``,
``TransferFailed.status``), never part of a text that someone parses back.

Each event also has a stable dotted ``name`` (``call.ended``, ``leg.bot.dialing``,
``transfer.failed``) and a ``detail()`` (the remaining fields as a dict): these are
what the store's ``events`` table keeps and what the API's timeline shows, so the
names are the ones the records have always had. Leg events carry the leg's ``role``
(``caller``, ``bot``, ``agent``) in their name, not in their detail.

Pure: no I/O, no clock, no asyncio; the time of an event is the ``now`` it is
recorded with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Anything on a call's timeline."""

    NAME: ClassVar[str] = ""
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset()
    """Fields left out of ``detail()`` while they are None (optional extras)."""
    IN_NAME: ClassVar[frozenset[str]] = frozenset()
    """Fields that are part of ``name`` and so not repeated in ``detail()``."""

    @property
    def name(self) -> str:
        return self.NAME

    def detail(self) -> dict[str, Any]:
        """The fields besides those in the name, as the timeline shows them."""
        spec = _DETAIL.get(type(self))
        if spec is None:
            spec = _DETAIL[type(self)] = tuple(
                (f.name, f.name in self.OMIT_IF_NONE) for f in fields(self) if f.name not in self.IN_NAME)
        detail = {}
        for name, optional in spec:
            value = getattr(self, name)
            if value is not None or not optional:
                detail[name] = value
        return detail


_DETAIL: dict[type[CallEvent], tuple[tuple[str, bool], ...]] = {}
"""Per event class: (field, left out while None) of its detail, worked out once."""


# ---------------------------------------------------------------------- the call
@dataclass(frozen=True, slots=True)
class CallStarted(CallEvent):
    """A new INVITE from a caller was taken on (before any answer)."""

    NAME = "call.incoming"
    OMIT_IF_NONE = frozenset({"flow", "channel", "carrier"})
    source: str
    """Where the INVITE came from, ``transport:host:port``."""
    uri: str
    """The INVITE's Request-URI (the number or name dialled)."""
    caller: str
    """The user part of the caller's From URI (``anonymous`` when there is none)."""
    flow: str | None = None
    """The flow the call runs (None when it goes straight to ``calls.bot_uri``)."""
    channel: str | None = None
    """The channel the call came in on: its route's (``routes:``, flow/router.py), or
    ``default``; None for events made before channels existed."""
    carrier: str | None = None
    """The carrier profile the call came from: the one whose registered binding its
    Request-URI names (``line``), else the first whose ``addresses`` hold the source."""


@dataclass(frozen=True, slots=True)
class CallConnected(CallEvent):
    """The caller got a 2xx: the call is up."""

    NAME = "call.connected"
    cause: str
    """The input that connected it (``answered``)."""
    reason: str = ""
    """Why, in words (usually empty)."""


@dataclass(frozen=True, slots=True)
class CallEnded(CallEvent):
    """The call is over: every leg gets its BYE or CANCEL next."""

    NAME = "call.ended"
    OMIT_IF_NONE = frozenset({"status"})
    cause: str
    """What ended it: ``hung up``, ``failed`` (setup failed), ``cancelled`` (caller CANCEL),
    ``media_timeout`` (no RTP from a leg, engine/media_watch.py)."""
    reason: str
    """Why, in words: ``caller hung up``, ``Busy Here (bot: 486)``..."""
    status: int | None = None
    """The final SIP status the caller's INVITE got when the call ended before it was
    answered (486, 487, 503...); None when it had been answered."""


@dataclass(frozen=True, slots=True)
class CallDisposed(CallEvent):
    """How the call ended for containment (engine/disposition.py), right after CallEnded."""

    NAME = "call.disposition"
    OMIT_IF_NONE = frozenset({"method", "flow", "channel"})
    disposition: str
    """``contained``, ``transferred``, ``transfer_failed_contained``, ``abandoned``, ``failed``."""
    method: str | None = None
    """For ``transferred``: the method of the attempt an agent answered."""
    flow: str | None = None
    """The flow the call ran (CallStarted's)."""
    channel: str | None = None
    """The channel the call came in on (CallStarted's)."""


@dataclass(frozen=True, slots=True)
class SessionRefreshed(CallEvent):
    """A session refresh arrived in time (RFC 4028): the session timer restarts."""

    NAME = "call.session_refreshed"


@dataclass(frozen=True, slots=True)
class SessionExpired(CallEvent):
    """No session refresh arrived in time (RFC 4028 10): the call is ended."""

    NAME = "call.session_expired"


# ---------------------------------------------------------------------- legs
@dataclass(frozen=True, slots=True)
class LegEvent(CallEvent):
    """Something that happened on one leg; named ``leg.<role>.<WHAT>``."""

    WHAT: ClassVar[str] = ""
    IN_NAME = frozenset({"role"})
    role: str
    """The leg: ``caller``, ``bot`` or ``agent``."""

    @property
    def what(self) -> str:
        """The last part of the name (the store keeps ``<what>_at`` per leg)."""
        return self.WHAT

    @property
    def name(self) -> str:
        return f"leg.{self.role}.{self.what}"


@dataclass(frozen=True, slots=True)
class LegDialing(LegEvent):
    """Our INVITE to a bot or an agent left."""

    WHAT = "dialing"
    OMIT_IF_NONE = frozenset({"transfer_id"})
    uri: str
    """The URI dialled (the transfer target resolved)."""
    transfer_id: str | None = None
    """The transfer attempt it belongs to (agent legs)."""


@dataclass(frozen=True, slots=True)
class LegProgress(LegEvent):
    """A provisional response (1xx) to our INVITE arrived."""

    WHAT = "progress"
    status: int
    """Its SIP status (180, 183...)."""


@dataclass(frozen=True, slots=True)
class LegEarlyMedia(LegEvent):
    """The leg's 18x carried SDP: its early media is bridged to the caller."""

    WHAT = "early_media"


@dataclass(frozen=True, slots=True)
class LegAnswered(LegEvent):
    """Our INVITE on the leg got a 2xx."""

    WHAT = "answered"


@dataclass(frozen=True, slots=True)
class LegFailed(LegEvent):
    """Our INVITE on the leg failed."""

    WHAT = "failed"
    status: int | str
    """The final SIP status (int), or why there was none (``timeout``, ``transport``...)."""
    reason: str
    """The reason phrase or the failure in words."""


@dataclass(frozen=True, slots=True)
class LegAcked(LegEvent):
    """The leg's peer sent the ACK for our 2xx."""

    WHAT = "ack"


@dataclass(frozen=True, slots=True)
class LegHungUp(LegEvent):
    """The leg's peer sent BYE (answered 200)."""

    WHAT = "bye"


@dataclass(frozen=True, slots=True)
class LegRequestReceived(LegEvent):
    """An in-dialog OPTIONS or INFO arrived (answered 200, not relayed)."""

    IN_NAME = frozenset({"role", "method"})
    method: str
    """``OPTIONS`` or ``INFO``; the name ends in it, lower case."""
    content_type: str | None
    """Its body's Content-Type, if it has a body."""

    @property
    def what(self) -> str:
        return self.method.lower()


@dataclass(frozen=True, slots=True)
class LegReinvited(LegEvent):
    """The leg's peer sent a new offer (re-INVITE or UPDATE), answered by us."""

    WHAT = "reinvite"
    hold: bool
    """The offer puts voicegw on hold (sendonly, inactive or c=0.0.0.0)."""


@dataclass(frozen=True, slots=True)
class LegReofferSent(LegEvent):
    """We re-offered the leg a new direction (relaying the other side's hold/unhold)."""

    WHAT = "reinvite_sent"
    direction: str
    """The direction offered: ``sendonly``, ``inactive``, ``sendrecv``..."""


@dataclass(frozen=True, slots=True)
class LegByeSent(LegEvent):
    """We sent the leg a BYE."""

    WHAT = "bye_sent"


@dataclass(frozen=True, slots=True)
class LegByeFailed(LegEvent):
    """Our BYE on the leg got no 2xx (a challenge not answered, an error, no response):
    the call ended here all the same (RFC 3261 15), the peer may not know."""

    WHAT = "bye_failed"
    bye_status: int
    """The BYE's final status (the last 401/407 for a challenge; 408: none came)."""
    bye_reason: str
    """Why, in words (``401 challenge not answered: ...``)."""


@dataclass(frozen=True, slots=True)
class LegReplaced(LegEvent):
    """An INVITE with Replaces (RFC 3891) took the leg's place."""

    WHAT = "replaced"
    source: str
    """Where the replacing INVITE came from, ``transport:host:port``."""


@dataclass(frozen=True, slots=True)
class LegListening(LegEvent):
    """The bot stays on after a transfer, muted, hearing caller and agent mixed."""

    WHAT = "listening"


@dataclass(frozen=True, slots=True)
class LegConsulting(LegEvent):
    """A warm transfer dialled the agent for a consultation."""

    WHAT = "consulting"
    uri: str
    """The URI dialled."""
    transfer_id: str
    """The warm transfer it belongs to."""


# ---------------------------------------------------------------------- transfers
@dataclass(frozen=True, slots=True)
class TransferEvent(CallEvent):
    """Something that happened to one transfer attempt."""

    transfer_id: str
    """The attempt (``t17``): unique in this run of the daemon."""


@dataclass(frozen=True, slots=True)
class TransferStarted(TransferEvent):
    """A transfer attempt began (its outcome follows as TransferSucceeded or TransferFailed)."""

    NAME = "transfer.started"
    method: str
    """``invite``, ``refer``, ``bye`` or ``warm``."""
    target: str
    """The target as asked for (a number or a URI), before resolution."""
    trigger: str
    """Who asked: ``api``, ``flow`` or ``bot`` (the bot's REFER)."""


@dataclass(frozen=True, slots=True)
class TransferProgress(TransferEvent):
    """The attempt made progress: a 1xx from the agent, or a NOTIFY's sipfrag."""

    NAME = "transfer.progress"
    status: int
    """The SIP status reported (100, 180, 183...)."""


@dataclass(frozen=True, slots=True)
class TransferAccepted(TransferEvent):
    """The caller's side accepted our REFER (RFC 3515 2.4.2)."""

    NAME = "transfer.accepted"
    status: int
    """The REFER's final status (202)."""
    subscription: bool
    """An implicit subscription exists (false with ``Refer-Sub: false``, RFC 4488)."""


@dataclass(frozen=True, slots=True)
class TransferSucceeded(TransferEvent):
    """The attempt connected the caller."""

    NAME = "transfer.succeeded"
    status: int
    """The SIP status that said so (200, or 202 for a REFER without reports)."""
    reason: str
    """In words: ``agent answered``, ``the carrier connected the caller``..."""


@dataclass(frozen=True, slots=True)
class TransferFailed(TransferEvent):
    """The attempt failed; a fallback may follow."""

    NAME = "transfer.failed"
    status: int | str
    """The final SIP status (486, 603...) or, when there was none, why (``timeout``,
    ``policy``, ``call_state``, ``call_ended``...)."""
    reason: str
    """In words."""


@dataclass(frozen=True, slots=True)
class FallbackDecided(TransferEvent):
    """The fallback machine matched a failed attempt to a rule."""

    NAME = "transfer.fallback"
    status: int | str
    """The failure as the rules saw it (a SIP status 300-699 or a named status)."""
    rule: str
    """The rule matched (``486``, ``4xx``, ``timeout``, ``default``) or ``exhausted``."""
    action: str
    """What follows: ``next``, ``retry``, ``goto`` or ``end``."""
    why: str
    """One line for people: ``486 matched rule '4xx' (class): retry``."""


@dataclass(frozen=True, slots=True)
class WarmTransferMoved(TransferEvent):
    """The warm-transfer machine (engine/consult.py) changed state."""

    NAME = "transfer.warm"
    state: str
    """Its new state."""
    input: str
    """The input that moved it."""


@dataclass(frozen=True, slots=True)
class BriefingStarted(TransferEvent):
    """The recorded briefing started playing to the agent."""

    NAME = "transfer.briefing"


@dataclass(frozen=True, slots=True)
class LiveBriefingStarted(TransferEvent):
    """The bot briefs the agent live for a while."""

    NAME = "transfer.live_briefing"
    seconds: float
    """How long at most."""


@dataclass(frozen=True, slots=True)
class AgentDtmfReceived(TransferEvent):
    """The agent pressed a key during the consultation."""

    NAME = "transfer.agent_dtmf"
    digit: str
    """The key."""


@dataclass(frozen=True, slots=True)
class ReferReplacesSent(TransferEvent):
    """We sent the caller a REFER with Replaces toward the agent (RFC 3891)."""

    NAME = "transfer.refer_replaces"
    refer_id: str
    """The REFER's subscription id."""


@dataclass(frozen=True, slots=True)
class TransferRefused(CallEvent):
    """A bot's REFER was refused before any attempt began (target off the allow-list)."""

    NAME = "transfer.refused"
    target: str
    """The target the bot asked for."""
    status: str
    """Why: ``policy``."""


@dataclass(frozen=True, slots=True)
class FallbackPromptPlayed(CallEvent):
    """A fallback rule's prompt started playing to the caller."""

    NAME = "fallback.prompt"
    text: str | None
    """The text spoken (TTS), if any."""
    file: str | None
    """The WAV file played, if any."""


# ---------------------------------------------------------------------- flows
@dataclass(frozen=True, slots=True)
class FlowDtmfReceived(CallEvent):
    """The caller pressed a key while the flow ran."""

    NAME = "flow.dtmf"
    digit: str
    """The key."""


@dataclass(frozen=True, slots=True)
class FlowPromptStarted(CallEvent):
    """A flow node's message started playing."""

    NAME = "flow.prompt"
    node: str | None
    """The node."""


@dataclass(frozen=True, slots=True)
class FlowEnded(CallEvent):
    """The flow reached an end: the call is hung up."""

    NAME = "flow.end"
    reason: str
    """The end node's reason."""


@dataclass(frozen=True, slots=True)
class FlowResumed(CallEvent):
    """The agent hung up and the flow takes the caller back at its post-agent node."""

    NAME = "flow.post_agent"
    node: str
    """The node it goes on at."""


# ---------------------------------------------------------------------- the API
@dataclass(frozen=True, slots=True)
class TranscriptAttached(CallEvent):
    """The API attached a transcript link to the call (for the agent)."""

    NAME = "transcript.attached"
    max_uses: int
    """How often the link may be opened."""
    expires_in: float
    """Seconds until it expires."""


__all__ = [
    "AgentDtmfReceived", "BriefingStarted", "CallConnected", "CallDisposed", "CallEnded", "CallEvent", "CallStarted",
    "FallbackDecided", "FallbackPromptPlayed", "FlowDtmfReceived", "FlowEnded", "FlowPromptStarted",
    "FlowResumed", "LegAcked", "LegAnswered", "LegByeFailed", "LegByeSent", "LegConsulting", "LegDialing", "LegEarlyMedia",
    "LegEvent", "LegFailed", "LegHungUp", "LegListening", "LegProgress", "LegReinvited", "LegReofferSent",
    "LegReplaced", "LegRequestReceived", "LiveBriefingStarted", "ReferReplacesSent", "SessionExpired",
    "SessionRefreshed", "TranscriptAttached", "TransferAccepted", "TransferEvent", "TransferFailed",
    "TransferProgress", "TransferRefused", "TransferStarted", "TransferSucceeded", "WarmTransferMoved",
]
