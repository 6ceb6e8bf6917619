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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

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
    from voicegw.media.ports import PortPool
    from voicegw.media.relay import Bridge, open_endpoint

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


async def load_main(calls: int, ports_file: str | None, duration: float) -> None:
    import socket
    socks = []
    for _ in range(2 * calls):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        s.setblocking(False)
        socks.append(s)
    if ports_file:  # through the relay: leg a -> relay port a, leg b -> relay port b
        ports = json.loads(Path(ports_file).read_text())["ports"]
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
    ap.add_argument("--calls", type=int, help="measure this N only (no search)")
    ap.add_argument("--start", type=int, default=100, help="first N of the search")
    ap.add_argument("--max-calls", type=int, default=3200)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per trial")
    ap.add_argument("--bisect", type=int, default=3, help="bisection steps after doubling")
    ap.add_argument("--max-lag-ms", type=float, default=10.0,
                    help="a trial whose sender was this late on 1%% of its ticks is not valid")
    ap.add_argument("--port-low", type=int, default=20000)
    ap.add_argument("--ports-file")
    args = ap.parse_args()

    if args.role == "relay":
        with asyncio.Runner(loop_factory=loop_factory()) as r:
            r.run(relay_main(args.calls, args.port_low, args.port_low + 4 * args.calls + 200))
        return
    if args.role == "load":
        with asyncio.Runner(loop_factory=loop_factory()) as r:
            r.run(load_main(args.calls, args.ports_file, args.duration))
        return

    print(f"{'mode':>6} {'calls':>6} {'pkt/s in':>8} {'lost':>7} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'cpu %':>6} {'gen p99 lag':>11}", flush=True)
    results = []

    def run(n: int, direct: bool = False) -> dict:
        r = trial(n, args.duration, direct, args.port_low)
        results.append(r)
        print(fmt(r), flush=True)
        return r

    if args.calls:
        best = args.calls
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


if __name__ == "__main__":
    main()
