"""What a carrier probe will send, settled before it starts: the OPTIONS target and
transport from the profile's ``trunk``, the test call's numbers made E.164 and put
into the trunk as the engine does for a transfer (numbers.py), and the timeouts (the
profile's, or the request's). A problem here is the API's 404/422, never a half-run
probe.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.models import CarrierProfile
from ..numbers import normalise_number
from ..sip.digest_client import Account
from ..sip.errors import SipError
from ..sip.uri import SipUri, parse_uri

#: Seconds the probe waits for the answer to its BYE, and for the final answer to its
#: CANCEL.
SETTLE = 2.0


class ProbeError(Exception):
    """A probe that cannot start; ``status`` is the HTTP answer (404, 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    profile: str
    call: str | None = None
    """REFER the test call to this number (or sip: URI); None: OPTIONS only."""
    dial: str | None = None
    """Place the test call to this number; None: ``call``."""
    refer_sub: bool | None = None
    """None: the profile's ``refer_sub``."""
    options_timeout: float = 5.0
    ring_timeout: float | None = None
    refer_timeout: float | None = None
    notify_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a probe will send, settled before it starts (so errors are the API's 422)."""

    options_uri: SipUri
    transport: str
    call: CallPlan | None
    options_timeout: float
    account: Account | None = None
    """The profile's ``auth``, for the carrier's challenges (OPTIONS and the INVITE)."""

    @classmethod
    def of(cls, profile: CarrierProfile, settings: ProbeSettings, account: Account | None = None) -> Plan:
        if not profile.trunk:
            raise ProbeError(f"profile {profile.name!r} has no trunk: nothing to send the probe to")
        trunk = _sip_uri(profile.trunk.format(number="probe"), "the trunk")
        options_uri = trunk.copy(user=None)
        transport = trunk.transport or profile.transport
        call = None
        if settings.call is not None:
            timeouts = profile.timeouts
            call = CallPlan(
                dial=_target(profile, settings.dial or settings.call, "--dial"),
                refer_to=_target(profile, settings.call, "--call"),
                refer_sub=profile.refer_sub if settings.refer_sub is None else settings.refer_sub,
                from_user=profile.caller_id.number if profile.caller_id.number != "caller" else "voicegw",
                ring_timeout=settings.ring_timeout or timeouts.ring,
                refer_timeout=settings.refer_timeout or timeouts.refer_response,
                notify_timeout=settings.notify_timeout or timeouts.notify_final)
        return cls(options_uri, transport, call, settings.options_timeout, account)

    def deadline(self) -> float:
        total = self.options_timeout + 5.0  # DNS
        if self.call is not None:
            total += self.call.ring_timeout + self.call.refer_timeout + self.call.notify_timeout + 4 * SETTLE
        return total


@dataclass(frozen=True, slots=True)
class CallPlan:
    dial: SipUri
    refer_to: SipUri
    refer_sub: bool
    from_user: str
    ring_timeout: float
    refer_timeout: float
    notify_timeout: float


def _sip_uri(text: str, what: str) -> SipUri:
    try:
        uri = parse_uri(text)
    except SipError as error:
        raise ProbeError(f"{what} {text!r} is not a SIP URI: {error.reason}") from None
    if not isinstance(uri, SipUri) or uri.headers:
        raise ProbeError(f"{what} {text!r} must be a sip: URI without headers")
    return uri


def _target(profile: CarrierProfile, text: str, option: str) -> SipUri:
    """A number through the profile's trunk (as the engine dials and REFERs one), or a
    sip: URI as given."""
    if text.startswith(("sip:", "sips:")):
        return _sip_uri(text, option)
    number = normalise_number(text, profile.numbers.country_code)
    if number is None:
        raise ProbeError(f"{option} {text!r}: not a phone number or a sip: URI")
    assert profile.trunk is not None
    return _sip_uri(profile.trunk.format(number=number), option)
