#!/usr/bin/env python3
"""CPU per call of ``voicegw run``: CPU seconds of the daemon process (utime + stime from
/proc/PID/stat) per 1,000 signalling-only calls, with an optional py-spy profile.

The same sipp UAC -> voicegw -> sipp UAS calls as ``call_rate.py --modes sig`` (calls
held 1 s), at a rate the daemon keeps up with even on a loaded machine (default 50/s):
CPU seconds, unlike calls/s or latency, do not depend much on what else the machine
runs, so figures from before and after a change compare on a busy box. The loop-lag
shedding is off (``guard.max_loop_lag: 0``) so that a late loop does not turn calls
into 503s; a run with failed calls is reported as such and is not a figure.

    .venv/bin/python scripts/bench/call_cpu.py                      # 3 runs of 8 s at 50/s
    .venv/bin/python scripts/bench/call_cpu.py --rate 100 --runs 5
    .venv/bin/python scripts/bench/call_cpu.py --profile /tmp/vg.txt  # py-spy, top functions

``--profile`` samples the daemon with py-spy (``--nonblocking``, ~100 Hz: a blocking
sampler stalls the daemon on a loaded box) and prints the functions with the most
samples, self and inclusive. Every process started here is stopped here, by its PID.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import call_rate as cr

CONFIG = "api:\n  enabled: false\nguard:\n  max_loop_lag: 0\n"


def thread_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` (/proc/PID/task/TID/stat utime + stime)."""
    out: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / cr.TICKS
    return out


def top(raw: Path, count: int) -> str:
    """The ``count`` functions with the most samples in py-spy's raw output."""
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        samples = int(n)
        total += samples
        frames = [f.split(" (")[0] + " " + f.rpartition("(")[2].split(":")[0].split("/voicegw/")[-1]
                  for f in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            within[frame] += samples
    out = [f"{total} samples", "self:"]
    out += [f"  {100 * n / total:5.1f}% {f}" for f, n in own.most_common(count)]
    out += ["inclusive:"] + [f"  {100 * n / total:5.1f}% {f}" for f, n in within.most_common(count)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=50, help="calls/s (default 50)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of new calls per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write py-spy's top functions here")
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed: run scripts/bootstrap", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="voicegw-call-cpu-") as tmp:
        work = Path(tmp)
        uas, uas_port = cr.start_uas(sipp, work, rtp_echo=False)
        server = spy = None
        try:
            server = cr.start_voicegw(work, uas_port, config_text=CONFIG, timeout=120)
            if args.profile:
                py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                spy = subprocess.Popen([py_spy, "record", "-p", str(server.proc.pid), "-r", "97",
                                        "--nonblocking", "--format", "raw", "-o", str(work / "spy.raw"),
                                        "-d", str(int(args.runs * (args.seconds + 6) + 10))],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for run in range(args.runs):
                run_dir = work / f"run{run}"
                run_dir.mkdir()
                pid = server.proc.pid
                before, threads = cr.cpu_seconds([pid]), thread_seconds(pid)
                step = cr.run_step(sipp, server, cr.scenario_for("sig", work), "sig", args.rate,
                                   args.seconds, 1000, run_dir)
                cpu = cr.cpu_seconds([pid]) - before
                # the event loop's thread (the process's first) and the others (the
                # records store's writer, asyncio.to_thread helpers): the second part
                # is mostly the store
                main = thread_seconds(pid).get(pid, 0.0) - threads.get(pid, 0.0)
                per_1000 = round(1000 * cpu / step.attempted, 2) if step.attempted else None
                main_1000 = round(1000 * main / step.attempted, 2) if step.attempted else None
                results.append({"rate": args.rate, "attempted": step.attempted, "ok": step.successful,
                                "failed": step.failed, "cpu_s_per_1000_calls": per_1000,
                                "loop_thread_cpu_s_per_1000_calls": main_1000, "load_1min": step.load_1min})
                print(f"run {run + 1}: {step.successful}/{step.attempted} ok, {step.failed} failed, "
                      f"{per_1000} CPU s per 1000 calls ({main_1000} in the loop's thread, "
                      f"{round(per_1000 - main_1000, 2) if per_1000 is not None and main_1000 is not None else None}"
                      f" in the others), load {step.load_1min}"
                      + ("" if step.clean else "  (failed calls: not a figure)"), flush=True)
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes what it has
                spy.wait(30)
                spy = None
                args.profile.write_text(top(work / "spy.raw", 40) + "\n")
                print(f"profile: {args.profile}")
        finally:
            if spy is not None:
                spy.kill()
                spy.wait(5)
            if server is not None:
                server.stop()
            cr.stop_process(uas)
    clean = [r["cpu_s_per_1000_calls"] for r in results if r["failed"] == 0 and r["attempted"]]
    print(json.dumps({"runs": results, "best_cpu_s_per_1000_calls": min(clean) if clean else None,
                      "cpus": os.cpu_count()}))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
