"""rtpengine's ng control protocol: bencode, message framing, and two tiny clients.

The ng protocol (rtpengine's "listen-ng" port) is one UDP datagram per request,
``COOKIE <bencoded dictionary>``, answered by a datagram with the same cookie and a
bencoded dictionary. The cookie is the request's identity: rtpengine keeps recent
replies by cookie, so a retransmitted request (same cookie, same body) gets the cached
reply instead of being carried out twice. Every reply has a ``result``: ``ok`` (with
the rewritten ``sdp`` for offer/answer), ``pong`` for ping, or ``error`` with an
``error-reason``; an ``ok`` may carry a ``warning``.

A call through rtpengine is an ``offer`` (call-id, from-tag, the caller's SDP; the
reply's SDP, with rtpengine's media address, goes to the callee), an ``answer``
(call-id, from-tag, to-tag, the callee's SDP; the reply's SDP goes to the caller), and
a ``delete`` at the end. ``query`` returns the call's packet and byte counters.

Layout: the core (``bencode``/``bdecode``, ``frame``/``parse_frame``, the message
builders and ``check_reply``) does no I/O and keeps no state, so a media backend can
use it from any loop. ``NgClient`` is a blocking client (a socket with retransmission)
for scripts, benchmarks and tests; ``AsyncNgClient`` is the same over an asyncio
datagram endpoint, for the daemon.

Strings: ``bencode`` takes ``str`` (encoded as UTF-8) or ``bytes``; ``bdecode`` returns
``str`` by default, decoding with ``surrogateescape`` so that bytes which are not
UTF-8 survive a decode/encode round trip unchanged (``text=False`` returns ``bytes``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

__all__ = [
    "AsyncNgClient", "BencodeError", "NgClient", "NgError", "answer", "bdecode", "bencode",
    "check_reply", "delete", "frame", "new_cookie", "offer", "parse_frame", "ping", "query",
]

Value = int | str | bytes | list[Any] | dict[str, Any]

#: The flags voicegw passes by default: rtpengine rewrites o= and the session c=
#: line too (so the far side sees one consistent address) and strips ICE, which
#: plain SIP trunks do not use.
DEFAULT_REPLACE = ("origin", "session-connection")


class BencodeError(ValueError):
    """Malformed bencode, or a value bencode cannot carry."""


class NgError(Exception):
    """rtpengine answered ``result: error`` (or something that is not a reply)."""

    def __init__(self, reason: str, reply: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = dict(reply or {})


# ---------------------------------------------------------------------------- bencode
def _text_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def bencode(value: Any) -> bytes:
    """Bencode ``value``: int, str, bytes, list/tuple, dict (str or bytes keys).

    Dictionary keys are written sorted by their raw bytes, as the format requires.
    ``bool`` and ``None`` are refused (bencode has neither; rtpengine spells booleans
    as flags or as the strings "yes"/"no").
    """
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    if isinstance(value, bool) or value is None:
        raise BencodeError(f"bencode has no {type(value).__name__}: {value!r}")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, (str, bytes, bytearray, memoryview)):
        raw = _text_bytes(value) if isinstance(value, (str, bytes)) else bytes(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, (str, bytes)):
                raise BencodeError(f"dictionary key must be str or bytes, not {type(key).__name__}")
            items.append((_text_bytes(key), item))
        items.sort(key=lambda pair: pair[0])
        for (a, _), (b, _) in itertools.pairwise(items):
            if a == b:
                raise BencodeError(f"duplicate dictionary key {a!r}")
        out.append(b"d")
        for key, item in items:
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, (list, tuple)):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes, text: bool = True, max_depth: int = 64) -> Any:
    """Decode one bencoded value that spans all of ``data``."""
    value, end = _decode(bytes(data), 0, text, max_depth)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} trailing byte(s) after the value")
    return value


def _decode(data: bytes, pos: int, text: bool, depth: int) -> tuple[Any, int]:
    if pos >= len(data):
        raise BencodeError("truncated")
    if depth < 0:
        raise BencodeError("nested too deeply")
    lead = data[pos]
    if lead == 0x69:  # i<digits>e
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError("unterminated integer")
        digits = data[pos + 1:end]
        if not _canonical_int(digits):
            raise BencodeError(f"bad integer {digits!r}")
        return int(digits), end + 1
    if lead == 0x6C:  # l ... e
        items, pos = [], pos + 1
        while True:
            if pos >= len(data):
                raise BencodeError("unterminated list")
            if data[pos] == 0x65:
                return items, pos + 1
            item, pos = _decode(data, pos, text, depth - 1)
            items.append(item)
    if lead == 0x64:  # d ... e
        result: dict[Any, Any] = {}
        pos += 1
        while True:
            if pos >= len(data):
                raise BencodeError("unterminated dictionary")
            if data[pos] == 0x65:
                return result, pos + 1
            if not 0x30 <= data[pos] <= 0x39:
                raise BencodeError("dictionary key is not a string")
            key, pos = _decode(data, pos, text, depth - 1)
            if key in result:
                raise BencodeError(f"duplicate dictionary key {key!r}")
            result[key], pos = _decode(data, pos, text, depth - 1)
    if 0x30 <= lead <= 0x39:  # <length>:<bytes>
        colon = data.find(b":", pos)
        if colon < 0:
            raise BencodeError("string length without ':'")
        digits = data[pos:colon]
        if not digits.isdigit() or (len(digits) > 1 and digits[0] == 0x30):
            raise BencodeError(f"bad string length {digits!r}")
        start, end = colon + 1, colon + 1 + int(digits)
        if end > len(data):
            raise BencodeError("truncated string")
        raw = data[start:end]
        return (raw.decode("utf-8", "surrogateescape") if text else raw), end
    raise BencodeError(f"unexpected byte {data[pos:pos + 1]!r} at {pos}")


def _canonical_int(digits: bytes) -> bool:
    body = digits[1:] if digits.startswith(b"-") else digits
    if not body.isdigit():
        return False
    # no leading zeros, no "-0"
    return not (body[0] == 0x30 and (len(body) > 1 or digits.startswith(b"-")))


# ---------------------------------------------------------------------------- framing
def new_cookie() -> str:
    """A fresh request cookie: 16 hex digits (no spaces, unique enough per process)."""
    return os.urandom(8).hex()


def frame(cookie: str, message: Mapping[str, Any]) -> bytes:
    """``COOKIE <bencoded message>``, the datagram for one request."""
    if not cookie or any(c.isspace() for c in cookie):
        raise ValueError(f"a cookie is a non-empty token without spaces, not {cookie!r}")
    return cookie.encode("ascii") + b" " + bencode(message)


def parse_frame(data: bytes, text: bool = True) -> tuple[str, dict[str, Any]]:
    """(cookie, message) of an ng datagram; ``BencodeError`` when it is not one."""
    cookie, space, body = bytes(data).partition(b" ")
    if not space or not cookie:
        raise BencodeError("no cookie: an ng message is 'COOKIE <bencoded dictionary>'")
    message = bdecode(body, text=text)
    if not isinstance(message, dict):
        raise BencodeError("an ng message body must be a dictionary")
    return cookie.decode("ascii", "replace"), message


# ---------------------------------------------------------------------------- messages
def _with(extra: Mapping[str, Any] | None, **base: Any) -> dict[str, Any]:
    message = {key.replace("_", "-"): value for key, value in base.items() if value is not None}
    message.update(extra or {})
    return message


def ping() -> dict[str, Any]:
    return {"command": "ping"}


def offer(call_id: str, from_tag: str, sdp: str | bytes, *, flags: Sequence[str] = (),
          replace: Sequence[str] = DEFAULT_REPLACE, extra: Mapping[str, Any] | None = None,
          ) -> dict[str, Any]:
    """The caller's SDP; the reply's ``sdp`` is what the callee is offered."""
    return _with(extra, command="offer", call_id=call_id, from_tag=from_tag, sdp=sdp,
                 flags=list(flags) or None, replace=list(replace) or None)


def answer(call_id: str, from_tag: str, to_tag: str, sdp: str | bytes, *,
           flags: Sequence[str] = (), replace: Sequence[str] = DEFAULT_REPLACE,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The callee's SDP; the reply's ``sdp`` is what the caller is answered."""
    return _with(extra, command="answer", call_id=call_id, from_tag=from_tag, to_tag=to_tag,
                 sdp=sdp, flags=list(flags) or None, replace=list(replace) or None)


