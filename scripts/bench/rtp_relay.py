#!/usr/bin/env python3
"""RTP relay benchmark: N bridged calls through voicegw's media Bridge.

Each call is two legs; each leg sends 50 packets/s of 172-byte RTP (12-byte header and
a 160-byte PCMU payload) towards the relay, which forwards it to the other leg. So N
calls are 100 * N packets/s into the relay and as many out.

Four processes, so the relay has a core of its own as far as a 2-core box allows:
  - this orchestrator (idle while measuring),
  - the relay (``--role relay``): N Bridges under uvloop, latching on,
  - the load generator (``--role load``), itself two processes sharing the legs'
    sockets: a sender (a plain paced loop spreading the legs evenly over each 20 ms)
    and a receiver (uvloop). A packet carries its send time (CLOCK_MONOTONIC, the same
    clock in every process), so one-way latency is measured.

A trial measures loss (sent - received after a drain) and latency; the "direct" trial
runs the same streams leg to leg with no relay, and the relay's added latency is the
difference of the percentiles. The search doubles N until a trial loses packets (or
the generator itself falls behind), then bisects. The relay's CPU is its user+system
time over the measured window, as a percentage of one core.

    .venv/bin/python scripts/bench/rtp_relay.py                 # search, ~1 minute
    .venv/bin/python scripts/bench/rtp_relay.py --calls 500     # one N only

The anchor (``--rtpengine``): the same N calls through Debian's rtpengine in userspace
(``--table=-1``, one worker thread by default, as /work/shared/anchors/README.md runs
it), each call set up with an ng ``offer`` (leg a's SDP) and ``answer`` (leg b's SDP),
then the same load, next to voicegw's relay and the direct path at each N. rtpengine's
CPU is its user+system time from /proc (all its threads). When ``rtpengine`` is not
on PATH the bench installs Debian's ``rtpengine-daemon`` first (and says so).

    .venv/bin/python scripts/bench/rtp_relay.py --rtpengine                  # N = 500,1000,1500
    .venv/bin/python scripts/bench/rtp_relay.py --rtpengine --calls 200,800
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # peers.rtpengine

import numpy as np  # noqa: E402
from peers.rtpengine import Rtpengine  # noqa: E402  (tests/peers: the one place that starts it)

HOST = "127.0.0.1"
PTIME = 0.020
SLOTS = 20  # streams are spread over 20 x 1 ms slots per packet interval
PAYLOAD = 160
_HDR = struct.Struct("!BBHII")
_STAMP = struct.Struct("!q")


def loop_factory():
    try:
        import uvloop
        return uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop


# -- relay process ---------------------------------------------------------------------
async def relay_main(calls: int, low: int, high: int) -> None:
    from voicegw.media.endpoint import open_endpoint
    from voicegw.media.ports import PortPool
    from voicegw.media.relay import Bridge

    pool = PortPool(low, high)
    bridges, ports = [], []
    for _ in range(calls):
        a = await open_endpoint(HOST, pool)
        b = await open_endpoint(HOST, pool)
        bridges.append(Bridge(a, b))
        ports.append((a.port, b.port))
    print(json.dumps({"ports": ports}), flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def command() -> None:
        line = sys.stdin.readline().strip()
        if line == "cpu":
            ru = resource.getrusage(resource.RUSAGE_SELF)
            print(json.dumps({"cpu": ru.ru_utime + ru.ru_stime, "t": time.monotonic()}),
                  flush=True)
        elif line == "stats" or not line:
            tot = [0, 0]
            for br in bridges:
                st = br.statistics()
                tot[0] += st.a_to_b.packets_out + st.b_to_a.packets_out
                tot[1] += st.a_to_b.dropped + st.b_to_a.dropped
            print(json.dumps({"relayed": tot[0], "dropped": tot[1]}), flush=True)
            if not line and not done.done():
                done.set_result(None)

    loop.add_reader(sys.stdin.fileno(), command)
    await done


# -- load generator ----------------------------------------------------------------------
# The legs' sockets are created once, then the process forks: the child only sends (a
# plain paced loop, no event loop), the parent only receives (uvloop). Two processes
# share the generator's work, and the relay still has the other core most of the time.
class Receiver(asyncio.DatagramProtocol):
    def __init__(self, lat: list[int]) -> None:
        self.lat = lat

    def datagram_received(self, data: bytes, addr) -> None:
        self.lat.append(time.monotonic_ns() - _STAMP.unpack_from(data, 12)[0])


def send_paced(socks: list, targets: list, duration: float, out_fd: int) -> None:
    """The sender: every leg one packet per 20 ms, legs spread over 20 slots."""
    bufs = [bytearray(12 + PAYLOAD) for _ in socks]
    order = [list(range(s, len(socks), SLOTS)) for s in range(SLOTS)]
    step = PTIME / SLOTS
    ticks = int(duration / PTIME) * SLOTS
    sent = errors = 0
    lags = np.zeros(ticks)
    t0 = time.monotonic()
    for k in range(ticks):
        delay = t0 + k * step - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            lags[k] = -delay
        n = k // SLOTS
        for i in order[k % SLOTS]:
            buf = bufs[i]
            _HDR.pack_into(buf, 0, 0x80, 0, n & 0xFFFF, (n * PAYLOAD) & 0xFFFFFFFF, i + 1)
            _STAMP.pack_into(buf, 12, time.monotonic_ns())
            try:
                socks[i].sendto(buf, targets[i])
                sent += 1
            except BlockingIOError:
                errors += 1
    # A lone scheduling hiccup is harmless; a sender late on many ticks means the
    # generator, not the relay, is the limit, and the trial says nothing.
    os.write(out_fd, json.dumps({
        "sent": sent, "send_errors": errors,
        "generator_lag_p99_ms": round(float(np.percentile(lags, 99)) * 1000, 2)}).encode())


def _leg_sdp(port: int, session: int) -> str:
    return (f"v=0\r\no=- {session} 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


def _sdp_port(sdp: str) -> int:
    return int(next(ln for ln in sdp.splitlines() if ln.startswith("m=audio ")).split()[1])


def rtpengine_setup(ng_address: tuple[str, int], socks: list) -> list[tuple[int, int]]:
    """Offer/answer every call through rtpengine; per call the (a, b) send-to ports.

    Leg a is the caller: the offer carries its address, and the answer's reply (what
    the caller would be told) has the port leg a sends to; the offer's reply (what the
    callee is offered) has the port leg b sends to.
    """
    from voicegw.media.rtpengine_ng import NgClient

    pairs = []
    with NgClient(ng_address, timeout=5.0) as ng:
        for i in range(len(socks) // 2):
            a, b = socks[2 * i].getsockname()[1], socks[2 * i + 1].getsockname()[1]
            call_id = f"bench-{i}"
            offered = ng.offer(call_id, f"a{i}", _leg_sdp(a, 2 * i + 1))
            answered = ng.answer(call_id, f"a{i}", f"b{i}", _leg_sdp(b, 2 * i + 2))
            pairs.append((_sdp_port(answered["sdp"]), _sdp_port(offered["sdp"])))
    return pairs


async def load_main(calls: int, ports_file: str | None, duration: float,
                    ng: str | None = None) -> None:
    import socket
    socks = []
    for _ in range(2 * calls):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        s.setblocking(False)
        socks.append(s)
    setup_s = None
    if ng:  # set the calls up in rtpengine now that the legs' ports are known
        t0 = time.monotonic()
        host, _, port = ng.rpartition(":")
        ports = rtpengine_setup((host, int(port)), socks)
        setup_s = round(time.monotonic() - t0, 3)
    elif ports_file:
        ports = json.loads(Path(ports_file).read_text())["ports"]
    if ng or ports_file:  # through the relay: leg a -> relay port a, leg b -> relay port b
        targets = [(HOST, p) for pair in ports for p in pair]
        # Latch every relay endpoint before measuring (the first packet teaches the
        # relay where each leg is), then throw away what the warm-up brought back.
        for _ in range(2):
            for s, t in zip(socks, targets):
                s.sendto(bytes(12 + PAYLOAD), t)
            await asyncio.sleep(0.2)
        for s in socks:
            try:
                while True:
                    s.recv(2048)
            except BlockingIOError:
                pass
    else:  # direct: the legs of a call talk to each other
        names = [s.getsockname() for s in socks]
        targets = [names[i ^ 1] for i in range(len(socks))]
    loop = asyncio.get_running_loop()
    lat: list[int] = []
    for s in socks:
        await loop.create_datagram_endpoint(lambda: Receiver(lat), sock=s)
    r, w = os.pipe()
    print("start", flush=True)
    pid = os.fork()
    if pid == 0:  # the sender
        try:
            send_paced(socks, targets, duration, w)
        finally:
            os._exit(0)
    os.close(w)
    done = loop.create_future()
    loop.add_reader(r, lambda: done.done() or done.set_result(os.read(r, 65536)))
    report = json.loads(await done)
    os.waitpid(pid, 0)
    print("stop", flush=True)
    await asyncio.sleep(0.5)  # drain what is still in flight
    arr = np.asarray(lat, dtype=np.int64) / 1e6
    out = {**report, "received": len(lat), "lost": report["sent"] - len(lat)}
    if setup_s is not None:
        out["ng_setup_s"] = setup_s
    if len(arr):
        out.update(p50_ms=round(float(np.percentile(arr, 50)), 3),
                   p99_ms=round(float(np.percentile(arr, 99)), 3),
                   max_ms=round(float(arr.max()), 3))
    print(json.dumps(out), flush=True)


# -- orchestrator ------------------------------------------------------------------------
def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _ask(relay: subprocess.Popen, command: str) -> dict:
    relay.stdin.write(command + "\n")
    relay.stdin.flush()
    return json.loads(relay.stdout.readline())


# -- rtpengine (the anchor) -----------------------------------------------------------
RTPENGINE_PACKAGE = "rtpengine-daemon"


def ensure_rtpengine() -> str:
    """The rtpengine binary; installs Debian's rtpengine-daemon first when missing."""
    found = shutil.which("rtpengine")
    if found:
        return found
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", RTPENGINE_PACKAGE]
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print(f"rtp_relay: rtpengine is not installed; installing Debian's {RTPENGINE_PACKAGE}: "
          f"{' '.join(sudo + cmd)}", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for step in (["apt-get", "update", "-qq"], cmd):
        proc = subprocess.run(sudo + step, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"rtp_relay: {' '.join(step)} failed:\n{proc.stdout}{proc.stderr}")
    found = shutil.which("rtpengine")
    if not found:
        sys.exit(f"rtp_relay: {RTPENGINE_PACKAGE} installed but no rtpengine on PATH")
    print(f"rtp_relay: installed {found}", file=sys.stderr, flush=True)
    return found


def rtpengine_version(binary: str) -> str:
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True)
    text = (proc.stdout or proc.stderr).strip()
    version = text.splitlines()[-1].removeprefix("Version:").strip() if text else "?"
    return f"rtpengine {version}"


