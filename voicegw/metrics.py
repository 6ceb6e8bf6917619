"""Prometheus metrics, read at scrape time: nothing is counted twice on the hot path.

The collector turns what the engine, the control state (:class:`voicegw.api.control.Control`)
and the SIP trace tap already count into metric families when ``/metrics`` is
scraped. The one thing measured for metrics alone is event-loop lag: a timer every
``interval`` seconds notes how late it fired (a busy or blocked loop delays it).

The process itself (RSS, open file descriptors, CPU seconds; ``process_*``) and the
interpreter (``python_info``, ``python_gc_*``) come from prometheus-client's own
collectors, registered on the daemon's registry; :func:`process_snapshot` reads the
same collector for ``GET /status`` so the CLI and the scrape never disagree.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .api.control import Control

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class VoicegwCollector(Collector):
    def __init__(self, control: Control) -> None:
        self.control = control

    def collect(self) -> Any:
        control, engine = self.control, self.control.engine
        yield InfoMetricFamily("voicegw", "voicegw build", value={"version": control.version})
        yield GaugeMetricFamily("voicegw_uptime_seconds", "Seconds since the daemon started",
                                value=control.uptime())
        yield GaugeMetricFamily("voicegw_draining", "1 while stopping (new calls refused)",
                                value=1 if engine.draining else 0)
        yield GaugeMetricFamily("voicegw_calls_active", "Calls not ended", value=len(engine.active_calls()))
        yield CounterMetricFamily("voicegw_calls_admitted", "Calls admitted",
                                  value=engine.totals.get("calls", 0))
        disposed = CounterMetricFamily("voicegw_calls", "Ended calls by flow, channel and disposition "
                                       "(contained, transferred, transfer_failed_contained, abandoned, failed)",
                                       labels=["flow", "channel", "disposition"])
        for (flow, channel, disposition), count in sorted(control.dispositions.items()):
            disposed.add_metric([flow, channel, disposition], count)
        yield disposed
        yield CounterMetricFamily("voicegw_calls_answered", "Calls answered",
                                  value=engine.totals.get("answered", 0))
        refused = CounterMetricFamily("voicegw_calls_refused", "New calls refused by voicegw, by cause (the "
                                      "text of the Reason header: overload, call_limit, port_pool, ...)",
                                      labels=["cause"])
        for cause, count in sorted(engine.refusals.counts.items()):
            refused.add_metric([cause], count)
        yield refused
        ended = CounterMetricFamily("voicegw_calls_ended", "Ended calls by cause", labels=["outcome"])
        for outcome, count in sorted(control.outcomes.items()):
            ended.add_metric([outcome], count)
        yield ended
        transfers = CounterMetricFamily("voicegw_transfers", "Transfer attempts by method and outcome "
                                        "(started, succeeded, failed)", labels=["method", "outcome"])
        for (method, outcome), count in sorted(control.transfer_outcomes.items()):
            transfers.add_metric([method, outcome], count)
        yield transfers
        yield GaugeMetricFamily("voicegw_transfers_in_flight", "Transfers not finished",
                                value=control.transfers_in_flight())
        fallback = CounterMetricFamily("voicegw_fallback_actions", "Fallback actions taken after failed "
                                       "transfers", labels=["action"])
        for action, count in sorted(control.fallback_actions.items()):
            fallback.add_metric([action], count)
        yield fallback
        responses = CounterMetricFamily("voicegw_sip_responses", "SIP responses by direction and status code",
                                        labels=["direction", "code"])
        for (direction, code), count in sorted(control.trace.responses.items()):
            responses.add_metric([direction, str(code)], count)
        yield responses
        messages = CounterMetricFamily("voicegw_sip_messages", "SIP messages by direction", labels=["direction"])
        for direction, count in sorted(control.trace.messages.items()):
            messages.add_metric([direction], count)
        yield messages
        rtp = control.rtp_totals()
        yield CounterMetricFamily("voicegw_rtp_packets_relayed", "RTP packets forwarded by the bridges",
                                  value=rtp.relayed)
        yield CounterMetricFamily("voicegw_rtp_packets_dropped", "RTP packets dropped (wrong source, "
                                  "malformed, nowhere to send)", value=rtp.dropped)
        yield from trunk_metrics(control.daemon)
        yield from store_metrics(control.store)
        reloads = CounterMetricFamily("voicegw_reloads", "Config reloads by result", labels=["result"])
        for result, count in sorted(control.reloads.items()):
            reloads.add_metric([result], count)
        yield reloads


def store_metrics(store: Any) -> Any:
    """The records writer's queue (store/writer.py): its depth, and the backlogs that
    made new calls wait (each also a ``store.backlog`` warning)."""
    if store is None:
        return
    stats = store.writer.statistics()
    yield GaugeMetricFamily("voicegw_store_queued", "Records entries queued, not yet committed", value=stats.queued)
    yield GaugeMetricFamily("voicegw_store_backlogged", "1 while the records queue is past its mark (new calls "
                            "refused, cause store_backlog)", value=1 if stats.backlogged else 0)
    yield CounterMetricFamily("voicegw_store_backlogs", "Times the records queue passed its mark",
                              value=stats.backlogs)
    yield CounterMetricFamily("voicegw_store_dropped", "Records entries refused (only after the store closed)",
                              value=stats.dropped)


def trunk_metrics(daemon: Any) -> Any:
    """Carrier gateways (voicegw/gateways.py) and registrations (voicegw/registrar.py)."""
    gateways = getattr(daemon, "gateways", None)
    if gateways is not None:
        up = GaugeMetricFamily("voicegw_trunk_up", "1 while at least one gateway of the trunk answers "
                               "its OPTIONS pings", labels=["trunk"])
        gateway_up = GaugeMetricFamily("voicegw_gateway_up", "A gateway's ping verdict: 1 up, 0 down, "
                                       "-1 not known yet", labels=["trunk", "gateway"])
        rtt = GaugeMetricFamily("voicegw_gateway_ping_rtt_seconds", "Round trip of the gateway's last "
                                "answered OPTIONS", labels=["trunk", "gateway"])
        for config in gateways.configs:
            up.add_metric([config.trunk], 1 if gateways.trunk_up(config.trunk) else 0)
        for row in gateways.statuses():
            if not row["gateway"]:
                continue
            verdict = {"up": 1, "down": 0}.get(row["state"], -1)
            gateway_up.add_metric([row["trunk"], row["gateway"]], verdict)
            if row["last_rtt_ms"] is not None:
                rtt.add_metric([row["trunk"], row["gateway"]], row["last_rtt_ms"] / 1000)
        yield up
        yield gateway_up
        yield rtt
    registrations = getattr(daemon, "registrations", None)
    if registrations is not None:
        registered = GaugeMetricFamily("voicegw_trunk_registered", "1 while the trunk's REGISTER binding "
                                       "holds", labels=["trunk"])
        for row in registrations.statuses():
            registered.add_metric([row["trunk"]], 1 if row["state"] in ("registered", "refreshing") else 0)
        yield registered


class LoopLagMonitor:
    """Every ``interval`` s, how late a loop timer fires: the loop's responsiveness."""

    def __init__(self, registry: CollectorRegistry, interval: float = 0.5) -> None:
        self.interval = interval
        self.histogram = Histogram("voicegw_event_loop_lag_seconds", "How late a periodic loop timer fired",
                                   registry=registry, buckets=LAG_BUCKETS)
        self.last = 0.0
        self.worst = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.interval
        self._handle = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self.last = max(0.0, now - self._due)
        self.worst = max(self.worst, self.last)
        self.histogram.observe(self.last)
        self._due = now + self.interval
        self._handle = loop.call_at(self._due, self._tick, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


@dataclass(frozen=True, slots=True)
class ProcessSnapshot:
    """The daemon process's resources now; None where the platform does not say
    (ProcessCollector reads /proc: Linux only)."""

    rss_bytes: int | None = None
    virtual_memory_bytes: int | None = None
    open_fds: int | None = None
    max_fds: int | None = None
    cpu_seconds: float | None = None
    """User plus system CPU time since the process started."""
    start_time: float | None = None
    """Unix time the process started."""


_PROCESS_FIELDS = {
    "process_resident_memory_bytes": "rss_bytes",
    "process_virtual_memory_bytes": "virtual_memory_bytes",
    "process_open_fds": "open_fds",
    "process_max_fds": "max_fds",
    "process_cpu_seconds_total": "cpu_seconds",
    "process_start_time_seconds": "start_time",
}


def process_snapshot(collector: ProcessCollector | None = None) -> ProcessSnapshot:
    """RSS, fds and CPU of this process, from the collector ``/metrics`` uses."""
    collector = collector or ProcessCollector(registry=None)
    values: dict[str, Any] = {}
    for family in collector.collect():
        for sample in family.samples:
            name = _PROCESS_FIELDS.get(sample.name)
            if name is not None:
                values[name] = sample.value if name in ("cpu_seconds", "start_time") else int(sample.value)
    return ProcessSnapshot(**values)


def registry_for(control: Control, lag_interval: float = 0.5) -> tuple[CollectorRegistry, LoopLagMonitor]:
    """A registry of its own (not the process-global one) with voicegw's metrics and
    the process, platform and GC collectors (the global registry has those, ours
    must register them itself)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(VoicegwCollector(control))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)  # reads gc.get_stats() at scrape time, nothing more
    return registry, LoopLagMonitor(registry, lag_interval)
