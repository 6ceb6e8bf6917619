"""store: migration 3's disposition, transfer_method, flow and channel columns, filled
from CallStarted and CallDisposed (recorded by engine Call objects through the store's
listener), and store.report(): containment and transfer outcomes per flow and channel;
on both backends (SQLite, PostgreSQL in a throwaway cluster)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from voicegw.engine.call import Call, CallInput, Leg
from voicegw.engine.events import (
    CallStarted,
    FlowEnded,
    TransferFailed,
    TransferStarted,
    TransferSucceeded,
)
from voicegw.sip.events import Address
from voicegw.store import PgStore, Store
from voicegw.store.schema import MIGRATIONS, migrate


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    clock = Clock()
    if request.param == "postgres":
        s = PgStore.open(request.getfixturevalue("pg_dsn"), clock=clock)
    else:
        s = Store.open(tmp_path / "voicegw.db", clock=clock)
    s.clock = clock  # type: ignore[attr-defined]
    yield s
    s.close()


def run_call(store: Store | PgStore, name: str, flow: str | None, *steps: object, answer: bool = True) -> None:
    call = Call(id=name, caller=Leg("caller", Address("udp", "127.0.0.1", 5062)), created=0.0, local_tag="t",
                listener=store.listener)
    call.record(0.0, CallStarted("udp:127.0.0.1:5062", "sip:100@127.0.0.1", "alice", flow))
    if answer:
        call.apply(CallInput.ANSWERED, 1.0)
    for step in steps:
        call.record(2.0, step)  # type: ignore[arg-type]
    call.apply(CallInput.HUNG_UP if answer else CallInput.FAILED, 3.0, "ended", None if answer else 486)


def started(tid: str, method: str) -> TransferStarted:
    return TransferStarted(tid, method, "sip:agent@127.0.0.1", "flow")


def test_every_disposition_is_stored_with_flow_and_reported(store: Store) -> None:
    run_call(store, "c1", "sales", FlowEnded("bye"))
    run_call(store, "c2", "sales", started("t1", "invite"), TransferSucceeded("t1", 200, "agent answered"))
    run_call(store, "c3", "sales", started("t1", "invite"), TransferFailed("t1", 486, "Busy Here"),
             FlowEnded("sorry"))
    run_call(store, "c4", "sales", started("t1", "refer"))
    run_call(store, "c5", "support", answer=False)
    run_call(store, "c6", None, FlowEnded("bye"))
    assert store.flush(5)
    rows = {r["call_id"]: r for r in store.calls(limit=10)}
    assert {k: (r["disposition"], r["transfer_method"], r["flow"], r["channel"]) for k, r in rows.items()} == {
        "c1": ("contained", None, "sales", None),
        "c2": ("transferred", "invite", "sales", None),
        "c3": ("transfer_failed_contained", None, "sales", None),
        "c4": ("abandoned", None, "sales", None),
        "c5": ("failed", None, "support", None),
        "c6": ("contained", None, None, None),
    }
    report = store.report()
    by_flow = {g["flow"]: g for g in report["groups"]}
    sales = by_flow["sales"]
    assert sales["calls"] == sales["reached"] == 4
    assert sales["dispositions"] == {"contained": 1, "transferred": 1, "transfer_failed_contained": 1,
                                     "abandoned": 1, "failed": 0}
    assert sales["containment_rate"] == 0.25 and sales["transferred_by_method"] == {"invite": 1}
    assert sales["transfers"]["invite"] == {"started": 2, "succeeded": 1, "failed": 1, "pending": 0,
                                            "failed_by_status": {"486": 1}}
    # the abandoned REFER (Call.apply alone: the engine would close it as call_ended next)
    assert sales["transfers"]["refer"]["pending"] == 1
    assert by_flow["support"]["reached"] == 0 and by_flow["support"]["containment_rate"] is None
    assert report["total"]["calls"] == 6 and report["total"]["containment_rate"] == 0.4
    assert store.report(since=1_800_000_001.0)["total"]["calls"] == 0


def test_migration_3_adds_the_columns_to_a_version_2_database(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    assert migrate(conn, MIGRATIONS[:2]) == 2
    conn.execute("INSERT INTO calls (key, call_id, run_id, state, created_at, last_event_at)"
                 " VALUES ('k', 'c', 1, 'ended', 1, 1)")
    assert migrate(conn) == len(MIGRATIONS)
    row = conn.execute("SELECT disposition, transfer_method, flow, channel FROM calls").fetchone()
    assert row == (None, None, None, None)
