"""The SIP message model: requests, responses and their header fields.

Header values are kept as the (unfolded) text that arrived and parsed into
structured values only when read, so relaying a message costs a split and a join.
Unknown headers round-trip byte for byte; names keep the case they arrived in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .errors import ParseError
from .grammar import header_key, split_quoted
from .headers import CSeq, NameAddr, Via, parse_int, parse_name_addr_list, parse_via_list
from .uri import Uri, parse_uri

SIP_VERSION = "SIP/2.0"

#: Headers whose values are ``#element`` lists that may be comma-joined on one line
#: (RFC 3261 7.3.1). Others (Date, WWW-Authenticate, Authorization...) contain commas
#: of their own and are never split.
LIST_HEADERS = frozenset(
    {
        "via", "route", "record-route", "contact", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "allow-events", "content-encoding", "content-language", "in-reply-to", "path",
        "service-route", "reason", "history-info", "p-asserted-identity",
    }
)

#: The canonical spelling used for headers this code adds.
CANONICAL_NAMES = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq",
}


def canonical_name(key: str) -> str:
    return CANONICAL_NAMES.get(key) or "-".join(part.capitalize() for part in key.split("-"))


class Headers:
    """An ordered multi-map of header fields, looked up case-insensitively.

    Lookup keys are lower-case full names; compact forms ("v", "i", "m"...) map to
    their long names, so ``headers.get("via")`` finds a ``v:`` line too.
    """

    __slots__ = ("_fields", "_parsed")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = [
            (header_key(name), name, value) for name, value in fields
        ]
        #: Structured values already parsed, keyed by (kind, raw text): a changed
        #: header has new text, so the cache never needs invalidating.
        self._parsed: dict[tuple[str, str], object] = {}

    def forget_parsed(self) -> None:
        """Drop the structured values parsed so far (they are parsed again if asked):
        a message kept long after its use need not keep its URIs and parameters."""
        self._parsed = {}

    @classmethod
    def _from_parsed(cls, fields: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._fields = fields
        headers._parsed = {}
        return headers

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._fields:
            yield name, value

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, key: str) -> bool:
        key = header_key(key)
        for k, _, _ in self._fields:
            if k == key:
                return True
        return False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._fields] == [(k, v) for k, _, v in other._fields]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first field's value, or ``default``."""
        key = header_key(key)
        for k, _, value in self._fields:
            if k == key:
                return value
        return default

    def get_all(self, key: str) -> list[str]:
        """Every field's value, one entry per header line."""
        key = header_key(key)
        return [value for k, _, value in self._fields if k == key]

    def values(self, key: str) -> list[str]:
        """Every element of a list header, comma-joined lines split (7.3.1)."""
        key = header_key(key)
        result: list[str] = []
        for k, _, value in self._fields:
            if k == key:
                if key in LIST_HEADERS and "," in value:
                    result.extend(part.strip() for part in split_quoted(value, ","))
                else:
                    result.append(value.strip())
        return result

    def count(self, key: str) -> int:
        return self.keys().count(header_key(key))

    def keys(self) -> list[str]:
        """The lookup key of every field, in order (``Headers.keys().count(k)`` is cheap)."""
        return [k for k, _, _ in self._fields]

    def add(self, name: str, value: str) -> None:
        """Append a field after the others."""
        self._fields.append((header_key(name), name, value))

    def insert_first(self, name: str, value: str) -> None:
        """Put a field before every other field of the same name (Via, Record-Route)."""
        key = header_key(name)
        for index, (k, _, _) in enumerate(self._fields):
            if k == key:
                self._fields.insert(index, (key, name, value))
                return
        self._fields.append((key, name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name with one, kept where the first was."""
        key = header_key(name)
        for index, (k, _, _) in enumerate(self._fields):
            if k == key:
                self._fields[index] = (key, name, value)
                self._fields = [f for i, f in enumerate(self._fields) if f[0] != key or i == index]
                return
        self._fields.append((key, name, value))

    def remove(self, key: str) -> int:
        """Drop every field of this name; return how many were dropped."""
        key = header_key(key)
        before = len(self._fields)
        self._fields = [f for f in self._fields if f[0] != key]
        return before - len(self._fields)

    def pop_first(self, key: str) -> str | None:
        """Remove the first element of a list header (Via, Route) and return it."""
        key = header_key(key)
        for index, (k, name, value) in enumerate(self._fields):
            if k == key:
                parts = split_quoted(value, ",") if key in LIST_HEADERS else [value]
                first = parts[0].strip()
                if len(parts) > 1:
                    self._fields[index] = (k, name, ",".join(parts[1:]).strip())
                else:
                    del self._fields[index]
                return first
        return None

    def copy(self) -> Headers:
        return Headers._from_parsed(list(self._fields))

    def encode(self) -> bytes:
        return "".join([f"{name}: {value}\r\n" for _, name, value in self._fields]).encode(
            "utf-8", "surrogateescape"
        )


class _Message:
    """What requests and responses share: headers, body and the common headers' views."""

    __slots__ = ()
    headers: Headers
    body: bytes

    # --- the headers every message must carry (8.1.1) --------------------------------
    @property
    def call_id(self) -> str:
        return self._required("call-id").strip()

    # Structured views are parsed once per distinct header text and shared: treat
    # them as read-only (copy before changing one).
    @property
    def cseq(self) -> CSeq:
        return self._cached("cseq", self._required("cseq"), CSeq.parse)  # type: ignore[return-value]

    @property
    def from_(self) -> NameAddr:
        return self._cached("from", self._required("from"), NameAddr.parse)  # type: ignore[return-value]

    @property
    def to(self) -> NameAddr:
        return self._cached("to", self._required("to"), NameAddr.parse)  # type: ignore[return-value]

    @property
    def vias(self) -> list[Via]:
        result: list[Via] = []
        for value in self.headers.get_all("via"):
            result.extend(self._cached("vias", value, parse_via_list))  # type: ignore[arg-type]
        if not result:
            raise ParseError("missing Via")
        return result

    @property
    def top_via(self) -> Via:
        value = self._required("via")
        return self._cached("top_via", value, lambda v: Via.parse(split_quoted(v, ",")[0]))  # type: ignore[return-value]

    def _cached(self, kind: str, raw: str, parse: Callable[[str], object]) -> object:
        cache = self.headers._parsed
        value = cache.get((kind, raw))
        if value is None:
            value = parse(raw)
            cache[(kind, raw)] = value
        return value

    @property
    def contacts(self) -> list[NameAddr]:
        result: list[NameAddr] = []
        for value in self.headers.get_all("contact"):
            result.extend(parse_name_addr_list(value))
        return result

    def route_set(self, key: str = "record-route") -> list[NameAddr]:
        result: list[NameAddr] = []
        for value in self.headers.get_all(key):
            result.extend(parse_name_addr_list(value))
        return result

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("max-forwards")
        return None if value is None else parse_int(value, "Max-Forwards", 255)

    @property
    def content_type(self) -> str | None:
        """The media type, lower case, without parameters."""
        value = self.headers.get("content-type")
        return None if value is None else value.split(";", 1)[0].strip().lower()

    def _required(self, key: str) -> str:
        value = self.headers.get(key)
        if value is None:
            raise ParseError(f"missing {canonical_name(key)}")
        return value

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body and keep Content-Length (and Content-Type) in step."""
        self.body = body
        if content_type is not None:
            self.headers.set("Content-Type", content_type)
        elif not body:
            self.headers.remove("content-type")
        self.headers.set("Content-Length", str(len(body)))

    def _encode(self, start_line: str) -> bytes:
        return (
            start_line.encode("utf-8", "surrogateescape")
            + b"\r\n"
            + self.headers.encode()
            + b"\r\n"
            + self.body
        )


@dataclass(eq=True, slots=True)
class Request(_Message):
    """``Request-Line *message-header CRLF [message-body]``.

    ``uri`` is the Request-URI as sent; :meth:`request_uri` parses it.
    """

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def request_uri(self) -> Uri:
        return parse_uri(self.uri)

    def __bytes__(self) -> bytes:
        return self._encode(f"{self.method} {self.uri} {self.version}")


@dataclass(eq=True, slots=True)
class Response(_Message):
    """``Status-Line *message-header CRLF [message-body]``."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    @property
    def is_provisional(self) -> bool:
        return self.status < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def __bytes__(self) -> bytes:
        return self._encode(f"{self.version} {self.status} {self.reason}")


Message = Request | Response
