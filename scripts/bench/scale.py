#!/usr/bin/env python3
"""Scaling out: calls/s with 0 failures for one voicegw alone, and for ``voicegw run
--workers N`` behind Kamailio's dispatcher (deploy/kamailio/kamailio.cfg), on this host.

sipp UAC -> [voicegw | Kamailio -> N workers] -> sipp UAS (the bot), the same scenario
and rising rates as call_rate.py (tests/peers/scenarios/b2bua_uac_bench.xml: 1xx
optional and unordered; ``--modes rtp`` plays PCMU and the UAS echoes it). For each
setup the highest rate whose step had 0 failed calls is its capacity; the ratio is
farm / single. CPU per step: every process of the setup (voicegw's supervisor and
workers, Kamailio's processes, rtpengine when it relays the media) in % of one core.

Memory per call: the setup's RSS (all its processes) before and with ``--memory-calls``
calls up (held), divided by their number (call_memory.py does this in depth for one
process).

The media plane: ``--extra-config FILE`` merges a YAML file into every worker's config
(e.g. the media backend section once rtpengine is the media plane); ``--rtpengine``
starts rtpengine in userspace on loopback (Debian's rtpengine-daemon,
shared/anchors/README.md) and replaces ``@RTPENGINE_NG@`` in that file by its ng
address (host:port).

    .venv/bin/python scripts/bench/scale.py                                   # the figures (~6 min)
    .venv/bin/python scripts/bench/scale.py --rates 20 --seconds 3 --memory-calls 50   # a smoke run
    .venv/bin/python scripts/bench/scale.py --workers 2 --rtpengine --extra-config media.yaml

Prints a table, then one JSON line. Loopback only; every process started here is
stopped here, by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from call_rate import (
    HOST,
    ROOT,
    Server,
    Step,
    ensure_kamailio,
    free_media_port,
    process_tree,
    rss_kib,
    run_step,
    scenario_for,
    start_uas,
    start_voicegw,
    stop_process,
)
from netutil import free_port, udp_taken, wait_for

DISPATCHER_CFG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
DEFAULT_RATES = (100, 200, 300, 400, 500, 600, 700, 800)


class Single(Server):
    """One voicegw, plus the rtpengine it uses (when it does): what a single step measures."""

    extra: tuple[int, ...] = ()

    @property
    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) + [p for pid in self.extra for p in process_tree(pid)]


class Farm(Single):
    """The supervisor (and its workers) plus Kamailio (and rtpengine): what a farm step measures."""

    kamailio: subprocess.Popen | None = None

    @property
    def pids(self) -> list[int]:
        kamailio = process_tree(self.kamailio.pid) if self.kamailio is not None else []
        return super().pids + kamailio

    def stop(self) -> int | None:
        if self.kamailio is not None:
            stop_process(self.kamailio)
        return stop_process(self.proc, timeout=40)


def consecutive_ports(count: int) -> int:
    for _ in range(100):
        base = free_port()
        if all(not udp_taken(p) for p in range(base, base + count)):
            return base
    raise SystemExit("no consecutive free SIP ports")


def config_text(extra: dict, max_calls: int) -> str:
    data = {"api": {"enabled": False}, "guard": {"max_calls": max_calls, "max_loop_lag": 0}, **extra}
    return yaml.safe_dump(data)


def start_farm(work: Path, kamailio: str, uas_port: int, workers: int, extra: dict, log_level: str,
               max_calls: int) -> Farm:
    base = consecutive_ports(workers)
    config = work / "voicegw.yaml"
    config.write_text(config_text(extra, max_calls))
    # the supervisor's own API is off with the workers' (api.enabled false): nothing else listens
    cmd = [sys.executable, "-m", "voicegw", "run", "--workers", str(workers), "--config", str(config),
           "--sip-host", HOST, "--sip-port", str(base), "--bot-uri", f"sip:bot@{HOST}:{uas_port}",
           "--rtp-ports", "20000-31999", "--log-level", log_level]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    log = work / "voicegw.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out,
                                env=env)
    port = free_port()
    farm = Farm("farm", proc, port, log)
    if not wait_for(lambda: '"workers.started"' in log.read_text(errors="replace") or proc.poll() is not None, 120):
        farm.stop()
        raise SystemExit("voicegw --workers did not start:\n" + log.read_text(errors="replace")[-2000:])
    if proc.poll() is not None:
        raise SystemExit("voicegw --workers exited:\n" + log.read_text(errors="replace")[-2000:])
    dispatcher = work / "dispatcher.list"
    dispatcher.write_text("".join(f"1 sip:{HOST}:{base + i}\n" for i in range(workers)))
    defines = [f"LISTEN=udp:{HOST}:{port}", f'DISPATCHER_LIST="{dispatcher}"', "CHILDREN=2"]
    farm.kamailio = subprocess.Popen(
        [kamailio, "-f", str(DISPATCHER_CFG), *(x for d in defines for x in ("-A", d)), "-P",
         str(work / "kamailio.pid"), "-DD", "-E"],
        cwd=work, stdin=subprocess.DEVNULL, stdout=(work / "kamailio.log").open("wb"), stderr=subprocess.STDOUT)
    if not wait_for(lambda: udp_taken(port) or farm.kamailio.poll() is not None, 10) or farm.kamailio.poll():
        farm.stop()
        raise SystemExit("kamailio did not start:\n" + (work / "kamailio.log").read_text(errors="replace")[-2000:])
    time.sleep(1.0)  # the first OPTIONS round marks the workers up
    return farm


def start_rtpengine(work: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("rtpengine") or "/usr/bin/rtpengine"
    if not Path(binary).exists():
        raise SystemExit("rtpengine is not installed (scripts/bootstrap: rtpengine-daemon)")
    ng, cli = free_port(), free_port()
    proc = subprocess.Popen([binary, "--config-file=none", "--table=-1", f"--interface={HOST}", f"--listen-ng={HOST}:{ng}",
                             f"--listen-cli={HOST}:{cli}",
                             "--port-min=40000", "--port-max=49999", "--foreground", "--log-stderr", "-L", "3",
                             "--num-threads=1"], cwd=work, stdin=subprocess.DEVNULL,
                            stdout=(work / "rtpengine.log").open("wb"), stderr=subprocess.STDOUT)
    wait_for(lambda: udp_taken(ng) or proc.poll() is not None, 10)
    time.sleep(0.5)  # it binds the ng port before the others, and may still fail on one
    if not udp_taken(ng) or proc.poll() is not None:
        stop_process(proc)
        raise SystemExit("rtpengine did not start:\n" + (work / "rtpengine.log").read_text(errors="replace"))
    return proc, f"{HOST}:{ng}"


def memory_per_call(sipp: str, server: Server, scenario: Path, calls: int, rate: int, work: Path) -> dict:
    """RSS of the setup before and with ``calls`` calls up: KiB per call."""
    def rss() -> int:
        return sum(rss_kib(pid) for pid in server.pids if Path(f"/proc/{pid}").exists())

    before = rss()
    hold_ms = int((calls / rate + 6) * 1000)
    run = work / f"{server.name}-memory"
    run.mkdir()
    proc = subprocess.Popen([sipp, f"{HOST}:{server.port}", "-sf", str(scenario), "-i", HOST, "-p", str(free_port()),
                             "-mp", str(free_media_port()), "-m", str(calls), "-r", str(rate), "-l", str(calls + 10),
                             "-d", str(hold_ms), "-nostdin", "-timeout", f"{int(hold_ms / 1000 + 60)}s",
                             "-trace_stat", "-stf", str(run / "stat.csv"), "-fd", "1"],
                            cwd=run, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(calls / rate + 3)  # every call set up, none hung up yet
    during = rss()
    try:
        proc.wait(hold_ms / 1000 + 60)
    except subprocess.TimeoutExpired:
        stop_process(proc)
    return {"setup": server.name, "calls": calls, "rss_before_kib": before, "rss_with_calls_kib": during,
            "kib_per_call": round((during - before) / calls, 1)}


def capacity(steps: list[Step], target: str) -> int:
    clean = [s.rate for s in steps if s.target == target and s.clean]
    return max(clean) if clean else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)), help="calls/s, rising")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of new calls per rate")
    parser.add_argument("--hold-ms", type=int, default=1000, help="call length after the ACK")
    parser.add_argument("--modes", default="sig", help="sig (signalling only), rtp (with RTP)")
    parser.add_argument("--workers", type=int, default=2, help="workers behind Kamailio (default 2)")
    parser.add_argument("--setups", default="single,farm", help="single (one voicegw), farm (workers+Kamailio)")
    parser.add_argument("--memory-calls", type=int, default=1000, help="calls held for the memory figure (0: skip)")
    parser.add_argument("--extra-config", type=Path, help="YAML merged into every voicegw's config")
    parser.add_argument("--rtpengine", action="store_true",
                        help="start rtpengine; @RTPENGINE_NG@ in --extra-config becomes its ng address")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--keep", type=Path, help="keep the logs (sipp, voicegw, Kamailio) in this new directory")
    parser.add_argument("--stop-after-failures", type=int, default=1,
                        help="stop a setup's rising rates after this many steps with failures")
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    kamailio = ensure_kamailio()
    if sipp is None or kamailio is None:
        print("scale: sipp and kamailio are needed (scripts/bootstrap)", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    setups = [s for s in args.setups.split(",") if s in ("single", "farm")]
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    if load_before[0] > 0.5:
        print(f"scale: the machine is not idle (load {load_before}): figures will be low", file=sys.stderr)
    steps: list[Step] = []
    memory: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="voicegw-scale-") as tmp:
        work = Path(tmp)
        if args.keep:
            work = args.keep
            work.mkdir(parents=True, exist_ok=False)
        rtpengine = None
        extra_text = args.extra_config.read_text() if args.extra_config else ""
        if args.rtpengine:
            rtpengine, ng = start_rtpengine(work)
            extra_text = extra_text.replace("@RTPENGINE_NG@", ng)
        extra = yaml.safe_load(extra_text) or {}
        max_calls = max(args.memory_calls, max(rates) * 4) + 200
        try:
            for mode in [m for m in args.modes.split(",") if m in ("sig", "rtp")]:
                scenario = scenario_for(mode, work)
                for setup in setups:
                    run_dir = work / f"{setup}-{mode}"
                    run_dir.mkdir()
                    uas, uas_port = start_uas(sipp, run_dir, rtp_echo=mode == "rtp")
                    server: Server | None = None
                    try:
                        if setup == "single":
                            alone = start_voicegw(run_dir, uas_port, log_level=args.log_level,
                                                  config_text=config_text(extra, max_calls), cwd=run_dir, timeout=60)
                            server = Single("single", alone.proc, alone.port, alone.log)
                        else:
                            server = start_farm(run_dir, kamailio, uas_port, args.workers, extra, args.log_level,
                                                max_calls)
                            server.name = f"farm{args.workers}"
                        server.extra = (rtpengine.pid,) if rtpengine is not None else ()
                        failures = 0
                        for rate in rates:
                            step = run_step(sipp, server, scenario, mode, rate, args.seconds, args.hold_ms, run_dir)
                            step.target = server.name
                            steps.append(step)
                            print(f"{server.name:8} {mode} {rate:5}/s: {step.successful}/{step.attempted} ok, "
                                  f"{step.failed} failed, cpu {step.cpu_percent}%, p99 {step.p99_ms} ms",
                                  file=sys.stderr)
                            failures += not step.clean
                            if failures >= args.stop_after_failures:
                                break
                        if mode == "sig" and args.memory_calls:
                            memory.append(memory_per_call(sipp, server, scenario, args.memory_calls,
                                                          min(200, args.memory_calls), run_dir))
                    finally:
                        if server is not None:
                            server.stop()
                        stop_process(uas)
        finally:
            if rtpengine is not None:
                stop_process(rtpengine)
    names = sorted({s.target for s in steps})
    print(f"\n{'setup':8} {'mode':4} {'rate':>5} {'ok':>6} {'failed':>6} {'cpu%':>6} {'p50ms':>6} {'p99ms':>6}")
    for s in steps:
        print(f"{s.target:8} {s.mode:4} {s.rate:5} {s.successful:6} {s.failed:6} {s.cpu_percent:6} "
              f"{s.p50_ms or '-':>6} {s.p99_ms or '-':>6}")
    result: dict = {"load_before": load_before, "workers": args.workers, "rtpengine": args.rtpengine,
                    "steps": [asdict(s) for s in steps], "memory": memory}
    for mode in {s.mode for s in steps}:
        caps = {name: capacity([s for s in steps if s.mode == mode], name) for name in names}
        result[f"capacity_{mode}"] = caps
        single, farm = caps.get("single", 0), caps.get(f"farm{args.workers}", 0)
        ratio = round(farm / single, 2) if single else None
        result[f"ratio_{mode}"] = ratio
        print(f"{mode}: capacity (0 failures) {caps}; farm/single {ratio}")
    for row in memory:
        print(f"memory {row['setup']}: {row['kib_per_call']} KiB per call ({row['calls']} calls up)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
