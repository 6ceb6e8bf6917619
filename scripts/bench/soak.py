#!/usr/bin/env python3
"""Memory soak: N calls at R/s through one call path of ``voicegw run``, with sipp peers.

While the calls run and for a while after, every ``--sample`` seconds: the daemon's
RSS (VmRSS) and open file descriptors (/proc), and what it holds (``GET
/debug/objects``: calls, legs, dialogs, transactions, media endpoints, players, timers,
asyncio tasks). Printed: a table of the samples, the slope of RSS in KB per 1,000
calls (least squares over the samples taken after the first ``--warm`` calls, while
the load ran), RSS after ``--warm`` calls and at the end, and the object counts once
the calls are over and forgotten (with the live instances of the engine's classes and
the unreachable objects a full collection finds). Then one JSON line.

Paths (``--path``):

- ``bridge``: caller <-> bot (sipp UAC tests/peers/scenarios/b2bua_uac_bench.xml ->
  ``--bot-uri`` -> soak_bot_answer.xml, which absorbs an INVITE sent again where sipp's
  built-in UAS dropped the call);
- ``demo``: the embedded default's demo flow, no bot: TTS greeting, the caller presses
  1 (RFC 4733, caller_dtmf_bench.xml with a pcap made here), the menu waits, the caller
  hangs up;
- ``invite_transfer``: the demo flow with ``--agent-uri``: the caller presses 0, the
  flow transfers it by INVITE to a sipp agent (agent_answer.xml);
- ``bot_refer``: the bot REFERs (soak_bot_refer.xml), voicegw dials the agent by INVITE
  and bridges (transfer_method invite);
- ``refer_transfer``: the bot REFERs, voicegw REFERs the carrier (soak_carrier_refer.xml:
  202, NOTIFYs, then voicegw's BYE) (transfer_method refer);
- ``warm``: the bot REFERs, voicegw consults the agent (hold: TTS notice, a TTS
  briefing to the agent), then bridges (transfer_method warm);
- ``cancel``: the bot rings (b2bua_bot_ring.xml), the caller CANCELs (b2bua_uac_cancel.xml);
- ``fail``: half the calls the bot answers 486 (b2bua_bot_reject.xml), the other half
  it rings until voicegw gives up after ``bot_answer_timeout`` (1 s) and CANCELs: the
  caller gets 480 (b2bua_uac_rejected.xml).

The daemon runs with its control API on a free port (token in its config) and the
guard's loop-lag check off (``guard.max_loop_lag: 0``): on a shared machine a late
loop would refuse calls, and this measures memory, not overload.

    .venv/bin/python scripts/bench/soak.py --path bridge --calls 30000 --rate 100
    .venv/bin/python scripts/bench/soak.py --path demo --calls 2000 --rate 50 --sample 2

Loopback only; every process started here is stopped here, by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from call_rate import (  # the bench scripts share their process helpers
    HOST,
    ROOT,
    SCENARIOS,
    free_media_port,
    rss_kib,
    start_uas,
    start_voicegw,
    stop_process,
    write_rtp_pcap,
)
from netutil import free_port, sipp_results, wait_for

sys.path.insert(0, str(ROOT))  # this checkout's voicegw, whatever the venv has installed
from voicegw.engine.b2bua import Engine
from voicegw.media.dtmf import event_payloads

PATHS = ("bridge", "demo", "invite_transfer", "bot_refer", "refer_transfer", "warm", "cancel", "fail")
TTS_CACHE = ROOT / "var" / "tts"
#: what the table shows of /debug/objects (section, key, column)
COLUMNS = (("engine", "calls", "calls"), ("engine", "legs", "legs"), ("engine", "dialogs", "dlgs"),
           ("core", "server_transactions", "stx"), ("core", "client_transactions", "ctx"),
           ("engine", "media_endpoints", "media"), ("engine", "players", "play"),
           ("engine", "timers", "tmr"), ("asyncio", "tasks", "tasks"),
           ("python", "allocated_blocks", "blocks"), ("python", "traced_kib", "traced_kib"))


# --------------------------------------------------------------------------- peers
@dataclass
class Peer:
    name: str
    proc: subprocess.Popen
    port: int


@dataclass
class Phase:
    """Part of a path's calls: the caller's scenario and the bot's, if it changes."""

    share: float
    caller: list[str]
    bot: list[str] | None = None


