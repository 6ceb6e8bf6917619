"""Desk sign-in sessions and the sign-in rate limit. Pure: the caller passes ``now``.

A session is a random 256-bit token (the cookie's value) that names one agent; it
expires ``ttl`` seconds after sign-in whatever the activity (an agent signs in once a
shift). Sign-in failures are counted per source address and per agent name in a
sliding window: past the limit either way, sign-in is refused (429) until the
window has moved on, so a password cannot be guessed at speed from one address or
spread over many against one agent (OWASP authentication cheat sheet).
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    agent: str
    expires: float


class Sessions:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._by_token: dict[str, Session] = {}

    def open(self, agent: str, now: float) -> Session:
        self._expire(now)
        session = Session(secrets.token_urlsafe(32), agent, now + self.ttl)
        self._by_token[session.token] = session
        return session

    def find(self, token: str | None, now: float) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None or session.expires <= now:
            self._by_token.pop(token or "", None)
            return None
        return session

    def close(self, token: str | None) -> None:
        self._by_token.pop(token or "", None)

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


__all__ = ["Session", "Sessions", "SignInLimit"]
