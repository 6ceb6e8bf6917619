"""Calls and every transfer method through Kamailio's dispatcher to two voicegw workers.

One farm for the module (tests/peers/farm.py): ``voicegw run --workers 2`` (its
supervisor's control API on a free port) behind the shipped deploy/kamailio/kamailio.cfg,
sipp peers for the carrier (through Kamailio), the bot and the agent. What is checked,
on the wire: new INVITEs land on both workers (hash of Call-ID); every request of a
dialog - ACK, BYE, REFER, NOTIFY - reaches the worker that owns it (Kamailio's trace of
where it loose-routed each one, and the workers' own logs, each line tagged with its
worker); transfers by INVITE, REFER, BYE and warm started through the one control API
(which must find the call on its worker), and the bot's REFER; the CLI lists the calls
of both workers through that API. Apart from the farm (its own two workers, a carrier
profile pinging a sipp gateway): ``/trunks`` and ``/debug/objects`` merge both workers,
and a worker answers OPTIONS 503 while it drains and, restarted, until its control API
is up (Kamailio's dispatcher takes a worker for up on a 2xx to its ping).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from peers.caller import Caller
from peers.calls import HOST, SCENARIOS, SIPP, SippPeer
from peers.daemon import wait_until
from peers.farm import Dispatcher, Workers
from peers.kamailio import KAMAILIO
from peers.ports import free_port

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(240),  # two workers and Kamailio start, then a load: minutes on a loaded box
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(KAMAILIO is None, reason="kamailio not installed: run scripts/bootstrap"),
]


class Farm:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        # the module's bot, which the workers' --bot-uri names, comes and goes between
        # tests: its port stays leased for the module (peers/ports.py)
        self.bot_port = free_port(HOST, keep=True)
        self.workers = Workers(workdir, 2, args=("--bot-uri", f"sip:bot@{HOST}:{self.bot_port}"), calls={
            "transfer_allow": [f"sip:*@{HOST}:*"], "transfer_method": "invite",
            "warm": {"hold": "silence", "briefing_text": "Transfer.", "confirm": False, "auto_complete": True},
        })
        self.dispatcher: Dispatcher | None = None
        self.peers: list[SippPeer] = []
        self.test_dir = workdir

    def sipp(self, name: str, scenario: str, **kwargs: object) -> SippPeer:
        from peers.calls import SCENARIOS

        peer = SippPeer(name, SCENARIOS / scenario, self.test_dir, **kwargs)  # type: ignore[arg-type]
        self.peers.append(peer)
        return peer.start()

    def carrier(self, scenario: str, **kwargs: object) -> SippPeer:
        assert self.dispatcher is not None
        return self.sipp("carrier", scenario, remote=self.dispatcher.address, **kwargs)

    def bot(self, scenario: str, **kwargs: object) -> SippPeer:
        return self.sipp("bot", scenario, port=self.bot_port, **kwargs)

    def finish(self, *peers: SippPeer, timeout: float = 40.0) -> None:
        for peer in peers:
            code = peer.wait(timeout)
            assert code == 0, f"sipp {peer.name} exited {code}\n{self.report()}"

    def report(self) -> str:
        parts = [peer.report() for peer in self.peers]
        parts.append("--- voicegw (last 40 lines)\n" + "\n".join(self.workers.lines[-40:]))
        if self.dispatcher is not None:
            parts.append("--- kamailio (last 40 lines)\n" + "\n".join(self.dispatcher.text().splitlines()[-40:]))
        return "\n".join(parts)

    def owners(self, call_id: str) -> set[int]:
        """The workers that logged a request of this Call-ID."""
        return {e["worker"] for e in self.workers.events("sip.request") if e.get("call_id") == call_id}

    def routed_to(self, method: str, call_id: str) -> list[str]:
        """Where Kamailio loose-routed the in-dialog ``method`` requests of the call."""
        return [line.split(" -> ", 1)[1] for line in self.dispatcher.lines("loose_route", method)
                if f" {call_id} " in line]

    def wait_call(self, timeout: float = 30.0) -> dict:
        """The one call up (connected) through the farm's API."""
        found: list[dict] = []

        def up() -> bool:
            found[:] = [c for c in self.workers.http("GET", "/calls").json() if c["state"] == "connected"]
            return bool(found)

        assert wait_until(up, timeout, 0.2), f"no call connected\n{self.report()}"
        return found[0]


