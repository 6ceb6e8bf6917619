"""Leaks over the wire (issue 16): calls through each call path against
``voicegw run`` with sipp peers; once they are over and forgotten, what the daemon holds
(``GET /debug/objects``) is back to what it held before, no task or timer is left, and a
full garbage collection finds no cycle per call.

Six daemons (each its own config, API port and token, RTP range), started together
and loaded at once so the module takes about a minute on a quiet machine: the calls
(``CALLS`` per path, 400 in all), then the 64*T1 (32 s) the UA core keeps a call's
transactions and the ACKs of its 2xx for late retransmissions (the engine forgets an
ended call at once). A leak of one object per call shows with
any number of calls; a few dozen per path are enough and keep the module short. The paths
are those of scripts/bench/soak.py (which measures RSS; no RSS is asserted here): one
daemon with a sipp bot runs, one after the other, the caller <-> bot bridge, the
caller's CANCEL and failed calls (the bot's 486, then the bot's silence until voicegw
gives up); one runs the demo flow (TTS prompt, 1 pressed) and its transfer by INVITE
(0 pressed) side by side; three carry out the bot's REFER by INVITE, by REFER to the
carrier and as a warm transfer; one bridges a caller and a bot that both send no RTP
until voicegw's inactivity timeout ends the call (``media_timeout``).

What is asserted per path, after the load, against the daemon's own counters: the
engine's calls, legs, dialogs, handlers, media endpoints, bridges, players, timers,
tasks and transfers in flight; the UA core's transactions, dialogs, ACK-matching
entries and timer heap; the guard's calls; asyncio tasks; and, walking the
collector's objects, live transactions, outgoing-leg attempts, pending loop timers and
tasks, and no live call, leg, media endpoint, RTP socket, player, bridge, transfer or
dialog at all: the API keeps its last 500 ended calls as views, not engine objects.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from peers.calls import SCENARIOS, SippPeer, free_block, render_scenario
from peers.daemon import DaemonProcess, wait_until
from peers.leftovers import CORE_KEYS, ENGINE_KEYS
from peers.net import free_port
from peers.pcap import dtmf_pcap
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.alone, pytest.mark.timeout(300),
              pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]

HOST = "127.0.0.1"
CALLS = 50
"""Calls per path (a path with two phases splits them)."""
RATE = 25
SIPP_TIMEOUT = 240
RTP_PORTS = 1200
"""Per daemon: 600 RTP/RTCP pairs, above the most the flow daemon has open at once
(its transferred calls hold two legs for about 10 s at 25 calls/s)."""
SETTLE_DEADLINE = 120.0
"""Seconds the module waits, at most, for every daemon to let go of its calls."""


@dataclass
class Phase:
    path: str
    caller: str
    values: dict = field(default_factory=dict)
    """What to render in the caller's scenario (@KEY@ -> value)."""
    bot: str | Path | None = None
    """The bot's scenario for this phase (None: no bot, or the previous phase's)."""
    hold_ms: int = 1000


