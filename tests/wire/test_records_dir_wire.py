"""``paths.records_dir`` decides where the daemon keeps its records (issue 13): a call
through ``voicegw run --config`` with the setting lands in that folder's voicegw.db, and
nothing is written to ./var under the daemon's working directory."""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from peers.caller import Caller
from peers.daemon import DaemonProcess, wait_until

pytestmark = pytest.mark.wire


def test_records_go_to_paths_records_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("VOICEGW_DB", raising=False)  # the override would win over the file
    records = tmp_path / "records"
    config = tmp_path / "voicegw.yaml"
    config.write_text(yaml.safe_dump({"paths": {"records_dir": str(records)}}))
    with DaemonProcess("127.0.0.1", None, "--config", str(config)) as daemon:
        caller = Caller(daemon.address)
        try:
            assert caller.invite().status == 200
            assert caller.bye().status == 200
        finally:
            caller.close()
        database = records / "voicegw.db"

        def recorded() -> bool:
            if not database.exists():
                return False
            with sqlite3.connect(database) as db:
                return db.execute("SELECT count(*) FROM calls WHERE call_id = ?",
                                  (caller.call_id,)).fetchone()[0] == 1

        assert wait_until(recorded, 10.0), "the call is not in paths.records_dir/voicegw.db"
        assert not (daemon.workdir / "var" / "voicegw.db").exists()