@pytest.fixture(scope="module")
def _farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    farm = Farm(tmp_path_factory.mktemp("farm"))
    farm.workers.start()
    try:
        farm.dispatcher = Dispatcher(farm.workdir, farm.workers.ports).start()
        yield farm
    finally:
        if farm.dispatcher is not None:
            farm.dispatcher.stop()
        if farm.workers.running():
            try:
                assert farm.workers.terminate() == 0, "\n".join(farm.workers.lines[-30:])
            finally:
                farm.workers.kill()


@pytest.fixture
def farm(_farm: Farm, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Farm]:
    _farm.test_dir = tmp_path
    _farm.peers = []
    since = len(_farm.workers.lines)
    yield _farm
    for peer in _farm.peers:
        peer.stop()
    errors = [line for line in _farm.workers.lines[since:] if '"level": "error"' in line]
    assert not errors, errors[:5]
    assert _farm.workers.running(), _farm.report()


def test_new_calls_spread_over_both_workers_and_each_dialog_stays_on_its_own(farm: Farm) -> None:
    """12 calls through Kamailio: both workers take some (hash of Call-ID); the ACK and
    BYE of each reach the worker that answered its INVITE; while they are up, the CLI
    lists the calls of both workers, through the supervisor's API only."""
    calls = 12
    bot = farm.bot("b2bua_bot_answer.xml", calls=calls)
    carrier = farm.carrier("b2bua_uac_bench.xml", calls=calls, extra=("-r", "6", "-d", "15000"))
    seen: dict[str, int] = {}

    def both_listed() -> bool:
        shown = farm.workers.cli("calls", "--json")
        assert shown.returncode == 0, shown.stderr
        seen.update({call["id"]: call["worker"] for call in json.loads(shown.stdout)})
        return set(seen.values()) == {0, 1}

    assert wait_until(both_listed, 30.0, 0.5), f"the CLI never showed calls of both workers: {seen}"
    table = farm.workers.cli("calls")  # the calls are held 15 s: still up (a CLI run takes ~1-3 s)
    assert table.returncode == 0 and "worker" in table.stdout, table.stdout + table.stderr
    farm.finish(carrier, bot)

    call_ids = {m.header("call-id") for m in carrier.messages() if m.method == "INVITE"}
    assert len(call_ids) == calls
    owners = {call_id: farm.owners(call_id) for call_id in call_ids}
    assert all(len(o) == 1 for o in owners.values()), owners
    assert {w for o in owners.values() for w in o} == {0, 1}, f"one worker took every call: {owners}"
    for call_id, (owner,) in owners.items():
        port = farm.workers.ports[owner]
        dispatched = [line for line in farm.dispatcher.lines("dispatch", "INVITE") if f" {call_id} " in line]
        assert dispatched and dispatched[0].endswith(f"sip:{HOST}:{port}"), dispatched
        for method in ("ACK", "BYE"):  # the carrier's, by the Route set, to the worker's Contact
            routed = farm.routed_to(method, call_id)
            assert routed and all(f":{port}" in r for r in routed), (method, routed, port)
        if call_id in seen:
            assert seen[call_id] == owner, "the API names the worker that has the call"


def transfer(farm: Farm, call: dict, target: str, method: str) -> dict:
    """Started through the supervisor's API (it finds the call's worker); its outcome."""
    started = farm.workers.http("POST", f"/calls/{call['id']}/transfer", json={"target": target, "method": method})
    assert started.status_code == 202, started.text
    info = started.json()

    def settled() -> bool:
        info.update(farm.workers.http("GET", f"/transfers/{info['id']}").json())
        return info["state"] != "pending"

    assert wait_until(settled, 30.0, 0.2), f"transfer still pending: {info}\n{farm.report()}"
    return info


