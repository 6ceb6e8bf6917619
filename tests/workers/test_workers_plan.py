"""The pure parts of ``voicegw run --workers N``: how the ports are split among the
workers (voicegw/workers/plan.py) and how their API answers are merged
(voicegw/workers/aggregate.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from voicegw.workers.aggregate import merge_calls, merge_metrics, merge_objects, merge_status, merge_trunks
from voicegw.workers.plan import PlanError, plan


@given(count=st.integers(1, 16), base=st.integers(1024, 60000), low=st.integers(10000, 30000),
       width=st.integers(64, 20000))
def test_workers_never_share_a_port(count: int, base: int, low: int, width: int) -> None:
    workers = plan(count, base, low, low + width)
    assert [w.sip_port for w in workers] == list(range(base, base + count))
    for worker in workers:
        assert worker.rtp_min % 2 == 0 and (worker.rtp_max - worker.rtp_min + 1) % 2 == 0
        assert low <= worker.rtp_min < worker.rtp_max <= low + width
    for a, b in itertools.pairwise(workers):
        assert a.rtp_max < b.rtp_min


def test_a_range_too_small_or_ports_past_65535_are_usage_errors() -> None:
    with pytest.raises(PlanError, match="too small"):
        plan(4, 5060, 20000, 20010)
    with pytest.raises(PlanError, match="not all valid"):
        plan(2, 65535, 20000, 21000)
    with pytest.raises(PlanError, match="at least 1"):
        plan(0, 5060, 20000, 21000)


def test_status_sums_counters_merges_transfer_rows_and_takes_the_shared_store_once() -> None:
    one = {"version": "1", "draining": False, "active_calls": 2,
           "totals": {"calls": 5, "answered": 4, "by_outcome": {"hung up": 4}},
           "transfers": [{"method": "refer", "started": 1, "succeeded": 1, "failed": 0}],
           "records": {"calls": 9}, "containment": {"rate": 0.5}, "process": {"rss_bytes": 100}}
    two = {"version": "1", "draining": True, "active_calls": 1,
           "totals": {"calls": 3, "answered": 3, "by_outcome": {"hung up": 1, "cancelled": 2}},
           "transfers": [{"method": "refer", "started": 2, "succeeded": 1, "failed": 1},
                         {"method": "bye", "started": 1, "succeeded": 1, "failed": 0}],
           "records": {"calls": 9}, "containment": {"rate": 0.5}, "process": {"rss_bytes": 50}}
    merged = merge_status([one, two], {"pid": 7, "workers": []})
    assert merged["active_calls"] == 3 and merged["draining"] is True and merged["pid"] == 7
    assert merged["totals"] == {"calls": 8, "answered": 7, "by_outcome": {"hung up": 5, "cancelled": 2}}
    assert merged["transfers"] == [{"method": "refer", "started": 3, "succeeded": 2, "failed": 1},
                                   {"method": "bye", "started": 1, "succeeded": 1, "failed": 0}]
    assert merged["records"] == {"calls": 9} and merged["containment"] == {"rate": 0.5}
    assert merged["process"] == {"rss_bytes": 150}


def test_calls_are_tagged_with_their_worker_oldest_first() -> None:
    calls = merge_calls([(0, [{"id": "b", "created_at": "2026-01-01T00:00:02Z"}]),
                         (1, [{"id": "a", "created_at": "2026-01-01T00:00:01Z"}])])
    assert calls == [{"id": "a", "created_at": "2026-01-01T00:00:01Z", "worker": 1},
                     {"id": "b", "created_at": "2026-01-01T00:00:02Z", "worker": 0}]


def test_metrics_label_every_sample_with_its_worker_and_name_each_family_once() -> None:
    text = ("# HELP voicegw_calls_total Calls.\n# TYPE voicegw_calls_total counter\n"
            'voicegw_calls_total{outcome="hung up"} 3.0\n# HELP voicegw_active_calls Up.\n'
            "# TYPE voicegw_active_calls gauge\nvoicegw_active_calls 1.0\n")
    merged = merge_metrics([(0, text), (1, text.replace("3.0", "4.0"))]).decode()
    assert merged.count("# TYPE voicegw_calls_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    samples = {(s.name, s.labels["worker"]): s.value for f in families.values() for s in f.samples}
    assert samples == {("voicegw_calls_total", "0"): 3.0, ("voicegw_calls_total", "1"): 4.0,
                       ("voicegw_active_calls", "0"): 1.0, ("voicegw_active_calls", "1"): 1.0}


def test_objects_sum_each_count_and_keep_each_workers_snapshot() -> None:
    one = {"engine": {"calls": 2, "legs": 4}, "gc": {"counts": [10, 2, 1], "found_now": None},
           "python": {"traced_kib": None}}
    two = {"engine": {"calls": 1, "legs": 2}, "gc": {"counts": [5, 0, 3], "found_now": None},
           "python": {"traced_kib": None}}
    merged = merge_objects([(0, one), (1, two)])
    assert merged["engine"] == {"calls": 3, "legs": 6}
    assert merged["gc"] == {"counts": [15, 2, 4], "found_now": None} and merged["python"] == {"traced_kib": None}
    assert merged["workers"] == {"0": one, "1": two}
    assert merge_objects([(1, two)])["engine"] == {"calls": 1, "legs": 2}


def test_trunks_keep_every_workers_rows_marked_with_it() -> None:
    row = {"trunk": "carrier", "gateway": "udp:192.0.2.1:5060", "state": "up"}
    merged = merge_trunks([(0, {"registrations": [], "gateways": [row]}),
                           (1, {"registrations": [{"trunk": "carrier"}], "gateways": [{**row, "state": "down"}]})])
    assert merged == {"registrations": [{"trunk": "carrier", "worker": 1}],
                      "gateways": [{**row, "worker": 0}, {**row, "state": "down", "worker": 1}]}