def delete(call_id: str, from_tag: str | None = None, to_tag: str | None = None, *,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """End the call (or one branch of it); the reply carries its final counters."""
    return _with(extra, command="delete", call_id=call_id, from_tag=from_tag, to_tag=to_tag)


def query(call_id: str, from_tag: str | None = None, to_tag: str | None = None) -> dict[str, Any]:
    """The call's counters (``totals``: RTP/RTCP packets, bytes, errors; per tag)."""
    return _with(None, command="query", call_id=call_id, from_tag=from_tag, to_tag=to_tag)


def check_reply(reply: Mapping[str, Any]) -> dict[str, Any]:
    """``reply`` when its result is ok or pong; ``NgError`` otherwise."""
    result = reply.get("result")
    if result in ("ok", "pong"):
        return dict(reply)
    if result == "error":
        raise NgError(str(reply.get("error-reason", "unspecified error")), reply)
    raise NgError(f"unexpected result {result!r}", reply)


# ---------------------------------------------------------------------------- clients
class NgClient:
    """Blocking client: one request at a time, retransmitted with the same cookie.

    ``timeout`` is the whole wait for one request; the datagram is re-sent every
    ``retransmit`` seconds until then (rtpengine answers a repeat from its cache).
    """

    def __init__(self, address: tuple[str, int], timeout: float = 2.0,
                 retransmit: float = 0.5) -> None:
        self.address = address
        self.timeout = timeout
        self.retransmit = retransmit
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.connect(address)

    def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``message``, return the checked reply (``NgError``, ``TimeoutError``)."""
        cookie = new_cookie()
        data = frame(cookie, message)
        deadline = time.monotonic() + self.timeout
        while True:
            self.sock.send(data)
            resend = min(deadline, time.monotonic() + self.retransmit)
            while (left := resend - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    datagram = self.sock.recv(65536)
                except TimeoutError:
                    break
                except ConnectionRefusedError as error:
                    raise NgError(f"nothing listens on {self.address}") from error
                got, reply = parse_frame(datagram)
                if got == cookie:
                    return check_reply(reply)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no ng reply from {self.address} to {message.get('command')}")

    def ping(self) -> dict[str, Any]:
        return self.request(ping())

    def offer(self, call_id: str, from_tag: str, sdp: str | bytes, **kw: Any) -> dict[str, Any]:
        return self.request(offer(call_id, from_tag, sdp, **kw))

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str | bytes,
               **kw: Any) -> dict[str, Any]:
        return self.request(answer(call_id, from_tag, to_tag, sdp, **kw))

    def delete(self, call_id: str, from_tag: str | None = None, to_tag: str | None = None,
               **kw: Any) -> dict[str, Any]:
        return self.request(delete(call_id, from_tag, to_tag, **kw))

    def query(self, call_id: str, from_tag: str | None = None) -> dict[str, Any]:
        return self.request(query(call_id, from_tag))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncNgClient(asyncio.DatagramProtocol):
    """The same over an asyncio datagram endpoint; many requests may be in flight.

    ``client = await AsyncNgClient.connect(("127.0.0.1", 22223))``, then
    ``await client.request(offer(...))``; ``client.close()`` at the end.
    """

    def __init__(self, timeout: float = 2.0, retransmit: float = 0.5) -> None:
        self.timeout = timeout
        self.retransmit = retransmit
        self.transport: asyncio.DatagramTransport | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @classmethod
    async def connect(cls, address: tuple[str, int], timeout: float = 2.0,
                      retransmit: float = 0.5) -> AsyncNgClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_datagram_endpoint(
            lambda: cls(timeout, retransmit), remote_addr=address)
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            cookie, reply = parse_frame(data)
        except BencodeError:
            return  # not ours to answer; a malformed reply just times out
        future = self._waiting.get(cookie)
        if future is not None and not future.done():
            future.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NgError(f"ng socket error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NgError("ng client closed"))

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if self.transport is None or self.transport.is_closing():
            raise NgError("ng client is not connected")
        cookie = new_cookie()
        data = frame(cookie, message)
        future = asyncio.get_running_loop().create_future()
        self._waiting[cookie] = future
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    self.transport.sendto(data)
                    done, _ = await asyncio.wait({future}, timeout=self.retransmit)
                    if done:
                        return check_reply(future.result())
        except TimeoutError:
            raise TimeoutError(f"no ng reply to {message.get('command')}") from None
        finally:
            del self._waiting[cookie]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
