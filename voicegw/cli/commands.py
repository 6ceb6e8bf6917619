"""The operator's commands: status, calls, call show, transfer, hangup, cdr, reload.

Each talks to the running daemon's control API (``--api``, default
http://127.0.0.1:5080, or $VOICEGW_API) with its bearer token (``--token``,
$VOICEGW_TOKEN, or ``--token-file``, default var/api.token). Human tables by
default, ``--json`` for scripts. Exit codes: 0 ok, 1 not found or failed, 2 usage,
3 daemon not running, 4 token refused.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import ladder
from .client import ApiClient, CliError, call_path, default_api

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def api_command(group: click.Group, name: str, *, data: bool = True, prog: str | None = None,
                **kwargs: Any) -> Callable[..., Any]:
    """A command with the API options (and ``--json`` when it prints data); the
    function gets an :class:`ApiClient` first. CliError becomes its exit code, its
    message prefixed with ``voicegw PROG:`` (default: the command's name)."""

    def decorate(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def wrapper(api: str, token: str | None, token_file: str | None, as_json: bool = False, **params: Any) -> None:
            client = ApiClient(api, token, token_file)
            try:
                fn(client, as_json, **params) if data else fn(client, **params)
            except CliError as error:
                err.print(f"voicegw {prog or name}: {error.message}", markup=False)
                sys.exit(error.code)
            finally:
                client.close()

        command = wrapper
        if data:
            command = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(command)
        command = click.option("--token-file", envvar="VOICEGW_TOKEN_FILE", type=click.Path(dir_okay=False),
                               help="File holding the API token (default var/api.token).")(command)
        command = click.option("--token", envvar="VOICEGW_TOKEN", help="The API bearer token.")(command)
        command = click.option("--api", default=default_api, show_default="http://127.0.0.1:5080",
                               help="The control API's URL.")(command)
        return group.command(name, **kwargs)(command)

    return decorate


def dump(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def when(text: str | None) -> str:
    """An ISO time from the API as local HH:MM:SS (the date too when not today)."""
    if not text:
        return ""
    moment = datetime.fromisoformat(text).astimezone()
    today = datetime.now().astimezone().date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def size(count: float) -> str:
    """Bytes for people: 85.2 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def process_rows(process: dict[str, Any] | None, uptime: float) -> list[tuple[str, str]]:
    """The status rows for the daemon process: memory, fds, CPU (what the platform says)."""
    process = process or {}
    rows = []
    if process.get("rss_bytes") is not None:
        rows.append(("memory (RSS)", size(process["rss_bytes"])))
    if process.get("open_fds") is not None:
        limit = f" (limit {process['max_fds']})" if process.get("max_fds") is not None else ""
        rows.append(("open fds", f"{process['open_fds']}{limit}"))
    if process.get("cpu_seconds") is not None:
        cpu = process["cpu_seconds"]
        average = f", {100 * cpu / uptime:.0f}% of a core on average" if uptime > 0 else ""
        rows.append(("CPU", f"{cpu:.1f} s{average}"))
    return rows


def transfer_text(transfer: dict[str, Any] | None) -> str:
    if not transfer:
        return ""
    status = f" {transfer['status']}" if transfer.get("status") is not None else ""
    return f"{transfer['id']} {transfer['method']} {transfer['state']}{status}"


def transfer_line(data: dict[str, Any]) -> str:
    reason = f" ({data['reason']})" if data["reason"] else ""
    status = f" {data['status']}" if data["status"] is not None else ""
    return f"transfer {data['id']}: {data['method']} to {data['target']}: {data['state']}{status}{reason}"


class TransferGroup(click.Group):
    """``voicegw transfer CALL_ID TARGET`` starts a transfer (the hidden ``start``
    command); ``voicegw transfer complete|cancel CALL_ID`` steers a warm one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[OPTIONS] CALL_ID TARGET | complete CALL_ID | cancel CALL_ID")


# ---------------------------------------------------------------------- commands
def register(cli: click.Group) -> None:
    @api_command(cli, "status", help="The daemon's state: uptime, calls, transfers, totals.")
    def status(client: ApiClient, as_json: bool) -> None:
        data = client.request("GET", "/status")
        if as_json:
            return dump(data)
        totals = data["totals"]
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("version", data["version"])
        table.add_row("pid", str(data["pid"]))
        table.add_row("uptime", duration(data["uptime_seconds"]))
        for name, value in process_rows(data.get("process"), data["uptime_seconds"]):
            table.add_row(name, value)
        table.add_row("state", "draining" if data["draining"] else "running")
        table.add_row("active calls", str(data["active_calls"]))
        table.add_row("transfers in flight", str(data["transfers_in_flight"]))
        table.add_row("calls", f"{totals['calls']} total, {totals['answered']} answered, {totals['failed']} failed")
        if totals["by_outcome"]:
            table.add_row("ended by", ", ".join(f"{k}: {v}" for k, v in totals["by_outcome"].items()))
        if totals["by_sip_code"]:
            table.add_row("final codes", ", ".join(f"{k}: {v}" for k, v in totals["by_sip_code"].items()))
        if totals.get("refused"):
            table.add_row("refused", ", ".join(f"{k}: {v}" for k, v in totals["refused"].items()))
        containment = data.get("containment")
        if containment is not None:
            rate = containment["rate"]
            table.add_row("containment today", "-" if rate is None else (
                f"{100 * rate:.1f}% ({containment['contained']} contained of {containment['reached']} "
                "calls that reached the bot or flow)"))
        for row in data["transfers"]:
            table.add_row(f"transfers {row['method']}",
                          f"{row['started']} started, {row['succeeded']} succeeded, {row['failed']} failed")
        for row in data.get("workers", ()):  # voicegw run --workers N (docs/scaling.md)
            state = "up" if row["alive"] and row["ready"] else ("starting" if row["alive"] else "down")
            table.add_row(f"worker {row['index']}", f"{state}, pid {row['pid']}, SIP port {row['sip_port']}, "
                          f"RTP {row['rtp_ports']}, {row['restarts']} restarts")
        out.print(table)

    @api_command(cli, "calls", help="Calls in progress (--all: and recently ended).")
    @click.option("--all", "show_all", is_flag=True, help="Include ended calls still in memory.")
    def calls(client: ApiClient, as_json: bool, show_all: bool) -> None:
        data = client.request("GET", "/calls", params={"state": "all" if show_all else "active"})
        if as_json:
            return dump(data)
        if not data:
            out.print("no calls in progress" if not show_all else "no calls")
            return
        table = Table()
        workers = any("worker" in call for call in data)  # the supervisor's API (--workers N)
        for column in ("call id", *(("worker",) if workers else ()), "state", "caller", "channel", "since",
                       "duration", "legs", "transfer", "ended because"):
            table.add_column(column, overflow="fold")
        for call in data:
            table.add_row(call["id"], *((str(call.get("worker", "")),) if workers else ()), call["state"],
                          call["caller"], call.get("channel") or "-", when(call["created_at"]),
                          duration(call["duration_seconds"]), ",".join(call["legs"]),
                          transfer_text(call["transfer"]), call["end_reason"])
        out.print(table)

    @cli.group("call", help="One call.")
    def call() -> None:
        pass

    @api_command(call, "show", help="A call: its legs, its SIP ladder diagram and its timeline.")
    @click.argument("call_id")
    @click.option("--messages", is_flag=True, help="Print every SIP message in full after the ladder.")
    def show(client: ApiClient, as_json: bool, call_id: str, messages: bool) -> None:
        data = client.request("GET", call_path(call_id), params={"messages": "true" if messages or as_json else "false"})
        if as_json:
            return dump(data)
        out.print(f"[bold]call[/bold] {data['id']}  [bold]state[/bold] {data['state']}  "
                  f"[bold]caller[/bold] {data['caller']}  [bold]since[/bold] {when(data['created_at'])}  "
                  f"[bold]duration[/bold] {duration(data['duration_seconds'])}", markup=True)
        if data.get("channel") or data.get("flow"):
            out.print(f"channel: {data.get('channel') or '-'}  flow: {data.get('flow') or '- (bot)'}", markup=False)
        if data["end_reason"]:
            out.print(f"ended: {data['end_reason']}", markup=False)
        if data["transfer"]:
            out.print(f"transfer: {transfer_text(data['transfer'])} -> {data['transfer']['target']}"
                      f"{' (' + data['transfer']['reason'] + ')' if data['transfer']['reason'] else ''}", markup=False)
        if data.get("transcript_url"):
            out.print(f"transcript: {data['transcript_url']}", markup=False)
        out.print()
        if data["trace"]:
            for line in ladder.render(data):
                out.print(line, crop=False, overflow="ignore", no_wrap=True)
        else:
            out.print("(no SIP messages kept for this call)")
        out.print()
        table = Table(title="timeline", title_justify="left")
        table.add_column("t", justify="right")
        table.add_column("event")
        table.add_column("detail", overflow="fold")
        for entry in data["timeline"]:
            detail = " ".join(f"{k}={v}" for k, v in entry["detail"].items() if v not in ("", None))
            table.add_row(f"{entry['offset_seconds']:.3f}", entry["event"], detail)
        out.print(table)
        if messages:
            for message in data["trace"]:
                arrow = "<-" if message["direction"] == "in" else "->"
                out.print(f"\n--- {message['offset_seconds']:.3f} {arrow} {message['peer']}", markup=False)
                out.print(message.get("message") or message["first_line"], markup=False)

    @cli.group("transfer", cls=TransferGroup, invoke_without_command=False, help=(
        "Transfer a call: 'voicegw transfer CALL_ID TARGET [--method invite|refer|bye|warm]'; "
        "a warm transfer waiting for its completion: 'voicegw transfer complete CALL_ID' or "
        "'voicegw transfer cancel CALL_ID'."))
    def transfer() -> None:
        pass

    @api_command(transfer, "start", prog="transfer", hidden=True,
                 help="Transfer a call to TARGET (a sip: URI or a number on the allow-list).")
    @click.argument("call_id")
    @click.argument("target")
    @click.option("--method", type=click.Choice(["invite", "refer", "bye", "warm"]), default="invite",
                  show_default=True, help="warm: consult and brief the agent first (calls.warm).")
    @click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the outcome.")
    @click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait.")
    def start(client: ApiClient, as_json: bool, call_id: str, target: str, method: str, wait: bool,
              timeout: float) -> None:
        data = client.request("POST", call_path(call_id, "transfer"), json={"target": target, "method": method})
        deadline = time.monotonic() + timeout
        while wait and data["state"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
            data = client.request("GET", f"/transfers/{data['id']}")
        if as_json:
            dump(data)
        else:
            out.print(transfer_line(data), markup=False)
        if data["state"] == "failed":
            sys.exit(1)

    @api_command(transfer, "complete", prog="transfer complete",
                 help="Connect the caller to the consulted agent now (a warm transfer).")
    @click.argument("call_id")
    def complete(client: ApiClient, as_json: bool, call_id: str) -> None:
        data = client.request("POST", call_path(call_id, "transfer", "complete"))
        dump(data) if as_json else out.print(transfer_line(data), markup=False)
        if data["state"] == "failed":
            sys.exit(1)

    @api_command(transfer, "cancel", prog="transfer cancel",
                 help="Abandon a warm transfer: BYE (or CANCEL) to the agent, the caller goes back.")
    @click.argument("call_id")
    def cancel(client: ApiClient, as_json: bool, call_id: str) -> None:
        data = client.request("POST", call_path(call_id, "transfer", "cancel"))
        dump(data) if as_json else out.print(transfer_line(data), markup=False)

    @api_command(cli, "hangup", help="Hang up a call (BYE to every leg).")
    @click.argument("call_id")
    @click.option("--reason", default="operator", show_default=True)
    def hangup(client: ApiClient, as_json: bool, call_id: str, reason: str) -> None:
        data = client.request("POST", call_path(call_id, "hangup"), json={"reason": reason})
        if as_json:
            return dump(data)
        out.print(f"call {data['call_id']}: {'hung up' if data['hung_up'] else 'not hung up'} ({data['state']})",
                  markup=False)

    @api_command(cli, "cdr", help="Call records (from the durable store when it runs).")
    @click.option("--since", help="Start: 30m, 2h, 7d, or an ISO date/time.")
    @click.option("--until", help="End, same forms as --since.")
    @click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
    def cdr(client: ApiClient, as_json: bool, since: str | None, until: str | None, limit: int) -> None:
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("since", since), ("until", until)):
            if value:
                params[key] = parse_when(value, f"--{key}")
        data = client.request("GET", "/records", params=params)
        if as_json:
            return dump(data)
        records = data["records"]
        if not records:
            out.print("no records")
            return
        preferred = ["id", "call_id", "key", "state", "caller", "started_at", "created_at", "answered_at",
                     "ended_at", "duration_seconds", "outcome", "disposition", "transfer_method", "flow", "channel",
                     "status", "end_reason",
                     "reason", "transfer"]
        keys = [k for k in preferred if any(k in r for r in records)]
        keys += [k for k in records[0] if k not in keys and not isinstance(records[0][k], (dict, list))][:4]
        table = Table(caption=f"source: {data['source']}", caption_justify="left")
        for key in keys:
            table.add_column(key, overflow="fold")
        for record in records:
            table.add_row(*[_cell(record.get(k)) for k in keys])
        out.print(table)

    @api_command(cli, "reload", help="Reload profiles and flows (like SIGHUP); a bad config is refused.")
    def reload(client: ApiClient, as_json: bool) -> None:
        data = client.request("POST", "/reload", ok=(200, 422))
        if as_json:
            dump(data)
        else:
            (out if data["reloaded"] else err).print(data["detail"], markup=False)
        if not data["reloaded"]:
            sys.exit(1)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return transfer_text(value) if "method" in value and "state" in value else json.dumps(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")


def parse_when(text: str, option: str) -> str:
    """``30m``/``2h``/``7d`` ago or an ISO date/time, as ISO 8601 UTC."""
    match = _RELATIVE.match(text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return (datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})).isoformat()
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter("expected 30m, 2h, 7d or an ISO date/time", param_hint=option) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a local time, as the operator typed it
    return moment.astimezone(UTC).isoformat()
