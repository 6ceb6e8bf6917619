"""The control API's routes (FastAPI): thin translations of :class:`Control` to HTTP.

Every route and dependency is ``async def``: FastAPI runs plain ``def`` ones in a
thread pool, and the engine's objects may only be touched from the daemon's loop.

Every route but ``/health``, ``/openapi.json`` and the transcript links needs
``Authorization: Bearer <token>``; a missing or wrong token is 401. The schema is
generated from :mod:`voicegw.api.models` and served at ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config.types import check_context_key
from ..engine.call import Call, CallState
from ..engine.consult import ConsultError
from ..engine.events import CallStarted, TranscriptAttached
from ..engine.transfer_state import Transfer
from ..metrics import process_snapshot
from ..store import StoreUnavailable
from . import models as m
from .control import Control
from .transcripts import LinkGone
from .views import CallView, TransferView, transfer_view

_bearer = HTTPBearer(auto_error=False, description="The token from the config or var/api.token.")


def create_app(control: Control, token: str, public_url: str) -> FastAPI:
    app = FastAPI(
        title="voicegw control API", version=control.version, docs_url=None, redoc_url=None,
        description="Steer a running voicegw: calls, transfers, records, reload. "
                    "Loopback only by default; every route but /health needs the bearer token.",
    )
    app.state.control = control
    control.public_url = public_url
    expected = token.encode()

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, error: StoreUnavailable) -> JSONResponse:
        # the records database is away (PostgreSQL outage): a read fails, calls go on
        return JSONResponse({"detail": str(error)}, status_code=503)

    async def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if credentials is None or credentials.scheme.lower() != "bearer" or not secrets.compare_digest(given, expected):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorised)]
    unauthorised = {401: {"model": m.Problem, "description": "Missing or wrong bearer token."}}
    not_found = {404: {"model": m.Problem, "description": "No such call."}, **unauthorised}

    def call_or_404(call_id: str) -> Call | CallView:
        call = control.find_call(call_id)
        if call is None:
            raise HTTPException(404, f"no call {call_id!r}")
        return call

    def live_call(call_id: str) -> Call:
        """The engine's call, for the routes that act on it; one the engine has let go
        of (only its view is kept) ended: 409."""
        call = call_or_404(call_id)
        if isinstance(call, CallView):
            raise HTTPException(409, f"the call ended already ({call.end_reason})")
        return call

    desk = getattr(control, "desk", None)
    if desk is not None:  # the agent desk (voicegw/desk/web.py), only when configured
        from ..desk.web import desk_router

        app.include_router(desk_router(desk))

    @app.get("/health", response_model=m.Health, tags=["daemon"],
             responses={503: {"model": m.Health, "description": "Draining: stopping, no new calls."}})
    async def health() -> Any:
        draining = control.engine.draining
        body = m.Health(status="draining" if draining else "ok", version=control.version)
        return JSONResponse(body.model_dump(), status_code=503 if draining else 200)

    @app.get("/status", response_model=m.Status, dependencies=auth, responses=unauthorised, tags=["daemon"])
    async def status() -> m.Status:
        engine = control.engine
        trace = control.trace
        methods = sorted({method for method, _ in control.transfer_outcomes})
        records = None
        store = control.store
        containment = None
        try:  # /status answers through a records outage, without the records' parts
            if store is not None and hasattr(store, "totals"):
                records = _plain(await _maybe_await(await asyncio.to_thread(store.totals)))
                records = records if isinstance(records, dict) else {"totals": records}
            if store is not None and hasattr(store, "report"):
                midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
                today = (await asyncio.to_thread(store.report, since=midnight.timestamp()))["total"]
                containment = m.Containment(since=midnight, calls=today["calls"], reached=today["reached"],
                                            contained=today["dispositions"]["contained"],
                                            rate=today["containment_rate"])
        except StoreUnavailable:
            records, containment = None, None
        return m.Status(
            containment=containment,
            version=control.version, pid=os.getpid(), started_at=_dt(control.started_wall),
            uptime_seconds=round(control.uptime(), 3), draining=engine.draining,
            active_calls=len(engine.active_calls()), transfers_in_flight=control.transfers_in_flight(),
            totals=m.Totals(
                calls=engine.totals.get("calls", 0), answered=engine.totals.get("answered", 0),
                failed=engine.totals.get("failed", 0), by_outcome=dict(control.outcomes),
                by_sip_code={str(k): v for k, v in sorted(trace.invite_finals_sent.items())},
                refused={cause: n for cause, n in sorted(engine.refusals.counts.items()) if n},
            ),
            transfers=[m.TransferTotals(method=method, **{
                outcome: control.transfer_outcomes[(method, outcome)] for outcome in ("started", "succeeded", "failed")
            }) for method in methods],
            sip_responses={f"{d} {code}": n for (d, code), n in sorted(trace.responses.items())},
            records=records,
            process=m.ProcessInfo(**{k: v for k, v in dataclasses.asdict(process_snapshot()).items()
                                     if k != "start_time"}),
        )

    @app.get("/calls", response_model=list[m.CallSummary], dependencies=auth, responses=unauthorised, tags=["calls"])
    async def calls(state: Literal["active", "ended", "all"] = "all",
              limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> list[m.CallSummary]:
        found = control.calls(state)[-limit:]
        return [summary(control, c) for c in found]

    @app.get("/calls/{call_id}", response_model=m.CallDetail, dependencies=auth, responses=not_found, tags=["calls"])
    async def call(call_id: str, messages: bool = False) -> m.CallDetail:
        found = control.find_call(call_id)
        if found is not None:
            return detail(control, found, messages)
        store = control.store
        # a call no longer in memory (older, or before a restart): its record, off the loop
        record = await asyncio.to_thread(store.call, call_id) if store is not None else None
        if record is None:
            raise HTTPException(404, f"no call {call_id!r}")
        return detail_from_record(record, messages)

    @app.post("/calls/{call_id}/transfer", response_model=m.TransferInfo, status_code=202, dependencies=auth,
              tags=["calls"], responses={
                  **not_found,
                  403: {"model": m.Problem, "description": "The target is not on the allow-list."},
                  409: {"model": m.Problem, "description": "The call is not connected, or a transfer is under way."},
              })
    async def transfer(call_id: str, body: m.TransferRequest) -> m.TransferInfo:
        call = call_or_404(call_id)
        if call.state is not CallState.CONNECTED or isinstance(call, CallView):  # (a view: ended)
            raise HTTPException(409, f"the call is {call.state.value}, not connected")
        if call.transfer is not None and not call.transfer.done:
            raise HTTPException(409, f"transfer {call.transfer.id} is under way")
        context = control.transcript_context(call)
        started = control.engine.transfers.start(call, body.target, body.method, trigger="api", context=context)
        control.transfer_context[started.id] = context
        if started.status == "policy":
            raise HTTPException(403, f"transfer {started.id} refused: {started.reason}")
        return transfer_info(control, started)

    warm_conflict = {**not_found, 409: {"model": m.Problem, "description":
                                        "No warm transfer of this call is in a state that allows it."}}

    @app.post("/calls/{call_id}/transfer/complete", response_model=m.TransferInfo, dependencies=auth,
              tags=["calls"], responses=warm_conflict)
    async def complete_transfer(call_id: str) -> m.TransferInfo:
        """Connect the caller to the consulted agent now (a warm transfer that is briefing,
        waiting for the agent's key or waiting for this explicit complete)."""
        call = live_call(call_id)
        try:
            control.engine.transfers.warm.complete(call)
        except ConsultError as error:
            raise HTTPException(409, f"cannot complete: {error}") from None
        assert call.transfer is not None
        return transfer_info(control, call.transfer)

    @app.post("/calls/{call_id}/transfer/cancel", response_model=m.TransferInfo, dependencies=auth,
              tags=["calls"], responses=warm_conflict)
    async def cancel_transfer(call_id: str) -> m.TransferInfo:
        """Abandon a warm transfer: the agent's leg gets BYE (or CANCEL while it rings), the
        caller goes back to the bot or the flow node its fallback names."""
        call = live_call(call_id)
        warm = control.engine.transfers.warm.by_call.get(call.key)
        try:
            control.engine.transfers.warm.cancel(call)
        except ConsultError as error:
            raise HTTPException(409, f"cannot cancel: {error}") from None
        transfer = warm.transfer if warm is not None else call.transfer
        assert transfer is not None
        return transfer_info(control, transfer)

    @app.get("/transfers/{transfer_id}", response_model=m.TransferInfo, dependencies=auth, tags=["calls"],
             responses={404: {"model": m.Problem, "description": "No such transfer."}, **unauthorised})
    async def get_transfer(transfer_id: str) -> m.TransferInfo:
        found = control.transfers.get(transfer_id)
        if found is None:
            raise HTTPException(404, f"no transfer {transfer_id!r}")
        return transfer_info(control, found)

    @app.post("/calls/{call_id}/hangup", response_model=m.HangupResult, dependencies=auth, tags=["calls"],
              responses={**not_found, 409: {"model": m.Problem, "description": "The call has ended already."}})
    async def hangup(call_id: str, body: m.HangupRequest | None = None) -> m.HangupResult:
        call = live_call(call_id)
        if call.state is CallState.ENDED:
            raise HTTPException(409, f"the call ended already ({call.end_reason})")
        done = control.engine.hang_up(call, (body.reason if body else "operator") or "operator")
        return m.HangupResult(call_id=call.id, hung_up=done, state=call.state.value)

    @app.patch("/calls/{call_id}/context", response_model=m.CallContext, dependencies=auth, tags=["calls"],
               responses={**not_found, 422: {"model": m.Problem, "description": "An unknown context key."}})
    async def set_context(call_id: str, body: m.ContextRequest) -> m.CallContext:
        """Context for the call's next transfers, as the profiles' context_headers map it."""
        call = live_call(call_id)
        for key, value in body.context.items():
            try:
                check_context_key(key)
            except ValueError as error:
                raise HTTPException(422, str(error)) from None
            if value is None:
                call.context.pop(key, None)
            else:
                call.context[key] = value[:1000]
        return m.CallContext(call_id=call.id, context=dict(call.context))

    @app.post("/calls/{call_id}/transcript", response_model=m.TranscriptLink, status_code=201, dependencies=auth,
              responses=not_found, tags=["transcripts"])
    async def attach_transcript(call_id: str, body: m.TranscriptRequest) -> m.TranscriptLink:
        call = call_or_404(call_id)
        link = control.transcripts.attach(call.key, call.id, body.transcript, body.summary,
                                          max_uses=body.max_uses, ttl=body.ttl_seconds)
        url = f"{public_url}/t/{link.token}"
        control.record(call, TranscriptAttached(link.max_uses, round(link.expires - link.created)))
        return m.TranscriptLink(call_id=call.id, url=url, expires_at=_dt(link.expires), max_uses=link.max_uses)

    @app.get("/t/{token}", response_class=PlainTextResponse, tags=["transcripts"], responses={
        200: {"content": {"text/plain": {}}, "description": "The summary and the transcript."},
        404: {"model": m.Problem, "description": "No such link."},
        410: {"model": m.Problem, "description": "The link has expired or been used up."},
    })
    async def open_transcript(token: str) -> Response:
        try:
            link = control.transcripts.open(token)
        except KeyError:
            raise HTTPException(404, "no such link") from None
        except LinkGone as gone:
            raise HTTPException(410, str(gone)) from None
        text = f"Call {link.call_id}\n\nSummary:\n{link.summary}\n\nTranscript:\n{link.transcript}\n"
        return PlainTextResponse(text, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                                "X-Uses-Left": str(link.uses_left)})

    @app.get("/records", response_model=m.Records, dependencies=auth, responses=unauthorised, tags=["records"])
    async def records(since: datetime | None = None, until: datetime | None = None,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> m.Records:
        store = control.store
        if store is not None and hasattr(store, "calls"):
            # a read of the records database: off the loop, so signalling never waits on disk
            rows = await _maybe_await(await asyncio.to_thread(
                store.calls, since=_epoch(since), until=_epoch(until), limit=limit))
            return m.Records(source="store", records=[_plain(r) for r in rows])
        low, high = _epoch(since), _epoch(until)
        found = []
        for call in control.calls("all"):
            created = control.wall(call.created)
            if (low is None or created >= low) and (high is None or created < high):
                found.append(summary(control, call).model_dump(mode="json"))
        return m.Records(source="memory", records=found[-limit:])

    @app.get("/report", response_model=m.Report, dependencies=auth, tags=["records"], responses={
        **unauthorised, 503: {"model": m.Problem, "description": "The records store is not running."}})
    async def report(since: datetime | None = None, until: datetime | None = None) -> m.Report:
        """Containment and transfer outcomes per flow and channel of the calls created in
        [since, until) (docs/operations.md, Containment)."""
        store = control.store
        if store is None or not hasattr(store, "report"):
            raise HTTPException(503, "the records store is not running")
        # a read of the records database: off the loop, as /records
        data = await asyncio.to_thread(store.report, since=_epoch(since), until=_epoch(until))
        return m.Report(since=since, until=until, **data)

    @app.post("/reload", response_model=m.ReloadResult, dependencies=auth, tags=["daemon"], responses={
        **unauthorised, 422: {"model": m.ReloadResult, "description": "Refused: the running config stays."},
    })
    async def reload() -> Any:
        reload_fn = getattr(control.daemon, "reload", None)
        if reload_fn is None:
            return JSONResponse({"reloaded": False, "detail": "reload is not available"}, status_code=422)
        ok, text = reload_fn(trigger="api")
        return JSONResponse({"reloaded": ok, "detail": text}, status_code=200 if ok else 422)

    probes: list[Any] = []  # the daemon's Probes, made at the first probe

    def probe_registry() -> Any:
        from ..probe.runner import Probes

        if control.daemon is None or not hasattr(control.daemon, "taps"):
            raise HTTPException(503, "probes need the daemon's SIP endpoint")
        if not probes:
            probes.append(Probes(control.daemon))
        return probes[0]

    @app.post("/probes", response_model=m.ProbeInfo, status_code=202, dependencies=auth, tags=["carriers"],
              responses={**unauthorised,
                         404: {"model": m.Problem, "description": "No such profile."},
                         422: {"model": m.Problem, "description": "Not a carrier profile, no trunk, a bad number."},
                         503: {"model": m.Problem, "description": "No SIP endpoint to probe from."}})
    async def start_probe(body: m.ProbeRequest) -> m.ProbeInfo:
        """Probe a carrier's REFER support (docs/operations.md, Probing a carrier): OPTIONS,
        and with ``call`` a test call REFERed to that number. Poll ``GET /probes/{id}``."""
        from ..probe.plan import ProbeError, ProbeSettings

        settings = ProbeSettings(**body.model_dump())
        try:
            run = probe_registry().start(settings)
        except ProbeError as error:
            raise HTTPException(error.status, error.message) from None
        return m.ProbeInfo(**run.as_dict())

    @app.get("/probes/{probe_id}", response_model=m.ProbeInfo, dependencies=auth, tags=["carriers"],
             responses={**unauthorised, 404: {"model": m.Problem, "description": "No such probe."}})
    async def get_probe(probe_id: str) -> m.ProbeInfo:
        run = probes[0].runs.get(probe_id) if probes else None
        if run is None:
            raise HTTPException(404, f"no probe {probe_id!r}")
        return m.ProbeInfo(**run.as_dict())

    @app.get("/trunks", response_model=m.Trunks, dependencies=auth, responses=unauthorised, tags=["carriers"])
    async def trunks() -> m.Trunks:
        """Each carrier profile's registration (``register:``): state, grant, next refresh
        or retry, the last answer and why it failed; and each gateway's health (``health:``)."""
        registrations = getattr(control.daemon, "registrations", None)
        rows = registrations.statuses() if registrations is not None else []
        gateways = getattr(control.daemon, "gateways", None)
        pinged = gateways.statuses() if gateways is not None else []
        return m.Trunks(registrations=[m.TrunkRegistration(**row) for row in rows],
                        gateways=[m.TrunkGateway(**row) for row in pinged])

    @app.get("/metrics", dependencies=auth, tags=["daemon"], response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
                        **unauthorised})
    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        registry = getattr(request.app.state, "registry", None)
        body = generate_latest(registry) if registry is not None else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/debug/objects", response_model=m.DebugObjects, dependencies=auth, responses=unauthorised,
             tags=["daemon"])
    async def debug_objects(instances: bool = False, collect: bool = False) -> m.DebugObjects:
        """What the daemon holds now, per component (api/debug.py): after a load, once
        its calls are over and forgotten, every count is back to its value before."""
        from .debug import objects_snapshot

        return m.DebugObjects(**objects_snapshot(control, instances=instances, collect=collect))

    return app


