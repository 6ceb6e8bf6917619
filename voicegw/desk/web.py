"""``/desk`` on the control API's server: the page, sign-in and the WebSocket.

Security (docs/security.md):
- sign-in with the agent's own password (never the API token), verified against its
  scrypt hash off the loop; failures rate-limited per source and per agent (429);
- sessions are kept in the records store as SHA-256 hashes of their tokens (sessions.py),
  so a restart keeps agents signed in; sign-out revokes the row;
- the session cookie is HttpOnly, SameSite=Strict, Path=/desk, and Secure whenever the
  server is not on loopback (the config then requires TLS);
- every state-changing request (sign-in, sign-out, the WebSocket handshake) must come
  from the page's own origin: a cross-site form or socket is refused (403) even before
  the cookie is looked at (OWASP CSRF: SameSite plus an Origin check);
- the page, its script and style are files of the package, served with a CSP that
  allows nothing from elsewhere (no CDN, nothing fetched at run time).
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .passwords import verify_password
from .service import DeskService
from .sessions import Session, Sessions, SignInLimit

log = structlog.get_logger("voicegw.desk")
COOKIE = "voicegw_desk"
_FILES = {"desk.js": "text/javascript", "desk.css": "text/css"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; media-src 'self' blob:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
_SCRYPT_DUMMY = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32
"""Verified for unknown agents too, so the answer takes as long (no user enumeration)."""


def desk_router(desk: DeskService) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    records = desk.records
    sessions = Sessions(desk.config.session_ttl, records)
    limit = SignInLimit(desk.config.sign_in_limit, 60.0)
    static = {name: (resources.files(__package__) / "static" / name).read_bytes()
              for name in ("desk.html", *_FILES)}

    def now() -> float:
        return asyncio.get_running_loop().time()

    async def session_of(token: str | None) -> Session | None:
        """The cookie's session: known here, else from the store (signed in before a
        restart, or revoked by a sign-out since); wall-clock expiry (it outlives us)."""
        wall = time.time()
        digest = sessions.to_look_up(token)
        if digest is None or records is None or token is None:
            return sessions.find(token, wall)
        try:
            row = await asyncio.to_thread(records.desk_session, digest)
        except Exception as error:  # noqa: BLE001 - the store's (sqlite3, psycopg, closed): not signed in
            log.warning("desk.session_lookup_failed", error=repr(error))
            return None
        return sessions.adopt(token, row, wall)

    def same_origin(headers: Any, scheme: str) -> bool:
        origin, host = headers.get("origin"), headers.get("host")
        return origin is not None and host is not None and origin in (f"http://{host}", f"https://{host}") \
            and origin.startswith(f"{scheme}://")

    @router.get("/desk")
    async def page() -> Response:
        return HTMLResponse(static["desk.html"], headers=_HEADERS)

    @router.get("/desk/static/{name}")
    async def asset(name: str) -> Response:
        if name not in _FILES:
            raise HTTPException(404, "no such file")
        return Response(static[name], media_type=_FILES[name], headers=_HEADERS)

    @router.get("/desk/me")
    async def me(request: Request) -> Response:
        session = await session_of(request.cookies.get(COOKIE))
        if session is None:
            return JSONResponse({"agent": None}, status_code=401, headers=_HEADERS)
        return JSONResponse({"agent": session.agent, "expires_in": round(session.expires - time.time())},
                            headers=_HEADERS)

    @router.post("/desk/sign-in")
    async def sign_in(request: Request) -> Response:
        if not same_origin(request.headers, request.url.scheme):
            raise HTTPException(403, "cross-origin sign-in refused")
        try:
            body = await request.json()
            agent, password = str(body["agent"])[:64], str(body["password"])[:256]
        except (ValueError, KeyError, TypeError):
            raise HTTPException(400, "agent and password expected") from None
        source = request.client.host if request.client else "?"
        if not limit.allowed(source, agent, now()):
            raise HTTPException(429, "too many failed sign-ins: wait a minute", headers={"Retry-After": "60"})
        stored = desk.config.agents.get(agent)
        ok = await asyncio.to_thread(verify_password, password, stored or _SCRYPT_DUMMY)
        if not ok or stored is None:
            limit.failed(source, agent, now())
            raise HTTPException(401, "wrong agent or password")
        session = sessions.open(agent, time.time())
        if records is not None:
            await records.durable()  # the row is committed before the cookie is handed out
        response = JSONResponse({"agent": agent}, headers=_HEADERS)
        response.set_cookie(COOKIE, session.token, max_age=int(desk.config.session_ttl), path="/desk",
                            httponly=True, samesite="strict", secure=desk.secure)
        return response

    @router.post("/desk/sign-out")
    async def sign_out(request: Request) -> Response:
        if not same_origin(request.headers, request.url.scheme):
            raise HTTPException(403, "cross-origin sign-out refused")
        sessions.close(request.cookies.get(COOKIE))
        if records is not None:
            await records.durable()
        response = JSONResponse({"agent": None}, headers=_HEADERS)
        response.delete_cookie(COOKIE, path="/desk")
        return response

    @router.websocket("/desk/ws")
    async def signalling(websocket: WebSocket) -> None:
        scheme = "https" if websocket.url.scheme == "wss" else "http"
        session = await session_of(websocket.cookies.get(COOKIE))
        if not same_origin(websocket.headers, scheme) or session is None:
            await websocket.close(code=4403)  # before accept: the handshake gets 403
            return
        await websocket.accept()
        connection = desk.attach(session.agent, websocket.send_text)
        try:
            while True:
                text = await websocket.receive_text()
                if await session_of(session.token) is None:
                    await websocket.close(code=4401, reason="session expired")
                    return
                try:
                    message = json.loads(text)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    await desk.receive(connection, message)
        except WebSocketDisconnect:
            pass
        finally:
            desk.detach(connection)

    return router


__all__ = ["COOKIE", "desk_router"]
