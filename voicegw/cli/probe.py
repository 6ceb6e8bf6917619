"""``voicegw probe PROFILE [--call NUMBER]``: does this carrier take REFER?

The running daemon probes (``POST /probes``, then ``GET /probes/{id}`` until done), from
its own SIP address, so the carrier sees what it sees on real calls. Printed: what the
carrier answered, a verdict per capability, the settings to put in the profile.
Exit status: 0 REFER works, 1 REFER is unusable, 5 the probe could not tell (no
answer to OPTIONS, the test call not answered), 3/4 as every command
(docs/operations.md).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.table import Table

from .client import ApiClient, CliError
from .commands import api_command, dump, out

EXIT = {"refer_works": 0, "refer_unusable": 1, "inconclusive": 5}


def register(cli: click.Group) -> None:
    @api_command(cli, "probe", help="Probe a carrier profile's REFER support: OPTIONS, and with "
                                    "--call a test call REFERed to NUMBER.")
    @click.argument("profile")
    @click.option("--call", "number", metavar="NUMBER",
                  help="Place a test call through the carrier and REFER it to NUMBER (or a sip: URI).")
    @click.option("--dial", metavar="NUMBER",
                  help="Where the test call goes first (default: NUMBER; use a line that answers).")
    @click.option("--refer-sub/--no-refer-sub", default=None,
                  help="REFER with or without a subscription (Refer-Sub: false); default: the profile's.")
    @click.option("--notify-timeout", type=click.FloatRange(1, 300),
                  help="Seconds from the 202 to the final NOTIFY (default: the profile's notify_final).")
    @click.option("--ring-timeout", type=click.FloatRange(1, 120),
                  help="Seconds the test call may ring (default: the profile's ring).")
    def probe(client: ApiClient, as_json: bool, profile: str, number: str | None, dial: str | None,
              refer_sub: bool | None, notify_timeout: float | None, ring_timeout: float | None) -> None:
        if dial is not None and number is None:
            raise click.UsageError("--dial needs --call NUMBER")
        body: dict[str, Any] = {"profile": profile, "call": number, "dial": dial, "refer_sub": refer_sub,
                                "notify_timeout": notify_timeout, "ring_timeout": ring_timeout}
        data = client.request("POST", "/probes", json={k: v for k, v in body.items() if v is not None})
        deadline = time.monotonic() + data["deadline_seconds"] + 10
        while data["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
            data = client.request("GET", f"/probes/{data['id']}")
        if data["state"] == "running":
            raise CliError(f"probe {data['id']} still running after {data['deadline_seconds']:.0f} s")
        if data["state"] == "failed":
            raise CliError(f"probe {data['id']} failed: {data['error']}")
        report = data["report"]
        if as_json:
            dump(data)
        else:
            for line in render(report):
                out.print(line, markup=False) if isinstance(line, str) else out.print(line)
        sys.exit(EXIT[report["conclusion"]])


def render(report: dict[str, Any]) -> list[Any]:
    """The human form: what crossed the wire, the verdicts, the recommendation."""
    options = report["options"]
    lines: list[Any] = [f"carrier profile {report['profile']}: OPTIONS {options['uri']} via {options['destination']}"]
    status = options["status"]
    if isinstance(status, int):
        rtt = f" ({options['round_trip_ms']:.0f} ms)" if options["round_trip_ms"] is not None else ""
        lines.append(f"  answered {status} {options['reason']}{rtt}"
                     + (f", server {options['server']}" if options["server"] else ""))
        lines.append("  Allow: " + (", ".join(options["allow"]) if options["allow_present"] else "(none)"))
        lines.append("  Supported: " + (", ".join(options["supported"]) or "(none)"))
    else:
        lines.append(f"  {options['reason'] or status}")
    call = report["call"]
    if call is not None:
        lines.append(f"test call to {call['dialled']}: {call['invite_status']} {call['invite_reason']}".rstrip())
        if call["refer_status"] is not None:
            sub = "" if call["refer_sub"] else " with Refer-Sub: false"
            answer = f" (Refer-Sub: {call['refer_sub_answer']})" if call["refer_sub_answer"] else ""
            lines.append(f"  REFER to {call['refer_to']}{sub}: {call['refer_status']} {call['refer_reason']}"
                         f"{answer}".rstrip())
            for notify in call["notifies"]:
                lines.append(f"  NOTIFY +{notify['offset_ms']:.0f} ms: {notify['sipfrag'] or '(no sipfrag)'}"
                             f" [{notify['subscription_state']}] -> {notify['answer']}")
            if call["outcome"]:
                lines.append(f"  outcome: {call['outcome']} {call['outcome_status']} {call['outcome_reason']}"
                             .rstrip())
        if call["ended_by"]:
            lines.append(f"  call ended by {call['ended_by']}")
    lines.extend(f"note: {note}" for note in report["notes"])
    table = Table(title="verdicts", title_justify="left")
    for column in ("capability", "result", "detail"):
        table.add_column(column, overflow="fold")
    for verdict in report["verdicts"]:
        table.add_row(verdict["capability"], verdict["result"], verdict["detail"])
    lines.append(table)
    advice = report["recommendation"]
    settings = []
    if advice["refer"] is not None:
        settings.append(f"refer: {str(advice['refer']).lower()}")
    if advice["refer_sub"] is not None:
        settings.append(f"refer_sub: {str(advice['refer_sub']).lower()}")
    lines.append(f"conclusion: {report['conclusion']}")
    lines.append("recommended: " + (", ".join(settings) or "(no change)")
                 + f"; transfer attempts: {' then '.join(advice['attempts'])}")
    lines.append(f"  because {advice['why']}")
    return lines
