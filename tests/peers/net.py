"""Loopback sockets for wire tests: raw SIP over UDP and TCP (and free ports, from ports.py)."""

from __future__ import annotations

import select
import socket
import time
import uuid
from collections.abc import Callable

from .ports import free_port  # where most tests import it from (re-exported: __all__)


def options(
    target: tuple[str, int],
    local: tuple[str, int],
    transport: str = "UDP",
    cseq: int = 1,
    call_id: str | None = None,
    method: str = "OPTIONS",
    extra: str = "",
    omit: tuple[str, ...] = (),
) -> bytes:
    """A request (OPTIONS by default) from ``local`` to ``target``."""
    call_id = call_id or f"{uuid.uuid4().hex}@{local[0]}"
    lines = [
        f"{method} sip:voicegw@{target[0]}:{target[1]} SIP/2.0",
        f"Via: SIP/2.0/{transport} {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex};rport",
        f"From: <sip:test@{local[0]}>;tag={uuid.uuid4().hex[:8]}",
        f"To: <sip:voicegw@{target[0]}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
    ]
    lines = [line for line in lines if line.split(":", 1)[0] not in omit]
    head = "\r\n".join(lines) + "\r\n" + extra
    return (head + "Content-Length: 0\r\n\r\n").encode()


def status_line(data: bytes) -> tuple[int, str]:
    """(status, reason) of a response."""
    line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    _, status, reason = line.split(" ", 2)
    return int(status), reason


def header(data: bytes, name: str) -> str | None:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.decode("utf-8", "replace").partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def udp_socket(host: str, port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    return sock


def recv_any(
    socks: list[socket.socket], timeout: float
) -> tuple[bytes, socket.socket] | None:
    """The first datagram on any of ``socks`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select(socks, [], [], left)
        for sock in ready:
            return sock.recv(70_000), sock
        if left <= 0:
            return None


def drain(socks: list[socket.socket]) -> None:
    while recv_any(socks, 0.0) is not None:
        pass


def udp_request(
    target: tuple[str, int],
    data: bytes | Callable[[tuple[str, int]], bytes],
    source: str = "127.0.0.1",
    timeout: float = 2.0,
) -> bytes | None:
    """Send one datagram from a fresh socket on ``source``; the reply or None.

    ``data`` may be a function of the socket's address (to put it in the Via).
    """
    with udp_socket(source) as sock:
        if callable(data):
            data = data(sock.getsockname())
        sock.sendto(data, target)
        got = recv_any([sock], timeout)
        return got[0] if got else None


class TcpReader:
    """Reads whole SIP messages off a TCP socket (framed by Content-Length)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self, timeout: float = 3.0) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            self.buffer = self.buffer.lstrip(b"\r\n")
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                length = int(header(self.buffer[: end + 4], "content-length") or 0)
                total = end + 4 + length
                if len(self.buffer) >= total:
                    message, self.buffer = self.buffer[:total], self.buffer[total:]
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk


__all__ = ["TcpReader", "drain", "free_port", "header", "options", "recv_any", "status_line", "udp_request",
           "udp_socket"]
