"""One trunk registration (RFC 3261 10; RFC 3261 22 for the challenge), sans-I/O.

How to read it
--------------
A :class:`Registration` binds one Contact of ours to one address-of-record at one
registrar. The caller owns the clock and the sockets: it calls :meth:`start`,
:meth:`stop`, :meth:`received` (a final response to the REGISTER it sent last),
:meth:`timed_out` (no final response: timer F or a transport error) and
:meth:`handle_timer` when :meth:`get_timer` is due; each returns the REGISTER
requests to send now (zero or one). The state machine is ``TABLE``:
``(state, input) -> (action, next state)``; a pair not in it is ignored (a late
answer to a request we gave up on, a second ``start``)::

    UNREGISTERED --START--> REGISTERING --OK--> REGISTERED --TIMER--> REFRESHING
                               |  ^   ^                                  |   |
                               |  |   +-------------OK-------------------+   |
                               |  +--TIMER-- FAILED <--FAIL/RETRY_LATER------+
                               +--FAIL/RETRY_LATER-->  (back-off)
    any --STOP--> UNREGISTERING (Expires: 0, when a binding may exist) --OK/FAIL--> UNREGISTERED

CHALLENGE (401/407) and INTERVAL_TOO_BRIEF (423) re-send the same request in the
same state, with credentials (at most :data:`MAX_CHALLENGES` challenges per
request: more is a failure with reason ``auth``) or with the registrar's
Min-Expires (10.3 step 7). Every request keeps the Call-ID of the registration
(10.2: "SHOULD use the same Call-ID for all registrations during a single boot
cycle") and a growing CSeq (10.2: "MUST increment the CSeq value by one").

Timing: the granted expiry is the ``expires`` parameter of our Contact in the 200,
else its Expires header, else what we asked for (10.2.4). The refresh is due
``refresh_margin`` seconds before it, but never later than half way (a short grant
is refreshed half way). A failure waits ``retry_min`` seconds, doubling up to
``retry_max``; a 503 with Retry-After (20.33) waits what the registrar asked for.

Passwords stay in :mod:`.digest_client`; nothing here logs or exposes one.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .build import new_call_id, new_tag
from .digest_client import Account, Authorized, DigestClient
from .errors import SipError
from .message import Headers, Request, Response
from .uri import parse_uri

#: challenges answered per REGISTER before it is a failure (issue 12: "at most two")
MAX_CHALLENGES = 2
#: 423s answered per REGISTER: each raises the interval, so two is enough for a sane registrar
MAX_TOO_BRIEF = 2
#: longest Retry-After we honour (a bound, not a policy: a registrar asking more is retried then)
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    """A carrier profile's ``register:`` (config/models.py ``Register``), plain."""

    trunk: str
    """The profile's name."""
    registrar: str
    """Request-URI of the REGISTER: ``sip:registrar.example.com``."""
    aor: str
    """To/From: the address-of-record, ``sip:user@domain``."""
    contact_user: str
    """User part of our Contact (calls to the binding arrive for it)."""
    expires: int = 3600
    refresh_margin: float = 30.0
    retry_min: float = 5.0
    retry_max: float = 300.0
    timeout: float = 32.0
    """No final answer by then: a failure (the adapter's wait; 64*T1 as timer F)."""
    transport: str = "udp"
    account: Account | None = field(default=None, repr=False)
    line: str = ""
    """The ``line`` parameter of our Contact (:func:`line_token`): the registrar calls
    the binding with it in the Request-URI, which is how such a call is known to
    belong to this trunk whatever address it comes from. Empty: none."""


def line_token(trunk: str, aor: str, registrar: str, secret: str = "") -> str:
    """The Contact's ``line`` value for one registration, as Asterisk's ``line=yes``
    puts one there: the same on every start (a restart refreshes the binding instead of
    adding a second Contact, RFC 3261 10.2.1.1 compares URIs), one trunk's different
    from another's, and not guessable without the profile's password (``secret``)."""
    material = f"voicegw-line\0{trunk}\0{aor}\0{registrar}\0{secret}".encode()
    return hashlib.sha256(material).hexdigest()[:20]


