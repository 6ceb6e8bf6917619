"""Transfers the bot asks for by REFER, over the wire, with transfer_method: invite.

caller (the scripted Python caller of helpers_caller) -> ``voicegw run`` -> bot (a sipp
UAS that answers, then REFERs, tests/sipp/bot_refer*.xml) and the agent (a sipp UAS,
tests/sipp/agent_*.xml). Each test runs its own daemon and peers on free loopback
ports and stops them all (CallLab). Assertions are on what crossed the wire: the sipp
peers' exit codes (their scenarios check the messages with regexps, and any unexpected
message fails them), their ``-trace_msg`` message logs, the RTP the caller's socket
gets back, and the daemon's JSON log lines (transfer.*, call.ended).

The helpers at the top are shared with tests/test_refer_wire.py and
tests/test_kamailio_wire.py.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from helpers.daemon import DaemonProcess, wait_until
from helpers.net import free_port
from helpers_caller import Caller
from helpers_calls import HOST, SIPP, CallLab, SipMessage, SippPeer, free_block

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]
SCENARIOS = Path(__file__).resolve().parent / "sipp"


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def lab(tmp_path, monkeypatch):
    # the daemon's records go to this test's own file, not the shared var/voicegw.db
    monkeypatch.setenv("VOICEGW_DB", str(tmp_path / "voicegw.db"))
    with CallLab(tmp_path) as lab:
        yield lab
        # the daemon survived and logged no error
        assert lab.daemon is None or lab.daemon.running(), lab.report()
        if lab.daemon is not None:
            errors = [e for e in lab.daemon.events() if e.get("level") in ("error", "critical")]
            assert not errors, errors


def start_voicegw(lab: CallLab, bot: bool = True, rtp_ports: int = 40, **calls: object) -> DaemonProcess:
    """``voicegw run`` on a free port with its own RTP range and a config file with a
    ``calls:`` section (allow-list, method, timers); its control API is off (it would
    want the fixed port 5080, which parallel runs share). With ``bot`` its --bot-uri
    points at ``lab.bot_port``."""
    low = free_block(rtp_ports)
    args = ["--rtp-ports", f"{low}-{low + rtp_ports - 1}"]
    if bot:
        lab.bot_port = free_port(HOST)
        args += ["--bot-uri", f"sip:bot@{HOST}:{lab.bot_port}"]
    config = lab.workdir / "voicegw.yaml"
    config.write_text(yaml.safe_dump({"calls": calls, "api": {"enabled": False}}), encoding="utf-8")
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
    return datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()


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


# --------------------------------------------------------------------------- tests
def test_bot_refer_agent_answers_bot_notified_and_released_media_reaches_agent(lab):
    """Bot REFER -> 202; NOTIFY 100, 180, 200 (sipfrags of the agent leg's real
    progress) to the bot, then BYE to the bot; the caller's RTP now reaches the agent."""
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    target = agent_uri(agent)
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    b = bot(lab, "bot_refer.xml", target)
    c = caller(lab)
    assert c.invite().status == 200
    done = wait_event(lab, "transfer.succeeded", status=200)
    assert event(lab, "transfer.progress", status=180), "the agent's 180 is logged as progress"
    started = event(lab, "transfer.started")
    assert started is not None and started["target"] == target and started["method"] == "invite"
    finish(lab, b)  # the bot got its BYE after the final NOTIFY
    echo_check(c)
    assert not c.got_request("BYE"), "the caller stays in the call, now with the agent"
    assert c.bye().status == 200
    finish(lab, agent)

    bot_msgs = b.messages()
    assert [m.status for m in responses(bot_msgs, "REFER")] == [202]
    frags = sipfrags(bot_msgs)
    assert frags[0] == (100, False), frags
    assert 180 in [s for s, _ in frags], f"the agent's 180 is reported to the bot: {frags}"
    assert frags[-1] == (200, True), frags
    # the order on the bot's dialog: final NOTIFY, our 200 to it, then voicegw's BYE
    flow = [m.describe() for m in bot_msgs]
    final_notify = max(i for i, d in enumerate(flow) if d == "in NOTIFY")
    assert flow[final_notify + 1] == "out 200 NOTIFY" and flow.index("in BYE") > final_notify + 1, flow
    invite = requests(agent.messages(), "INVITE")[0]
    assert invite.header("x-vg-caller") == "alice" and invite.header("x-vg-call-id") == c.call_id
    assert done["call_id"] == c.call_id
    wait_event(lab, "call.ended", call_id=c.call_id)


