"""The agent desk's sign-in and session security over HTTP and WebSocket (issue 15,
docs/security.md): the daemon with the desk on, spoken to by httpx and the websockets
client as a browser and as a cross-site attacker would.

Asserted on what crossed the wire: the page and its files carry a CSP that allows
nothing from elsewhere; a wrong password is 401 and the admin API token is no
password; the session cookie is HttpOnly, SameSite=Strict and Path=/desk (not Secure
on loopback); a sign-in, and a WebSocket handshake, from another origin are refused
even with a valid cookie; after 5 failures in a minute an agent's sign-in is 429,
even with the right password; a WebSocket without a session is refused; with one it
gets ``hello``; signing out ends the session.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from peers.ops import OpsDaemon

from voicegw.desk.passwords import hash_password

pytestmark = [pytest.mark.wire, pytest.mark.timeout(90)]
PASSWORD = "tr0ub4dor&3"


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsDaemon]:
    workdir = tmp_path_factory.mktemp("desk_signin")
    agents = {name: hash_password(PASSWORD) for name in ("carol", "dave", "erin")}
    daemon = OpsDaemon(Path(workdir) / "daemon", config={"desk": {"enabled": True, "agents": agents}})
    with daemon:
        yield daemon


def sign_in(ops: OpsDaemon, agent: str, password: str, origin: str | None = None) -> httpx.Response:
    headers = {"Origin": origin if origin is not None else ops.url}
    return httpx.post(f"{ops.url}/desk/sign-in", json={"agent": agent, "password": password},
                      headers=headers, timeout=10)


def test_the_page_and_its_files_are_served_with_a_csp_that_allows_nothing_from_elsewhere(ops: OpsDaemon) -> None:
    page = httpx.get(f"{ops.url}/desk", timeout=10)
    assert page.status_code == 200 and "<script src=\"/desk/static/desk.js\"" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in page.text.replace("http-equiv", ""), "no absolute URL: nothing fetched from elsewhere"
    for name in ("desk.js", "desk.css"):
        r = httpx.get(f"{ops.url}/desk/static/{name}", timeout=10)
        assert r.status_code == 200 and "content-security-policy" in r.headers
    assert httpx.get(f"{ops.url}/desk/static/../app.py", timeout=10).status_code == 404


def test_a_wrong_password_or_the_api_token_is_refused_the_right_one_sets_a_strict_cookie(ops: OpsDaemon) -> None:
    assert sign_in(ops, "carol", "wrong").status_code == 401
    assert sign_in(ops, "carol", ops.token).status_code == 401, "the admin token is no desk password"
    assert sign_in(ops, "nobody", PASSWORD).status_code == 401
    r = sign_in(ops, "carol", PASSWORD)
    assert r.status_code == 200 and r.json() == {"agent": "carol"}
    cookie = r.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/desk", "max-age=28800"):
        assert attribute in cookie, cookie
    assert "secure" not in cookie.replace("samesite", ""), "not Secure on loopback (plain HTTP)"
    me = httpx.get(f"{ops.url}/desk/me", cookies={"voicegw_desk": r.cookies["voicegw_desk"]}, timeout=10)
    assert me.status_code == 200 and me.json()["agent"] == "carol"
    assert httpx.get(f"{ops.url}/status", headers={"Authorization": f"Bearer {r.cookies['voicegw_desk']}"},
                     timeout=10).status_code == 401, "a desk session never opens the control API"


def test_a_cross_origin_sign_in_is_refused(ops: OpsDaemon) -> None:
    assert sign_in(ops, "carol", PASSWORD, origin="https://evil.example").status_code == 403
    assert sign_in(ops, "carol", PASSWORD, origin="").status_code == 403


def test_five_failures_lock_the_agent_for_a_minute_even_with_the_right_password(ops: OpsDaemon) -> None:
    for _ in range(5):
        assert sign_in(ops, "dave", "guess").status_code == 401
    r = sign_in(ops, "dave", PASSWORD)
    assert r.status_code == 429 and r.headers["retry-after"] == "60"


def test_the_websocket_needs_a_session_and_the_page_origin_and_sign_out_ends_it(ops: OpsDaemon) -> None:
    token = sign_in(ops, "erin", PASSWORD).cookies["voicegw_desk"]
    ws_url = ops.url.replace("http://", "ws://") + "/desk/ws"

    async def attempt(cookie: str | None, origin: str) -> str:
        headers = {"Cookie": f"voicegw_desk={cookie}"} if cookie else {}
        try:
            async with websockets.connect(ws_url, additional_headers=headers, origin=origin,
                                          open_timeout=5) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 5))["type"]
        except websockets.InvalidStatus as error:
            return f"refused {error.response.status_code}"

    assert asyncio.run(attempt(None, ops.url)) == "refused 403"
    assert asyncio.run(attempt(token, "https://evil.example")) == "refused 403", "cross-site WebSocket"
    assert asyncio.run(attempt(token, ops.url)) == "hello"
    out = httpx.post(f"{ops.url}/desk/sign-out", cookies={"voicegw_desk": token}, headers={"Origin": ops.url},
                     timeout=10)
    assert out.status_code == 200
    assert asyncio.run(attempt(token, ops.url)) == "refused 403", "signed out: the session is gone"
