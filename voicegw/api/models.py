"""Request and response bodies of the control API (they make its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    detail: str


class Health(BaseModel):
    status: Literal["ok", "draining"]
    version: str


class Totals(BaseModel):
    calls: int = Field(description="Calls admitted since start.")
    answered: int
    failed: int
    by_outcome: dict[str, int] = Field(description="Ended calls by cause: hung up, failed, cancelled, media_timeout.")
    by_sip_code: dict[str, int] = Field(description="Final responses voicegw sent to INVITEs, by status code.")
    refused: dict[str, int] = Field(default_factory=dict, description=(
        "New calls voicegw refused, by cause (the Reason header's text: overload, port_pool, "
        "call_limit...); causes with no refusal are left out."))


class TransferTotals(BaseModel):
    method: str
    started: int
    succeeded: int
    failed: int


class ProcessInfo(BaseModel):
    """The daemon process's resources (from /proc; null where the platform has none)."""

    rss_bytes: int | None = Field(description="Resident memory (RSS), bytes: process_resident_memory_bytes.")
    virtual_memory_bytes: int | None
    open_fds: int | None = Field(description="Open file descriptors: process_open_fds.")
    max_fds: int | None = Field(description="The open-files limit (RLIMIT_NOFILE).")
    cpu_seconds: float | None = Field(description="User plus system CPU since start: process_cpu_seconds_total.")


class Containment(BaseModel):
    """Containment of the calls created since ``since`` (docs/operations.md)."""

    since: datetime
    calls: int = Field(description="Calls ended with a disposition.")
    reached: int = Field(description="Of those, the calls that reached the bot or the flow (all but failed).")
    contained: int
    rate: float | None = Field(description="contained / reached; null when no call reached the bot or flow.")


class Status(BaseModel):
    version: str
    pid: int
    started_at: datetime
    uptime_seconds: float
    draining: bool
    active_calls: int
    transfers_in_flight: int
    totals: Totals
    transfers: list[TransferTotals]
    sip_responses: dict[str, int] = Field(description="Responses by direction and code, e.g. 'out 200'.")
    records: dict[str, Any] | None = Field(None, description="The durable store's totals, when it runs.")
    process: ProcessInfo
    containment: Containment | None = Field(
        None, description="Today's containment (since local midnight), from the records when they run.")


class TransferInfo(BaseModel):
    id: str
    call_id: str
    method: str
    target: str
    uri: str
    trigger: str
    state: Literal["pending", "succeeded", "failed"]
    status: int | str | None
    reason: str
    started_at: datetime
    ended_at: datetime | None
    progress: list[int]
    context: dict[str, str] = Field(default_factory=dict)


class LegInfo(BaseModel):
    role: str
    peer: str
    sip_call_id: str | None
    ended: bool


class CallSummary(BaseModel):
    id: str = Field(description="The caller's Call-ID: what the CLI and the other endpoints take.")
    key: str = Field(description="Call-ID;our-tag: unique even when a caller reuses a Call-ID.")
    state: Literal["setup", "connected", "ended"]
    caller: str
    created_at: datetime
    duration_seconds: float
    legs: list[str]
    end_reason: str
    transfer: TransferInfo | None
    flow: str | None = Field(None, description="The flow the call runs; null when it went straight to a bot.")
    channel: str | None = Field(None, description="The channel the call came in on (``routes:``).")
    carrier: str | None = Field(None, description="The carrier profile the call came from: the one whose "
                                "registered binding it was sent to, else the one whose addresses hold its source.")


class TimelineEntry(BaseModel):
    at: datetime
    offset_seconds: float = Field(description="Seconds since the call arrived.")
    event: str
    detail: dict[str, Any]


class TraceMessage(BaseModel):
    at: datetime
    offset_seconds: float
    direction: Literal["in", "out"]
    peer: str
    sip_call_id: str
    first_line: str
    message: str | None = Field(None, description="The message as it crossed the wire (with ?messages=true).")


class CallDetail(CallSummary):
    legs_detail: list[LegInfo]
    timeline: list[TimelineEntry]
    trace: list[TraceMessage] = Field(description="The SIP messages of the call's legs, oldest first (bounded).")
    transcript_url: str | None


class TransferRequest(BaseModel):
    target: str = Field(min_length=1, max_length=512, description="A sip: URI or a phone number on the allow-list.")
    method: Literal["invite", "refer", "bye", "warm"] = "invite"
    """warm: consult and brief the agent first (calls.warm); complete or cancel it with
    POST /calls/{id}/transfer/complete or /cancel."""


class HangupRequest(BaseModel):
    reason: str = Field("operator", max_length=200)


class HangupResult(BaseModel):
    call_id: str
    hung_up: bool
    state: str


class ContextRequest(BaseModel):
    context: dict[str, str | None] = Field(max_length=64)
    """Context keys (``caller``, ``called``, ``bot_session``, ``summary``, ``ivr``,
    ``ivr.<property>``...) -> value; null removes the key."""


class CallContext(BaseModel):
    call_id: str
    context: dict[str, str]
    """The call's context now: what the bot handed over and the API set."""


