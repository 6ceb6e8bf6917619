"""A call lab's verbs for wire tests: start ``voicegw run`` with a ``calls:`` config,
sipp peers (bot, agent, carrier), the scripted caller, and reading what crossed the wire
(sipp message logs, the daemon's JSON log lines). The ``lab`` fixture (tests/conftest.py)
gives each test its own CallLab on free loopback ports and stops everything after it."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import yaml

from peers.caller import Caller
from peers.calls import HOST, SCENARIOS, CallLab, SipMessage, SippPeer, free_block
from peers.daemon import DaemonProcess, wait_until
from peers.net import free_port

NO_SHEDDING: dict[str, object] = {"guard": {"max_loop_lag": 0}}
"""``sections`` for tests that are not about overload: no 503 "overloaded" when the
daemon's loop lags more than 0.25 s, which a shared, loaded CI box causes at times."""


def start_voicegw(lab: CallLab, bot: bool = True, rtp_ports: int = 40, *,
                  sections: dict[str, object] | None = None, **calls: object) -> DaemonProcess:
    """``voicegw run`` on a free port with its own RTP range and a config file with a
    ``calls:`` section (allow-list, method, timers) and any other top-level
    ``sections``; its control API is off (it would want the fixed port 5080, which
    parallel runs share). With ``bot`` its --bot-uri points at ``lab.bot_port``."""
    low = free_block(rtp_ports)
    args = ["--rtp-ports", f"{low}-{low + rtp_ports - 1}"]
    if bot:
        lab.bot_port = free_port(HOST)
        args += ["--bot-uri", f"sip:bot@{HOST}:{lab.bot_port}"]
    config = lab.workdir / "voicegw.yaml"
    config.write_text(yaml.safe_dump({**(sections or {}), "calls": calls, "api": {"enabled": False}}),
                      encoding="utf-8")
    lab.daemon = DaemonProcess(HOST, None, *args, "--config", str(config)).start()
    return lab.daemon


def peer(lab: CallLab, name: str, scenario: str | Path, *, remote: tuple[str, int] | None = None,
         port: int | None = None, **kwargs: object) -> SippPeer:
    """A sipp peer named ``name`` (its message log is ``<name>_messages.log``)."""
    path = scenario if isinstance(scenario, Path) else SCENARIOS / scenario
    sipp = SippPeer(name, path, lab.workdir, remote=remote, port=port, **kwargs)  # type: ignore[arg-type]
    lab.peers.append(sipp)
    return sipp.start()


def bot(lab: CallLab, scenario: str, refer_to: str, **keys: str) -> SippPeer:
    assert lab.bot_port is not None
    return peer(lab, "bot", scenario, port=lab.bot_port, keys={"refer_to": refer_to, **keys})


def agent_uri(agent: SippPeer, user: str = "agent") -> str:
    return f"sip:{user}@{HOST}:{agent.port}"


def caller(lab: CallLab) -> Caller:
    assert lab.daemon is not None
    c = Caller(lab.daemon.address)
    lab.callers.append(c)  # type: ignore[arg-type]  # closed by the lab
    return c


def finish(lab: CallLab, *peers: SippPeer, timeout: float = 20.0) -> None:
    """Each sipp peer must exit 0: every message as its scenario says, nothing else."""
    for p in peers:
        try:
            code = p.wait(timeout)
        except AssertionError:
            raise AssertionError(f"sipp {p.name} did not finish\n{lab.report()}") from None
        assert code == 0, f"sipp {p.name} exited {code}\n{lab.report()}"


def event(lab: CallLab, name: str, **fields: object) -> dict | None:
    """The first JSON log line ``name`` whose fields match, or None."""
    assert lab.daemon is not None
    return next((e for e in lab.daemon.events()
                 if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())), None)


def wait_event(lab: CallLab, name: str, timeout: float = 10.0, **fields: object) -> dict:
    if not wait_until(lambda: event(lab, name, **fields) is not None, timeout):
        raise AssertionError(f"no {name} {fields} within {timeout} s\n{lab.report()}")
    found = event(lab, name, **fields)
    assert found is not None
    return found


def log_time(entry: dict) -> float:
    """A log line's timestamp (ISO, UTC) as seconds."""
    return datetime.fromisoformat(entry["timestamp"]).timestamp()


def sipfrags(messages: list[SipMessage], direction: str = "in") -> list[tuple[int, bool]]:
    """(sipfrag status, terminated?) of each NOTIFY in ``direction``, in order."""
    out = []
    for m in messages:
        if m.direction == direction and m.status is None and m.method == "NOTIFY":
            line = m.body.decode("utf-8", "replace").strip().split("\r\n")[0].split("\n")[0]
            status = int(line.split()[1]) if line.startswith("SIP/2.0 ") else -1
            out.append((status, "terminated" in (m.header("subscription-state") or "")))
    return out


def requests(messages: list[SipMessage], method: str, direction: str = "in") -> list[SipMessage]:
    return [m for m in messages if m.direction == direction and m.status is None and m.method == method]


def responses(messages: list[SipMessage], method: str, direction: str = "in") -> list[SipMessage]:
    return [m for m in messages if m.direction == direction and m.status is not None and m.method == method]


def echo_check(c: Caller, packets: int = 40) -> None:
    """Media goes caller -> voicegw -> agent (sipp -rtp_echo) -> voicegw -> caller: every
    packet the caller sends comes back, in order (the bot does not echo)."""
    c.receive_rtp(0.3)  # drain ringback/bot leftovers
    sent = [bytes([i]) * 160 for i in range(1, packets + 1)]
    for payload in sent:
        c.send_rtp(payload)
        time.sleep(0.005)
    echoed = [p[12:] for p in c.receive_rtp(1.5) if p[1] & 0x7F == 0]
    assert [p for p in echoed if p in sent] == sent, "every packet comes back from the agent, in order"


def no_rtp_echo(c: Caller) -> None:
    """Nothing the caller sends comes back: its media is not bridged to the echoing agent."""
    c.receive_rtp(0.2)
    sent = [bytes([200 + i]) * 160 for i in range(10)]
    for payload in sent:
        c.send_rtp(payload)
        time.sleep(0.005)
    echoed = [p[12:] for p in c.receive_rtp(0.6) if p[1] & 0x7F == 0]
    assert not [p for p in echoed if p in sent], "the caller's media must not reach the agent"
