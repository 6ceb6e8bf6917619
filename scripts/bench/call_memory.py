#!/usr/bin/env python3
"""Memory per call: the daemon's RSS before and with N concurrent calls.

sipp UAC (tests/peers/scenarios/b2bua_uac_bench.xml, long calls) -> ``voicegw run --bot-uri`` ->
sipp UAS (built-in ``uas``). After a warm-up of a few short calls, RSS (VmRSS) and open
file descriptors of the daemon are read; then N calls are set up at a steady rate and
held; once sipp has ACKed all N (its ``-trace_counts``), RSS and descriptors are read
again. Growth / N is the cost of one established call (two dialogs, two media
endpoints, no RTP flowing). The guard's cap on calls up (``guard.max_calls``, default 1000) is raised to N + 100
for the run. The calls are then hung up, and RSS is read right after
and again once the engine has forgotten them (it keeps ended calls 32 s for late
retransmissions). Prints a table, then one JSON line.

    .venv/bin/python scripts/bench/call_memory.py               # N=2000, about 1.5 minutes
    .venv/bin/python scripts/bench/call_memory.py --calls 500 --rate 100 --settle 0

Loopback only; every process started here is stopped here, by its PID.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from call_rate import (  # noqa: E402  (the bench scripts share their process helpers)
    HOST,
    SCENARIOS,
    cpu_seconds,
    free_media_port,
    free_port,
    rss_kib,
    start_uas,
    start_voicegw,
    stop_process,
    wait_for,
)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def acked_calls(counts_dir: Path) -> int:
    """How many ACKs (for the 200) sipp has sent, from its ``-trace_counts`` file."""
    for path in counts_dir.glob("*_counts.csv"):
        rows = list(csv.DictReader(path.open(), delimiter=";"))
        if not rows:
            return 0
        for key, value in rows[-1].items():
            if key and key.endswith("_ACK_Sent"):
                try:
                    return int(value)
                except (TypeError, ValueError):
                    return 0
    return 0


def run_calls(sipp: str, port: int, work: Path, calls: int, rate: int, hold_ms: int,
              limit: int) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        sipp, f"{HOST}:{port}", "-sf", str(SCENARIOS / "b2bua_uac_bench.xml"), "-i", HOST, "-p", str(free_port()),
        "-mp", str(free_media_port()), "-m", str(calls), "-r", str(rate), "-l", str(limit),
        "-d", str(hold_ms), "-nostdin", "-timeout", f"{int(hold_ms / 1000 + calls / rate + 60)}s",
        "-timeout_error", "-recv_timeout", "10000",
        "-trace_stat", "-stf", str(work / "stat.csv"), "-trace_counts", "-fd", "1",
        "-trace_err", "-error_file", str(work / "errors.log"),
        "-max_recv_loops", "10000", "-max_sched_loops", "10000",
    ]
    return subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def sipp_totals(work: Path) -> dict[str, int]:
    path = work / "stat.csv"
    if not path.exists():
        return {}
    rows = list(csv.DictReader(path.open(), delimiter=";"))
    if not rows:
        return {}
    out = {}
    for key in ("OutgoingCall(C)", "SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)"):
        try:
            out[key] = int(rows[-1].get(key) or 0)
        except ValueError:
            out[key] = 0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="concurrent calls to hold")
    parser.add_argument("--rate", type=int, default=200, help="calls/s while setting them up")
    parser.add_argument("--hold", type=float, default=10.0,
                        help="seconds every call stays up after the last one is set up")
    parser.add_argument("--settle", type=float, default=35.0,
                        help="seconds to wait after the hang-ups before the last RSS reading")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed: run scripts/bootstrap", file=sys.stderr)
        return 2
    # 2 media endpoints per call, an RTP/RTCP pair each: 4 ports per call (+ margin)
    ports = 4 * args.calls + 400
    low = 12000
    if low + ports > 32000:
        print(f"--calls {args.calls}: needs {ports} RTP ports, more than 12000-32000 holds", file=sys.stderr)
        return 2
    setup_s = args.calls / args.rate
    hold_ms = int((setup_s + args.hold) * 1000)

    result: dict[str, object] = {"bench": "call_memory", "calls": args.calls, "rate": args.rate}
    with tempfile.TemporaryDirectory(prefix="voicegw-call-memory-") as tmp:
        work = Path(tmp)
        uas, uas_port = start_uas(sipp, work, rtp_echo=False)
        server = None
        try:
            server = start_voicegw(work, uas_port, rtp_ports=f"{low}-{low + ports - 1}",
                                   log_level=args.log_level, max_calls=args.calls + 100)
            pid = server.proc.pid
            result["rss_start_kib"] = rss_kib(pid)
            warm = run_calls(sipp, server.port, work / "warmup", 50, 50, 100, 100)
            warm.wait(60)
            time.sleep(1.0)
            rss0, fds0 = rss_kib(pid), open_fds(pid)
            cpu0 = cpu_seconds([pid])

            started = time.monotonic()
            load_dir = work / "load"
            load = run_calls(sipp, server.port, load_dir, args.calls, args.rate, hold_ms, args.calls + 10)
            established = wait_for(lambda: acked_calls(load_dir) >= args.calls or load.poll() is not None,
                                   setup_s * 3 + 30, 0.25)
            setup_elapsed = time.monotonic() - started
            acked = acked_calls(load_dir)
            time.sleep(1.0)  # the last ACKs reach the daemon
            rss1, fds1 = rss_kib(pid), open_fds(pid)
            cpu_setup = cpu_seconds([pid]) - cpu0

            try:
                load.wait(hold_ms / 1000 + 90)
            except subprocess.TimeoutExpired:
                stop_process(load)
            totals = sipp_totals(load_dir)
            time.sleep(1.0)
            rss2, fds2 = rss_kib(pid), open_fds(pid)
            rss3 = None
            if args.settle > 0:
                time.sleep(args.settle)
                rss3 = rss_kib(pid)
            alive = server.alive()
        finally:
            exit_code = server.stop() if server is not None else None
            stop_process(uas)

    growth = rss1 - rss0
    result.update({
        "rss_before_kib": rss0,
        "rss_with_calls_kib": rss1,
        "rss_after_hangup_kib": rss2,
        "rss_after_settle_kib": rss3,
        "established": acked,
        "all_established": bool(established and acked >= args.calls),
        "setup_seconds": round(setup_elapsed, 1),
        "rss_growth_kib": growth,
        "kib_per_call": round(growth / max(acked, 1), 2),
        "fds_before": fds0,
        "fds_with_calls": fds1,
        "fds_after_hangup": fds2,
        "fds_per_call": round((fds1 - fds0) / max(acked, 1), 2),
        "daemon_cpu_s_during_setup": round(cpu_setup, 2),
        "sipp": totals,
        "daemon_alive": alive,
        "daemon_exit": exit_code,
    })
    print(f"voicegw memory per call: {args.calls} calls set up at {args.rate}/s "
          f"(sipp UAC -> voicegw -> sipp UAS, no RTP), held {hold_ms / 1000:g} s from the first")
    print(f"{'':34} {'RSS MiB':>8} {'fds':>6}")
    print(f"{'after warm-up (50 calls)':34} {rss0 / 1024:>8.1f} {fds0:>6}")
    print(f"{f'with {acked} calls up':34} {rss1 / 1024:>8.1f} {fds1:>6}")
    print(f"{'right after the hang-ups':34} {rss2 / 1024:>8.1f} {fds2:>6}")
    if rss3 is not None:
        print(f"{f'{args.settle:g} s later':34} {rss3 / 1024:>8.1f}")
    print(f"growth: {growth / 1024:.1f} MiB = {result['kib_per_call']} KiB per call, "
          f"{result['fds_per_call']} file descriptors per call; sipp: {totals}")
    print(json.dumps(result))
    ok = result["all_established"] and alive and exit_code == 0 and totals.get("FailedCall(C)", 1) == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
