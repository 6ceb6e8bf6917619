"""``voicegw check [--config FILE] [--json] [--simulate FLOW:NODE:STATUS]``: validate the
config, the SIP profiles and the flows without starting anything; with --simulate, also
show what the fallback of one agent_transfer node does with a failure (cli/simulate.py).

Each problem is printed as ``file:line: field: message``. Exit codes: 0 valid,
1 invalid, 2 usage (click's own, e.g. a --config that does not exist). With no
--config the embedded default is checked together with ./sip_profiles and ./flows
when those folders exist.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..config.convert import build_flow
from ..config.load import check as check_config
from ..config.loader import LoadedConfig
from ..flow.router import DEFAULT_CHANNEL
from ..flow.runner import Flow, demo_flow
from .simulate import (
    SimulateError,
    parse_status,
    parse_target,
    render,
    simulate,
    statuses_for,
    transfer_node,
)


@click.command("check")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="voicegw.yaml to check (default: the embedded default with ./sip_profiles and ./flows).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--simulate", "simulate_target", metavar="FLOW:NODE:STATUS",
              help="Dry-run a transfer failure at an agent_transfer node: STATUS is a SIP code, "
                   "timeout, policy, no_final, declined, no_answer, cancelled, no_agent, or all.")
def check(config_file: Path | None, as_json: bool, simulate_target: str | None) -> None:
    """Validate the config, profiles and flows; print each problem as file:line: field: message."""
    dirs: dict[str, Path | None] = {}
    if config_file is None:
        dirs = {key: Path(folder) for key, folder in (("profiles_dir", "sip_profiles"), ("flows_dir", "flows"))
                if Path(folder).is_dir()}
    try:
        config, problems = check_config(config_file, **dirs)
    except Exception as error:  # noqa: BLE001 - a bug must not look like a traceback to an operator
        click.echo(f"voicegw check: internal error: {type(error).__name__}: {error}", err=True)
        sys.exit(1)
    if simulate_target is not None and not problems:
        assert config is not None
        _simulate(config, simulate_target, as_json)
        return
    if as_json:
        result = {
            "ok": not problems,
            "config": str(config_file) if config_file else None,
            "profiles": sorted(config.profiles) if config else [],
            "flows": sorted(config.flows) if config else [],
            "default_flow": (config.daemon.default_flow or "demo (built in)") if config else None,
            "channels": channels(config) if config else [],
            "errors": [p.as_dict() for p in problems],
        }
        click.echo(json.dumps(result, indent=2))
    elif problems:
        for problem in problems:
            click.echo(str(problem))
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", err=True)
    else:
        assert config is not None
        click.echo(
            f"ok: {config_file or 'embedded default'}; "
            f"profiles: {', '.join(sorted(config.profiles)) or 'none'}; "
            f"flows: {', '.join(sorted(config.flows)) or 'none'}; "
            f"default flow: {config.daemon.default_flow or 'demo (built in)'}"
            + (f"; channels: {_channel_text(config)}" if config.daemon.routes else "")
        )
    sys.exit(1 if problems else 0)


def channels(config: LoadedConfig) -> list[dict[str, Any]]:
    """``routes:`` in order, as flow/router.py will try them, ending with the default
    (the first route without match, or the implied channel ``default``)."""
    default_flow = config.daemon.default_flow or "demo (built in)"
    found: list[dict[str, Any]] = []
    for route in config.daemon.routes:
        match = route.match.model_dump(exclude_defaults=True)
        found.append({"channel": route.channel, "match": match, "flow": route.flow or default_flow,
                      "integration": route.integration})
        if not match:
            return found
    return [*found, {"channel": DEFAULT_CHANNEL, "match": {}, "flow": default_flow, "integration": None}]


def _channel_text(config: LoadedConfig) -> str:
    return ", ".join(f"{c['channel']} -> {c['flow']}" + (f" [{c['integration']}]" if c["integration"] else "")
                     for c in channels(config))


def _simulate(config: LoadedConfig, target: str, as_json: bool) -> None:
    """Print the dry run (exit 0), or why it cannot be done (exit 1)."""
    try:
        flow_name, node_name, status_text = parse_target(target)
        flow = _flow(config, flow_name)
        node = transfer_node(flow, node_name)
        statuses = statuses_for(node.policy()) if status_text == "all" else [parse_status(status_text)]
    except SimulateError as error:
        click.echo(f"voicegw check: {error}", err=True)
        sys.exit(1)
    runs = [simulate(flow, node, status) for status in statuses]
    if as_json:
        click.echo(json.dumps({"ok": True, "simulations": [run.as_dict() for run in runs]}, indent=2))
    else:
        for run in runs:
            click.echo("\n".join(render(run)))
    sys.exit(0)


def _flow(config: LoadedConfig, name: str) -> Flow:
    if name in config.flows:
        return build_flow(config, name)
    if name == "demo":  # the built-in flow of the embedded default
        return demo_flow(config.daemon.calls.agent_uri)
    known = ", ".join(sorted(config.flows)) or "none"
    raise SimulateError(f"no flow {name!r} (flows: {known}; and demo, built in)")