# ---------------------------------------------------------------------- serialisation
def detail_from_record(record: dict[str, Any], messages: bool) -> m.CallDetail:
    """A call's detail from the records (store.call): what the in-memory detail shows,
    as far as the records keep it (no live leg state, no transcript link)."""
    created = record["created_at"]
    end = record["ended_at"] if record["ended_at"] is not None else record["last_event_at"]
    transfers = record.get("transfers") or []
    last = transfers[-1] if transfers else None
    transfer = None if last is None else m.TransferInfo(
        id=last["transfer_id"], call_id=record["call_id"], method=last["method"], target=last["target"],
        uri=last["uri"] or "", trigger=last["trigger"] or "", state=last["state"],
        status=last["sip_status"] if last["sip_status"] is not None else last["status"],
        reason=last["reason"] or "", started_at=_dt(last["started_at"]),
        ended_at=_dt(last["ended_at"]) if last["ended_at"] is not None else None,
        progress=list(last["progress"]))
    legs = record.get("legs") or {}
    return m.CallDetail(
        id=record["call_id"], key=record["key"], state=record["state"], caller=record["caller"] or "",
        created_at=_dt(created), duration_seconds=round(max(0.0, end - created), 3), legs=list(legs),
        end_reason=record["end_reason"] or "", transfer=transfer,
        flow=record.get("flow"), channel=record.get("channel"), carrier=_carrier(record),
        legs_detail=[m.LegInfo(role=role, peer=str((leg or {}).get("uri") or ""), sip_call_id=None,
                               ended=record["state"] == "ended") for role, leg in legs.items()],
        timeline=[m.TimelineEntry(at=_dt(e["at"]), offset_seconds=round(e["at"] - created, 3),
                                  event=e["event"], detail=e["detail"]) for e in record.get("events", [])],
        trace=[m.TraceMessage(at=_dt(t["at"]), offset_seconds=round(t["at"] - created, 3),
                              direction=t["direction"], peer=t["peer"], sip_call_id=t["sip_call_id"],
                              first_line=t["first_line"], message=t["message"] if messages else None)
               for t in record.get("ladder", [])],
        transcript_url=None)


