"""Transcript links: a call's transcript and summary behind an unguessable URL.

The bot (or any API client) attaches them to a call; voicegw serves them at
``/t/<token>``, where the token (``secrets.token_urlsafe(24)``, 192 random bits) is
the only credential: the agent's desk opens the link without the API token. A link
works ``max_uses`` times (default 10) until it expires (default 24 h); after that it
answers 410 Gone, and a token never issued 404. The link goes to the agent in the
transfer's context (``transcript_url``, ``summary``).

Kept in memory, bounded: the oldest links are dropped past ``limit``. A restart
invalidates every link (by design: nothing secret is written to disk).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(eq=False)
class Transcript:
    token: str
    call_key: str
    call_id: str
    transcript: str
    summary: str
    created: float
    """Wall-clock seconds."""
    expires: float
    max_uses: int
    uses: int = 0

    @property
    def uses_left(self) -> int:
        return max(0, self.max_uses - self.uses)


class LinkGone(Exception):
    """The link existed but is used up or expired (410)."""


class TranscriptLinks:
    def __init__(self, max_uses: int = 10, ttl: float = 24 * 3600.0, limit: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_uses = max_uses
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._links: OrderedDict[str, Transcript] = OrderedDict()
        self._by_call: dict[str, Transcript] = {}

    def attach(self, call_key: str, call_id: str, transcript: str, summary: str = "",
               max_uses: int | None = None, ttl: float | None = None) -> Transcript:
        now = self.clock()
        link = Transcript(secrets.token_urlsafe(24), call_key, call_id, transcript, summary, now,
                          now + (self.ttl if ttl is None else ttl),
                          self.max_uses if max_uses is None else max_uses)
        self._links[link.token] = link
        self._by_call[call_key] = link
        while len(self._links) > self.limit:
            _, old = self._links.popitem(last=False)
            if self._by_call.get(old.call_key) is old:
                del self._by_call[old.call_key]
        return link

    def for_call(self, call_key: str) -> Transcript | None:
        """The call's latest link while it still works."""
        link = self._by_call.get(call_key)
        if link is None or link.uses_left == 0 or self.clock() >= link.expires:
            return None
        return link

    def open(self, token: str) -> Transcript:
        """Count one use. KeyError: never issued (404); LinkGone: used up or expired (410)."""
        link = self._links[token]
        if self.clock() >= link.expires:
            raise LinkGone("the link has expired")
        if link.uses_left == 0:
            raise LinkGone("the link has been used up")
        link.uses += 1
        return link