@pytest.mark.parametrize("method", ["invite", "warm", "refer", "bye"])
def test_transfer_through_the_dispatcher_reaches_the_owning_worker(farm: Farm, method: str) -> None:
    """A call through Kamailio is transferred by ``method`` through the one API; every
    in-dialog request of the carrier's leg (ACK, REFER, NOTIFY, BYE) passed Kamailio and
    reached the worker that owns the call, and only that worker saw the call."""
    bot = farm.bot("b2bua_bot_answer.xml")
    agent = farm.sipp("agent", "agent_answer.xml", rtp_echo=True) if method in ("invite", "warm") else None
    target = f"sip:agent@{HOST}:{agent.port if agent else 9}"
    carrier = farm.carrier("carrier_refer_ok.xml" if method == "refer" else "carrier_call_wait_bye.xml")
    call = farm.wait_call()
    port = farm.workers.ports[call["worker"]]
    result = transfer(farm, call, target, method)
    assert result["state"] == "succeeded", result
    if agent is not None:  # the caller talks to the agent until the operator hangs up
        hung = farm.workers.http("POST", f"/calls/{call['id']}/hangup", json={"reason": "test"})
        assert hung.status_code == 200 and hung.json()["hung_up"], hung.text
    farm.finish(carrier, bot, *([agent] if agent else []))

    assert farm.owners(call["id"]) == {call["worker"]}
    assert all(f":{port}" in r for r in farm.routed_to("ACK", call["id"])), farm.routed_to("ACK", call["id"])
    assert farm.routed_to("BYE", call["id"]), "voicegw's BYE to the carrier went by Kamailio"
    if method == "refer":
        notifies = farm.routed_to("NOTIFY", call["id"])
        assert len(notifies) == 3 and all(f":{port}" in r for r in notifies), (notifies, port)
        assert farm.routed_to("REFER", call["id"]), "voicegw's REFER went by Kamailio"
    # the log line may be read from the workers' pipe a moment after the API answered
    def succeeded() -> list[int]:
        return [e["worker"] for e in farm.workers.events("transfer.succeeded") if e.get("call_id") == call["id"]]

    assert wait_until(lambda: succeeded() == [call["worker"]], 5.0), succeeded()


def test_bot_refer_through_the_dispatcher(farm: Farm) -> None:
    """The bot REFERs (to the worker that dialled it), the worker bridges the caller to
    the agent by INVITE; the agent hangs up and the worker's BYE reaches the carrier
    through Kamailio; only the owning worker saw the call."""
    agent = farm.sipp("agent", "agent_hangup.xml", rtp_echo=True)
    bot = farm.bot("bot_refer.xml", keys={"refer_to": f"sip:agent@{HOST}:{agent.port}"})
    carrier = farm.carrier("carrier_call_wait_bye.xml")
    farm.finish(bot, agent, carrier)
    call_id = next(m.header("call-id") for m in carrier.messages() if m.method == "INVITE")
    owner, = farm.owners(call_id)
    port = farm.workers.ports[owner]
    assert all(f":{port}" in r for r in farm.routed_to("ACK", call_id))
    assert farm.routed_to("BYE", call_id)
    assert wait_until(lambda: any(e.get("call_id") == call_id and e["worker"] == owner
                                  for e in farm.workers.events("transfer.succeeded")), 5.0)


