#!/usr/bin/env python3
"""OPTIONS at rising rates against ``voicegw run`` (on uvloop), driven by sipp.

Starts the daemon on a free loopback port, runs tests/peers/scenarios/options_uac.xml at each
rate for a few seconds, and stops at the first rate with a failed call or that sipp
could not sustain. Reports the highest rate with 0 failures and the response-time
p50/p99 there, from sipp's per-call RTT trace (``-trace_rtt``; sipp's clock ticks in
whole milliseconds, so "0" means under 1 ms). Prints a table, then one JSON line.

    .venv/bin/python scripts/bench/options_rate.py            # default run, < 2 minutes
    .venv/bin/python scripts/bench/options_rate.py --rates 1000,2000 --seconds 3 -t t1

Loopback only; every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from netutil import free_port, sipp_results

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "peers" / "scenarios" / "options_uac.xml"
DEFAULT_RATES = (500, 1000, 2000, 3000, 4000, 5000, 6000, 8000)




class Daemon:
    def __init__(self, host: str, port: int) -> None:
        self.lines: list[str] = []
        self.started = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicegw", "run", "--sip-host", host, "--sip-port", str(port)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self.started.wait(15):
            self.stop()
            raise SystemExit("daemon did not start:\n" + "\n".join(self.lines[-10:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            if '"daemon.started"' in line:
                self.started.set()

    @property
    def loop(self) -> str:
        for line in self.lines:
            if '"daemon.started"' in line:
                return json.loads(line).get("loop", "?")
        return "?"

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def run_step(sipp: str, target: str, rate: int, seconds: float, transport: str, work: Path) -> dict:
    step = work / f"rate{rate}"
    step.mkdir()
    calls = int(rate * seconds)
    cmd = [
        sipp, target, "-sf", str(SCENARIO), "-t", transport, "-i", "127.0.0.1", "-p", "0",
        "-m", str(calls), "-r", str(rate), "-l", str(max(100, rate * 2)),
        "-nostdin", "-timeout", f"{int(seconds * 3 + 10)}s", "-timeout_error",
        "-trace_stat", "-stf", str(step / "stat.csv"), "-fd", "1",
        "-trace_rtt", "-rtt_freq", "200", "-max_recv_loops", "10000", "-max_sched_loops", "10000",
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=step, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=seconds * 3 + 30)
    elapsed = time.monotonic() - started
    stats, rtts = sipp_results(step)

    def count(name: str) -> int:
        try:
            return int(stats.get(name, "0") or 0)
        except ValueError:
            return 0

    successful, failed = count("SuccessfulCall(C)"), count("FailedCall(C)")
    achieved = successful / elapsed if elapsed else 0.0
    return {
        "rate": rate,
        "calls": calls,
        "successful": successful,
        "failed": failed,
        "retransmissions": count("Retransmissions(C)"),
        "achieved_rate": round(achieved, 1),
        "p50_ms": percentile(rtts, 50),
        "p99_ms": percentile(rtts, 99),
        "max_ms": max(rtts) if rtts else None,
        "sipp_exit": proc.returncode,
        "ok": failed == 0 and successful == calls and proc.returncode == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                        help="comma-separated calls/s, rising")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("-t", "--transport", default="u1", help="sipp transport: u1 (UDP) or t1 (TCP)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed: run scripts/bootstrap", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    port = free_port(args.host)
    daemon = Daemon(args.host, port)
    steps: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="voicegw-bench-") as tmp:
            for rate in rates:
                step = run_step(sipp, f"{args.host}:{port}", rate, args.seconds, args.transport, Path(tmp))
                steps.append(step)
                # a step counts when every call succeeded and sipp kept (near) the rate
                sustained = step["achieved_rate"] >= 0.85 * rate
                step["ok"] = step["ok"] and sustained
                if not step["ok"] or daemon.proc.poll() is not None:
                    break
    finally:
        exit_code = daemon.stop()
    best = max((s for s in steps if s["ok"]), key=lambda s: s["rate"], default=None)

    print(f"voicegw OPTIONS rate, transport {args.transport}, daemon loop {daemon.loop}, "
          f"{args.seconds:g} s per step")
    header = f"{'rate/s':>7} {'achieved':>9} {'ok':>6} {'failed':>6} {'retrans':>7} {'p50 ms':>6} {'p99 ms':>6} {'max ms':>6}"
    print(header)
    print("-" * len(header))
    for s in steps:
        print(f"{s['rate']:>7} {s['achieved_rate']:>9} {s['successful']:>6} {s['failed']:>6} "
              f"{s['retransmissions']:>7} {_ms(s['p50_ms']):>6} {_ms(s['p99_ms']):>6} {_ms(s['max_ms']):>6}"
              + ("" if s["ok"] else "   <- not sustained"))
    result = {
        "bench": "options_rate",
        "transport": args.transport,
        "loop": daemon.loop,
        "max_rate_zero_failures": best["rate"] if best else None,
        "p50_ms": best["p50_ms"] if best else None,
        "p99_ms": best["p99_ms"] if best else None,
        "daemon_exit": exit_code,
        "steps": steps,
    }
    print(json.dumps(result))
    return 0 if best is not None and exit_code == 0 else 1


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    sys.exit(main())
