"""The daemon process's own resources against a real daemon: prometheus-client's
process, platform and GC collectors on ``/metrics`` (RSS, open fds, CPU), and the same
figures in ``voicegw status`` and its ``--json``, read through the control API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from peers.ops import OpsDaemon
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.wire]


def scrape(ops: OpsDaemon) -> dict[str, float]:
    """Every unlabelled sample of /metrics by name, and ``python_info`` as 1."""
    response = ops.http("GET", "/metrics")
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if not sample.labels or family.name == "python_info":
                samples[sample.name] = sample.value
    return samples


def test_metrics_carry_the_process_rss_fds_and_cpu(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path) as ops:
        samples = scrape(ops)
        assert samples["process_resident_memory_bytes"] > 10 * 2**20  # a Python daemon: MiBs
        assert samples["process_virtual_memory_bytes"] >= samples["process_resident_memory_bytes"]
        assert samples["process_open_fds"] >= 5  # SIP UDP + TCP, the API socket, stdio...
        assert samples["process_max_fds"] >= samples["process_open_fds"]
        assert samples["process_cpu_seconds_total"] > 0
        assert samples["process_start_time_seconds"] > 0
        assert samples["python_info"] == 1
        text = ops.http("GET", "/metrics").text
        assert 'python_gc_collections_total{generation="0"}' in text
        # voicegw's own families are still there, next to the process ones
        assert "voicegw_calls_admitted_total" in text and "voicegw_event_loop_lag_seconds_count" in text


def test_status_shows_rss_fds_and_cpu_in_text_and_json(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path) as ops:
        status = ops.cli("status")
        assert status.returncode == 0, status.stderr
        rss = re.search(r"memory \(RSS\)\s+([\d.]+) MiB", status.stdout)
        assert rss is not None and float(rss.group(1)) > 10, status.stdout
        assert re.search(r"open fds\s+\d+ \(limit \d+\)", status.stdout), status.stdout
        assert re.search(r"CPU\s+[\d.]+ s, \d+% of a core on average", status.stdout), status.stdout

        data = json.loads(ops.cli("status", "--json").stdout)
        process = data["process"]
        scraped = scrape(ops)["process_resident_memory_bytes"]
        # the same collector read twice a moment apart: the same order of magnitude
        assert 0.5 < process["rss_bytes"] / scraped < 2
        assert process["open_fds"] >= 5 and process["max_fds"] >= process["open_fds"]
        assert process["cpu_seconds"] > 0 and process["virtual_memory_bytes"] >= process["rss_bytes"]
