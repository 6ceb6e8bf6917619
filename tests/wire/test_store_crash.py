"""kill -9 durability: a real daemon with real sipp calls in flight is killed, restarted
on the same database, and the records are checked straight from the SQLite file.

Each iteration: a scripted caller presses 0 in the demo flow so a transfer to a sipp
agent that rings forever is pending; a sipp UAC places calls that stay up (the demo
flow keeps them ~20 s); the daemon is SIGKILLed at a different moment each time (while
calls are still being set up, and once they are all answered); sipp is stopped; the
daemon is restarted on the same file. Then (issue 5):

- every call the daemon had answered (its ACK logged well before the kill) has
  exactly one record, answered and closed;
- every call of the killed run is closed; those cut are closed with reason
  ``restart`` at their last event, no later than the kill;
- no transfer attempt is left pending: the caller's is ``failed``/``restart``;
- nothing is half-written: integrity check, no event or transfer without its call,
  every closed call complete.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from peers.caller import Caller
from peers.daemon import DaemonProcess, wait_until
from peers.net import free_port
from peers.ports import free_block
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]

#: seconds after the UAC starts placing calls: mid-burst, burst done, all long settled
KILL_DELAYS = (0.7, 1.2, 3.0)
CALLS_PER_RUN = 12
RATE = 8
#: an answered call must have been committed this long after the daemon saw its ACK
#: (the writer commits within milliseconds; see voicegw/store/writer.py)
ANSWER_MARGIN = 0.3

UAC_LONG_CALL = """<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="caller that stays until BYE">
  <send retrans="500"><![CDATA[
INVITE sip:crash@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: sipp <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:crash@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=caller 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: sipp <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""

AGENT_RINGS_FOREVER = """<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="agent that rings and never answers">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:agent@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <pause milliseconds="120000"/>
</scenario>
"""


def rtp_range() -> str:
    base = free_block(200)
    return f"{base}-{base + 198}"


def sipp(tmp_path: Path, name: str, scenario: str, *args: str) -> subprocess.Popen[str]:
    path = tmp_path / f"{name}.xml"
    path.write_text(scenario)
    media = free_block(4)  # sipp's -mp: RTP and RTCP, leased (peers/ports.py)
    return subprocess.Popen(
        [SIPP, "-sf", str(path), "-i", "127.0.0.1", "-mp", str(media), "-nostdin",
         "-timeout", "150s", *args],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        text=True)


def stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(5)


def log_time(entry: dict) -> float:
    return datetime.fromisoformat(entry["timestamp"]).timestamp()


def acked_call_ids(daemon: DaemonProcess, before: float) -> set[str]:
    """Caller Call-IDs whose ACK (so: our 200 went out) the daemon logged before ``before``."""
    found = set()
    for line in list(daemon.lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the last line may be cut by the kill
        if entry.get("event") == "sip.request" and entry.get("method") == "ACK" and log_time(entry) < before:
            found.add(entry["call_id"])
    return found


def start_daemon(config: Path, agent_port: int) -> DaemonProcess:
    return DaemonProcess("127.0.0.1", None, "--config", str(config),
                         "--agent-uri", f"sip:agent@127.0.0.1:{agent_port}",
                         "--rtp-ports", rtp_range()).start()


def read_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    db.row_factory = sqlite3.Row
    return db


def check_whole_file(db: sqlite3.Connection, live_run: int) -> None:
    """Rules that hold for every record of every run but the live one."""
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT count(*) FROM events WHERE call_key NOT IN (SELECT key FROM calls)").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM transfers WHERE call_key NOT IN (SELECT key FROM calls)").fetchone()[0] == 0
    duplicates = db.execute("SELECT call_id, count(*) FROM calls GROUP BY call_id HAVING count(*) > 1").fetchall()
    assert not duplicates, [tuple(r) for r in duplicates]
    dead = "run_id != ?"
    assert db.execute(f"SELECT count(*) FROM calls WHERE {dead} AND state != 'ended'", (live_run,)).fetchone()[0] == 0
    incomplete = db.execute(
        f"SELECT key FROM calls WHERE {dead} AND (ended_at IS NULL OR outcome IS NULL OR end_reason IS NULL"
        " OR ended_at < created_at OR (answered_at IS NOT NULL AND answered_at < created_at))",
        (live_run,)).fetchall()
    assert not incomplete, [tuple(r) for r in incomplete]
    pending = db.execute(
        "SELECT t.call_key, t.transfer_id FROM transfers t JOIN calls c ON c.key = t.call_key"
        f" WHERE c.{dead} AND (t.state = 'pending' OR t.status IS NULL OR t.ended_at IS NULL)",
        (live_run,)).fetchall()
    assert not pending, [tuple(r) for r in pending]


@pytest.mark.timeout(180)
def test_kill_9_with_calls_in_flight_loses_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = tmp_path / "records" / "voicegw.db"
    monkeypatch.setenv("VOICEGW_DB", str(db_path))
    config = tmp_path / "voicegw.yaml"
    config.write_text("api:\n  enabled: false\n")  # no control API port to collide on
    agent_port = free_port()
    agent = sipp(tmp_path, "agent", AGENT_RINGS_FOREVER, "-p", str(agent_port), "-m", "20")
    daemon: DaemonProcess | None = None
    uac: subprocess.Popen[str] | None = None
    caller: Caller | None = None
    cut_total = 0
    try:
        daemon = start_daemon(config, agent_port)
        for iteration, delay in enumerate(KILL_DELAYS):
            # a transfer pending at the kill: the caller presses 0, the agent rings forever
            caller = Caller(daemon.address, user=f"crash{iteration}")
            assert caller.invite().status == 200
            caller.receive_rtp(0.8)
            caller.send_dtmf("0")
            assert wait_until(lambda daemon=daemon: '"transfer.started"' in "\n".join(daemon.lines), timeout=10)
            # long calls in flight
            uac = sipp(tmp_path, f"uac{iteration}", UAC_LONG_CALL, f"127.0.0.1:{daemon.port}",
                       "-m", str(CALLS_PER_RUN), "-r", str(RATE), "-l", str(CALLS_PER_RUN), "-p", "0")
            time.sleep(delay)
            killed_at = time.time()
            daemon.kill()  # SIGKILL: no flush, no shutdown
            stop(uac)
            caller.close()
            caller = None
            answered = acked_call_ids(daemon, killed_at - ANSWER_MARGIN)
            assert len(answered) >= 2, "sipp calls were answered before the kill"
            acked_at_all = acked_call_ids(daemon, killed_at)
            killed_run = read_db(db_path).execute("SELECT max(id) FROM runs").fetchone()[0]

            daemon = start_daemon(config, agent_port)  # same database: recovery runs at start
            recovered = [json.loads(line) for line in daemon.lines if '"store.recovered"' in line]
            assert recovered and killed_run in recovered[-1]["runs"], recovered
            db = read_db(db_path)
            live_run = db.execute("SELECT max(id) FROM runs").fetchone()[0]
            assert live_run == killed_run + 1
            check_whole_file(db, live_run)
            assert db.execute("SELECT recovered_by FROM runs WHERE id = ?", (killed_run,)).fetchone()[0] == live_run

            # every answered call: exactly one record, answered, closed
            for call_id in answered:
                rows = db.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchall()
                assert len(rows) == 1, (call_id, len(rows))
                row = rows[0]
                assert row["run_id"] == killed_run and row["answered_at"] is not None, dict(row)
                assert row["state"] == "ended"

            # the calls cut by the kill are closed as restart, at their last event
            cut = db.execute("SELECT * FROM calls WHERE run_id = ? AND end_reason = 'restart'",
                             (killed_run,)).fetchall()
            assert len(cut) >= len(answered) > 0  # all still up (the demo flow keeps them ~20 s)
            for row in cut:
                assert row["outcome"] == "restart" and row["end_cause"] == "restart"
                assert row["ended_at"] == row["last_event_at"] <= killed_at
                last = db.execute("SELECT event, detail FROM events WHERE call_key = ? ORDER BY id DESC LIMIT 1",
                                  (row["key"],)).fetchone()
                assert last["event"] == "call.ended" and json.loads(last["detail"])["recovered"] is True
            cut_total += len(cut)
            recorded = {r[0] for r in db.execute(
                "SELECT call_id FROM calls WHERE answered_at IS NOT NULL AND run_id = ?", (killed_run,))}
            print(f"kill {iteration} at +{delay}s: {len(answered)} answered >{ANSWER_MARGIN}s before the kill,"
                  f" {len(cut)} cut and closed as restart; ACKed at any time before the kill without"
                  f" a record: {len(acked_at_all - recorded)}")

            # the transfer in flight: failed with status restart, never left pending
            transfers = db.execute(
                "SELECT t.* FROM transfers t JOIN calls c ON c.key = t.call_key WHERE c.run_id = ?",
                (killed_run,)).fetchall()
            assert len(transfers) == 1, [dict(t) for t in transfers]
            transfer = transfers[0]
            assert (transfer["state"], transfer["status"]) == ("failed", "restart")
            assert transfer["method"] == "invite" and transfer["target"].startswith("sip:agent@")
            assert transfer["ended_at"] >= transfer["started_at"]
            db.close()

        # a clean stop after the last restart: exit 0, the run marked stopped
        assert daemon.terminate() == 0
        db = read_db(db_path)
        last_run = db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        assert last_run["stopped_at"] is not None and last_run["dropped"] == 0
        check_whole_file(db, live_run=-1)
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == len(KILL_DELAYS) + 1
        assert cut_total >= len(KILL_DELAYS) * 2
        db.close()
    finally:
        if caller is not None:
            caller.close()
        stop(uac)
        stop(agent)
        if daemon is not None:
            daemon.kill()