class TranscriptRequest(BaseModel):
    transcript: str = Field(max_length=1_000_000)
    summary: str = Field("", max_length=10_000)
    max_uses: int | None = Field(None, ge=1, le=1000)
    ttl_seconds: float | None = Field(None, gt=0, le=30 * 24 * 3600)


class TranscriptLink(BaseModel):
    call_id: str
    url: str
    expires_at: datetime
    max_uses: int


class ReloadResult(BaseModel):
    reloaded: bool
    detail: str


class Report(BaseModel):
    """``GET /report``: containment and transfer outcomes per flow and channel (store/report.py)."""

    since: datetime | None
    until: datetime | None
    groups: list[dict[str, Any]] = Field(description="One per (flow, channel): calls, reached, "
                                         "containment_rate, dispositions, transferred_by_method, transfers.")
    total: dict[str, Any]


class Records(BaseModel):
    source: Literal["store", "memory"]
    records: list[dict[str, Any]]


class DebugObjects(BaseModel):
    """``GET /debug/objects``: per component, what the daemon holds now (api/debug.py)."""

    engine: dict[str, Any]
    core: dict[str, Any]
    guard: dict[str, Any]
    media: dict[str, Any]
    api: dict[str, Any]
    store: dict[str, Any]
    asyncio: dict[str, Any]
    python: dict[str, Any] = Field(
        default_factory=dict,
        description="pymalloc's allocated blocks; with PYTHONTRACEMALLOC, the bytes Python holds now and at peak.")
    gc: dict[str, Any]
    instances: dict[str, int] | None = Field(
        None, description="Live instances of the engine's classes and pending loop timers (?instances=true).")


class ProbeRequest(BaseModel):
    """``POST /probes``: probe a carrier profile's REFER support (voicegw/probe/)."""

    model_config = ConfigDict(extra="forbid")

    profile: str = Field(min_length=1, max_length=128, description="A carrier profile's name.")
    call: str | None = Field(None, min_length=1, max_length=128, description=(
        "Place a test call and REFER it to this number (or sip: URI); none: OPTIONS only."))
    dial: str | None = Field(None, min_length=1, max_length=128, description=(
        "Where the test call goes first (default: call)."))
    refer_sub: bool | None = Field(None, description="false: REFER with Refer-Sub: false; default: the profile's.")
    options_timeout: float = Field(5.0, ge=0.5, le=32.0)
    ring_timeout: float | None = Field(None, ge=1.0, le=120.0, description="Default: the profile's timeouts.ring.")
    refer_timeout: float | None = Field(None, ge=1.0, le=64.0, description="Default: timeouts.refer_response.")
    notify_timeout: float | None = Field(None, ge=1.0, le=300.0, description="Default: timeouts.notify_final.")


class ProbeInfo(BaseModel):
    """A probe: ``running`` until its report is in (``done``), or ``failed``."""

    id: str
    profile: str
    state: Literal["running", "done", "failed"]
    call: str | None
    dial: str | None
    deadline_seconds: float = Field(description="The longest the probe can take.")
    error: str
    report: dict[str, Any] | None = Field(description=(
        "options, call (what crossed the wire), verdicts (capability, result, detail), "
        "conclusion (refer_works | refer_unusable | inconclusive), recommendation."))


class TrunkRegistration(BaseModel):
    """One carrier profile's REGISTER binding (sip/registration.py). No credentials."""

    trunk: str = Field(description="The carrier profile.")
    registrar: str
    aor: str = Field(description="The address-of-record registered.")
    state: Literal["unregistered", "registering", "registered", "refreshing", "failed", "unregistering"]
    expires: int | None = Field(description="Seconds granted by the last 2xx (while registered).")
    registered_for: float | None = Field(description="Seconds since the last 2xx (while registered).")
    refresh_in: float | None = Field(description="Seconds to the next refresh (registered).")
    retry_in: float | None = Field(description="Seconds to the next try (failed, backing off).")
    last_status: int | str | None = Field(description=(
        "The last final answer: a SIP code, or timeout, transport, dns, auth."))
    reason: str = Field(description="Why the last attempt failed; empty when it did not.")
    failures: int = Field(description="Failures in a row.")
    last_rtt_ms: float | None = Field(description="Round trip of the last answered REGISTER.")


class TrunkGateway(BaseModel):
    """One gateway of a carrier profile's ``health:`` checks (an address of a listed
    gateway, or of the health target)."""

    trunk: str
    target: str = Field(description="The OPTIONS Request-URI.")
    gateway: str = Field(description="transport:host:port pinged; empty when the target did not resolve.")
    state: Literal["unknown", "up", "down"]
    last_status: int | str | None = Field(description="The last ping: a SIP code, timeout, transport or dns.")
    last_rtt_ms: float | None = Field(description="Round trip of the last answered ping.")
    pings: int
    dns_error: str = Field(description="Why the target did not resolve at the last try; empty when it did.")


class Trunks(BaseModel):
    registrations: list[TrunkRegistration]
    gateways: list[TrunkGateway]
