"""Desk sign-in sessions and the sign-in rate limit. Pure: the caller passes ``now``.

A session is a random 256-bit token (the cookie's value) that names one agent; it
expires ``ttl`` seconds after sign-in whatever the activity (an agent signs in once a
shift). Times are wall-clock Unix seconds, since a session outlives the process.

Sessions are kept in the records store when there is one (``SessionRecords``: the
``desk_sessions`` table), so a restart of the daemon keeps agents signed in. The store
holds only the SHA-256 of a token: a copy of the database (a backup, a replica) signs
nobody in. A plain hash is enough for a 256-bit random secret (nothing to guess, no
dictionary to try), unlike passwords, which get scrypt (passwords.py). Sign-out
revokes the row. This process keeps the sessions it has seen in memory; a token it
does not know is looked up in the store (``to_look_up``: the web layer runs the query
off the loop) and kept once found (``adopt``).

Sign-in failures are counted per source address and per agent name in a
sliding window: past the limit either way, sign-in is refused (429) until the
window has moved on, so a password cannot be guessed at speed from one address or
spread over many against one agent (OWASP authentication cheat sheet).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    agent: str
    expires: float


class SessionRecords(Protocol):
    """Where sessions outlive the process (store.base.RecordStore)."""

    def open_desk_session(self, token_hash: str, agent: str, expires_at: float) -> bool: ...

    def revoke_desk_session(self, token_hash: str) -> bool: ...

    def desk_session(self, token_hash: str) -> dict[str, Any] | None: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, ttl: float, records: SessionRecords | None = None) -> None:
        self.ttl = ttl
        self.records = records
        self._by_token: dict[str, Session] = {}

    def open(self, agent: str, now: float) -> Session:
        self._expire(now)
        session = Session(secrets.token_urlsafe(32), agent, now + self.ttl)
        self._by_token[session.token] = session
        if self.records is not None:
            self.records.open_desk_session(token_hash(session.token), agent, session.expires)
        return session

    def find(self, token: str | None, now: float) -> Session | None:
        """The session of ``token`` among those this process knows (no store access)."""
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None or session.expires <= now:
            self._by_token.pop(token or "", None)
            return None
        return session

    def to_look_up(self, token: str | None) -> str | None:
        """The hash to look up in the store (``SessionRecords.desk_session``, blocking:
        the web layer runs it off the loop) for a token this process does not know."""
        if not token or self.records is None or len(token) > 128 or token in self._by_token:
            return None
        return token_hash(token)

    def adopt(self, token: str, row: dict[str, Any] | None, now: float) -> Session | None:
        """The session of a store row (a sign-in before a restart), now known here; None
        when there is no row, or it was revoked or has expired."""
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= now:
            return None
        session = Session(token, str(row["agent"]), float(row["expires_at"]))
        self._by_token[token] = session
        return session

    def close(self, token: str | None) -> None:
        """Sign-out: forgotten here and revoked in the store."""
        if not token:
            return
        self._by_token.pop(token, None)
        if self.records is not None and len(token) <= 128:
            self.records.revoke_desk_session(token_hash(token))

    def _expire(self, now: float) -> None:
        for token in [t for t, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[token]

    def __len__(self) -> int:
        return len(self._by_token)


class SignInLimit:
    """At most ``limit`` failed sign-ins per ``window`` seconds per agent, and
    ``per_source`` (default 4 x ``limit``) per source address: a contact centre's
    agents often share one NAT address, and one agent's typos must not lock them all."""

    def __init__(self, limit: int = 5, window: float = 60.0, per_source: int | None = None) -> None:
        self.limit, self.window = limit, window
        self.per_source = per_source if per_source is not None else 4 * limit
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return deque()
        return times

    def allowed(self, source: str, agent: str, now: float) -> bool:
        return (len(self._recent(f"s:{source}", now)) < self.per_source
                and len(self._recent(f"a:{agent}", now)) < self.limit)

    def failed(self, source: str, agent: str, now: float) -> None:
        for key in (f"s:{source}", f"a:{agent}"):
            self._failures.setdefault(key, deque()).append(now)


__all__ = ["Session", "SessionRecords", "Sessions", "SignInLimit", "token_hash"]