def test_status_and_metrics_merge_both_workers(farm: Farm) -> None:
    """/status sums the workers' counters and lists them; /metrics labels every sample
    with its worker, each family once; the CLI's status shows the workers."""
    status = farm.workers.http("GET", "/status").json()
    assert [w["index"] for w in status["workers"]] == [0, 1] and all(w["alive"] for w in status["workers"])
    metrics = farm.workers.http("GET", "/metrics").text
    families = [line for line in metrics.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == len(set(families)), "each family once"
    assert 'worker="0"' in metrics and 'worker="1"' in metrics
    shown = farm.workers.cli("status")
    assert shown.returncode == 0 and "worker 0 " in shown.stdout and "worker 1 " in shown.stdout, shown.stdout
    assert farm.workers.http("GET", "/calls", headers={"Authorization": "Bearer wrong"}).status_code == 401


def options(port: int, local: int) -> bytes:
    branch = os.urandom(6).hex()
    return (f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK{branch};rport\r\n"
            f"From: <sip:probe@{HOST}>;tag={branch}\r\nTo: <sip:{HOST}:{port}>\r\n"
            f"Call-ID: {branch}@probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def ping(port: int, until: Callable[[bytes], bool], timeout: float = 90.0) -> list[bytes]:
    """OPTIONS to ``port`` every 20 ms (as Kamailio's pings, faster) until an answer
    satisfies ``until``; every answer, in order."""
    answers: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(0.02)
        local = sock.getsockname()[1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.sendto(options(port, local), (HOST, port))
            try:
                answers.append(sock.recv(65535))
            except TimeoutError:
                continue
            if until(answers[-1]):
                return answers
    raise AssertionError(f"no such answer to OPTIONS within {timeout} s: {[a[:12] for a in answers[-20:]]}")


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.timeout(300)
def test_trunks_and_objects_of_both_workers_and_pings_503_while_a_worker_drains_or_starts(
        tmp_path: Path) -> None:
    """Both workers ping the carrier's gateway (a sipp that answers OPTIONS): ``/trunks``
    lists each worker's row, ``voicegw trunks`` shows them; ``/debug/objects`` sums the
    workers' counts and keeps each one's. Worker 1, with a call up, gets SIGTERM: while
    it drains it answers OPTIONS 503 with Retry-After (Kamailio takes it out); the call
    ends, the worker exits and is restarted; pinged from its exit on, it answers 503 or
    nothing until its first 200, and at that moment its control API already answers
    (its objects are in the merged view)."""
    gateway = SippPeer("gateway", SCENARIOS / "gateway_options.xml", tmp_path, calls=100_000, timeout=280).start()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "carrier.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"], "trunk": f"sip:{{number}}@{HOST}:{gateway.port}",
        "health": {"interval": 0.5, "timeout": 1.0, "down_after": 2, "up_after": 1}}))
    workers = Workers(tmp_path, 2, profiles_dir=profiles)
    caller: Caller | None = None
    try:
        workers.start()
        rows: list[dict] = []

        def both_up() -> bool:
            rows[:] = workers.http("GET", "/trunks").json()["gateways"]
            return sorted((r["worker"], r["state"]) for r in rows) == [(0, "up"), (1, "up")]

        assert wait_until(both_up, 30.0, 0.3), rows
        assert {r["gateway"] for r in rows} == {f"udp:{HOST}:{gateway.port}"}
        assert workers.http("GET", "/trunks").json()["registrations"] == []
        shown = workers.cli("trunks")
        assert shown.returncode == 0, shown.stderr
        assert [line.split()[:4] for line in shown.stdout.splitlines() if f":{gateway.port}" in line] == [
            ["0", "carrier", f"udp:{HOST}:{gateway.port}", "up"], ["1", "carrier", f"udp:{HOST}:{gateway.port}", "up"]]

        objects = workers.http("GET", "/debug/objects")
        assert objects.status_code == 200, objects.text
        merged = objects.json()
        each = merged["workers"]
        assert set(each) == {"0", "1"}
        for part, key in (("core", "requests_received"), ("core", "responses_received"), ("asyncio", "tasks")):
            assert merged[part][key] == each["0"][part][key] + each["1"][part][key], (part, key)
        assert each["0"]["core"]["responses_received"] > 0 and each["1"]["core"]["responses_received"] > 0
        assert len(merged["gc"]["counts"]) == 3

        port = workers.ports[1]
        assert status_of(ping(port, lambda a: True, 10.0)[-1]) == 200
        caller = Caller((HOST, port))
        assert caller.invite().status == 200  # the demo flow answers: worker 1 has a call up
        pid = workers.worker_pid(1)
        os.kill(pid, signal.SIGTERM)
        assert wait_until(lambda: any(e.get("worker") == 1 for e in workers.events("daemon.stopping")), 20.0)
        draining = ping(port, lambda a: True, 10.0)[-1]
        assert status_of(draining) == 503 and b"\r\nRetry-After: 1\r\n" in draining, draining
        assert caller.bye().status == 200  # the drain ends, the worker exits; the supervisor restarts it
        assert wait_until(lambda: workers.events("worker.died", worker=1, pid=pid), 30.0), workers.lines[-20:]
        seen: list[httpx.Response] = []

        def up(answer: bytes) -> bool:
            if status_of(answer) != 200:
                return False
            seen.append(workers.http("GET", "/debug/objects"))  # at once: is its API up?
            return True

        answers = ping(port, up)
        assert {status_of(a) for a in answers[:-1]} <= {503}, [a[:12] for a in answers]
        assert seen[0].status_code == 200 and set(seen[0].json()["workers"]) == {"0", "1"}, \
            f"a 200 to OPTIONS before worker 1's API answered: {seen[0].text[:300]}\n" + "\n".join(workers.lines[-20:])
        # the supervisor's worker.started line is read from its pipe by a thread: a bounded wait
        assert wait_until(lambda: workers.worker_pid(1) != pid, 10.0), workers.lines[-20:]
    finally:
        if caller is not None:
            caller.close()
        gateway.stop()
        if workers.running():
            try:
                workers.terminate()
            finally:
                workers.kill()