@dataclass
class Plan:
    config: dict
    bot: list[str] | None
    agent: list[str] | None
    phases: list[Phase]
    hold_ms: int
    agent_flag: bool = False
    """The agent's URI goes to ``--agent-uri`` (the demo flow's agent node)."""
    calls_up: float = 2.0
    """Seconds a call lasts, roughly (for the concurrency limit and the guard's cap)."""
    legs: int = 2
    """Media endpoints a call holds at once at most (each an RTP/RTCP pair of ports)."""


def dtmf_pcap(path: Path, digit: str) -> Path:
    """One key press as RFC 4733 telephone-events (PT 101), 20 ms apart."""
    packets = []
    for seq, (payload, marker) in enumerate(event_payloads(digit), 1):
        header = bytes([0x80, (0x80 if marker else 0) | 101]) + seq.to_bytes(2, "big")
        packets.append(header + (8000).to_bytes(4, "big") + (0x50A4).to_bytes(4, "big") + payload)
    return write_rtp_pcap(path, packets)


def render(name: str, dest: Path, **values: object) -> Path:
    text = (SCENARIOS / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", str(value))
    path = dest / f"{Path(name).stem}-{len(list(dest.glob('*.xml')))}.xml"
    path.write_text(text, encoding="utf-8")
    return path


def plan_for(path: str, work: Path, agent_port: int, hold_ms: int | None) -> Plan:
    agent_uri = f"sip:agent@{HOST}:{agent_port}"
    allow = {"transfer_allow": [f"sip:*@{HOST}:{agent_port}"], "ring_timeout": 10}
    agent = ["-sf", str(SCENARIOS / "agent_answer.xml")]
    # the bot and the carrier of the transfer paths absorb retransmissions (a late loop
    # resends a REFER or NOTIFY): the strict test scenarios abort such a call
    # (-abortunexp off: a copy that reaches sipp while the call stands at a send step is
    # ignored, not fatal; what never comes still fails the call by its -recv_timeout)
    tolerant = ["-default_behaviors", "all,-abortunexp", "-recv_timeout", "20000"]
    refer_bot = ["-sf", str(SCENARIOS / "soak_bot_refer.xml"), "-key", "refer_to", agent_uri, *tolerant]
    bench = ["-sf", str(SCENARIOS / "b2bua_uac_bench.xml")]
    if path == "bridge":
        # not sipp's built-in UAS (-sn uas): it drops a call on an INVITE sent again
        return Plan({}, ["-sf", str(SCENARIOS / "soak_bot_answer.xml")], None, [Phase(1.0, bench)], hold_ms or 1000)
    if path in ("demo", "invite_transfer"):
        digit = "1" if path == "demo" else "0"
        scenario = render("caller_dtmf_bench.xml", work, pcap=dtmf_pcap(work / f"dtmf{digit}.pcap", digit))
        caller = ["-sf", str(scenario)]
        if path == "demo":
            return Plan({}, None, None, [Phase(1.0, caller)], hold_ms or 2000, calls_up=3)
        # the greeting (4.1 s) plays before the menu reads the key: then the agent. A
        # loaded loop stretches a prompt (a player skips packets it is late for, not
        # audio): held 7 s, 1,409 of 1,500 callers at 50/s hung up before the transfer
        return Plan({"calls": {"transfer_method": "invite", **allow}}, None, agent, [Phase(1.0, caller)],
                    hold_ms or 12000, agent_flag=True, calls_up=8)
    if path == "bot_refer":
        return Plan({"calls": {"transfer_method": "invite", **allow}}, refer_bot, agent, [Phase(1.0, bench)],
                    hold_ms or 2000, calls_up=3, legs=3)
    if path == "refer_transfer":
        carrier = ["-sf", str(SCENARIOS / "soak_carrier_refer.xml"), *tolerant]
        return Plan({"calls": {"transfer_method": "refer", **allow}}, refer_bot, None, [Phase(1.0, carrier)],
                    hold_ms or 1000, calls_up=3)
    if path == "warm":
        # the briefing (2.6 s) plays to the agent before the caller is bridged, 2.9 s
        # after the answer on an idle machine: held 4 s, every transfer of 1,000 at
        # 100/s was cancelled by the caller's BYE during a briefing stretched by the load
        warm = {"hold": "tts", "briefing_text": "Incoming transfer from the soak test."}
        return Plan({"calls": {"transfer_method": "warm", "warm": warm, **allow}}, refer_bot, agent,
                    [Phase(1.0, bench)], hold_ms or 10000, calls_up=6, legs=3)
    if path == "cancel":
        return Plan({}, ["-sf", str(SCENARIOS / "b2bua_bot_ring.xml")], None,
                    [Phase(1.0, ["-sf", str(SCENARIOS / "b2bua_uac_cancel.xml")])], hold_ms or 0, calls_up=1)
    if path == "fail":
        def rejected(status: int) -> list[str]:
            return ["-sf", str(render("b2bua_uac_rejected.xml", work, status=status))]

        return Plan({"calls": {"bot_answer_timeout": 1}}, None, None, [
            Phase(0.5, rejected(486), ["-sf", str(render("b2bua_bot_reject.xml", work, status=486))]),
            Phase(0.5, rejected(480), ["-sf", str(SCENARIOS / "b2bua_bot_ring.xml")]),
        ], hold_ms or 0, calls_up=2)
    raise SystemExit(f"unknown path {path!r}: one of {', '.join(PATHS)}")


def start_sipp_uas(sipp: str, work: Path, name: str, args: list[str], port: int | None = None) -> Peer:
    proc, port = start_uas(sipp, work, rtp_echo=False, scenario=args, port=port)
    return Peer(name, proc, port)


def rtp_ranges_in_use() -> list[tuple[int, int]]:
    """The ``--rtp-ports`` ranges of the voicegw daemons running on this machine."""
    ranges = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone meanwhile
            continue
        if b"voicegw" in b" ".join(args) and b"--rtp-ports" in args:
            low, _, high = args[args.index(b"--rtp-ports") + 1].partition(b"-")
            if low.isdigit() and high.isdigit():
                ranges.append((int(low), int(high)))
    return ranges


def free_rtp_range(ports: int, areas: tuple[tuple[int, int], ...] = ((20000, 32000), (40000, 56000))) -> int:
    """The first RTP range of ``ports`` that no running daemon's overlaps: a soak beside
    another (a colleague's bench on the same default range) had 1,367 calls refused
    with 503 ``port_pool``. First below the kernel's ephemeral range, then inside it
    (the kernel hands its clients other ports than those a daemon bound; a port a
    client holds is skipped by the pool)."""
    taken = rtp_ranges_in_use()
    for first, last in areas:
        low = first
        while low + ports - 1 <= last:
            clash = [high for a, high in taken if a <= low + ports - 1 and low <= high]
            if not clash:
                return low
            low = (max(clash) + 1000) // 1000 * 1000
    raise SystemExit(f"no RTP range of {ports} ports free in {areas}: pass --rtp-low")


def sipp_deadline(calls: int, rate: float, hold_ms: int) -> float:
    """Seconds the caller's sipp may run (its -timeout): twice the time the calls take
    to start, the hold and the last calls' end. On a loaded machine sipp starts calls
    behind its rate, and calls/rate + 120 s stopped 30,000-call soaks at 22,000-28,000."""
    return 2 * calls / rate + hold_ms / 1000 + 300


def run_caller(sipp: str, work: Path, daemon_port: int, args: list[str], calls: int, rate: float,
               hold_ms: int, limit: int) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sipp, f"{HOST}:{daemon_port}", *args, "-i", HOST, "-p", str(free_port()), "-mp", str(free_media_port()),
           "-m", str(calls), "-r", f"{rate:g}", "-l", str(limit), "-d", str(hold_ms), "-nostdin",
           "-timeout", f"{int(sipp_deadline(calls, rate, hold_ms))}s", "-timeout_error", "-recv_timeout", "20000",
           "-trace_stat", "-stf", str(work / "stat.csv"), "-fd", "2",
           "-trace_err", "-error_file", str(work / "errors.log"),
           "-max_recv_loops", "10000", "-max_sched_loops", "10000"]
    return subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


