"""``/desk`` on the control API's server: the page, sign-in and the WebSocket.

Security (docs/security.md):
- sign-in with the agent's own password (never the API token), verified against its
  scrypt hash off the loop; failures rate-limited per source and per agent (429);
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
from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .passwords import verify_password
from .service import DeskService
from .sessions import Sessions, SignInLimit

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
    sessions = Sessions(desk.config.session_ttl)
    limit = SignInLimit(desk.config.sign_in_limit, 60.0)
    static = {name: (resources.files(__package__) / "static" / name).read_bytes()
              for name in ("desk.html", *_FILES)}

    def now() -> float:
        return asyncio.get_running_loop().time()

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
        session = sessions.find(request.cookies.get(COOKIE), now())
        if session is None:
            return JSONResponse({"agent": None}, status_code=401, headers=_HEADERS)
        return JSONResponse({"agent": session.agent, "expires_in": round(session.expires - now())},
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
        session = sessions.open(agent, now())
        response = JSONResponse({"agent": agent}, headers=_HEADERS)
        response.set_cookie(COOKIE, session.token, max_age=int(desk.config.session_ttl), path="/desk",
                            httponly=True, samesite="strict", secure=desk.secure)
        return response

    @router.post("/desk/sign-out")
    async def sign_out(request: Request) -> Response:
        if not same_origin(request.headers, request.url.scheme):
            raise HTTPException(403, "cross-origin sign-out refused")
        sessions.close(request.cookies.get(COOKIE))
        response = JSONResponse({"agent": None}, headers=_HEADERS)
        response.delete_cookie(COOKIE, path="/desk")
        return response

    @router.websocket("/desk/ws")
    async def signalling(websocket: WebSocket) -> None:
        scheme = "https" if websocket.url.scheme == "wss" else "http"
        session = sessions.find(websocket.cookies.get(COOKIE), now())
        if not same_origin(websocket.headers, scheme) or session is None:
            await websocket.close(code=4403)  # before accept: the handshake gets 403
            return
        await websocket.accept()
        connection = desk.attach(session.agent, websocket.send_text)
        try:
            while True:
                text = await websocket.receive_text()
                if sessions.find(session.token, now()) is None:
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
