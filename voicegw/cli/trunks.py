"""``voicegw trunks``: each carrier profile's registration and its gateways' health
from the running daemon's ``GET /trunks``. Credentials are never
part of the answer."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from .client import ApiClient
from .commands import api_command, dump, out


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g}s"


def _workers(rows: list[dict[str, Any]]) -> bool:
    """Rows of ``voicegw run --workers N`` (each worker registers and pings on its own)."""
    return any("worker" in row for row in rows)


def _lead(row: dict[str, Any], workers: bool) -> tuple[str, ...]:
    return (str(row.get("worker", "")),) if workers else ()


def registration_rows(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    workers = _workers(rows)
    lead = ("worker",) if workers else ()
    for column in lead + ("trunk", "state", "aor", "registrar", "expires", "next", "last", "reason"):
        table.add_column(column)
    for row in rows:
        if row["refresh_in"] is not None:
            upcoming = f"refresh in {_seconds(row['refresh_in'])}"
        elif row["retry_in"] is not None:
            upcoming = f"retry in {_seconds(row['retry_in'])} (failure {row['failures']})"
        else:
            upcoming = "-"
        last = "-" if row["last_status"] is None else str(row["last_status"])
        if row["last_rtt_ms"] is not None and isinstance(row["last_status"], int):
            last += f" ({row['last_rtt_ms']:g} ms)"
        table.add_row(*_lead(row, workers), row["trunk"], row["state"], row["aor"], row["registrar"],
                      _seconds(row["expires"]), upcoming, last, row["reason"] or "")
    return table


def gateway_rows(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    workers = _workers(rows)
    lead = ("worker",) if workers else ()
    for column in lead + ("trunk", "gateway", "state", "last ping", "pings"):
        table.add_column(column)
    for row in rows:
        last = "-" if row["last_status"] is None else str(row["last_status"])
        if row["last_rtt_ms"] is not None and isinstance(row["last_status"], int):
            last += f" ({row['last_rtt_ms']:g} ms)"
        if row["dns_error"]:
            last += f"; DNS: {row['dns_error']}"
        table.add_row(*_lead(row, workers), row["trunk"], row["gateway"] or row["target"],
                      row["state"], last, str(row["pings"]))
    return table


def register(cli: click.Group) -> None:
    @api_command(cli, "trunks", help="Carrier trunks: registrations (state, grant, next refresh or retry) "
                 "and gateway health (OPTIONS pings: up/down, last round trip).")
    def trunks(client: ApiClient, as_json: bool) -> None:
        data = client.request("GET", "/trunks")
        if as_json:
            return dump(data)
        if not data["registrations"]:
            out.print("no registrations (a carrier profile registers with register: {registrar: ...})")
        else:
            out.print(registration_rows(data["registrations"]))
        if not data["gateways"]:
            out.print("no health checks (a carrier profile pings its gateways with health: {...})")
        else:
            out.print(gateway_rows(data["gateways"]))
        return None
