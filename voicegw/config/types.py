"""Checked scalar types shared by the config models: names, ports, CIDRs, URIs,
allow-list patterns, trunk templates, header names, DTMF keys, fallback match keys.

Each is an ``Annotated`` type with a validator whose ``ValueError`` message becomes
the text after ``file:line: field:`` in what ``voicegw check`` prints, so the
messages say what is expected, not what Python thought.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from ..flow.fallback_policy import DEFAULT_MATCH, NAMED_MATCHES
from ..numbers import is_number
from ..sip.errors import SipError
from ..sip.uri import SipUri, parse_uri

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (letters, digits, '_', '-', '.'; "
            "starts with a letter or digit; at most 64 characters)"
        )
    return value


Name = Annotated[str, AfterValidator(check_name)]
"""A node, profile, flow or integration name."""

Port = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=86400)]
"""A duration in seconds (a whole day at most)."""


def check_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (voicegw binds to addresses, not names)") from None
    return value


IpAddress = Annotated[str, AfterValidator(check_ip)]


def check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"{value!r} is not a CIDR network ({error})") from None
    return value


Cidr = Annotated[str, AfterValidator(check_cidr)]


def check_sip_uri(value: str) -> str:
    """A sip:/sips: URI that carries no headers (embedded headers could smuggle
    Route/Replaces). Its host may be an IP literal or a name (the parser checks it,
    RFC 3261 25.1): the dial path resolves names by RFC 3263 (transport/dns.py)."""
    try:
        uri = parse_uri(value)
    except SipError as error:
        raise ValueError(f"{value!r} is not a SIP URI ({error.reason})") from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"{value!r} must be a sip: or sips: URI")  # noqa: TRY004 (pydantic reports ValueError)
    if uri.headers:
        raise ValueError(f"{value!r}: headers inside the URI ('?...') are not allowed")
    return value


SipUriText = Annotated[str, AfterValidator(check_sip_uri)]

def check_pattern(value: str) -> str:
    """An allow-list pattern (shell-style, as ``fnmatch``): a number pattern such as
    ``+4930*`` or a URI pattern such as ``sip:*@192.0.2.10``. A bare ``*`` or a
    pattern with no fixed prefix would allow toll fraud, so it is refused."""
    if not value or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(f"{value!r}: a pattern has no spaces or control characters")
    if value.startswith("+"):
        fixed = re.split(r"[*?\[]", value[1:], maxsplit=1)[0]
        if not fixed.isdigit():
            raise ValueError(
                f"{value!r}: a number pattern starts with '+' and at least one digit (E.164, e.g. '+4930*')"
            )
        return value
    if value.startswith(("sip:", "sips:")):
        after = value.split(":", 1)[1]
        if "@" not in after and not after.strip("*?"):
            raise ValueError(f"{value!r} matches every SIP URI; name the host (sip:*@192.0.2.10)")
        host = after.rsplit("@", 1)[-1]
        if not host or host[0] in "*?[":
            raise ValueError(f"{value!r}: the host part must start with a fixed name or address")
        return value
    raise ValueError(
        f"{value!r} is not an allow-list pattern: use '+<digits>...' for numbers or "
        "'sip:...@host' for URIs"
    )


Pattern = Annotated[str, AfterValidator(check_pattern)]


MAX_ROUTE_PATTERN = 256
"""A route pattern is matched against every new call: short, and compiled at load."""


def check_route_pattern(value: str) -> str:
    """A route's regular expression (flow/router.py): matched against the whole value,
    so no ``^``/``$`` is needed."""
    if not value:
        raise ValueError("an empty pattern: leave the condition out to match every call")
    if len(value) > MAX_ROUTE_PATTERN:
        raise ValueError(f"longer than {MAX_ROUTE_PATTERN} characters")
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"{value!r} is not a valid regular expression ({error})") from None
    return value


RoutePattern = Annotated[str, AfterValidator(check_route_pattern)]
"""A Python regular expression, matched against the whole value (re.fullmatch)."""


def check_trunk(value: str) -> str:
    """``sip:{number}@192.0.2.1``: a SIP URI template with one ``{number}``."""
    if value.count("{number}") != 1 or re.search(r"\{(?!number\})", value):
        raise ValueError(f"{value!r}: a trunk template has exactly one '{{number}}' and no other braces")
    check_sip_uri(value.replace("{number}", "+15550100"))
    return value


TrunkTemplate = Annotated[str, AfterValidator(check_trunk)]

_TOKEN_RE = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+\Z")  # RFC 3261 25.1 token
#: Headers the engine writes itself: a configured value would break the dialog.
RESERVED_HEADERS = frozenset(h.lower() for h in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Route", "Record-Route",
    "Max-Forwards", "Content-Length", "Content-Type", "Refer-To", "Referred-By",
    "Replaces", "Event", "Subscription-State", "Refer-Sub", "Supported", "Require",
    "Session-Expires", "Min-SE", "Authorization", "Proxy-Authorization",
    "i", "f", "t", "v", "m", "l", "c", "e", "r", "b", "k", "o", "x",
))


def check_header_name(value: str) -> str:
    if not _TOKEN_RE.match(value):
        raise ValueError(f"{value!r} is not a SIP header name (RFC 3261 token)")
    if value.lower() in RESERVED_HEADERS:
        raise ValueError(f"{value!r} is written by voicegw itself and cannot be configured")
    return value


HeaderName = Annotated[str, AfterValidator(check_header_name)]

CONTEXT_KEYS = ("caller", "called", "call_id", "bot_session", "summary", "transcript_url", "ivr")


def check_context_key(value: str) -> str:
    """What a context header carries: a key of CONTEXT_KEYS, or ``ivr.<property>``."""
    if value in CONTEXT_KEYS or re.fullmatch(r"ivr\.[A-Za-z0-9_]{1,64}", value):
        return value
    raise ValueError(f"unknown context key {value!r} (expected {', '.join(CONTEXT_KEYS)} or ivr.<property>)")


ContextKey = Annotated[str, AfterValidator(check_context_key)]


def _scalar_to_str(value: Any) -> Any:
    """YAML reads ``0:`` and ``486:`` as integers; keys and codes are text here."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def check_dtmf(value: str) -> str:
    if len(value) != 1 or value not in "0123456789*#ABCD":
        raise ValueError(f"{value!r} is not a DTMF key (0-9, *, #, A-D)")
    return value