def test_bot_refer_agent_busy_bot_gets_486_and_stays_caller_stays(lab):
    """Agent 486: the bot gets a NOTIFY with a SIP/2.0 486 sipfrag and no BYE (it stays
    bridged with the caller); the caller is never hung up."""
    agent = peer(lab, "agent", "agent_busy.xml")
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    b = bot(lab, "bot_refer_stay.xml", agent_uri(agent))
    c = caller(lab)
    assert c.invite().status == 200
    wait_event(lab, "transfer.failed", status=486)
    finish(lab, agent)
    c.receive_rtp(2.0)  # the bot's INFO probe 1.5 s after the failure is answered meanwhile
    assert not c.got_request("BYE"), "a failed transfer never drops the caller"
    assert c.bye().status == 200
    finish(lab, b)  # no BYE before the probe; BYE after the caller's
    frags = sipfrags(b.messages())
    assert frags[-1] == (486, True), frags
    assert all(s < 200 for s, _ in frags[:-1]), frags
    assert [m.describe() for m in b.messages()][-2:] == ["in BYE", "out 200 BYE"]
    assert event(lab, "transfer.succeeded") is None


def test_bot_refer_off_the_allow_list_is_refused_403_and_nothing_is_sent(lab, tmp_path):
    """A REFER whose target is not on the allow-list: 403 to the bot, no NOTIFY, nothing
    sent to the target (a socket listening there stays silent), the call goes on."""
    import socket

    trap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trap.bind((HOST, 0))
    trap.settimeout(0.1)
    try:
        target = f"sip:premium@{HOST}:{trap.getsockname()[1]}"
        start_voicegw(lab, transfer_allow=["sip:*@pbx.example.com"], transfer_method="invite")
        b = bot(lab, "bot_refer_refused.xml", target)
        c = caller(lab)
        assert c.invite().status == 200
        refused = wait_event(lab, "transfer.refused")
        assert refused["target"] == target
        c.receive_rtp(2.0)  # the bot's INFO probe is answered meanwhile
        assert not c.got_request("BYE")
        assert c.bye().status == 200
        finish(lab, b)
        try:
            data = trap.recv(65535)
        except (socket.timeout, BlockingIOError):
            data = b""
        assert data == b"", f"nothing may be sent to a refused target: {data[:200]!r}"
        assert event(lab, "transfer.started") is None
        assert [m.status for m in responses(b.messages(), "REFER")] == [403]
        assert not requests(b.messages(), "NOTIFY")
    finally:
        trap.close()


# --- agent behaviours for INVITE transfers ------------------------------------------
def test_agent_unavailable_503_fails_the_transfer_caller_stays(lab):
    agent = peer(lab, "agent", "agent_unavailable.xml")
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    b = bot(lab, "bot_refer_stay.xml", agent_uri(agent))
    c = caller(lab)
    assert c.invite().status == 200
    wait_event(lab, "transfer.failed", status=503)
    finish(lab, agent)
    c.receive_rtp(2.0)
    assert not c.got_request("BYE")
    assert c.bye().status == 200
    finish(lab, b)
    assert sipfrags(b.messages())[-1] == (503, True)


def test_agent_never_answers_ring_timeout_cancels_the_agent_leg(lab):
    """ring_timeout 1.5 s: voicegw CANCELs the agent's INVITE (the agent's scenario
    requires the CANCEL), the transfer fails with ``timeout``, the caller stays."""
    agent = peer(lab, "agent", "agent_noanswer.xml")
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite",
                  ring_timeout=1.5)
    b = bot(lab, "bot_refer_stay.xml", agent_uri(agent))
    c = caller(lab)
    assert c.invite().status == 200
    started = wait_event(lab, "transfer.started")
    failed = wait_event(lab, "transfer.failed", status="timeout")
    assert 1.3 <= log_time(failed) - log_time(started) <= 4.0
    finish(lab, agent)
    flow = agent.flow()
    assert flow[:4] == ["in INVITE", "out 100 INVITE", "out 180 INVITE", "in CANCEL"], flow
    assert flow[-1] == "in ACK", flow
    c.receive_rtp(2.0)
    assert not c.got_request("BYE")
    assert c.bye().status == 200
    finish(lab, b)
    frags = sipfrags(b.messages())
    assert 180 in [s for s, _ in frags] and frags[-1][1], frags
    assert frags[-1][0] >= 400, frags  # a failure status for the bot (408 for a timeout)


def test_caller_hangs_up_while_the_agent_rings_agent_gets_cancel(lab):
    agent = peer(lab, "agent", "agent_noanswer.xml")
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    b = bot(lab, "bot_refer.xml", agent_uri(agent))
    c = caller(lab)
    assert c.invite().status == 200
    wait_event(lab, "transfer.started")
    time.sleep(1.0)  # the agent rings
    assert c.bye().status == 200
    finish(lab, agent)  # it got CANCEL, answered 200 + 487, got the ACK
    assert "in CANCEL" in agent.flow()
    finish(lab, b)  # a final NOTIFY (the transfer is over), then BYE
    failed = wait_event(lab, "transfer.failed")
    assert failed["status"] == "call_ended"
    wait_event(lab, "call.ended", call_id=c.call_id)
