"""Fixtures shared by the test folders (the only conftest: test modules never import
one another; shared code lives in the ``peers`` package beside this file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peers.calls import CallLab

# Every process a test starts (the daemon, the CLI) runs this checkout's voicegw, even
# from a temporary working directory and with a virtualenv that has another checkout
# installed in editable mode (git worktrees share one).
ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


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