DtmfKey = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(check_dtmf)]

_CODE_RE = re.compile(r"[3-6][0-9][0-9]\Z")
_CLASS_RE = re.compile(r"[3-6]xx\Z")


def check_match(value: str) -> str:
    """A fallback match key: a code 300-699, a class 3xx-6xx, or a named condition."""
    if _CODE_RE.match(value) or _CLASS_RE.match(value) or value in NAMED_MATCHES:
        return value
    raise ValueError(
        f"{value!r} is not a failure status (expected a SIP code 300-699, 4xx/5xx/6xx, "
        f"{', '.join(NAMED_MATCHES)})"
    )


MatchKey = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(check_match)]


def check_failure_key(value: str) -> str:
    """``on_failure`` keys: the match keys plus ``default``."""
    return value if value == DEFAULT_MATCH else check_match(value)


FailureKey = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(check_failure_key)]


def check_digits(value: str) -> str:
    if value and not value.isdigit():
        raise ValueError(f"{value!r}: digits only")
    return value


Digits = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(check_digits)]


def check_target(value: str) -> str:
    """A transfer target written literally: a phone number or a SIP URI (a profile
    name is resolved by the loader, which knows the profiles)."""
    if is_number(value):
        return value
    if value.startswith(("sip:", "sips:")):
        return check_sip_uri(value)
    if value.startswith("desk:"):  # an agent or queue of the desk (voicegw/desk/)
        check_name(value[len("desk:"):])
        return value
    check_name(value)  # a profile name, checked against the profiles later
    return value


Target = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(check_target)]