@dataclass
class PathRun:
    """One daemon and the paths it runs (phases one after the other, or side by side)."""

    name: str
    workdir: Path
    config: dict
    phases: list[Phase]
    bot_keys: dict[str, str] = field(default_factory=dict)
    agent: str | None = None
    agent_flag: bool = False
    side_by_side: bool = False
    daemon: DaemonProcess | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(12))
    bot_port: int = field(default_factory=lambda: free_port(HOST))
    agent_port: int = field(default_factory=lambda: free_port(HOST))
    peers: list[SippPeer] = field(default_factory=list)
    callers: list[SippPeer] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    error: str = ""
    notes: list[str] = field(default_factory=list)
    """Callers that did not finish in time (a loaded machine): stopped, not a leak."""

    @property
    def calls(self) -> int:
        return CALLS * len({phase.path for phase in self.phases})

    def api(self, method: str, path: str) -> object:
        assert self.daemon is not None and self.daemon.api_port is not None
        request = urllib.request.Request(f"http://{HOST}:{self.daemon.api_port}{path}", method=method,
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def hang_up_leftovers(self) -> None:
        """Calls of a caller that was stopped (it did not finish in time) have nobody to
        hang them up: the operator's hang-up ends them, as it would in production."""
        if self.notes:
            for call in self.api("GET", "/calls?state=active&limit=1000"):  # type: ignore[union-attr]
                self.api("POST", f"/calls/{call['key']}/hangup")

    def objects(self, **options: bool) -> dict:
        assert self.daemon is not None and self.daemon.api_port is not None
        query = "&".join(f"{k}={str(v).lower()}" for k, v in options.items())
        request = urllib.request.Request(f"http://{HOST}:{self.daemon.api_port}/debug/objects?{query}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        agent_uri = f"sip:agent@{HOST}:{self.agent_port}"
        config = {**self.config, "api": {"token": self.token},
                  "guard": {"max_loop_lag": 0},  # a loaded CI machine must not refuse calls
                  # no full collection on a clock: a reference cycle per call must show
                  "lifecycle": {"gc_interval": 0}}
        calls = dict(config.get("calls", {}))
        if "transfer_method" in calls:  # transfers go to the agent's port (a peer or not)
            calls.setdefault("transfer_allow", [f"sip:*@{HOST}:{self.agent_port}"])
            calls.setdefault("ring_timeout", 10)
        if self.agent_flag:
            calls["agent_uri"] = agent_uri
        if calls:
            config["calls"] = calls
        path = self.workdir / "voicegw.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        low = free_block(RTP_PORTS)
        args = ["--rtp-ports", f"{low}-{low + RTP_PORTS - 1}", "--config", str(path)]
        if self.phases[0].bot is not None:
            args += ["--bot-uri", f"sip:bot@{HOST}:{self.bot_port}"]
        self.daemon = DaemonProcess(HOST, None, *args).start(timeout=120)
        if self.agent is not None:
            self.peers.append(SippPeer("agent", SCENARIOS / self.agent, self.workdir, port=self.agent_port,
                                       calls=CALLS, timeout=SIPP_TIMEOUT, extra=("-l", "400")).start())
        self.before = self.objects(instances=True, collect=True)

    def run(self) -> None:
        """The calls: each path's CALLS, shared by its phases."""
        per_path: dict[str, int] = {}
        for phase in self.phases:
            per_path[phase.path] = per_path.get(phase.path, 0) + 1
        if self.side_by_side:
            def phase(index: int, one: Phase) -> None:
                try:
                    self._phase(index, one, CALLS // per_path[one.path])
                except Exception as error:  # noqa: BLE001 - reported by the group's test
                    self.error = self.error or f"{one.path}: {error!r}"

            threads = [threading.Thread(target=phase, args=(i, p)) for i, p in enumerate(self.phases)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(240)
            return
        for index, phase in enumerate(self.phases):
            self._phase(index, phase, CALLS // per_path[phase.path])

    def _phase(self, index: int, phase: Phase, calls: int) -> None:
        if phase.bot is not None:  # a new bot on the bot's port
            for peer in [p for p in self.peers if p.name == "bot"]:
                try:  # the last calls' CANCEL/487 and ACK go through before it goes
                    peer.wait(60)
                except AssertionError as error:
                    self.notes.append(str(error)[:300])
                self.peers.remove(peer)
            scenario = phase.bot if isinstance(phase.bot, Path) else SCENARIOS / phase.bot
            self.peers.append(SippPeer("bot", scenario, self.workdir, port=self.bot_port, calls=calls,
                                       timeout=SIPP_TIMEOUT, extra=("-l", "400"),
                                       keys={k: v.format(agent=self.agent_port) for k, v in self.bot_keys.items()},
                                       ).start())
        source = (render_scenario(phase.caller, self.workdir / f"phase{index}", **phase.values)
                  if phase.values else SCENARIOS / phase.caller)
        assert self.daemon is not None
        caller = SippPeer(f"caller{index}-{phase.path}", source, self.workdir, remote=self.daemon.address,
                          calls=calls, timeout=SIPP_TIMEOUT,
                          extra=("-r", str(RATE), "-l", "400", "-d", str(phase.hold_ms)))
        self.callers.append(caller.start())
        try:
            caller.wait(calls / RATE + phase.hold_ms / 1000 + 90)
        except AssertionError as error:  # stopped: its calls end by the daemon's timers
            self.notes.append(str(error)[:300])

    def settled(self) -> bool:
        snapshot = self.objects()
        engine, core = snapshot["engine"], snapshot["core"]
        return (engine["calls"] == 0 and core["server_transactions"] == 0 and core["client_transactions"] == 0
                and core["timer_entries"] == 0)

    def stop(self) -> None:
        for peer in self.peers + self.callers:
            peer.stop()
        if self.daemon is not None and self.daemon.running():
            try:
                self.daemon.terminate()
            except subprocess.TimeoutExpired:
                pass  # still draining: killed below
            finally:
                self.daemon.kill()


def path_runs(root: Path) -> list[PathRun]:
    dtmf = {digit: dtmf_pcap(root / f"dtmf{digit}.pcap", digit) for digit in "01"}
    refer_bot = {"refer_to": f"sip:agent@{HOST}:{{agent}}"}
    reject = render_scenario("b2bua_bot_reject.xml", root / "fail-bot", status=486)
    return [
        PathRun("bot", root / "bot", {"calls": {"bot_answer_timeout": 1}}, [
            Phase("bridge", "b2bua_uac_bench.xml", bot="b2bua_bot_answer.xml"),
            Phase("cancel", "b2bua_uac_cancel.xml", bot="b2bua_bot_ring.xml", hold_ms=0),
            Phase("fail", "b2bua_uac_rejected.xml", {"status": 486}, bot=reject, hold_ms=0),
            Phase("fail", "b2bua_uac_rejected.xml", {"status": 480}, bot="b2bua_bot_ring.xml", hold_ms=0),
        ]),
        # the greeting (about 4 s) plays before the menu reads the 0: then the agent answers
        PathRun("flow", root / "flow", {"calls": {"transfer_method": "invite"}}, [
            Phase("demo", "caller_dtmf_bench.xml", {"pcap": dtmf["1"]}, hold_ms=1500),
            Phase("invite_transfer", "caller_dtmf_bench.xml", {"pcap": dtmf["0"]}, hold_ms=8000),
        ], agent="agent_answer.xml", agent_flag=True, side_by_side=True),
        PathRun("bot_refer", root / "bot_refer", {"calls": {"transfer_method": "invite"}},
                [Phase("bot_refer", "b2bua_uac_bench.xml", bot="bot_refer.xml", hold_ms=1500)],
                bot_keys=refer_bot, agent="agent_answer.xml"),
        # the carrier and the bot answer a REFER or NOTIFY resent while a loaded loop ran
        # late (the strict carrier_refer_ok.xml aborts such a call, which then waits for
        # the inactivity timeout)
        PathRun("refer_transfer", root / "refer_transfer", {"calls": {"transfer_method": "refer"}},
                [Phase("refer_transfer", "soak_carrier_refer.xml", bot="soak_bot_refer.xml")], bot_keys=refer_bot),
        PathRun("warm", root / "warm", {"calls": {"transfer_method": "warm", "warm": {
                    "hold": "tts", "briefing_text": "Incoming transfer from the leak test."}}},
                [Phase("warm", "b2bua_uac_bench.xml", bot="bot_refer.xml", hold_ms=4000)],
                bot_keys=refer_bot, agent="agent_answer.xml"),
        # nobody sends RTP and nobody hangs up: every call ends by voicegw's inactivity
        # timeout (media_timeout, BYE on both legs)
        PathRun("media_timeout", root / "media_timeout", {"media": {"inactivity_timeout": 1}},
                [Phase("media_timeout", "b2bua_uac_wait_bye.xml", bot="b2bua_bot_answer.xml", hold_ms=0)]),
    ]


def _in_threads(runs: list[PathRun], method: str) -> None:
    def one(run: PathRun) -> None:
        try:
            getattr(run, method)()
        except Exception as error:  # noqa: BLE001 - reported by the path's test, with the peers' output
            run.error = run.error or f"{method}: {error!r}"

    threads = [threading.Thread(target=one, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
        time.sleep(0.5)  # eight daemons importing at once would only slow each other
    for thread in threads:
        thread.join(300)


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, PathRun]]:
    runs = path_runs(tmp_path_factory.mktemp("leak"))
    try:
        _in_threads(runs, "start")
        _in_threads([r for r in runs if not r.error], "run")
        live = [r for r in runs if not r.error]
        for run in live:
            run.hang_up_leftovers()
        wait_until(lambda: all(r.settled() for r in live), SETTLE_DEADLINE, 1.0)
        for run in live:
            run.after = run.objects(instances=True)  # before any full collection
            run.after["gc"]["found_now"] = run.objects(collect=True)["gc"]["found_now"]
        yield {run.name: run for run in runs}
    finally:
        for run in runs:
            run.stop()


def report(run: PathRun) -> str:
    after = {k: run.after.get(k) for k in ("engine", "core", "instances", "api", "asyncio", "gc")}
    parts = [f"path {run.name}: {run.error}", *run.notes, "after: " + json.dumps(after),
             "before: " + json.dumps(run.before)[:2000]]
    parts += [peer.report()[-1500:] for peer in run.peers + run.callers]
    if run.daemon is not None:
        parts.append("--- voicegw log (last 20 lines)\n" + "\n".join(run.daemon.lines[-20:]))
    return "\n".join(parts)


GROUPS = {"bot": ("bridge", "cancel", "fail"), "flow": ("demo", "invite_transfer"),
          "bot_refer": ("bot_refer",), "refer_transfer": ("refer_transfer",), "warm": ("warm",),
          "media_timeout": ("media_timeout",)}


@pytest.mark.parametrize("group", list(GROUPS), ids=["-".join(paths) for paths in GROUPS.values()])
def test_the_daemon_lets_go_of_every_call(soaked: dict[str, PathRun], group: str) -> None:
    run = soaked[group]
    assert not run.error, report(run)
    before, after = run.before, run.after
    engine, core = after["engine"], after["core"]
    # the calls went through their paths: every one reached the daemon, and transfers
    # happened where the path transfers (on a loaded machine a caller may hang up first,
    # a key press may come before the flow listens, a peer may fail a call: no leak, and
    # not what is checked here)
    assert engine["total_calls"] == run.calls, report(run)
    if any(path in ("invite_transfer", "bot_refer", "refer_transfer", "warm") for path in GROUPS[group]):
        assert after["api"]["transfers_kept"] > 0, report(run)
    if group == "media_timeout":  # every call was ended by the inactivity timeout
        assert run.daemon is not None
        timed_out = [e for e in run.daemon.events() if e.get("event") == "call.media_timeout"]
        assert len(timed_out) == run.calls, report(run)
    # the engine holds nothing of them
    for key in ENGINE_KEYS:
        assert engine[key] == before["engine"][key] == 0, (key, report(run))
    # nor does the UA core (transactions, dialogs, ACK matching, timers) or the guard
    for key in CORE_KEYS:
        assert core[key] == before["core"][key] == 0, (key, report(run))
    assert after["guard"]["calls"] == 0, report(run)
    # no task or timer is left; nothing holds transactions or outgoing attempts
    assert after["asyncio"]["tasks"] == before["asyncio"]["tasks"], report(run)
    counted, was = after["instances"], before["instances"]
    for key in ("tasks", "pending_timers", "players_running", "ServerTransaction", "ClientTransaction", "Dialing"):
        assert counted[key] == was[key], (key, report(run))
    # the API keeps every one of these ended calls (its last 500), as immutable views
    # (api/views.py): no call, leg, media endpoint, socket, player, bridge, transfer or
    # dialog of them is alive, through the API or a reference cycle awaiting a collection
    assert after["api"]["calls_kept"] == after["api"]["ended_kept"] == run.calls, report(run)
    for key in ("Call", "Leg", "MediaEndpoint", "Player", "Transfer"):
        assert counted[key] == was[key] == 0, (key, report(run))
    for key in ("RtpSocket", "Bridge", "Dialog"):
        assert counted[key] == was[key], (key, report(run))
    # no reference cycle per call: a full collection finds fewer objects than there were calls
    assert after["gc"]["found_now"] < run.calls, report(run)
