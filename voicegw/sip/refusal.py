"""Refusals: a request voicegw turns away for its own reasons, and which reason.

Every place that refuses a new call because of voicegw's own state (the guard's
overload and call limits, the core's transaction limit, the RTP port pool, a drain)
or relays a bot's refusal builds its answer here, with :func:`refusal_response`:

- the status and a reason phrase that names the cause in words
  (``503 Service Unavailable (no free RTP port)``);
- ``Reason: SIP;cause=503;text="port_pool"`` (RFC 3326 section 2: the protocol is
  SIP, the cause its status code, the text a stable token, never free prose);
- ``Retry-After`` on a 503 (RFC 3261 21.5.4: the caller may try again later; a carrier
  reads it to route to another node meanwhile).

The cause's value (``port_pool``) is the same word in the Reason header, in the
daemon's ``call.refused`` log line and in the ``voicegw_calls_refused_total{cause}``
metric: grep for one and find the others. Adding a cause is adding a row to
``REFUSALS``; changing a value breaks operators' alerts, so values never change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .build import make_response, reason_phrase
from .errors import SipError
from .message import Headers, Request, Response


class Cause(enum.Enum):
    OVERLOAD = "overload"
    """The event loop runs late (guard ``max_loop_lag``): for ``overload_hold`` seconds."""
    TRANSACTION_LIMIT = "transaction_limit"
    """``max_transactions`` transactions wait for a final response (the UA core)."""
    CALL_LIMIT = "call_limit"
    """``max_calls`` calls are up (the guard)."""
    SOURCE_LIMIT = "source_limit"
    """One non-whitelisted source already has ``max_calls_per_source`` calls up."""
    STORE_BACKLOG = "store_backlog"
    """The records store's queue passed its mark (``max_queue``, 10,000 entries): new calls wait
    until it is under half, so that no record of the calls up is lost (store/writer.py)."""
    PORT_POOL = "port_pool"
    """No free RTP port left in ``calls.rtp_port_min``-``rtp_port_max``."""
    DRAINING = "draining"
    """The daemon is stopping (SIGTERM): new calls go elsewhere, calls being set up end."""
    OPERATOR = "operator"
    """Hung up through the control API while it was being set up."""
    BOT_FAILED = "bot_failed"
    """The bot refused the call or never answered (its status is the Reason's cause)."""
    NO_APPLICATION = "no_application"
    """The daemon runs without a call engine: every new request is refused."""
    BAD_REQUEST = "bad_request"
    """The INVITE cannot start a dialog (no usable Contact, RFC 3261 8.1.1.8): answered
    400 naming the problem; counted here so that every ``call.refused`` line is."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    detail: str
    """In the reason phrase, for people reading a trace."""
    retry_after: int | None
    """Seconds, for Retry-After; None: no header (the condition is not transient)."""


#: cause -> how it is answered. 503 is "temporarily unable to process the request due
#: to a temporary overloading or maintenance" (RFC 3261 21.5.4); a call hung up while
#: ringing gets 480 (21.4.18), as a callee who is not available would.
REFUSALS: dict[Cause, Refusal] = {
    Cause.OVERLOAD: Refusal(503, "overloaded", 5),
    Cause.TRANSACTION_LIMIT: Refusal(503, "too many transactions", 5),
    Cause.CALL_LIMIT: Refusal(503, "too many calls", 5),
    Cause.SOURCE_LIMIT: Refusal(503, "too many calls from this source", 5),
    Cause.STORE_BACKLOG: Refusal(503, "records store behind", 5),
    Cause.PORT_POOL: Refusal(503, "no free RTP port", 5),
    Cause.DRAINING: Refusal(503, "shutting down", 30),
    Cause.OPERATOR: Refusal(480, "hung up by an operator", None),
    Cause.BOT_FAILED: Refusal(480, "bot unavailable", None),
    Cause.NO_APPLICATION: Refusal(480, "no call engine", None),
    Cause.BAD_REQUEST: Refusal(400, "bad request", None),
}


class Refused(SipError):
    """A refusal raised or returned by a layer that does not build responses itself
    (the guard's admission): the UA core answers it with :func:`refusal_response`."""

    def __init__(self, cause: Cause, detail: str | None = None) -> None:
        refusal = REFUSALS[cause]
        super().__init__(detail or refusal.detail, status=refusal.status)
        self.cause = cause


def reason_header(cause: Cause, code: int) -> str:
    """``SIP;cause=503;text="overload"`` (RFC 3326: ``reason-value = protocol *(SEMI
    reason-params)``, ``protocol-cause = "cause" EQUAL cause``, ``reason-text = "text"
    EQUAL quoted-string``). The text is a token of ours: no quoting needed."""
    return f'SIP;cause={code};text="{cause.value}"'


def refusal_response(request: Request, cause: Cause, *, to_tag: str | None, status: int | None = None,
                     detail: str | None = None, cause_code: int | None = None) -> Response:
    """The answer refusing ``request`` for ``cause``: status (the cause's, unless
    ``status`` is given), reason phrase with ``detail``, Reason and Retry-After.
    ``cause_code`` puts another status in the Reason header (the bot's 486 behind our
    486, its 408 behind our 480); by default it is the status sent."""
    refusal = REFUSALS[cause]
    status = status or refusal.status
    headers = Headers([("Reason", reason_header(cause, cause_code or status))])
    if status == 503 and refusal.retry_after is not None:
        headers.add("Retry-After", str(refusal.retry_after))
    return make_response(request, status, reason_phrase(status, detail or refusal.detail), to_tag=to_tag,
                         headers=headers)


__all__ = ["REFUSALS", "Cause", "Refusal", "Refused", "reason_header", "refusal_response"]
