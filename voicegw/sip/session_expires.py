"""RFC 4028 session timers: the header fields and the negotiation, as pure functions.

The INVITE session (:mod:`voicegw.sip.invite_session`) owns the timers; this module
only reads and writes the header fields and decides who refreshes:

- ``Session-Expires = ("Session-Expires" / "x") HCOLON delta-seconds *(SEMI se-params)``,
  ``se-params = refresher-param / generic-param``,
  ``refresher-param = "refresher" EQUAL ("uas" / "uac")`` (RFC 4028 4);
- ``Min-SE = "Min-SE" HCOLON delta-seconds *(SEMI generic-param)``;
- the minimum session interval is 90 s (RFC 4028 4: "MUST NOT be less than 90 seconds").

A refresher named ``uac``/``uas`` is relative to the transaction that negotiated it:
``uac`` is the side that sent the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from .message import Request, Response

#: RFC 4028 4: the smallest interval anyone may ask for.
MIN_SE_FLOOR = 90
#: Longest delta-seconds we read (RFC 3261 25.1: "delta-seconds = 1*DIGIT"; more than
#: 2**32-1 would be silly, and a cap keeps int() on hostile input cheap).
_MAX_DIGITS = 10


def _delta_seconds(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit() or len(text) > _MAX_DIGITS or not text.isascii():
        return None
    return int(text)


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """One Session-Expires header field."""

    interval: int
    """The session interval in seconds."""
    refresher: str | None = None
    """``"uac"``, ``"uas"`` or None when the sender left the choice to the UAS."""

    @classmethod
    def parse(cls, value: str) -> SessionExpires | None:
        """None when the value does not follow the grammar (we then ignore it)."""
        first, *params = value.split(";")
        interval = _delta_seconds(first)
        if interval is None:
            return None
        refresher = None
        for param in params:
            name, _, val = param.partition("=")
            if name.strip().lower() == "refresher":
                val = val.strip().lower()
                refresher = val if val in ("uac", "uas") else None
        return cls(interval, refresher)

    def __str__(self) -> str:
        return f"{self.interval}" + (f";refresher={self.refresher}" if self.refresher else "")


def session_expires(message: Request | Response) -> SessionExpires | None:
    """The message's Session-Expires (the compact ``x`` maps to it), if usable."""
    value = message.headers.get("session-expires")
    return None if value is None else SessionExpires.parse(value)


def min_se(message: Request | Response) -> int | None:
    value = message.headers.get("min-se")
    return None if value is None else _delta_seconds(value.split(";", 1)[0])


def supports_timer(message: Request | Response) -> bool:
    """``timer`` in Supported (or Require)."""
    for key in ("supported", "require"):  # "k" maps to supported
        for value in message.headers.values(key):
            if any(tag.strip().lower() == "timer" for tag in value.split(",")):
                return True
    return False


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What one refresh transaction settled."""

    interval: int
    we_refresh: bool

    def refresh_after(self) -> float:
        """RFC 4028 10: the refresher refreshes at half the interval."""
        return self.interval / 2

    def expire_after(self) -> float:
        """RFC 4028 10: "the minimum of 32 seconds and one third of the session
        interval" before it runs out, the side that has heard nothing sends BYE."""
        return self.interval - min(32.0, self.interval / 3)


@dataclass(frozen=True, slots=True)
class UasDecision:
    """How we (the UAS of a request) answer its Session-Expires."""

    negotiated: Negotiated | None
    """None: no session timer for this session from now on."""
    too_brief: bool = False
    """Refuse with 422 and ``Min-SE`` (RFC 4028 8.1)."""
    headers: tuple[tuple[str, str], ...] = ()
    """What our 2xx carries."""


def uas_negotiate(request: Request, our_min_se: int) -> UasDecision:
    """RFC 4028 8.1 and 9 for a request we received (INVITE, re-INVITE or UPDATE).

    No Session-Expires: no timer. Below our Min-SE: 422 when the UAC supports timers
    (8.1: it can retry); otherwise we raise the interval to our Min-SE ourselves and
    refresh (9: a UAC without timer support cannot be the refresher). The refresher
    the request names is kept; with none, the UAC refreshes if it supports timers
    (voicegw lets callers refresh) and we do if it does not.
    """
    asked = session_expires(request)
    if asked is None:
        return UasDecision(None)
    supported = supports_timer(request)
    interval = asked.interval
    floor = max(our_min_se, MIN_SE_FLOOR)
    if interval < floor:
        if supported:
            return UasDecision(None, too_brief=True, headers=(("Min-SE", str(floor)),))
        interval = floor
    refresher = asked.refresher if supported and asked.refresher else (
        "uac" if supported else "uas")
    headers: tuple[tuple[str, str], ...] = (
        ("Session-Expires", str(SessionExpires(interval, refresher))),
    )
    if refresher == "uac":
        # 9: "If the refresher parameter in the Session-Expires header field in the 2xx
        # response has a value of 'uac', the UAS MUST place a Require header field into
        # the response with the value 'timer'."
        headers += (("Require", "timer"),)
    return UasDecision(Negotiated(interval, refresher == "uas"), headers=headers)


def uac_negotiated(response: Response) -> Negotiated | None:
    """RFC 4028 7.2: what the 2xx to our request settled; None: no session timer."""
    answered = session_expires(response)
    if answered is None:
        return None
    # 7.2: with no refresher in the 2xx (cannot happen with a compliant UAS) the UAC
    # refreshes
    return Negotiated(max(answered.interval, MIN_SE_FLOOR), answered.refresher != "uas")


def uac_headers(interval: int, our_min_se: int, refresher: str | None) -> list[tuple[str, str]]:
    """What our INVITE, re-INVITE or UPDATE carries to ask for (or keep) a session timer
    (RFC 4028 7.1, 7.4)."""
    return [
        ("Supported", "timer"),
        ("Session-Expires", str(SessionExpires(interval, refresher))),
        ("Min-SE", str(max(our_min_se, MIN_SE_FLOOR))),
    ]


__all__ = [
    "MIN_SE_FLOOR",
    "Negotiated",
    "SessionExpires",
    "UasDecision",
    "min_se",
    "session_expires",
    "supports_timer",
    "uac_headers",
    "uac_negotiated",
    "uas_negotiate",
]