def _dt(wall: float) -> datetime:
    return datetime.fromtimestamp(wall, tz=UTC)


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "_asdict"):
        return _plain(value._asdict())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def transfer_info(control: Control, transfer: Transfer | TransferView) -> m.TransferInfo:
    view = transfer_view(transfer)
    return m.TransferInfo(
        id=view.id, call_id=view.call_key.split(";", 1)[0], method=view.method,
        target=view.target, uri=view.uri, trigger=view.trigger,
        state=view.state.value, status=view.status, reason=view.reason,
        started_at=_dt(control.wall(view.started)),
        ended_at=_dt(control.wall(view.ended)) if view.ended is not None else None,
        progress=list(view.progress), context=control.transfer_context.get(view.id, {}),
    )


def _carrier(record: dict[str, Any]) -> str | None:
    """A recorded call's carrier: its ``call.incoming`` event says it."""
    incoming = next((e for e in record.get("events", []) if e["event"] == CallStarted.NAME), None)
    detail = incoming["detail"] if incoming is not None else None
    return detail.get("carrier") if isinstance(detail, dict) else None


def summary(control: Control, call: Call | CallView) -> m.CallSummary:
    view = control.view(call)
    duration = (view.ended if view.ended is not None else control.engine_now()) - view.created
    return m.CallSummary(
        id=view.id, key=view.key, state=view.state.value, caller=view.caller,
        created_at=_dt(control.wall(view.created)), duration_seconds=round(max(0.0, duration), 3),
        legs=[leg.role for leg in view.legs], end_reason=view.end_reason,
        transfer=transfer_info(control, view.transfer) if view.transfer is not None else None,
        flow=view.flow, channel=view.channel, carrier=view.carrier,
    )


def detail(control: Control, call: Call | CallView, messages: bool) -> m.CallDetail:
    view = control.view(call)
    base = summary(control, view)
    legs = [m.LegInfo(role=leg.role, peer=leg.peer, sip_call_id=leg.sip_call_id, ended=leg.ended)
            for leg in view.legs]
    timeline = [m.TimelineEntry(at=_dt(control.wall(t)), offset_seconds=round(t - view.created, 3),
                                event=event.name, detail=_plain(event.detail())) for t, event in view.timeline]
    trace = [m.TraceMessage(at=_dt(control.wall(e.time)), offset_seconds=round(e.time - view.created, 3),
                            direction=e.direction, peer=e.peer, sip_call_id=cid, first_line=e.first_line,  # type: ignore[arg-type]
                            message=e.data.decode("utf-8", "replace") if messages else None)
             for cid, e in control.trace.messages_for(list(view.sip_call_ids))]
    link = control.transcripts.for_call(view.key)
    return m.CallDetail(**base.model_dump(), legs_detail=legs, timeline=timeline, trace=trace,
                        transcript_url=None if link is None else f"{control.public_url}/t/{link.token}")
