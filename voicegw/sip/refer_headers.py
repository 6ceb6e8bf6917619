"""The header fields of the REFER usage (RFC 3515), shared by both sides.

Building a REFER (:func:`build_refer`): Refer-To as a name-addr whose URI may carry
embedded headers for the new INVITE (RFC 3261 19.1.1, 19.1.5; :func:`embed_headers`,
:func:`parse_embedded_headers`), Referred-By (RFC 3892), and Refer-Sub with its
``norefersub`` option tag (RFC 4488). Reading a NOTIFY: :class:`EventHeader` and
:class:`SubscriptionState` (RFC 6665).

Used by the referrer (:mod:`voicegw.sip.refer`) and the referee (:mod:`voicegw.sip.referee`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .dialog import Dialog
from .errors import ParseError, ProtocolViolation
from .grammar import TOKEN_FULL_RE, parse_params, unescape
from .headers import NameAddr
from .message import Request
from .uri import SipUri, Uri, parse_uri

#: RFC 3420 section 2 names the version parameter; RFC 3515 examples carry it.
SIPFRAG_CONTENT_TYPE = "message/sipfrag;version=2.0"
#: RFC 4488 4: the option tag of the Refer-Sub extension.
NOREFERSUB = "norefersub"


# =====================================================================================
# Building a REFER (referrer side)
# =====================================================================================

# hname / hvalue = 1*( hnv-unreserved / unreserved / escaped )    (RFC 3261 25.1)
# hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
# unreserved = alphanum / mark; mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
_HNV_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    "-_.!~*'()[]/?:+$"
)


def escape_header_part(text: str) -> str:
    """%-escape ``text`` for an hname or hvalue of a URI's ``?headers`` part.

    '=' and '&' separate the parts, so they are escaped with everything else that
    is not ``hnv-unreserved / unreserved`` ('@' and ';' included, as in RFC 3515's
    ``Replaces=12345%40192.168.118.3%3Bto-tag%3D12345`` example).
    """
    out: list[str] = []
    for ch in text:
        if ch in _HNV_SAFE:
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
    return "".join(out)


def embed_headers(target: SipUri, headers: Iterable[tuple[str, str]]) -> SipUri:
    """``target`` with ``headers`` appended to its ``?`` part, escaped (19.1.1)."""
    parts = [target.headers] if target.headers else []
    for name, value in headers:
        if not TOKEN_FULL_RE.match(name):
            raise ProtocolViolation(f"bad embedded header name {name!r}", status=500)
        parts.append(f"{escape_header_part(name)}={escape_header_part(value)}")
    return target.copy(headers="&".join(parts) if parts else None)


def parse_embedded_headers(headers: str | None) -> list[tuple[str, str]]:
    """The ``?`` part of a URI as (name, value) pairs, unescaped."""
    if not headers:
        return []
    result = []
    for item in headers.split("&"):
        name, _, value = item.partition("=")
        if not name:
            raise ParseError("empty embedded header name")
        result.append((unescape(name), unescape(value)))
    return result


def build_refer(
    dialog: Dialog,
    target: Uri | str,
    *,
    referred_by: str | None = None,
    embedded_headers: Iterable[tuple[str, str]] = (),
    extra_headers: Iterable[tuple[str, str]] = (),
    refer_sub: bool = True,
    require_norefersub: bool = True,
    branch: str | None = None,
) -> tuple[Request, Uri]:
    """A REFER on ``dialog`` asking the peer to call ``target`` (RFC 3515 2.4.1).

    ``embedded_headers`` go into the Refer-To URI (sip/sips only) for the peer to put
    in its INVITE (19.1.5): Replaces, User-to-User... ``referred_by`` is a name-addr
    (RFC 3892); by default our own address on the dialog. ``extra_headers`` carry the
    context headers a profile names. ``refer_sub=False`` adds ``Refer-Sub: false``
    (RFC 4488) and, with ``require_norefersub``, ``Require: norefersub`` (a peer that
    does not support it answers 420 instead of silently subscribing us); without it,
    ``Supported: norefersub``. Returns the request and where to send it (8.1.2).
    """
    uri = parse_uri(target) if isinstance(target, str) else target
    embedded = list(embedded_headers)
    if embedded:
        if not isinstance(uri, SipUri):
            raise ProtocolViolation("embedded headers need a sip or sips Refer-To", status=500)
        uri = embed_headers(uri, embedded)
    if referred_by is None:
        referred_by = str(NameAddr(dialog.local_address.uri, dialog.local_address.display_name))
    else:
        NameAddr.parse(referred_by)  # validate: raises ParseError
    # Refer-To = ("Refer-To" / "r") HCOLON ( name-addr / addr-spec ) *(SEMI refer-param)
    # Always name-addr: an addr-spec may not contain ',', ';' or '?' (20.10).
    headers: list[tuple[str, str]] = [("Refer-To", f"<{uri}>"), ("Referred-By", referred_by)]
    if not refer_sub:
        headers.append(("Refer-Sub", "false"))
        headers.append(("Require" if require_norefersub else "Supported", NOREFERSUB))
    headers.extend(extra_headers)
    return dialog.create_request("REFER", branch=branch, extra_headers=headers)


# =====================================================================================
# Header views for NOTIFY
# =====================================================================================


@dataclass(frozen=True, slots=True)
class EventHeader:
    """``Event = ( "Event" / "o" ) HCOLON event-type *( SEMI event-param )`` (RFC 6665 ABNF)."""

    package: str
    id: str | None

    @classmethod
    def parse(cls, text: str) -> EventHeader:
        package, _, rest = text.strip().partition(";")
        package = package.strip()
        if not TOKEN_FULL_RE.match(package):
            raise ParseError("bad Event")
        params = parse_params(rest)
        return cls(package.lower(), params.get("id"))


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """``Subscription-State = "Subscription-State" HCOLON substate-value *( SEMI subexp-params )``."""

    value: str
    """``active``, ``pending``, ``terminated`` or an extension, lower case."""
    reason: str | None = None
    expires: int | None = None

    @property
    def terminated(self) -> bool:
        return self.value == "terminated"

    @classmethod
    def parse(cls, text: str) -> SubscriptionState:
        value, _, rest = text.strip().partition(";")
        value = value.strip().lower()
        if not TOKEN_FULL_RE.match(value):
            raise ParseError("bad Subscription-State")
        params = parse_params(rest)
        expires = params.get("expires")
        if expires is not None and not (expires.isascii() and expires.isdigit()):
            raise ParseError("bad Subscription-State expires")
        return cls(value, params.get("reason"), int(expires) if expires is not None else None)

    def __str__(self) -> str:
        text = self.value
        if self.reason is not None:
            text += f";reason={self.reason}"
        if self.expires is not None:
            text += f";expires={self.expires}"
        return text


__all__ = [
    "NOREFERSUB",
    "SIPFRAG_CONTENT_TYPE",
    "EventHeader",
    "SubscriptionState",
    "build_refer",
    "embed_headers",
    "escape_header_part",
    "parse_embedded_headers",
]
