"""The ``voicegw`` command (console-script entry point: ``main``)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from .. import __version__
from ..config.defaults import DEFAULT, DaemonConfig, from_mapping
from ..config.errors import ConfigError


@click.group()
@click.version_option(__version__, prog_name="voicegw")
def cli() -> None:
    """voicegw: a SIP B2BUA that hands calls from AI voice bots to human agents."""


@cli.command()
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
    help="voicegw.yaml (docs/configuration.md); its profiles and flows are loaded too. "
    "Flags win over the file.",
)
@click.option("--sip-host", help="Address to bind SIP to (default 127.0.0.1).")
@click.option("--sip-port", type=click.IntRange(0, 65535), help="SIP port, UDP and TCP (default 5060).")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
    help="Default info; debug adds one line per finished transaction.",
)
@click.option("--api-port", type=click.IntRange(0, 65535),
              help="Control API port on its host (default 5080; 0: any free port, logged in daemon.started).")
@click.option("--bot-uri", help="Bridge calls to this SIP bot (default: the built-in demo flow).")
@click.option("--rtp-ports", help="RTP port range MIN-MAX (default 20000-21998).")
@click.option("--agent-uri", help="The demo flow's agent: DTMF 0 transfers the caller there.")
@click.option("--workers", "workers", type=click.IntRange(1, 256),
              help="Run N worker processes (docs/scaling.md): worker I on SIP port --sip-port + I and the "
              "I-th slice of the RTP range, one control API for all of them, dead workers restarted.")
@click.option("--worker", "worker", type=click.IntRange(0, 255), hidden=True,
              help="Run as worker I of a supervisor (set by --workers): API on loopback, logs tagged.")
@click.option("--api-public-url", hidden=True, help="Base URL of the API links (a worker's: the supervisor's).")
def run(
    config_file: Path | None, sip_host: str | None, sip_port: int | None, api_port: int | None,
    log_level: str | None, bot_uri: str | None, rtp_ports: str | None, agent_uri: str | None,
    workers: int | None, worker: int | None, api_public_url: str | None,
) -> None:
    """Run the daemon in the foreground; logs are JSON lines on stderr."""

    def build() -> DaemonConfig:
        """The file plus the command line: at start, and again for each reload."""
        config = load_config(config_file)
        sip = config.sip
        if sip_host is not None:
            sip = dataclasses.replace(sip, host=sip_host)
        if sip_port is not None:
            sip = dataclasses.replace(sip, udp_port=sip_port, tcp_port=sip_port)
        config = dataclasses.replace(config, sip=sip, log_level=log_level or config.log_level)
        if api_port is not None:
            config = dataclasses.replace(config, api=dataclasses.replace(config.api, port=api_port))
        if worker is not None:  # a supervisor's worker: its API is for the supervisor only
            config = dataclasses.replace(config, api=dataclasses.replace(
                config.api, host="127.0.0.1", public_url=api_public_url or config.api.public_url))
        calls: dict[str, object] = {}
        if bot_uri is not None:
            calls["bot_uri"] = bot_uri
        if agent_uri is not None:
            calls["agent_uri"] = agent_uri
        if rtp_ports is not None:
            low, _, high = rtp_ports.partition("-")
            if not (low.isdigit() and high.isdigit()):
                raise click.UsageError("--rtp-ports: expected MIN-MAX, e.g. 20000-20999")
            calls.update(rtp_port_min=int(low), rtp_port_max=int(high))
        if calls:
            try:
                config = dataclasses.replace(config, calls=from_mapping({"calls": calls}, config).calls)
            except ConfigError as error:
                raise click.UsageError(str(error)) from None
        return config

    config = build()

    from .. import logging as vlogging

    vlogging.configure(config.log_level, fields={"worker": worker} if worker is not None else None)
    if workers is not None:
        passed = [("--config", config_file), ("--sip-host", sip_host), ("--log-level", log_level),
                  ("--bot-uri", bot_uri), ("--agent-uri", agent_uri)]
        from ..workers.run import run as run_workers

        sys.exit(run_workers(config, workers, [str(x) for flag, value in passed if value is not None
                                               for x in (flag, value)]))
    from ..daemon import run as run_daemon

    sys.exit(run_daemon(config, loader=build))


def load_config(path: Path | None) -> DaemonConfig:
    """voicegw.yaml with its profiles and flows (config/loader.py), as the daemon's
    plain config; every problem as ``file:line: field: message``."""
    if path is None:
        return DEFAULT
    from ..config.load import load_runtime

    try:
        return load_runtime(path)
    except ConfigError as error:
        raise click.UsageError("the config has problems:\n" + "\n".join(map(str, error.problems))) from None


# --- config check (voicegw/cli/check.py) ---------------------------------------------------
from .check import check as _check_command

cli.add_command(_check_command)

# --- operator commands: status, calls, call show, transfer, hangup, cdr, reload -----------
from .commands import register as _register_operator_commands

_register_operator_commands(cli)

from .report import register as _register_report

_register_report(cli)

from .probe import register as _register_probe

_register_probe(cli)

from .trunks import register as _register_trunks

_register_trunks(cli)


@cli.command("desk-password")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (scripts).")
def desk_password(password_stdin: bool) -> None:
    """Print the scrypt hash of a desk agent's password, for ``desk.agents`` in voicegw.yaml."""
    import sys

    from ..desk.passwords import hash_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.UsageError("an empty password")
    click.echo(hash_password(password))
# ------------------------------------------------------------------------------------------


def main() -> None:
    cli()
