"""The one control API in front of the workers: the same routes as a worker's
(api/app.py), answered by asking the workers' own APIs on loopback.

- ``/calls``, ``/status``, ``/metrics``, ``/trunks``, ``/debug/objects``: every
  worker's, merged (aggregate.py); a worker that does not answer (dead, restarting) is
  left out and shown in ``workers``;
- ``/reload``: every worker reloads; refused when one refuses;
- ``/records``, ``/report``, ``/probes``...: the first live worker's
  (the store is shared, so any worker tells the same);
- anything about one call or transfer (``/calls/ID/...``, ``/transfers/ID``,
  transcript links ``/t/...``): asked of each worker in turn until one knows it (a
  404 from a worker that does not have the call changes nothing there).

The bearer token is checked by the workers (they share the config's token); a 401
from a worker is passed on.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .aggregate import merge_calls, merge_metrics, merge_objects, merge_status, merge_trunks


class WorkerSet(Protocol):
    """What the API needs of the supervisor (supervisor.py)."""

    count: int
    version: str

    def worker_api(self, index: int) -> str | None:
        """The base URL of worker ``index``'s API; None while it is not running."""

    def rows(self) -> list[dict[str, Any]]:
        """One row per worker: index, pid, alive, ready, ports, restarts."""

ASK_TIMEOUT = 10.0
"""Seconds a worker's API may take; a worker that takes longer counts as not answering."""

_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding", "server", "date"}


def create_app(supervisor: WorkerSet) -> FastAPI:
    app = FastAPI(title="voicegw control API (workers)", docs_url=None, redoc_url=None, openapi_url=None)
    client = httpx.AsyncClient(timeout=ASK_TIMEOUT)
    app.state.client = client
    started = time.time()

    async def ask(index: int, request: Request, path: str, body: bytes | None = None) -> httpx.Response | None:
        url = supervisor.worker_api(index)
        if url is None:
            return None
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        try:
            return await client.request(request.method, url + path, params=request.query_params, headers=headers,
                                        content=body)
        except httpx.HTTPError:
            return None

    async def ask_all(request: Request, path: str, body: bytes | None = None) -> list[tuple[int, httpx.Response]]:
        indexes = range(supervisor.count)
        answers = await asyncio.gather(*(ask(i, request, path, body) for i in indexes))
        return [(i, a) for i, a in zip(indexes, answers) if a is not None]

    def passed_on(answer: httpx.Response) -> Response:
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
        return Response(answer.content, status_code=answer.status_code, headers=headers)

    def refused(answers: Sequence[tuple[int, httpx.Response]]) -> Response | None:
        """A 401 (or another error) from the workers, passed on; None when all said 200."""
        for _, answer in answers:
            if answer.status_code != 200:
                return passed_on(answer)
        if not answers:
            return JSONResponse({"detail": "no worker answers"}, status_code=503)
        return None

    @app.get("/health")
    async def health() -> Any:
        rows = supervisor.rows()
        up = sum(1 for row in rows if row["alive"])
        return {"status": "ok" if up else "down", "version": supervisor.version, "workers": rows}

    @app.get("/status")
    async def status(request: Request) -> Response:
        answers = await ask_all(request, "/status")
        if (problem := refused(answers)) is not None:
            return problem
        now = time.time()
        own = {"pid": os.getpid(), "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
               "uptime_seconds": now - started, "workers": supervisor.rows()}
        return JSONResponse(merge_status([a.json() for _, a in answers], own))

    @app.get("/calls")
    async def calls(request: Request) -> Response:
        answers = await ask_all(request, "/calls")
        if (problem := refused(answers)) is not None:
            return problem
        return JSONResponse(merge_calls([(i, a.json()) for i, a in answers]))

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        answers = await ask_all(request, "/metrics")
        if (problem := refused(answers)) is not None:
            return problem
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(merge_metrics([(i, a.text) for i, a in answers]), media_type=CONTENT_TYPE_LATEST)

    @app.get("/trunks")
    async def trunks(request: Request) -> Response:
        answers = await ask_all(request, "/trunks")
        if (problem := refused(answers)) is not None:
            return problem
        return JSONResponse(merge_trunks([(i, a.json()) for i, a in answers]))

    @app.get("/debug/objects")
    async def debug_objects(request: Request) -> Response:
        answers = await ask_all(request, "/debug/objects")
        if (problem := refused(answers)) is not None:
            return problem
        return JSONResponse(merge_objects([(i, a.json()) for i, a in answers]))

    @app.post("/reload")
    async def reload(request: Request) -> Response:
        answers = await ask_all(request, "/reload", await request.body())
        if not answers:
            return JSONResponse({"detail": "no worker answers"}, status_code=503)
        if any(a.status_code == 401 for _, a in answers):
            return passed_on(next(a for _, a in answers if a.status_code == 401))
        results = [(i, a.json()) for i, a in answers]
        done = all(r.get("reloaded") for _, r in results) and len(results) == supervisor.count
        detail = "; ".join(f"worker {i}: {r.get('detail')}" for i, r in results)
        return JSONResponse({"reloaded": done, "detail": detail}, status_code=200 if done else 422)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def one(path: str, request: Request) -> Response:
        """The first worker that knows the call/transfer/link (or, for the shared
        store's routes, the first that answers)."""
        body = await request.body()
        last: httpx.Response | None = None
        for index in range(supervisor.count):
            answer = await ask(index, request, "/" + path, body)
            if answer is None:
                continue
            if answer.status_code != 404:
                return passed_on(answer)
            last = answer
        if last is not None:
            return passed_on(last)
        return JSONResponse({"detail": "no worker answers"}, status_code=503)

    return app
