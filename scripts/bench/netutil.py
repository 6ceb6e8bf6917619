"""What the benchmarks and the demo share: loopback ports, bounded waiting, and
reading what sipp measured."""

from __future__ import annotations

import csv
import socket
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port free for both UDP and TCP on ``host`` (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise SystemExit("no free port")


def udp_taken(port: int, host: str = HOST) -> bool:
    """Whether something already listens on UDP ``port`` (a peer has started)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def sipp_results(directory: Path) -> tuple[dict[str, str], list[float]]:
    """sipp's last statistics row (``-trace_stat``, ``stat.csv``) and every response
    time it traced (``-trace_rtt``, ``*_rtt.csv``), in milliseconds."""
    stats: dict[str, str] = {}
    if (directory / "stat.csv").exists():
        rows = list(csv.DictReader((directory / "stat.csv").open(), delimiter=";"))
        stats = rows[-1] if rows else {}
    rtts: list[float] = []
    for path in directory.glob("*_rtt.csv"):
        for row in csv.DictReader(path.open(), delimiter=";"):
            try:
                rtts.append(float(row["response_time_ms"]))
            except (KeyError, TypeError, ValueError):
                pass
    return stats, rtts
