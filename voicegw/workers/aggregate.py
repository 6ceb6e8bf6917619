"""Merging what the workers' control APIs answer into one answer (pure).

The records store is shared by every worker (one SQLite file with a run lock per
worker, or PostgreSQL), so what comes from it (``records``, ``containment``) is the
same in every worker's answer and taken once; what each worker counts in memory
(calls, transfers, SIP responses, process figures, the objects it holds) is summed;
what each worker runs on its own (its trunks' registrations and gateway pings) is
listed row by row, each row marked with its ``worker``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

SHARED = ("records", "containment", "version")
"""Status fields read from the shared store (or the same everywhere): taken from the first."""


def add(a: Any, b: Any) -> Any:
    """Numbers summed, mappings merged key by key (recursively), lists of numbers of one
    length summed item by item (gc's per-generation counts); anything else: ``a``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a or b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return {key: add(a[key], b[key]) if key in a and key in b else a.get(key, b.get(key))
                for key in (*a, *(k for k in b if k not in a))}
    if (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (*a, *b))):
        return [x + y for x, y in zip(a, b)]
    return a if a is not None else b


def merge_status(answers: Sequence[Mapping[str, Any]], own: Mapping[str, Any]) -> dict[str, Any]:
    """One status from the workers' (those that answered), with the supervisor's own
    ``pid``/``started_at``/``uptime_seconds`` and its ``workers`` rows in ``own``."""
    merged: dict[str, Any] = {}
    for answer in answers:
        for key, value in answer.items():
            if key not in merged:
                merged[key] = value
            elif key == "transfers":
                merged[key] = _merge_rows(merged[key], value, "method")
            elif key not in SHARED:
                merged[key] = add(merged[key], value)
    merged["draining"] = any(answer.get("draining") for answer in answers)
    # the process figures are the workers' sum: the supervisor itself is idle
    merged.update(own)
    return merged


def _merge_rows(rows: Iterable[Mapping[str, Any]], more: Iterable[Mapping[str, Any]], key: str) -> list[Any]:
    by_key: dict[Any, Any] = {}
    for row in (*rows, *more):
        by_key[row[key]] = add(by_key[row[key]], row) if row[key] in by_key else dict(row)
        by_key[row[key]][key] = row[key]
    return list(by_key.values())


def merge_objects(answers: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[str, Any]:
    """``/debug/objects`` of every worker: each count summed (after a load, every sum is
    back to its value before when every worker's is), and each worker's own snapshot
    under ``workers`` (which one holds what)."""
    total: dict[str, Any] = {}
    for _, snapshot in answers:
        total = add(total, snapshot) if total else dict(snapshot)
    total["workers"] = {str(index): snapshot for index, snapshot in answers}
    return total


def merge_trunks(answers: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """``/trunks`` of every worker: each registers and pings on its own, so every row is
    kept, marked with its ``worker``."""
    return {part: [{**row, "worker": index} for index, answer in answers for row in answer.get(part, ())]
            for part in ("registrations", "gateways")}


def merge_calls(answers: Sequence[tuple[int, Sequence[Mapping[str, Any]]]]) -> list[dict[str, Any]]:
    """Every worker's calls, each marked with its ``worker``, oldest first."""
    calls = [{**call, "worker": index} for index, rows in answers for call in rows]
    calls.sort(key=lambda call: str(call.get("created_at") or ""))
    return calls


class _Families:
    """A prometheus_client collector over already-parsed families (for re-rendering)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge_metrics(answers: Sequence[tuple[int, str]]) -> bytes:
    """The workers' Prometheus texts as one: every sample labelled ``worker="i"``, each
    family once (the text format allows one HELP/TYPE per family)."""
    families: dict[str, Metric] = {}
    for index, text in answers:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type,
                                                        family.unit)
            for sample in family.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, "worker": str(index)}))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))  # type: ignore[arg-type]
    return generate_latest(registry)
