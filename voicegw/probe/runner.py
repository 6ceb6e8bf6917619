"""The daemon's carrier probes: started by ``POST /probes``, read by ``GET /probes/{id}``.

A probe sends through the daemon's own SIP endpoint, so the carrier sees voicegw's real
address, port and transport. It does not go through the engine: a probe is no call (no
flow, no record, no metrics). The daemon offers every SIP event to its ``taps`` first;
the probes' :class:`~voicegw.probe.session.Tap` takes the responses to their own
transactions and the requests on their own dialogs, and everything else goes to the
engine as before. What a probe sends is settled first (:mod:`voicegw.probe.plan`); the
SIP of one probe is :mod:`voicegw.probe.session`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..config.convert import account as profile_account
from ..config.errors import ConfigError
from ..config.models import CarrierProfile
from .plan import Plan, ProbeError, ProbeSettings
from .report import ProbeReport, judge
from .session import Session, Tap

log = structlog.get_logger("voicegw.probe")

#: Probes kept for GET /probes/{id}.
KEEP = 20


@dataclass(eq=False)
class ProbeRun:
    id: str
    settings: ProbeSettings
    started: float
    state: str = "running"
    """``running``, ``done`` or ``failed`` (an error inside the probe itself)."""
    report: ProbeReport | None = None
    error: str = ""
    deadline_seconds: float = 0.0
    """The longest the probe can take, from its start."""
    task: asyncio.Task[Any] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "profile": self.settings.profile, "state": self.state,
                "call": self.settings.call, "dial": self.settings.dial or self.settings.call,
                "deadline_seconds": round(self.deadline_seconds, 1), "error": self.error,
                "report": self.report.as_dict() if self.report is not None else None}


# ------------------------------------------------------------------------------ probes
class Probes:
    """The daemon's probes: started by ``POST /probes``, read by ``GET /probes/{id}``."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.tap = Tap()
        self.runs: OrderedDict[str, ProbeRun] = OrderedDict()
        daemon.taps.append(self.tap)

    def start(self, settings: ProbeSettings) -> ProbeRun:
        profile = self._profile(settings.profile)
        try:
            account = profile_account(self.daemon.config.source, settings.profile, profile.auth)
        except ConfigError as error:
            raise ProbeError("; ".join(map(str, error.problems))) from None
        plan = Plan.of(profile, settings, account)
        loop = asyncio.get_running_loop()
        run = ProbeRun(secrets.token_hex(6), settings, loop.time(), deadline_seconds=plan.deadline())
        run.task = loop.create_task(self._run(run, profile, plan))
        self.runs[run.id] = run
        while len(self.runs) > KEEP:
            old = next(iter(self.runs.values()))
            if old.state == "running":
                break
            self.runs.popitem(last=False)
        return run

    def _profile(self, name: str) -> CarrierProfile:
        source = getattr(self.daemon.config, "source", None)
        found = source.profiles.get(name) if source is not None else None
        if found is None:
            carriers = sorted(n for n, s in (source.profiles.items() if source else ())
                              if isinstance(s.model, CarrierProfile))
            raise ProbeError(f"no profile {name!r} (carrier profiles: {', '.join(carriers) or 'none'})", 404)
        if not isinstance(found.model, CarrierProfile):
            raise ProbeError(f"profile {name!r} is a {found.model.kind} profile; a probe needs a carrier")
        return found.model

    async def _run(self, run: ProbeRun, profile: CarrierProfile, plan: Plan) -> None:
        session = Session(self.daemon, self.tap, profile, plan)
        try:
            options = await session.options()
            call = await session.call() if plan.call is not None else None
            run.report = judge(profile.name, options, call)
            run.report.notes.extend(session.notes)
            run.state = "done"
            log.info("probe.done", probe=run.id, profile=profile.name, conclusion=run.report.conclusion.value,
                     verdicts={v.capability: v.result.value for v in run.report.verdicts})
        except Exception as error:  # noqa: BLE001 - a broken probe never breaks the daemon
            run.state, run.error = "failed", f"{type(error).__name__}: {error}"
            log.error("probe.failed", probe=run.id, profile=profile.name, error=run.error)
        finally:
            session.close()