class RegState(enum.Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    REFRESHING = "refreshing"
    FAILED = "failed"  # waiting out the back-off
    UNREGISTERING = "unregistering"


class RegInput(enum.Enum):
    START = "start"
    STOP = "stop"
    TIMER = "timer"
    OK = "2xx"
    FAIL = "failure"  # a final failure, a timeout, or a challenge we cannot answer
    RETRY_LATER = "503 with Retry-After"


class Act(enum.Enum):
    SEND = enum.auto()  # a REGISTER with the configured expiry
    SEND_ZERO = enum.auto()  # Expires: 0
    BOUND = enum.auto()  # arm the refresh
    BACK_OFF = enum.auto()  # arm the retry
    NOTHING = enum.auto()


S, I = RegState, RegInput

TABLE: dict[tuple[RegState, RegInput], tuple[Act, RegState]] = {
    (S.UNREGISTERED, I.START): (Act.SEND, S.REGISTERING),
    (S.REGISTERING, I.OK): (Act.BOUND, S.REGISTERED),
    (S.REGISTERING, I.FAIL): (Act.BACK_OFF, S.FAILED),
    (S.REGISTERING, I.RETRY_LATER): (Act.BACK_OFF, S.FAILED),
    (S.REGISTERED, I.TIMER): (Act.SEND, S.REFRESHING),
    (S.REFRESHING, I.OK): (Act.BOUND, S.REGISTERED),
    (S.REFRESHING, I.FAIL): (Act.BACK_OFF, S.FAILED),
    (S.REFRESHING, I.RETRY_LATER): (Act.BACK_OFF, S.FAILED),
    (S.FAILED, I.TIMER): (Act.SEND, S.REGISTERING),
    # STOP: remove a binding that may exist (10.2.2); none can exist before the first 2xx
    # of a REGISTERING (an unanswered one may have landed: remove it as well)
    (S.UNREGISTERED, I.STOP): (Act.NOTHING, S.UNREGISTERED),
    (S.REGISTERING, I.STOP): (Act.SEND_ZERO, S.UNREGISTERING),
    (S.REGISTERED, I.STOP): (Act.SEND_ZERO, S.UNREGISTERING),
    (S.REFRESHING, I.STOP): (Act.SEND_ZERO, S.UNREGISTERING),
    (S.FAILED, I.STOP): (Act.NOTHING, S.UNREGISTERED),
    (S.UNREGISTERING, I.OK): (Act.NOTHING, S.UNREGISTERED),
    (S.UNREGISTERING, I.FAIL): (Act.NOTHING, S.UNREGISTERED),
    (S.UNREGISTERING, I.RETRY_LATER): (Act.NOTHING, S.UNREGISTERED),
}


@dataclass(slots=True)
class RegistrationStatus:
    """A snapshot for the API and ``voicegw trunks`` (times on the caller's clock)."""

    trunk: str
    registrar: str
    aor: str
    state: str
    expires: int | None
    """The interval granted by the last 2xx."""
    registered_at: float | None
    refresh_at: float | None
    retry_at: float | None
    last_status: int | str | None
    """The last final answer: a code, ``timeout``, ``transport`` or ``auth``."""
    reason: str
    failures: int


class Registration:
    """See the module docstring."""

    def __init__(self, config: RegistrationConfig, contact: str, call_id_host: str,
                 cnonce: Callable[[], str] = new_tag) -> None:
        self.config = config
        self.contact = contact
        """Our Contact URI (``sip:user@host:port``), as the registrar should reach us."""
        self.state = RegState.UNREGISTERED
        self.call_id = new_call_id(call_id_host)
        self.cseq = 0
        self.expires = config.expires  # what we ask for; a 423 raises it
        self.granted: int | None = None
        self.registered_at: float | None = None
        self.timer: float | None = None
        self.failures = 0
        self.last_status: int | str | None = None
        self.reason = ""
        self._pending: Request | None = None  # the request awaiting its final answer
        self._challenges = 0
        self._too_brief = 0
        self._retry_after: float | None = None
        self._digest = DigestClient(config.account, cnonce) if config.account is not None else None

    # --- entry points --------------------------------------------------------------------
    def start(self, now: float) -> list[Request]:
        return self._feed(I.START, now)

    def stop(self, now: float) -> list[Request]:
        return self._feed(I.STOP, now)

    def get_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> list[Request]:
        if self.timer is None or now < self.timer:
            return []
        self.timer = None
        return self._feed(I.TIMER, now)

    def timed_out(self, now: float, why: str = "timeout") -> list[Request]:
        """No final answer to the pending REGISTER: ``timeout``, ``transport`` (unreachable)
        or ``dns`` (the registrar's name did not resolve)."""
        if self._pending is None:
            return []
        self._pending = None
        self.last_status = why
        self.reason = {"timeout": "no answer from the registrar", "dns": "the registrar's name did not resolve"
                       }.get(why, "registrar unreachable")
        return self._feed(I.FAIL, now)

    def received(self, response: Response, now: float) -> list[Request]:
        """A final response to the pending REGISTER (provisional ones are ignored)."""
        request = self._pending
        if request is None or response.status < 200:
            return []
        self._pending = None
        status = response.status
        self.last_status = status
        if status in (401, 407):
            return self._challenged(request, response, now)
        if status == 423 and self.state is not S.UNREGISTERING:
            return self._too_brief_answer(request, response, now)
        if 200 <= status < 300:
            self.reason = ""
            if self.state is not S.UNREGISTERING:
                self.granted = self._granted(response)
                self.registered_at = now
            return self._feed(I.OK, now)
        self.reason = f"{status} {response.reason}".strip()
        retry_after = _retry_after(response) if status == 503 else None
        if retry_after is not None:
            self._retry_after = retry_after
            return self._feed(I.RETRY_LATER, now)
        return self._feed(I.FAIL, now)

    def status(self) -> RegistrationStatus:
        bound = self.state in (S.REGISTERED, S.REFRESHING)
        return RegistrationStatus(
            trunk=self.config.trunk, registrar=self.config.registrar, aor=self.config.aor,
            state=self.state.value, expires=self.granted if bound else None,
            registered_at=self.registered_at if bound else None,
            refresh_at=self.timer if self.state is S.REGISTERED else None,
            retry_at=self.timer if self.state is S.FAILED else None,
            last_status=self.last_status, reason=self.reason, failures=self.failures)

    # --- the table -----------------------------------------------------------------------
    def _feed(self, event: RegInput, now: float) -> list[Request]:
        row = TABLE.get((self.state, event))
        if row is None:
            return []  # stale or repeated input: see the module docstring
        act, self.state = row
        if act is Act.SEND:
            self._challenges = self._too_brief = 0
            return [self._register(self.expires)]
        if act is Act.SEND_ZERO:
            self.timer = None
            self._challenges = self._too_brief = 0
            return [self._register(0)]
        if act is Act.BOUND:
            self.failures = 0
            granted = self.granted or self.expires
            # refresh `refresh_margin` before expiry, never later than half way
            self.timer = now + max(granted - self.config.refresh_margin, granted / 2)
        elif act is Act.BACK_OFF:
            self.failures += 1
            if self._retry_after is not None:
                wait, self._retry_after = self._retry_after, None
            else:
                wait = min(self.config.retry_max, self.config.retry_min * 2 ** (self.failures - 1))
            self.timer = now + wait
            self.granted = self.registered_at = None
        elif act is Act.NOTHING:
            self.timer = None
        return []

    # --- requests ------------------------------------------------------------------------
    def _register(self, expires: int, auth: Sequence[tuple[str, str]] = ()) -> Request:
        self.cseq += 1
        transport = f";transport={self.config.transport}" if self.config.transport != "udp" else ""
        request = Request("REGISTER", self.config.registrar, Headers([
            ("From", f"<{self.config.aor}>;tag={new_tag()}"),
            ("To", f"<{self.config.aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<{self.contact}{transport}>"),
            ("Expires", str(expires)),
            ("Max-Forwards", "70"),
            *auth,
        ]))
        self._pending = request
        return request

    def _resend(self, request: Request, auth: list[tuple[str, str]]) -> list[Request]:
        expires = int(request.headers.get("expires") or self.expires)
        return [self._register(expires, auth)]

    def _challenged(self, request: Request, response: Response, now: float) -> list[Request]:
        self._challenges += 1
        if self._digest is None:
            return self._auth_failed(now, f"{response.status}: challenged, and the profile has no auth")
        if self._challenges > MAX_CHALLENGES:
            return self._auth_failed(now, f"challenged {self._challenges} times for one REGISTER")
        answer = self._digest.answer(request, response)
        if not isinstance(answer, Authorized):
            return self._auth_failed(now, answer.reason)
        return self._resend(request, answer.headers)

    def _auth_failed(self, now: float, reason: str) -> list[Request]:
        self.last_status, self.reason = "auth", reason
        return self._feed(I.FAIL, now)

    def _too_brief_answer(self, request: Request, response: Response, now: float) -> list[Request]:
        self._too_brief += 1
        minimum = _int(response.headers.get("min-expires"))
        if minimum is None or minimum <= int(request.headers.get("expires") or 0) \
                or self._too_brief > MAX_TOO_BRIEF:
            self.reason = "423 without a usable Min-Expires"
            return self._feed(I.FAIL, now)
        self.expires = minimum  # 10.3 step 7: ask again with at least Min-Expires
        return [self._register(minimum)]  # a challenge, if any, comes again

    def _granted(self, response: Response) -> int:
        """10.2.4: the Contact's expires parameter, else the Expires header, else ours."""
        ours = _contact_key(self.contact)
        try:
            contacts = response.contacts
        except SipError:
            contacts = []
        for contact in contacts:
            if _uri_key(contact.uri) == ours and (found := _int(contact.params.get("expires"))) is not None:
                return found
        header = _int(response.headers.get("expires"))
        return header if header is not None else self.expires


def _uri_key(uri: object) -> tuple[str, str, int | None]:
    return ((getattr(uri, "user", None) or ""), str(getattr(uri, "host", "")).lower(),
            getattr(uri, "port", None))


def _contact_key(text: str) -> tuple[str, str, int | None]:
    try:
        return _uri_key(parse_uri(text))
    except SipError:
        return ("", text, None)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() and len(text) <= 10 else None


def _retry_after(response: Response) -> float | None:
    """20.33: ``Retry-After: 120 (comment);duration=...``: the seconds, bounded."""
    text = response.headers.get("retry-after")
    if not text:
        return None
    seconds = _int(text.split("(")[0].split(";")[0])
    return None if seconds is None else float(min(seconds, MAX_RETRY_AFTER))


__all__ = [
    "MAX_CHALLENGES",
    "TABLE",
    "RegInput",
    "RegState",
    "Registration",
    "RegistrationConfig",
    "RegistrationStatus",
    "line_token",
]
