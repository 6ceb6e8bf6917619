"""Who an outgoing leg says is calling: From, P-Asserted-Identity or
P-Preferred-Identity, Diversion and Privacy, per profile. Pure: no I/O.

voicegw forwards a call (a transfer is a forwarded call to the agent or the carrier),
so by default it presents the caller, the way a PBX forwarding to the PSTN does:

- From: the caller's number and display name;
- P-Asserted-Identity (RFC 3325 9.1): the caller's identity, from the caller's own
  P-Asserted-Identity when it sent one (the network vouched for it), else its From;
- Diversion (RFC 5806): the number the caller dialled (our DID), which carriers need
  before they accept a From number that is not one of ours on their trunk;
- an anonymous caller (From anonymous, or Privacy: id) is presented as anonymous
  (RFC 3323 4.1.1.3) and the identity header goes with ``Privacy: id`` (RFC 3325 9.3)
  so that the next trust domain removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SipError
from .grammar import quote
from .headers import NameAddr
from .message import Request
from .uri import SipUri, TelUri

CALLER = "caller"
"""``number``/``display`` value: take it from the caller."""
AUTH = "auth"
"""``number`` value: the profile's auth username (carriers that only accept calls
whose From user is the account they authenticate)."""


@dataclass(frozen=True, slots=True)
class CallerIdPolicy:
    number: str = CALLER
    """The From user: ``caller`` (the caller's number), ``auth`` (``auth_user``) or a
    fixed number/user."""
    display: str | None = CALLER
    """The From display name: ``caller``, a fixed text, or None (no display name)."""
    identity: str = "pai"
    """``pai``: P-Asserted-Identity (trusted peers); ``ppi``: P-Preferred-Identity
    (RFC 3325 9.2, for a peer that asserts it itself); ``none``."""
    diversion: bool = True
    """Diversion with the number the caller dialled (RFC 5806)."""
    plus: bool = True
    """Numbers (all digits) in E.164 with a leading '+'; False: without."""
    tech_prefix: str = ""
    """Put before the From user (carriers that route or bill on it)."""
    privacy: bool = True
    """Anonymous callers stay anonymous: anonymous From and Privacy: id."""
    auth_user: str | None = None
    """The profile's auth username, for ``number: auth``."""


@dataclass(frozen=True, slots=True)
class Identity:
    from_: str
    """The From header's value, without the tag."""
    headers: tuple[tuple[str, str], ...]
    """P-Asserted-Identity / P-Preferred-Identity, Diversion, Privacy."""


def outgoing_identity(policy: CallerIdPolicy, invite: Request | None, *, host: str,
                      transfer: bool = True) -> Identity:
    """The identity of an outgoing leg placed for the call that ``invite`` (the
    caller's) started; ``host`` is our address as that leg's peer sees it."""
    caller = _caller(invite)
    number, display = caller.number, caller.display
    anonymous = policy.privacy and caller.anonymous
    headers: list[tuple[str, str]] = []
    if number:
        shown = _format(number, policy)
        if policy.identity == "pai":
            headers.append(("P-Asserted-Identity", _name_addr(None if anonymous else display, shown, host)))
        elif policy.identity == "ppi":
            headers.append(("P-Preferred-Identity", _name_addr(None if anonymous else display, shown, host)))
    if anonymous:
        headers.append(("Privacy", "id"))
    if policy.diversion and transfer and caller.dialled:
        dialled = _format(caller.dialled, policy)
        headers.append(("Diversion", f"<sip:{dialled}@{host}>;reason=unconditional;counter=1"))
    if policy.number == AUTH and policy.auth_user:
        # the account itself, as the carrier knows it: no prefix, no number formatting
        shown_display = None if policy.display == CALLER else policy.display
        return Identity(_name_addr(shown_display, policy.auth_user, host), tuple(headers))
    if policy.number != CALLER:
        user = policy.tech_prefix + _format(policy.number, policy)
        shown_display = None if policy.display == CALLER else policy.display
        return Identity(_name_addr(shown_display, user, host), tuple(headers))
    if anonymous or not number:
        return Identity('"Anonymous" <sip:anonymous@anonymous.invalid>', tuple(headers))
    shown_display = display if policy.display == CALLER else policy.display
    user = policy.tech_prefix + _format(number, policy)
    return Identity(_name_addr(shown_display, user, host), tuple(headers))


@dataclass(frozen=True, slots=True)
class _Caller:
    number: str | None
    display: str | None
    anonymous: bool
    dialled: str | None


def _caller(invite: Request | None) -> _Caller:
    if invite is None:
        return _Caller(None, None, False, None)
    from_ = invite.from_
    asserted = _asserted(invite)
    from_user = _user(from_.uri)
    anonymous_from = (from_user or "").lower() == "anonymous" or (
        isinstance(from_.uri, SipUri) and from_.uri.host.lower() == "anonymous.invalid")
    privacy = {p.strip().lower() for p in (invite.headers.get("privacy") or "").split(";")}
    number = _user(asserted.uri) if asserted is not None else (None if anonymous_from else from_user)
    display = (asserted.display_name if asserted is not None and asserted.display_name else
               None if anonymous_from else from_.display_name)
    try:
        dialled = _user(invite.request_uri())
    except SipError:
        dialled = None
    return _Caller(number, display, anonymous_from or "id" in privacy, dialled)


def _asserted(invite: Request) -> NameAddr | None:
    for name in ("p-asserted-identity", "p-preferred-identity"):
        value = invite.headers.get(name)
        if value:
            try:
                return NameAddr.parse(value.split(",")[0])
            except SipError:
                continue
    return None


def _user(uri: object) -> str | None:
    if isinstance(uri, SipUri):
        return uri.user or None
    if isinstance(uri, TelUri):
        return uri.number
    return None


def _format(number: str, policy: CallerIdPolicy) -> str:
    """A number as the profile wants it: with ``plus`` as received, without it the
    '+' removed (a carrier that wants 4930... rather than +4930...); visual
    separators go (RFC 3966 5.1.1). A user that is not a number stays as it is."""
    bare = "".join(c for c in number if c not in "-. ()")
    digits = bare.removeprefix("+")
    if not digits.isdigit():
        return number
    return bare if policy.plus else digits


#: user = 1*( unreserved / escaped / user-unreserved ) (RFC 3261 25.1)
_USER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/")


def _name_addr(display: str | None, user: str, host: str) -> str:
    escaped = "".join(c if c in _USER_CHARS else "".join(f"%{b:02X}" for b in c.encode()) for c in user)
    address = f"<sip:{escaped}@{host}>"
    return f"{quote(display)} {address}" if display else address


__all__ = ["AUTH", "CALLER", "CallerIdPolicy", "Identity", "outgoing_identity"]
