"""``voicegw run --workers N``: the supervisor on its own event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import click

from .. import __version__
from ..config.defaults import DaemonConfig
from .plan import PlanError, plan
from .supervisor import Supervisor


def run(config: DaemonConfig, count: int, args: Sequence[str]) -> int:
    """Start ``count`` workers with the operator's ``args``; the exit code."""
    if config.tls.enabled and count > 1:
        # one TLS port cannot be bound by N processes: terminate TLS at Kamailio
        raise click.UsageError("--workers: tls.enabled needs one process; terminate TLS at the proxy "
                               "in front (docs/scaling.md)")
    sip = config.sip
    base = sip.udp_port if sip.udp_port is not None else sip.tcp_port
    try:
        plans = plan(count, base or 0, config.calls.rtp_port_min, config.calls.rtp_port_max)
    except PlanError as error:
        raise click.UsageError(str(error)) from None
    # a host's workers are PREFIX-0..N-1 in the records when the host has a name there
    prefix = os.environ.get("VOICEGW_WORKER_ID") or getattr(getattr(config, "store", None), "worker_id", None)
    supervisor = Supervisor(plans, args, api=config.api if config.api.enabled else None, version=__version__,
                            name_prefix=prefix, sip_host=sip.host)
    with asyncio.Runner() as runner:
        return runner.run(supervisor.serve())
