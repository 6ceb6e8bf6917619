"""RFC 3261 section 25 grammar pieces shared by the parsers.

Each regex sits under the ABNF rule it implements. Values reach these helpers
already unfolded (section 7.3.1: folded lines become one SP), so "LWS" here is
just runs of SP/HTAB.
"""

from __future__ import annotations

import ipaddress
import re

from .errors import ParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN)
TOKEN_FULL_RE = re.compile(TOKEN + r"\Z")

# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#        "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )
# callid = word [ "@" word ]
CALLID_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?\Z")

# hostname = *( domainlabel "." ) toplabel [ "." ]
# domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum
# toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum
# (toplabel is relaxed to alphanum: real deployments use all-digit labels.)
HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?\Z"
)
# IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
IPV4_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\Z")
# the same, each part 0..255 (one regex instead of four int() calls on the hot path)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]|0[0-9]{1,2})"
_IPV4_VALID_RE = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\Z")

_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")

#: Header names with a compact form (RFC 3261 7.3.3 and the extensions that define one).
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_key_cache: dict[str, str] = {}


def header_key(name: str) -> str:
    """The canonical lookup key of a header name: lower case, compact forms expanded."""
    key = _key_cache.get(name)
    if key is None:
        lower = name.lower()
        key = COMPACT_FORMS.get(lower, lower)
        if len(_key_cache) < 4096:  # bounded: header names come from the network
            _key_cache[name] = key
    return key


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 25.1 ``escaped``); a lone '%' is a parse error."""
    if "%" not in text:
        return text
    if _BAD_ESCAPE_RE.search(text):
        raise ParseError("bad %-escape")
    raw = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    # Escapes encode UTF-8 octets; re-decode them as such where they form valid UTF-8.
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def check_escapes(text: str) -> None:
    """Raise ParseError when a '%' is not followed by two hex digits (25.1 ``escaped``)."""
    if "%" in text and _BAD_ESCAPE_RE.search(text):
        raise ParseError("bad %-escape")


def check_host(host: str) -> str:
    """Validate ``host = hostname / IPv4address / IPv6reference``; return it unchanged."""
    if not host:
        raise ParseError("empty host")
    if host[0] == "[":
        if host[-1] != "]":
            raise ParseError("unterminated IPv6 reference")
        _check_ipv6(host[1:-1])
        return host
    if IPV4_RE.match(host):
        if not _IPV4_VALID_RE.match(host):
            raise ParseError("bad IPv4 address")
        return host
    if not HOSTNAME_RE.match(host):
        raise ParseError("bad host")
    return host


def is_digits(text: str) -> bool:
    """``1*DIGIT``: ASCII digits only. ``str.isdigit`` alone also accepts '²' or '١',
    which ``int()`` then rejects (or reads) -- never what the grammar means."""
    return text.isdigit() and text.isascii()


def _check_ipv6(address: str) -> None:
    # IPv6address as in RFC 5954 (which fixes RFC 3261's ABNF). No zone index: '%'
    # is not in the grammar (ipaddress would accept "fe80::1%anything").
    if "%" in address:
        raise ParseError("bad IPv6 reference")
    try:
        ipaddress.IPv6Address(address)
        return
    except ValueError:
        pass
    # RFC 5118 4.10: RFC 3261's ABNF produced "::" plus ":" before an IPv4 tail
    # ("2001:db8:::192.0.2.1"); be robust and accept that form too.
    head, sep, tail = address.partition(":::")
    if sep and IPV4_RE.match(tail) and ":::" not in tail:
        try:
            ipaddress.IPv6Address(f"{head}::{tail}")
            return
        except ValueError:
            pass
    raise ParseError("bad IPv6 reference")


def parse_port(text: str) -> int:
    """``port = 1*DIGIT``, in 1..65535."""
    if not is_digits(text) or len(text) > 5:
        raise ParseError("bad port")
    port = int(text)
    if not 0 < port < 65536:
        raise ParseError("port out of range")
    return port


def split_hostport(text: str) -> tuple[str, int | None]:
    """``hostport = host [ ":" port ]``; IPv6 references keep their brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if not rest:
            return check_host(host), None
        if rest[0] != ":":
            raise ParseError("junk after IPv6 reference")
        return check_host(host), parse_port(rest[1:])
    host, sep, port = text.partition(":")
    return check_host(host), (parse_port(port) if sep else None)


def split_quoted(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside quoted strings and <...> (comma-joined values).

    Raises ParseError on an unterminated quoted string.
    """
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    in_quote = False
    in_angle = False
    while i < n:
        ch = text[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_quote:
        raise ParseError("unterminated quoted string")
    parts.append(text[start:])
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """``*( SEMI generic-param )`` where ``text`` starts after the first ';' (or is empty).

    generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string.
    Names are folded to lower case (19.1.4: parameter names compare case-insensitively).
    LWS around ';' and '=' is allowed (SEMI and EQUAL include SWS).
    """
    params: dict[str, str | None] = {}
    if not text.strip():
        return params
    for part in split_quoted(text, ";"):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not TOKEN_FULL_RE.match(name):
            raise ParseError("bad parameter")
        if eq:
            value = value.strip()
            if not value:
                raise ParseError("empty parameter value")
            if value[0] == '"' and (len(value) < 2 or value[-1] != '"'):
                raise ParseError("bad quoted parameter")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def unquote(text: str) -> str:
    """The content of a quoted-string, with quoted-pairs resolved."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" in inner:
            return re.sub(r"\\(.)", r"\1", inner)
        return inner
    return text


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
