"""RFC 4028 session timers on the caller's leg.

voicegw lets the caller refresh (it said ``Supported: timer``) and, as the side that
is not the refresher, sends BYE shortly before the interval runs out (RFC 4028 10).
An interval below our minimum is refused with 422 and ``Min-SE`` (RFC 4028 6).
"""

from __future__ import annotations

from ..sip.message import Request
from .call import Call, CallInput, Leg
from .events import SessionExpired, SessionRefreshed
from .ports import CallHost

MIN_SE = 90  # RFC 4028 4: the minimum session interval, and our Min-SE


def session_interval(invite: Request) -> int | None:
    value = invite.headers.get("session-expires")
    if value is None:
        return None
    number = value.split(";", 1)[0].strip()
    return int(number) if number.isdigit() and len(number) < 10 else None


def supports_timer(invite: Request) -> bool:
    return any(tag.strip() == "timer" for value in invite.headers.values("supported") for tag in value.split(","))


class SessionTimers:
    def __init__(self, engine: CallHost) -> None:
        self.engine = engine

    @staticmethod
    def headers(call: Call) -> list[tuple[str, str]]:
        """What our 2xx (and refresh answers) carry; nothing without a timer."""
        if call.session_expires is None:
            return []
        return [("Session-Expires", f"{call.session_expires};refresher=uac"), ("Require", "timer")]

    def arm(self, call: Call) -> None:
        if call.session_expires is None:
            return
        call.cancel_timer("session")
        interval = call.session_expires
        delay = interval - min(32, interval / 3)
        call.timers["session"] = self.engine.loop.call_later(delay, self._expired, call)

    def refresh(self, call: Call, leg: Leg) -> list[tuple[str, str]]:
        """A re-INVITE or UPDATE from the caller refreshes the session."""
        if leg is not call.caller or call.session_expires is None:
            return []
        self.arm(call)
        call.record(self.engine.now(), SessionRefreshed())
        return self.headers(call)

    def _expired(self, call: Call) -> None:
        call.record(self.engine.now(), SessionExpired())
        self.engine.end(call, CallInput.HUNG_UP, "session timer expired")
