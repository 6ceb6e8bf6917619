"""Fixtures shared by the test folders (the only conftest: test modules never import
one another; shared code lives in the ``peers`` package beside this file)."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from hypothesis import settings
from peers.ports import leases_of_test

# Hypothesis' per-example deadline (200 ms) measures the machine, not the code: on a
# loaded CI box (two xdist workers beside sipp, PBXs and daemons) a pure test failed on
# it once. Speed is measured by scripts/bench/, never asserted.
settings.register_profile("voicegw", deadline=None)
settings.load_profile("voicegw")

# Every process a test starts (the daemon, the CLI) runs this checkout's voicegw, even
# from a temporary working directory and with a virtualenv that has another checkout
# installed in editable mode (git worktrees share one).
ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection loaded (pytest, hypothesis, voicegw, the test modules: some
    150,000 objects) moves out of the garbage collector's sight, as the daemon does at
    start-up (voicegw/memory.py ``tune_gc``): every later full collection walks only
    what the tests made. Without this, each automatic one in a test, and each of the
    in-process harness's leak checks (peers/inproc.py ``instances=True``: a collection
    and a walk of every object), took 0.1-0.2 s. Nothing a test makes is frozen, so the
    leak checks still see every engine object left behind."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``), the wire files first: they are the long ones
    (a minute or more each, where a unit test file takes seconds), and handing them out
    first leaves the short files to even out the workers' ends. The order within a file,
    and of the files otherwise, stays the collection's."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.path.parent.name != "wire")


@pytest.fixture(autouse=True)
def _port_leases():
    """The ports a test leased (peers/ports.py) go back to the pool when it ends: its
    peers are stopped by then (this fixture is set up first, so torn down last)."""
    with leases_of_test():
        yield


@pytest.fixture
def lab(tmp_path, monkeypatch, request):
    # the daemon's records go to this test's own file, not the shared var/voicegw.db
    monkeypatch.setenv("VOICEGW_DB", str(tmp_path / "voicegw.db"))
    from peers.calls import CallLab  # the peers' modules load when a test needs them

    with CallLab(tmp_path) as lab:
        yield lab
        if _failed(request):  # the daemon's side of a failure (its log, the sipp peers')
            print(lab.report())
        # the daemon survived and logged no error
        assert lab.daemon is None or lab.daemon.running(), lab.report()
        if lab.daemon is not None:
            errors = [e for e in lab.daemon.events() if e.get("level") in ("error", "critical")]
            assert not errors, errors


# ------------------------------------------------------------------ PostgreSQL (issue 14)
@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway cluster per test process (peers/postgres.py); each test that needs
    a database gets a new one (``pg_dsn``)."""
    from peers.postgres import PgCluster  # psycopg: 0.3 s of every run's start otherwise

    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_dsn(pg_cluster) -> str:
    return pg_cluster.database()


# ------------------------------------------------------------------ real PBXs (issue 11)
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item: fixtures read ``rep_call`` in their
    teardown to print their peer's log when the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is not None and report.failed


@pytest.fixture(scope="module")
def asterisk():
    """One Asterisk 22 for the test module (tests/peers/asterisk.py), on free ports,
    its run directory kept when a test failed; skipped, with one message, where no
    Asterisk was found or built (scripts/bootstrap builds it from ../shared/peers)."""
    from peers.asterisk import INSTALL, SKIP_REASON, Asterisk

    if INSTALL is None:
        pytest.skip(SKIP_REASON)
    with Asterisk(INSTALL) as pbx:
        yield pbx


@pytest.fixture
def pbx(asterisk, request):
    """The module's Asterisk for one test: its log of this test (console, SIP trace) is
    printed when the test fails; it must be still running after the test."""
    since = asterisk.mark()
    yield asterisk
    if _failed(request):
        asterisk.failed = True
        print(asterisk.report(since))
    assert asterisk.running(), asterisk.report(since)


@pytest.fixture
def pbx_lab(pbx, tmp_path):
    """The parties of one test around the PBX (tests/peers/pbx.py: phones, registered
    agents, tones, voicegw on the port the PBX expects); all stopped after the test,
    which fails if voicegw logged an error or a call was left up in the PBX."""
    from peers.pbx import PbxLab

    lab = PbxLab(pbx, tmp_path)
    yield lab
    errors = lab.close()
    assert not errors, errors
    assert pbx.wait_channels(lambda names: not names) == [], "channels left up in the PBX"


@pytest.fixture(scope="module")
def freeswitch_instance(tmp_path_factory):
    """One FreeSWITCH 1.10 for the test module (tests/peers/freeswitch.py): a copy of the
    shipped test config, its own run dirs and free ports; skipped, with one message,
    where no FreeSWITCH was found or built (scripts/bootstrap builds it from ../shared)."""
    from peers.freeswitch import INSTALL, SKIP_REASON, FreeSwitch

    if INSTALL is None:
        pytest.skip(SKIP_REASON)
    fs = FreeSwitch(INSTALL, tmp_path_factory.mktemp("freeswitch")).start()
    try:
        yield fs
    finally:
        fs.stop()


@pytest.fixture
def freeswitch(freeswitch_instance, request):
    """The module's FreeSWITCH for one test: ``since`` marks where the test's part of its
    log starts; its console, log and SIP trace of the test are printed when the test
    fails; it must be still running after the test, with no channel left up (the test
    fails otherwise, and they are hung up for the next one)."""
    fs = freeswitch_instance
    fs.since = fs.mark()
    yield fs
    if _failed(request):
        print(fs.report(fs.since))
    assert fs.running(), fs.report(fs.since)
    left = fs.wait_channels(0)
    fs.api("hupall NORMAL_CLEARING")  # the next test starts with none either way
    assert not left, f"channels left up in FreeSWITCH: {left}"


# ------------------------------------------------------------------ PJSIP (issue 11)
@pytest.fixture
def pjsua(tmp_path, request):
    """PJSIP user agents for one test (peers.pjsua: one process each, their PJSIP logs
    and recordings in tmp_path), all hung up and stopped after it; what each saw is
    printed when the test failed."""
    from peers.pjsua import PjsuaLab

    with PjsuaLab(tmp_path) as agents:
        yield agents
        if _failed(request):
            print(agents.report())
        # whatever reached PJSIP must parse: a message it dropped is a sender's bug
        assert not agents.dropped(), agents.dropped()


@pytest.fixture
def rtpengine(tmp_path):
    """A real rtpengine in userspace on loopback for one test (tests/peers/rtpengine.py):
    its own ng port, DTMF log destination and RTP port range; stopped by its PID."""
    from peers.rtpengine import Rtpengine

    engine = Rtpengine(tmp_path)
    try:
        yield engine
    finally:
        engine.stop()