def rtpengine_cpu(engine: Rtpengine) -> dict:
    """User+system seconds of every thread (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{engine.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {"cpu": (int(fields[11]) + int(fields[12])) / ticks, "t": time.monotonic()}


def rtpengine_stats(engine: Rtpengine, calls: int) -> dict:
    """Packets rtpengine received for the calls (its own counters, via ng query)."""
    from voicegw.media.rtpengine_ng import NgClient

    packets = errors = 0
    with NgClient(engine.ng, timeout=5.0) as ng:
        for i in range(calls):
            rtp = ng.query(f"bench-{i}")["totals"]["RTP"]
            packets += rtp["packets"]
            errors += rtp["errors"]
    return {"rtpengine_rtp_in": packets, "rtpengine_errors": errors}


def rtpengine_trial(binary: str, calls: int, duration: float, port_low: int,
                    port_high: int, threads: int) -> dict:
    # rtpengine picks its ports at random in the range and gives up after a few
    # collisions, so it gets a range much wider than the 4 ports a call needs.
    with tempfile.TemporaryDirectory(prefix="rtp_relay-") as workdir:
        try:
            engine = Rtpengine(Path(workdir), port_range=(port_low, port_high), threads=threads,
                               log_level=3, binary=binary)
        except RuntimeError as error:
            sys.exit(f"rtp_relay: {error}")
        return _rtpengine_load(engine, calls, duration, threads)


def _rtpengine_load(engine: Rtpengine, calls: int, duration: float, threads: int) -> dict:
    ng_port = engine.ng[1]
    try:
        load = _spawn("--role", "load", "--calls", str(calls), "--duration", str(duration),
                      "--ng", f"{HOST}:{ng_port}")
        if load.stdout.readline().strip() != "start":
            load.wait(timeout=30)
            sys.exit(f"rtp_relay: the load generator failed to set up {calls} calls in "
                     "rtpengine (its error is above)")
        cpu0 = rtpengine_cpu(engine)
        assert load.stdout.readline().strip() == "stop"
        cpu1 = rtpengine_cpu(engine)
        result = json.loads(load.stdout.readline())
        load.wait(timeout=30)
        result.update(calls=calls, mode="rtpeng", pps_in=round(100 * calls),
                      duration_s=duration, rtpengine_threads=threads)
        result["relay_cpu_pct"] = round(
            100 * (cpu1["cpu"] - cpu0["cpu"]) / (cpu1["t"] - cpu0["t"]), 1)
        result.update(rtpengine_stats(engine, calls))
        return result
    finally:
        engine.stop()


def trial(calls: int, duration: float, direct: bool, port_low: int) -> dict:
    relay = None
    ports_file = None
    try:
        if not direct:
            relay = _spawn("--role", "relay", "--calls", str(calls),
                           "--port-low", str(port_low))
            ports = relay.stdout.readline()
            fd, ports_file = tempfile.mkstemp(suffix=".json")
            os.write(fd, ports.encode())
            os.close(fd)
        load = _spawn("--role", "load", "--calls", str(calls), "--duration", str(duration),
                      *(["--ports-file", ports_file] if ports_file else []))
        assert load.stdout.readline().strip() == "start"
        cpu0 = _ask(relay, "cpu") if relay else None
        assert load.stdout.readline().strip() == "stop"
        cpu1 = _ask(relay, "cpu") if relay else None
        result = json.loads(load.stdout.readline())
        load.wait(timeout=30)
        result.update(calls=calls, mode="direct" if direct else "relay",
                      pps_in=round(100 * calls), duration_s=duration)
        if relay:
            result["relay_cpu_pct"] = round(
                100 * (cpu1["cpu"] - cpu0["cpu"]) / (cpu1["t"] - cpu0["t"]), 1)
            result.update(_ask(relay, "stats"))
        return result
    finally:
        if relay:
            relay.stdin.close()
            try:
                relay.wait(timeout=10)
            except subprocess.TimeoutExpired:
                relay.kill()
        if ports_file:
            os.unlink(ports_file)


def fmt(r: dict) -> str:
    return (f"{r['mode']:>6} {r['calls']:>6} {r['pps_in']:>8} {r['lost']:>7} "
            f"{r.get('p50_ms', float('nan')):>8.3f} {r.get('p99_ms', float('nan')):>8.3f} "
            f"{r.get('relay_cpu_pct', float('nan')):>6} {r['generator_lag_p99_ms']:>11}")


def good(r: dict, max_lag_ms: float) -> bool:
    return r["lost"] == 0 and r["generator_lag_p99_ms"] < max_lag_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=["orchestrate", "relay", "load"], default="orchestrate")
    ap.add_argument("--calls", help="measure these N only, comma-separated (no search)")
    ap.add_argument("--start", type=int, default=100, help="first N of the search")
    ap.add_argument("--max-calls", type=int, default=3200)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per trial")
    ap.add_argument("--bisect", type=int, default=3, help="bisection steps after doubling")
    ap.add_argument("--max-lag-ms", type=float, default=10.0,
                    help="a trial whose sender was this late on 1%% of its ticks is not valid")
    ap.add_argument("--port-low", type=int, default=20000)
    ap.add_argument("--ports-file")
    ap.add_argument("--ng", help=argparse.SUPPRESS)  # load role: set the calls up in rtpengine
    ap.add_argument("--rtpengine", action="store_true",
                    help="also run each N through Debian's rtpengine (userspace) as the anchor")
    ap.add_argument("--rtpengine-threads", type=int, default=1)
    ap.add_argument("--rtpengine-ports", default="40000-60000", help="rtpengine's MIN-MAX")
    args = ap.parse_args()

    if args.role == "relay":
        with asyncio.Runner(loop_factory=loop_factory()) as r:
            calls = int(args.calls)
            r.run(relay_main(calls, args.port_low, args.port_low + 4 * calls + 200))
        return
    if args.role == "load":
        with asyncio.Runner(loop_factory=loop_factory()) as r:
            r.run(load_main(int(args.calls), args.ports_file, args.duration, args.ng))
        return

    if args.rtpengine:
        return compare_with_rtpengine(args)
    print(f"{'mode':>6} {'calls':>6} {'pkt/s in':>8} {'lost':>7} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'cpu %':>6} {'gen p99 lag':>11}", flush=True)
    results = []

    def run(n: int, direct: bool = False) -> dict:
        r = trial(n, args.duration, direct, args.port_low)
        results.append(r)
        print(fmt(r), flush=True)
        return r

    if args.calls:
        for best in (int(n) for n in args.calls.split(",")):
            run(best)
    else:
        lo, hi, n = 0, None, args.start
        while n <= args.max_calls:
            if good(run(n), args.max_lag_ms):
                lo, n = n, n * 2
            else:
                hi = n
                break
        for _ in range(args.bisect if hi else 0):
            mid = (lo + hi) // 2
            if mid in (lo, hi):
                break
            if good(run(mid), args.max_lag_ms):
                lo = mid
            else:
                hi = mid
        best = lo
    summary = {"bench": "rtp_relay", "loop": loop_factory().__module__.split(".")[0],
               "max_calls_zero_loss": best if args.calls is None else None}
    if best:
        relay = next(r for r in reversed(results) if r["calls"] == best and r["mode"] == "relay")
        direct = run(best, direct=True)
        summary.update(
            calls=best, pps_through_relay=relay["pps_in"], lost=relay["lost"],
            relay_cpu_pct=relay["relay_cpu_pct"],
            added_p50_ms=round(relay["p50_ms"] - direct["p50_ms"], 3),
            added_p99_ms=round(relay["p99_ms"] - direct["p99_ms"], 3),
            nproc=os.cpu_count())
    summary["trials"] = results
    print(json.dumps(summary), flush=True)


def compare_with_rtpengine(args: argparse.Namespace) -> None:
    """At each N: voicegw's relay, rtpengine, and the direct path (for added latency)."""
    binary = ensure_rtpengine()
    version = rtpengine_version(binary)
    ns = [int(n) for n in (args.calls or "500,1000,1500").split(",")]
    port_low, port_high = (int(p) for p in args.rtpengine_ports.split("-"))
    print(f"rtp_relay: voicegw relay vs {version} (userspace, --num-threads="
          f"{args.rtpengine_threads}), {args.duration:g} s per trial", flush=True)
    print(f"{'mode':>6} {'calls':>6} {'pkt/s in':>8} {'lost':>7} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'cpu %':>6} {'gen p99 lag':>11}", flush=True)
    rows = []
    for n in ns:
        runs = {
            "relay": trial(n, args.duration, False, args.port_low),
            "rtpengine": rtpengine_trial(binary, n, args.duration, port_low, port_high,
                                         args.rtpengine_threads),
            "direct": trial(n, args.duration, True, args.port_low),
        }
        for r in runs.values():
            print(fmt(r), flush=True)
        row = {"calls": n, "pps_in": 100 * n}
        for name in ("relay", "rtpengine"):
            r = runs[name]
            row[name] = {
                "lost": r["lost"], "cpu_pct": r["relay_cpu_pct"],
                "added_p50_ms": round(r["p50_ms"] - runs["direct"]["p50_ms"], 3),
                "added_p99_ms": round(r["p99_ms"] - runs["direct"]["p99_ms"], 3),
                "valid": good(r, args.max_lag_ms)}
        row["rtpengine"]["ng_setup_s"] = runs["rtpengine"].get("ng_setup_s")
        rows.append({**row, "trials": list(runs.values())})
    print(json.dumps({"bench": "rtp_relay", "anchor": version,
                      "loop": loop_factory().__module__.split(".")[0],
                      "nproc": os.cpu_count(), "rows": rows}), flush=True)


if __name__ == "__main__":
    main()
