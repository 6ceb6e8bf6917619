#!/usr/bin/env python3
"""Warm transfer: time from "complete" (the agent's accept key) to two-way media.

A real ``voicegw run`` (tests/peers/agent.WarmDaemon: ``calls: {transfer_method:
warm, warm: {confirm: true, hold: silence}}``), the scripted caller of the wire tests
pressing 0 in the demo flow, and the scripted agent (tests/peers/agent.Agent) on
loopback. Per run: the agent answers, hears the briefing to its end, then both sides
send marked PCMU every ``--interval`` ms (the caller 0x5A, the agent 0xA5) and the agent
presses 1 (RFC 4733). "Complete" is the moment the key's first end packet leaves the
agent (voicegw's detector reports a digit at its first end packet). The figures:

- caller->agent: first caller packet the agent receives after complete,
- agent->caller: first agent packet the caller receives after complete,
- two-way: the later of the two,

each minus "complete"; the resolution is the send interval (1 ms by default). Before
complete, not one marked packet may cross (the consult is private): a run where one
does is reported as a failure. Prints p50/p99/min/max, then one JSON line.

    .venv/bin/python scripts/bench/warm_complete.py            # 20 runs, about 2 minutes
    .venv/bin/python scripts/bench/warm_complete.py --runs 5

Loopback only; every process and thread started here is stopped here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from peers.net import free_port  # noqa: E402
from peers.agent import Agent, Carrier, WarmDaemon  # noqa: E402

CALLER_TONE = bytes([0x5A]) * 160
AGENT_TONE = bytes([0xA5]) * 160


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def one_run(daemon: WarmDaemon, port: int, interval: float) -> dict[str, float]:
    with Agent(port) as agent:
        caller = Carrier(daemon.address)
        stop = threading.Event()
        paused = threading.Event()  # the agent sends no audio while its key is down
        sender: threading.Thread | None = None
        try:
            if caller.invite().status != 200:
                raise RuntimeError("the call was not answered")
            caller.send_dtmf("0")
            if not caller.listen(15, lambda: agent.call is not None and agent.call.acked):
                raise RuntimeError("the agent was never answered")
            answered = agent.call.answered_at  # type: ignore[union-attr]
            if not caller.listen(10, lambda: agent.quiet(answered, quiet=0.3)):
                raise RuntimeError("the briefing never ended")

            def send() -> None:
                while not stop.is_set():
                    caller.send_rtp(CALLER_TONE)
                    if not paused.is_set():
                        agent.send_rtp(AGENT_TONE, advance=int(8000 * interval))
                    time.sleep(interval)

            sender = threading.Thread(target=send, name="bench-media", daemon=True)
            sender.start()
            caller.listen(0.2)  # media flows both ways into voicegw: nothing may cross yet
            paused.set()
            complete = agent.send_dtmf("1")
            paused.clear()
            seen = lambda: (any(p[12:] == CALLER_TONE for p in agent.audio(complete))  # noqa: E731
                            and any(p[12:] == AGENT_TONE for p in caller.audio(complete)))
            if not caller.listen(5, seen):
                raise RuntimeError("no two-way media within 5 s of the accept key")
            stop.set()
            sender.join(2)
            leaked = (sum(1 for p in agent.audio(answered, complete) if p[12:] == CALLER_TONE)
                      + sum(1 for p in caller.audio(answered, complete) if p[12:] == AGENT_TONE))
            if leaked:
                raise RuntimeError(f"{leaked} packets crossed before the agent accepted")
            to_agent = min(t for t, p in list(agent.rtp_in) if t >= complete and p[12:] == CALLER_TONE)
            to_caller = min(t for t, p in list(caller.rtp_log) if t >= complete and p[12:] == AGENT_TONE)
            caller.bye()
            return {"to_agent": (to_agent - complete) * 1000, "to_caller": (to_caller - complete) * 1000,
                    "two_way": (max(to_agent, to_caller) - complete) * 1000}
        finally:
            stop.set()
            if sender is not None:
                sender.join(2)
            caller.hang_up_quietly()
            caller.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0, help="ms between marked packets, each side")
    args = parser.parse_args()
    interval = args.interval / 1000
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="voicegw-bench-warm-"))
    daemon = WarmDaemon(work, f"sip:agent@127.0.0.1:{port}",
                        {"hold": "silence", "confirm": True, "accept_digit": "1",
                         "briefing_text": "Incoming transfer from {caller}."}, (43000, 43038))
    daemon.start()
    results: list[dict[str, float]] = []
    failures: list[str] = []
    try:
        for index in range(args.runs):
            try:
                results.append(one_run(daemon, port, interval))
                print(f"run {index + 1:2d}: two-way {results[-1]['two_way']:6.1f} ms "
                      f"(caller->agent {results[-1]['to_agent']:5.1f}, agent->caller {results[-1]['to_caller']:5.1f})",
                      flush=True)
            except RuntimeError as error:
                failures.append(str(error))
                print(f"run {index + 1:2d}: FAILED {error}", flush=True)
    finally:
        daemon.terminate()
        daemon.kill()
    summary: dict[str, object] = {"runs": args.runs, "ok": len(results), "failures": failures,
                                  "interval_ms": args.interval}
    if results:
        print(f"\n{'ms after the accept key':<24}{'p50':>8}{'p99':>8}{'min':>8}{'max':>8}{'mean':>8}")
        for key, label in (("two_way", "two-way media"), ("to_agent", "caller -> agent"),
                           ("to_caller", "agent -> caller")):
            values = [r[key] for r in results]
            row = {"p50": percentile(values, 50), "p99": percentile(values, 99), "min": min(values),
                   "max": max(values), "mean": statistics.fmean(values)}
            summary[key] = {k: round(v, 2) for k, v in row.items()}
            print(f"{label:<24}" + "".join(f"{row[k]:8.1f}" for k in ("p50", "p99", "min", "max", "mean")))
    print(json.dumps(summary))
    return 0 if results and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
