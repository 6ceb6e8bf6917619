"""Run sipp scenarios against the daemon and read its statistics file."""

from __future__ import annotations

import csv
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = shutil.which("sipp")


@dataclass
class SippResult:
    returncode: int
    stats: dict[str, str]
    """The last row of ``-trace_stat``, by column name (cumulative ``(C)`` columns)."""
    rtts_ms: list[float]
    """Per-call response times from ``-trace_rtt`` (sipp's resolution: 1 ms)."""
    output: str

    def count(self, column: str) -> int:
        return int(self.stats.get(column, "0") or 0)

    @property
    def successful(self) -> int:
        return self.count("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self.count("FailedCall(C)")

    @property
    def retransmissions(self) -> int:
        return self.count("Retransmissions(C)")


def run_sipp(
    target: tuple[str, int],
    scenario: str,
    workdir: Path,
    calls: int,
    rate: float,
    transport: str = "u1",
    local_ip: str = "127.0.0.1",
    limit: int | None = None,
    timeout: float = 60.0,
) -> SippResult:
    """Run ``scenario`` (a file in tests/sipp) for ``calls`` calls at ``rate`` calls/s."""
    if SIPP is None:
        raise RuntimeError("sipp is not installed: run scripts/bootstrap")
    workdir.mkdir(parents=True, exist_ok=True)
    stat = workdir / "stat.csv"
    for old in workdir.glob("*.csv"):
        old.unlink()
    cmd = [
        SIPP, f"{target[0]}:{target[1]}", "-sf", str(SCENARIOS / scenario),
        "-t", transport, "-i", local_ip, "-p", "0",
        "-m", str(calls), "-r", str(rate), "-l", str(limit or max(10, calls)),
        "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error",
        "-trace_stat", "-stf", str(stat), "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", str(workdir / "errors.log"),
        "-max_recv_loops", "10000",
    ]
    proc = subprocess.run(
        cmd, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout + 15, check=False
    )
    stats: dict[str, str] = {}
    if stat.exists():
        rows = list(csv.DictReader(stat.open(), delimiter=";"))
        if rows:
            stats = {k: (v or "").strip() for k, v in rows[-1].items() if k}
    rtts: list[float] = []
    for rtt_file in workdir.glob("*_rtt.csv"):
        for row in csv.DictReader(rtt_file.open(), delimiter=";"):
            try:
                rtts.append(float(row["response_time_ms"]))
            except (KeyError, TypeError, ValueError):
                continue
    return SippResult(proc.returncode, stats, rtts, proc.stdout + proc.stderr)
