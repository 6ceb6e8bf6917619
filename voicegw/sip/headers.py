"""Structured header values: name-addr (From, To, Contact, Route...), Via, CSeq.

Each type pairs ``parse(text)`` with ``str(x)``. Header values arrive unfolded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ParseError
from .grammar import (
    TOKEN_FULL_RE,
    check_host,
    format_params,
    is_digits,
    parse_params,
    parse_port,
    quote,
    split_hostport,
    split_quoted,
    unquote,
)
from .uri import Uri, parse_uri

#: Branch parameters starting with this cookie follow RFC 3261 matching (17.2.3).
MAGIC_COOKIE = "z9hG4bK"

#: CSeq numbers "MUST be expressible as a 32-bit unsigned integer" and "less than 2**31" (8.1.1.5).
CSEQ_MAX = 2**31 - 1

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_LWS_RE = re.compile(r"[ \t]+")
# display-name = *(token LWS) / quoted-string
_DISPLAY_TOKENS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*\Z")


@dataclass(eq=True, slots=True)
class NameAddr:
    """``(name-addr / addr-spec) *(SEMI param)`` as in From, To, Contact, Route, Refer-To.

    ``params`` are the header parameters (``tag``, ``expires``...), not the URI's.
    """

    uri: Uri
    display_name: str | None = None  # unquoted
    params: dict[str, str | None] = field(default_factory=dict)
    angle: bool = True  # written as name-addr (<uri>) rather than addr-spec

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise ParseError("empty address")
        display: str | None = None
        if text[0] == '"':
            match = _QUOTED_RE.match(text)
            if match is None:
                raise ParseError("unterminated quoted display name")
            display = unquote(match.group(0))
            text = text[match.end() :].lstrip()
            if not text.startswith("<"):
                raise ParseError("display name without <URI>")
        lt = text.find("<")
        if lt >= 0:
            if display is None and lt > 0:
                words = text[:lt].strip()
                if not _DISPLAY_TOKENS_RE.match(words):
                    raise ParseError("bad display name")
                display = words
            gt = text.find(">", lt)
            if gt < 0:
                raise ParseError("unterminated <URI>")
            uri_text = text[lt + 1 : gt]
            if uri_text != uri_text.strip():
                raise ParseError("whitespace inside <URI>")
            uri = parse_uri(uri_text)
            rest = text[gt + 1 :].strip()
            angle = True
        else:
            # addr-spec: the URI cannot contain ',', ';' or '?' here (20.10), so any
            # ';' starts the header parameters.
            uri_text, semi, rest = text.partition(";")
            uri_text = uri_text.strip()
            if any(c in uri_text for c in " \t,?"):
                raise ParseError("bad address")
            uri = parse_uri(uri_text)
            rest = semi + rest
            angle = False
        params: dict[str, str | None] = {}
        if rest:
            if rest[0] != ";":
                raise ParseError("junk after address")
            # *( SEMI param ): a ';' needs a parameter after it
            params = parse_params(rest[1:])
            if not params:
                raise ParseError("empty header parameter")
        return cls(uri=uri, display_name=display, params=params, angle=angle)

    def __str__(self) -> str:
        if self.angle or self.display_name is not None:
            text = f"<{self.uri}>"
            if self.display_name is not None:
                text = f"{quote(self.display_name)} {text}"
        else:
            text = str(self.uri)
        return text + format_params(self.params)


def parse_name_addr_list(text: str) -> list[NameAddr]:
    """Comma-separated list of name-addr (Contact, Route, Record-Route)."""
    stripped = text.strip()
    if stripped == "*":
        raise ParseError("'*' is only valid as a REGISTER Contact")
    return [NameAddr.parse(part) for part in split_quoted(text, ",") if part.strip()]


# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport
_VIA_RE = re.compile(
    r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)"
    r"\s+(\[[^\]]*\]|[^\s;:]+)(?:\s*:\s*(\d+))?\s*(?:;(.*))?\Z",
    re.DOTALL | re.ASCII,
)


@dataclass(eq=True, slots=True)
class Via:
    """One ``via-parm``. ``host`` keeps IPv6 brackets; ``params`` in order."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    @classmethod
    def parse(cls, text: str) -> Via:
        match = _VIA_RE.match(text)
        if match is None:
            raise ParseError("bad Via")
        name, version, transport, host, port, paramtext = match.groups()
        check_host(host)
        params = parse_params(paramtext) if paramtext is not None else {}
        if paramtext is not None and not params:
            raise ParseError("bad Via parameters")
        for key in ("branch", "received", "maddr", "ttl"):
            if key in params and not params[key]:
                raise ParseError(f"Via {key} without value")
        received = params.get("received")
        if received is not None:
            # RFC 5118 4.5: an IPv6 received value may come with or without brackets
            if ":" in received and not received.startswith("["):
                check_host(f"[{received}]")
            else:
                check_host(received)
        rport = params.get("rport")
        if rport is not None:
            parse_port(rport)
        return cls(
            transport=transport.upper(),
            host=host,
            port=parse_port(port) if port else None,
            params=params,
            protocol=f"{name.upper()}/{version}",
        )

    def __str__(self) -> str:
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {sent_by}{format_params(self.params)}"


def parse_via_list(text: str) -> list[Via]:
    parts = split_quoted(text, ",")
    if any(not part.strip() for part in parts):
        raise ParseError("empty Via element")
    return [Via.parse(part) for part in parts]


@dataclass(eq=True, frozen=True, slots=True)
class CSeq:
    """``CSeq = 1*DIGIT LWS Method``."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = _LWS_RE.split(text.strip(" \t"))
        if len(parts) != 2:
            raise ParseError("bad CSeq")
        number, method = parts
        if not is_digits(number) or len(number) > 10:
            raise ParseError("bad CSeq number")
        seq = int(number)
        if seq > CSEQ_MAX:
            raise ParseError("CSeq number out of range")
        if not TOKEN_FULL_RE.match(method):
            raise ParseError("bad CSeq method")
        return cls(seq, method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_int(text: str, what: str, maximum: int) -> int:
    """A ``1*DIGIT`` header value (Max-Forwards, Expires...) bounded by ``maximum``."""
    text = text.strip()
    if not is_digits(text) or len(text) > 10:
        raise ParseError(f"bad {what}")
    value = int(text)
    if value > maximum:
        raise ParseError(f"{what} out of range")
    return value


def parse_token_list(text: str) -> list[str]:
    """``token *(COMMA token)`` as in Require, Supported, Allow."""
    items = [item.strip() for item in text.split(",")]
    items = [item for item in items if item]
    for item in items:
        if not TOKEN_FULL_RE.match(item):
            raise ParseError("bad token list")
    return items


__all__ = [
    "CSEQ_MAX",
    "MAGIC_COOKIE",
    "CSeq",
    "NameAddr",
    "Via",
    "parse_int",
    "parse_name_addr_list",
    "parse_token_list",
    "parse_via_list",
    "split_hostport",
]
