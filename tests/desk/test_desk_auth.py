"""The desk's pure parts: scrypt password hashes, sign-in sessions that expire (and
are kept, hashed, in a real SQLite records store), the sign-in rate limit, and which
agent a desk:AGENT / desk:QUEUE target rings."""

from __future__ import annotations

import time
from pathlib import Path

from voicegw.desk.passwords import hash_password, verify_password, well_formed
from voicegw.desk.roster import Presence, Roster
from voicegw.desk.sessions import Sessions, SignInLimit, token_hash
from voicegw.store import Store


def test_a_password_verifies_against_its_hash_and_nothing_else() -> None:
    stored = hash_password("s3cret", n=2**10)
    assert well_formed(stored) and stored.startswith("scrypt$1024$8$1$")
    assert "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert hash_password("s3cret", n=2**10) != stored, "a fresh salt each time"


def test_a_malformed_hash_never_matches() -> None:
    for stored in ("", "plain", "scrypt$1000$8$1$00$00", "bcrypt$16384$8$1$00$00", "scrypt$16384$8$1$zz$00"):
        assert not well_formed(stored)
        assert not verify_password("", stored)


def test_sessions_expire_and_close() -> None:
    sessions = Sessions(ttl=100)
    s = sessions.open("alice", now=0)
    assert len(s.token) >= 40
    assert sessions.find(s.token, 99.9) == s
    assert sessions.find(s.token, 100) is None, "expired at its ttl, whatever the activity"
    t = sessions.open("alice", now=200)
    sessions.close(t.token)
    assert sessions.find(t.token, 201) is None
    assert sessions.find(None, 0) is None and sessions.find("nope", 0) is None


def test_sign_in_is_limited_per_source_and_per_agent_in_a_sliding_window() -> None:
    limit = SignInLimit(limit=3, window=60, per_source=3)
    for i in range(3):
        assert limit.allowed("10.0.0.1", "alice", i)
        limit.failed("10.0.0.1", "alice", i)
    assert not limit.allowed("10.0.0.1", "bob", 3), "the source is over its limit"
    assert not limit.allowed("10.0.0.2", "alice", 3), "the agent is over its limit"
    assert limit.allowed("10.0.0.2", "bob", 3)
    assert limit.allowed("10.0.0.1", "alice", 62), "the window moved on"


def test_a_queue_rings_its_first_available_agent_and_an_agent_only_themselves() -> None:
    roster = Roster(["alice", "bob"], {"sales": ("alice", "bob")})
    assert roster.known("sales") and roster.known("bob") and not roster.known("carol")
    assert roster.pick("sales") is None, "nobody signed in: no_agent"
    alice, bob = roster.agents["alice"], roster.agents["bob"]
    alice.connections = bob.connections = 1
    assert roster.pick("sales") is None, "signed in but away"
    bob.chosen = Presence.AVAILABLE
    assert roster.pick("sales") is bob and roster.pick("alice") is None
    alice.chosen = Presence.AVAILABLE
    assert roster.pick("sales") is alice, "the config's order"
    alice.engaged = object()
    assert alice.presence is Presence.BUSY and roster.pick("sales") is bob
    bob.connections = 0
    assert roster.pick("sales") is None and roster.pick("bob") is None


def test_a_shared_address_gets_four_times_an_agents_limit_by_default() -> None:
    limit = SignInLimit(limit=2, window=60)
    for i, agent in enumerate(["a", "a", "b", "b", "c", "c", "d", "d"]):
        assert limit.allowed("nat", agent, i)
        limit.failed("nat", agent, i)
    assert not limit.allowed("nat", "e", 9), "8 failures from one address"
    assert not limit.allowed("elsewhere", "a", 9) and limit.allowed("elsewhere", "e", 9)


def test_sessions_in_the_store_survive_a_new_process_and_a_sign_out_revokes_them(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "voicegw.db")
    now = time.time()  # the store's clock: expired rows go as new ones are written
    try:
        before = Sessions(ttl=100, records=store)
        kept, gone = before.open("alice", now=now), before.open("bob", now=now)
        before.close(gone.token)
        assert store.flush()
        row = store.desk_session(token_hash(kept.token))
        assert row is not None and row["agent"] == "alice" and row["expires_at"] == now + 100
        assert row["revoked_at"] is None and store.desk_session(kept.token) is None, "the hash, not the token"

        after = Sessions(ttl=100, records=store)  # a restarted process knows nothing yet
        assert after.find(kept.token, now + 1) is None
        digest = after.to_look_up(kept.token)
        assert digest == token_hash(kept.token)
        session = after.adopt(kept.token, store.desk_session(digest), now + 1)
        assert session is not None and session.agent == "alice" and after.find(kept.token, now + 1) == session
        assert after.to_look_up(kept.token) is None, "known now: no store read"
        assert after.adopt(gone.token, store.desk_session(token_hash(gone.token)), now + 1) is None, "revoked"
        assert after.adopt(kept.token, store.desk_session(digest), now + 100) is None, "expired"
        assert after.to_look_up("") is None and after.to_look_up("x" * 200) is None
    finally:
        store.close()
