"""SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966) and their comparison (19.1.4).

A parsed URI keeps the user part and parameter values as they were escaped on the
wire, so ``str(uri)`` reproduces them; comparisons use the unescaped forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ParseError
from .grammar import (
    check_escapes,
    format_params,
    parse_params,
    split_hostport,
    unescape,
)

# user = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
# unreserved = alphanum / mark ; mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,;?/]+\Z")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,]*\Z")
# headers = "?" header *( "&" header ); hname/hvalue = 1*( hnv-unreserved / unreserved / escaped )
_HEADERS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%\[\]/?:+$=&]*\Z")
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
# telephone-subscriber (RFC 3966), loosely: global (+digits) or local number with visual separators
_TEL_RE = re.compile(r"(\+?[0-9A-Fa-f*#\-.()]+)((?:;[^;]*)*)\Z")

#: Parameters that, when present in only one of two URIs, make them differ (19.1.4).
_MUST_MATCH_PARAMS = ("user", "ttl", "method", "maddr", "transport")


@dataclass(eq=False, slots=True)
class SipUri:
    """``sip:`` / ``sips:`` URI. ``user`` and param values are stored escaped."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None  # the raw text after '?', never acted upon implicitly
    scheme: str = "sip"

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += ":" + self.password
            userinfo += "@"
        text = f"{self.scheme}:{userinfo}{self.hostport()}{format_params(self.params)}"
        if self.headers is not None:
            text += "?" + self.headers
        return text

    def copy(self, **changes: object) -> SipUri:
        values = {
            "host": self.host,
            "user": self.user,
            "password": self.password,
            "port": self.port,
            "params": dict(self.params),
            "headers": self.headers,
            "scheme": self.scheme,
        }
        values.update(changes)
        return SipUri(**values)  # type: ignore[arg-type]

    # RFC 3261 19.1.4 -------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipUri):
            return NotImplemented
        if self.scheme != other.scheme:
            return False
        # userinfo is case-sensitive; escaped and unescaped forms are equivalent
        if self.user_unescaped != other.user_unescaped:
            return False
        if (self.password and unescape(self.password)) != (other.password and unescape(other.password)):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        for name in _MUST_MATCH_PARAMS:
            a, b = self.params.get(name, False), other.params.get(name, False)
            if (a is False) != (b is False):
                return False
            if a is not False and _pvalue(a) != _pvalue(b):
                return False
        for name in self.params.keys() & other.params.keys():
            if _pvalue(self.params[name]) != _pvalue(other.params[name]):
                return False
        return _headers_dict(self.headers) == _headers_dict(other.headers)

    def __hash__(self) -> int:
        return hash((self.scheme, self.user_unescaped, self.host.lower(), self.port))


def _pvalue(value: object) -> object:
    return unescape(value).lower() if isinstance(value, str) else value


def _headers_dict(headers: str | None) -> dict[str, str]:
    if not headers:
        return {}
    result = {}
    for item in headers.split("&"):
        name, _, value = item.partition("=")
        result[unescape(name).lower()] = unescape(value)
    return result


@dataclass(eq=True, frozen=True, slots=True)
class TelUri:
    """``tel:`` URI (RFC 3966): the number with its visual separators, and parameters."""

    number: str
    params: str = ""  # raw ";..." parameter text

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    @property
    def digits(self) -> str:
        """The number without visual separators (RFC 3966 5.1.1), for comparison and routing."""
        return re.sub(r"[\-.()]", "", self.number)

    def __str__(self) -> str:
        return f"tel:{self.number}{self.params}"


@dataclass(eq=True, frozen=True, slots=True)
class AbsoluteUri:
    """Any other scheme (RFC 3261 ``absoluteURI``): kept opaque."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse ``Request-URI = SIP-URI / SIPS-URI / absoluteURI`` (tel understood)."""
    match = _SCHEME_RE.match(text)
    if match is None:
        raise ParseError("bad URI scheme")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        tel = _TEL_RE.match(rest)
        if tel is None:
            raise ParseError("bad tel URI")
        return TelUri(tel.group(1), tel.group(2))
    if not rest or any(c in rest for c in " \t<>\"\r\n"):
        raise ParseError("bad URI")
    return AbsoluteUri(scheme, rest)


def parse_sip_uri(text: str) -> SipUri:
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise ParseError("not a SIP URI", status=416)
    return uri


def _parse_sip(scheme: str, rest: str) -> SipUri:
    # SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    # '@' cannot appear unescaped after the userinfo, so the first one ends it.
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not user or not _USER_RE.match(user):
            raise ParseError("bad user part")
        if colon:
            if not _PASSWORD_RE.match(pw):
                raise ParseError("bad password")
            check_escapes(pw)
            password = pw
        check_escapes(user)
    headers = None
    rest, qmark, hdrs = rest.partition("?")
    if qmark:
        if not _HEADERS_RE.match(hdrs):
            raise ParseError("bad URI headers")
        check_escapes(hdrs)
        headers = hdrs
    hostport, semi, paramtext = rest.partition(";")
    # uri-parameters = *( ";" uri-parameter ): a ';' needs a parameter after it
    if semi and not paramtext:
        raise ParseError("empty URI parameter")
    # pname / pvalue = 1*paramchar, paramchar includes ``escaped``: validated here so
    # that comparing URIs (19.1.4 unescapes them) never fails later
    check_escapes(paramtext)
    if hostport.startswith("[") and "]" not in hostport:
        raise ParseError("bad IPv6 reference")
    host, port = split_hostport(hostport)
    params = parse_params(paramtext) if paramtext else {}
    if " " in paramtext or "\t" in paramtext:
        raise ParseError("whitespace in URI")
    return SipUri(host=host, user=user, password=password, port=port, params=params,
                  headers=headers, scheme=scheme)
