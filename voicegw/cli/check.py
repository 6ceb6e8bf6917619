"""``voicegw check [--config FILE] [--json]``: validate the config, the SIP profiles
and the flows without starting anything.

Each problem is printed as ``file:line: field: message``. Exit codes: 0 valid,
1 invalid, 2 usage (click's own, e.g. a --config that does not exist). With no
--config the embedded default is checked together with ./sip_profiles and ./flows
when those folders exist.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..config.load import check as check_config


@click.command("check")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="voicegw.yaml to check (default: the embedded default with ./sip_profiles and ./flows).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(config_file: Path | None, as_json: bool) -> None:
    """Validate the config, profiles and flows; print each problem as file:line: field: message."""
    dirs: dict[str, Path | None] = {}
    if config_file is None:
        dirs = {key: Path(folder) for key, folder in (("profiles_dir", "sip_profiles"), ("flows_dir", "flows"))
                if Path(folder).is_dir()}
    try:
        config, problems = check_config(config_file, **dirs)
    except Exception as error:  # a bug must not look like a traceback to an operator
        click.echo(f"voicegw check: internal error: {type(error).__name__}: {error}", err=True)
        sys.exit(1)
    if as_json:
        result = {
            "ok": not problems,
            "config": str(config_file) if config_file else None,
            "profiles": sorted(config.profiles) if config else [],
            "flows": sorted(config.flows) if config else [],
            "default_flow": (config.daemon.default_flow or "demo (built in)") if config else None,
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
        )
    sys.exit(1 if problems else 0)