# --------------------------------------------------------------------------- sampling
@dataclass
class Sample:
    t: float
    calls: int
    rss_kib: int
    fds: int
    objects: dict = field(default_factory=dict)
    load: float = 0.0
    """The machine's 1-minute load average when the sample was taken."""


class Api:
    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://{HOST}:{port}"
        self.token = token

    def status(self) -> dict:
        request = urllib.request.Request(f"{self.base}/status", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def objects(self, instances: bool = False, collect: bool = False) -> dict:
        query = f"?instances={str(instances).lower()}&collect={str(collect).lower()}"
        request = urllib.request.Request(f"{self.base}/debug/objects{query}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


class Sampler(threading.Thread):
    def __init__(self, pid: int, api: Api, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.api, self.every = pid, api, every
        self.samples: list[Sample] = []
        self.started = time.monotonic()
        self._halt = threading.Event()

    def take(self) -> Sample:
        try:
            objects = self.api.objects()
        except OSError as error:
            objects = {"error": str(error)}
        sample = Sample(round(time.monotonic() - self.started, 1),
                        objects.get("engine", {}).get("total_calls", 0), rss_kib(self.pid),
                        len(os.listdir(f"/proc/{self.pid}/fd")), objects, os.getloadavg()[0])
        self.samples.append(sample)
        return sample

    def run(self) -> None:
        while not self._halt.wait(self.every):
            try:
                self.take()
            except OSError:  # the daemon is gone
                return

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(self.every + 35)


def slope_kb_per_1000(samples: list[Sample]) -> float | None:
    """Least-squares slope of RSS over calls, in KB per 1,000 calls."""
    points = [(s.calls, s.rss_kib) for s in samples]
    if len(points) < 3 or points[-1][0] == points[0][0]:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return round(sxy / sxx * 1000 * 1.024, 1)  # KiB -> KB


def sipp_duration_s(value: str | None) -> float | None:
    """sipp's ``HH:MM:SS:uuuuuu`` (a stat.csv duration column) in seconds."""
    if not value:
        return None
    try:
        hours, minutes, seconds, micros = (int(part) for part in value.split(":"))
    except ValueError:
        return None
    return round(hours * 3600 + minutes * 60 + seconds + micros / 1e6, 3)


def store_figures(samples: list[Sample], final: dict) -> dict:
    """The records writer's figures over the run: the worst commit a sample saw, the
    peak queue, the backlog episodes (new calls refused), batches (largest), and the
    writer thread's time applying vs committing (writer.WriterStatistics)."""
    seen = [s.objects.get("store") or {} for s in samples] + [final.get("store") or {}]
    last = seen[-1]
    return {
        "last_commit_ms_max_sampled": max((s.get("last_commit_ms") or 0 for s in seen), default=None),
        **{key: last.get(key) for key in ("max_commit_ms", "peak_queued", "backlogs", "batches", "largest_batch",
                                          "written", "dropped", "failed", "apply_s", "commit_s",
                                          "durable_waits", "durable_ms_mean", "durable_ms_max")},
    }


def pick(sample: Sample, section: str, key: str) -> object:
    return sample.objects.get(section, {}).get(key, "-")


# --------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=PATHS, default="bridge")
    parser.add_argument("--calls", type=int, default=30_000)
    parser.add_argument("--rate", type=float, default=100.0, help="calls started per second")
    parser.add_argument("--hold-ms", type=int, help="call length after the answer (default: per path)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warm", type=int, default=2000, help="calls before the slope is measured")
    parser.add_argument("--settle", type=float, default=Engine.FORGET_AFTER + 8,
                        help="seconds to keep sampling after the last call (ended calls are "
                             "kept FORGET_AFTER s)")
    parser.add_argument("--keep", type=Path, help="keep the logs in this directory")
    parser.add_argument("--rtp-low", type=int,
                        help="first RTP port (default: the first range in 20000-32000, else 40000-56000, that no "
                             "other voicegw daemon's --rtp-ports overlaps: two soaks on one range refuse calls "
                             "'port_pool')")
    parser.add_argument("--rtp-ports", type=int, help="RTP ports (default: by rate and call length, at most 12,000)")
    parser.add_argument("--trace-peers", action="store_true",
                        help="sipp peers write their message logs (<name>_messages.log, with --keep): short runs only")
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed: run scripts/bootstrap", file=sys.stderr)
        return 2
    tmp = None
    if args.keep:
        work = args.keep
        work.mkdir(parents=True, exist_ok=False)
    else:
        tmp = tempfile.TemporaryDirectory(prefix=f"voicegw-soak-{args.path}-")
        work = Path(tmp.name)
    agent_port = free_port()
    plan = plan_for(args.path, work, agent_port, args.hold_ms)
    concurrent = int(args.rate * (plan.hold_ms / 1000 + plan.calls_up)) + 200
    # a warm or bot_refer call holds three legs (caller, bot, agent): sized for two,
    # the 30,000-call warm soak had 946 calls refused 503 port_pool
    ports = (args.rtp_ports or min(2 * plan.legs * concurrent + 400, 12000)) // 2 * 2
    ports_low = args.rtp_low if args.rtp_low is not None else free_rtp_range(ports)
    token = secrets.token_hex(16)
    api_port = free_port()
    config = {**plan.config, "api": {"port": api_port, "token": token},
              "guard": {"max_loop_lag": 0, "max_calls": concurrent + 500},
              "paths": {"tts_cache": str(TTS_CACHE)}}
    config_text = json.dumps(config)  # JSON is YAML
    peers: list[Peer] = []
    server = None
    sampler = None
    result: dict[str, object] = {"bench": "soak", "path": args.path, "calls": args.calls, "rate": args.rate,
                                 "hold_ms": plan.hold_ms, "cpus": os.cpu_count(),
                                 "python": sys.version.split()[0]}
    codes: list[int | None] = []
    try:
        def traced(name: str) -> list[str]:
            return ["-trace_msg", "-message_file", str(work / f"{name}_messages.log")] if args.trace_peers else []

        if plan.agent:
            peers.append(start_sipp_uas(sipp, work, "agent", plan.agent + ["-l", str(concurrent), *traced("agent")],
                                        port=agent_port))
        bot_port = free_port()
        bot_args = plan.bot or plan.phases[0].bot
        if bot_args:
            peers.append(start_sipp_uas(sipp, work, "bot", bot_args + ["-l", str(concurrent), *traced("bot")],
                                        port=bot_port))
        if plan.agent_flag:
            config_text = json.dumps({**config, "calls": {**config.get("calls", {}), "agent_uri": f"sip:agent@{HOST}:{agent_port}"}})
        server = start_voicegw(work, bot_port if bot_args else None,
                               rtp_ports=f"{ports_low}-{ports_low + ports - 1}", config_text=config_text, cwd=work, timeout=90)
        pid = server.proc.pid
        api = Api(api_port, token)
        if not wait_for(lambda: _reachable(api), 20, 0.2):
            raise SystemExit("the control API did not answer:\n" + server.log.read_text(errors="replace")[-2000:])
        baseline = api.objects(instances=True, collect=True)
        sampler = Sampler(pid, api, args.sample)
        sampler.take()
        sampler.start()
        load_started = time.monotonic()
        done_calls = 0
        for index, phase in enumerate(plan.phases):
            calls = args.calls - done_calls if index == len(plan.phases) - 1 else int(args.calls * phase.share)
            if phase.bot is not None and index > 0:  # the next phase's bot takes the bot's port
                old = next(p for p in peers if p.name == "bot")
                codes.append(stop_process(old.proc))
                peers.remove(old)
                peers.append(start_sipp_uas(sipp, work, "bot", phase.bot + ["-l", str(concurrent)], port=bot_port))
            caller = run_caller(sipp, work / f"caller{index}", server.port, phase.caller + traced(f"caller{index}"),
                                calls, args.rate,
                                plan.hold_ms, concurrent)
            codes.append(caller.wait(sipp_deadline(calls, args.rate, plan.hold_ms) + 60))
            done_calls += calls
        load_seconds = time.monotonic() - load_started
        load_end = sampler.take()
        time.sleep(args.settle)
        sampler.stop()
        after = sampler.take()
        final = api.objects(instances=True)
        found = api.objects(collect=True)["gc"]["found_now"]
        status = api.status()
        refused = status.get("totals", {}).get("refused", {})
        # a transfer path's calls can all succeed at sipp without a transfer (a caller
        # that hangs up before the flow's greeting ends): what the daemon counted
        transfers = {t["method"]: {k: t[k] for k in ("started", "succeeded", "failed")}
                     for t in status.get("transfers", [])}
        outcomes = status.get("totals", {}).get("by_outcome", {})
        alive = server.alive()
    finally:
        if sampler is not None:
            sampler.stop()
        exit_code = server.stop() if server is not None else None
        for peer in peers:
            stop_process(peer.proc)

    samples = sampler.samples
    stats = [sipp_results(work / f"caller{i}")[0] for i in range(len(plan.phases))]
    successful = sum(int(s.get("SuccessfulCall(C)") or 0) for s in stats)
    failed = sum(int(s.get("FailedCall(C)") or 0) for s in stats)
    during = [s for s in samples if s.calls >= min(args.warm, args.calls // 3) and s.t <= load_end.t]
    at_warm = next((s for s in samples if s.calls >= args.warm), None)
    result.update({
        "sipp_successful": successful, "sipp_failed": failed, "sipp_exits": codes,
        "load_seconds": round(load_seconds, 1),
        "rss_start_kib": samples[0].rss_kib,
        "rss_at_warm_kib": at_warm.rss_kib if at_warm else None,
        "rss_load_end_kib": load_end.rss_kib,
        "rss_after_settle_kib": after.rss_kib,
        "rss_end_minus_warm_mib": round((after.rss_kib - at_warm.rss_kib) / 1024, 1) if at_warm else None,
        "slope_kb_per_1000_calls": slope_kb_per_1000(during),
        "fds_start": samples[0].fds, "fds_after": after.fds,
        "refused": refused, "transfers": transfers, "outcomes": outcomes,
        "store": store_figures(samples, final),
        "call_length_s": sipp_duration_s(stats[-1].get("CallLength(C)")) if stats else None,
        "load_avg_min_max": [min(s.load for s in samples), max(s.load for s in samples)],
        "objects_before": {k: baseline.get(k) for k in ("engine", "core", "asyncio", "instances")},
        "objects_after": {k: final.get(k) for k in ("engine", "core", "guard", "api", "asyncio", "instances")},
        "gc_found_after": found,
        "gc_periodic": final.get("gc", {}).get("periodic"),
        "daemon_alive": alive, "daemon_exit": exit_code,
    })
    print(f"voicegw soak, path {args.path}: {args.calls} calls at {args.rate:g}/s (held {plan.hold_ms} ms), "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    header = f"{'t s':>7} {'calls':>7} {'RSS MiB':>8} {'fds':>5} {'load':>5} " + " ".join(f"{c:>6}" for *_, c in COLUMNS)
    print(header)
    print("-" * len(header))
    for s in samples:
        print(f"{s.t:>7} {s.calls:>7} {s.rss_kib / 1024:>8.1f} {s.fds:>5} {s.load:>5.1f} "
              + " ".join(f"{pick(s, sec, key)!s:>6}" for sec, key, _ in COLUMNS))
    slope = result["slope_kb_per_1000_calls"]
    print(f"\nsipp: {successful} successful, {failed} failed; load {result['load_seconds']} s; "
          f"refused by voicegw: {json.dumps(refused)}; load average {result['load_avg_min_max']}")
    print(f"transfers: {json.dumps(transfers)}; outcomes: {json.dumps(outcomes)}")
    print(f"records writer: {json.dumps(result['store'])}; mean call length (sipp) {result['call_length_s']} s")
    print(f"RSS slope over calls {args.warm}+ while loaded: {slope} KB per 1,000 calls")
    if at_warm:
        print(f"RSS after {at_warm.calls} calls {at_warm.rss_kib / 1024:.1f} MiB, at the end of the load "
              f"{load_end.rss_kib / 1024:.1f} MiB, {args.settle:g} s later {after.rss_kib / 1024:.1f} MiB "
              f"(end - {args.warm}: {result['rss_end_minus_warm_mib']} MiB)")
    print("after the load, calls forgotten:")
    for section in ("engine", "core", "guard", "api", "asyncio", "instances"):
        print(f"  {section}: {json.dumps(final.get(section))}")
    print(f"  gc: a full collection now found {found} unreachable objects; periodic: "
          f"{json.dumps(final.get('gc', {}).get('periodic'))}")
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()
    return 0 if alive and exit_code == 0 else 1


def _reachable(api: Api) -> bool:
    try:
        api.objects()
    except OSError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
