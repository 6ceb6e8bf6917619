"""Desk sign-in sessions outlive the daemon (issue 15): they are kept in the records
store, so a restart keeps agents signed in, and a sign-out revokes them for good.

Two daemons one after the other on the same records directory, spoken to over HTTP
and WebSocket as the page does. Asserted on what crossed the wire: a cookie from
before the restart still opens ``/desk/me`` and the WebSocket (``hello``); one signed
out before the restart, one whose expiry passed and a made-up one are refused; a
sign-out after the restart is refused at once and again after a second restart. In
the database (read after the daemon stopped): only the SHA-256 of each token, never
the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
import websockets
from peers.ops import OpsDaemon

from voicegw.desk.passwords import hash_password

pytestmark = [pytest.mark.wire, pytest.mark.timeout(120)]
PASSWORD = "tr0ub4dor&3"
AGENTS = ("carol", "dave", "erin")


def sign_in(ops: OpsDaemon, agent: str) -> str:
    r = httpx.post(f"{ops.url}/desk/sign-in", json={"agent": agent, "password": PASSWORD},
                   headers={"Origin": ops.url}, timeout=10)
    assert r.status_code == 200, r.text
    return r.cookies["voicegw_desk"]


def me(ops: OpsDaemon, token: str) -> int:
    return httpx.get(f"{ops.url}/desk/me", cookies={"voicegw_desk": token}, timeout=10).status_code


def sign_out(ops: OpsDaemon, token: str) -> None:
    r = httpx.post(f"{ops.url}/desk/sign-out", cookies={"voicegw_desk": token}, headers={"Origin": ops.url},
                   timeout=10)
    assert r.status_code == 200, r.text


def socket(ops: OpsDaemon, token: str) -> str:
    """What the WebSocket says first: ``hello`` (signed in) or ``refused 403``."""
    url = ops.url.replace("http://", "ws://") + "/desk/ws"

    async def attempt() -> str:
        try:
            async with websockets.connect(url, additional_headers={"Cookie": f"voicegw_desk={token}"},
                                          origin=ops.url, open_timeout=5) as ws:
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                return f"{message['type']} {message.get('agent')}"
        except websockets.InvalidStatus as error:
            return f"refused {error.response.status_code}"

    return asyncio.run(attempt())


def rows(db: Path) -> list[tuple[str, ...]]:
    conn = sqlite3.connect(db)
    try:
        return [tuple(str(v) for v in row) for row in conn.execute("SELECT * FROM desk_sessions")]
    finally:
        conn.close()


def test_a_restart_keeps_agents_signed_in_and_a_sign_out_stays_revoked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEGW_DB", raising=False)
    records = tmp_path / "records"
    config = {"paths": {"records_dir": str(records)},
              "desk": {"enabled": True, "agents": {a: hash_password(PASSWORD) for a in AGENTS}}}
    with OpsDaemon(tmp_path / "first", config=config) as first:
        carol, dave, erin = (sign_in(first, a) for a in AGENTS)
        assert socket(first, carol) == "hello carol"
        sign_out(first, dave)
        assert me(first, dave) == 401

    db = records / "voicegw.db"
    stored = rows(db)
    hashes = {row[0] for row in stored}
    assert hashes == {hashlib.sha256(t.encode()).hexdigest() for t in (carol, dave, erin)}, stored
    assert not any(t in value for row in stored for value in row for t in (carol, dave, erin)), \
        "the database holds hashes, never a token"
    conn = sqlite3.connect(db)  # erin's session has run out while the daemon was down
    with conn:
        conn.execute("UPDATE desk_sessions SET expires_at = created_at - 1 WHERE agent = 'erin'")
    conn.close()

    with OpsDaemon(tmp_path / "second", config=config) as second:
        assert me(second, carol) == 200, "signed in before the restart: still signed in"
        assert socket(second, carol) == "hello carol"
        assert me(second, dave) == 401 and socket(second, dave) == "refused 403", "signed out stays out"
        assert me(second, erin) == 401, "expired while the daemon was down"
        assert me(second, "x" * 43) == 401 and me(second, "") == 401
        sign_out(second, carol)
        assert me(second, carol) == 401 and socket(second, carol) == "refused 403"

    with OpsDaemon(tmp_path / "third", config=config) as third:
        assert me(third, carol) == 401, "a sign-out is for good, whichever process took it"
        assert me(third, sign_in(third, "dave")) == 200
