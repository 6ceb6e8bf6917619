"""A carrier probe's findings, its verdict per capability and what it recommends.

Pure: the runner (:mod:`voicegw.probe.runner`) fills :class:`OptionsSeen` and
:class:`CallSeen` from what crossed the wire; :func:`judge` turns them into
:class:`Verdict` rows and a :class:`Recommendation` for the carrier profile's
``refer`` and ``refer_sub`` settings (config/models.py ``CarrierProfile``) and the
transfer ``attempts`` order.

How the verdicts read the wire (RFC 3515 REFER, RFC 4488 Refer-Sub, RFC 3420 sipfrag):

- OPTIONS (RFC 3261 11): ``Allow`` lists the methods the carrier accepts; a 2xx
  without ``Allow`` says nothing about REFER. ``Supported: norefersub`` means it can
  accept a REFER without an implicit subscription (RFC 4488 4).
- The test call: a 202 (any 2xx) is acceptance, not success; only a 2xx sipfrag in a
  NOTIFY says the transfer completed (RFC 3515 2.4.5). 3xx-6xx to the REFER is a
  refusal. A 2xx and then no final sipfrag (no NOTIFY at all, or only ``100 Trying``)
  is a half implementation: voicegw would wait ``notify_final`` and fall back.
- When the REFER carried ``Refer-Sub: false``, the carrier honoured it when its 2xx
  says ``Refer-Sub: false`` and no NOTIFY followed (RFC 4488 4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

Status = int | str | None
"""A SIP status, ``"timeout"`` / ``"no_final"`` / ``"transport"``, or None (not tried)."""


@dataclass(slots=True)
class OptionsSeen:
    """The OPTIONS request to the carrier and its answer."""

    uri: str
    """The Request-URI (the trunk's host part)."""
    destination: str
    """Where it went: ``udp:192.0.2.1:5060``."""
    status: Status = None
    """The final status; ``"timeout"`` when none came in time, ``"transport"`` when the
    carrier could not be reached."""
    reason: str = ""
    allow: list[str] = field(default_factory=list)
    """The Allow header's methods, upper case."""
    allow_present: bool = False
    supported: list[str] = field(default_factory=list)
    """The Supported header's option tags, lower case."""
    server: str = ""
    """Server (or User-Agent) of the answer."""
    round_trip_ms: float | None = None


@dataclass(slots=True)
class NotifySeen:
    """One NOTIFY the carrier sent about the REFER."""

    offset_ms: float
    """Since the REFER was sent."""
    subscription_state: str
    sipfrag: str
    """The sipfrag's status line (``SIP/2.0 200 OK``), "" when the body had none."""
    status: int | None
    answer: int
    """What voicegw answered the NOTIFY."""


@dataclass(slots=True)
class CallSeen:
    """The test call: placed to ``dialled``, then REFERed to ``refer_to``."""

    dialled: str
    refer_to: str
    refer_sub: bool
    """False: the REFER carried ``Refer-Sub: false`` (the profile's ``refer_sub``)."""
    invite_status: Status = None
    invite_reason: str = ""
    provisional: list[int] = field(default_factory=list)
    refer_status: Status = None
    """The REFER's final response, ``"timeout"``, or None when none was sent."""
    refer_reason: str = ""
    refer_sub_answer: str | None = None
    """The Refer-Sub header of the REFER's 2xx (RFC 4488), if any."""
    refer_round_trip_ms: float | None = None
    notifies: list[NotifySeen] = field(default_factory=list)
    outcome: str = ""
    """The referrer machine's end (sip/refer.py): ``succeeded``, ``failed``,
    ``unconfirmed``; "" when no REFER was sent."""
    outcome_status: Status = None
    outcome_reason: str = ""
    ended_by: str = ""
    """``voicegw`` (our BYE), ``carrier`` (its BYE), or "" (never connected)."""


class Result(str, Enum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"
    NOT_TESTED = "not tested"


@dataclass(frozen=True, slots=True)
class Verdict:
    capability: str
    result: Result
    detail: str


class Conclusion(str, Enum):
    """The probe's answer; it is also the CLI's exit status (docs/operations.md)."""

    REFER_WORKS = "refer_works"  # exit 0
    REFER_UNUSABLE = "refer_unusable"  # exit 1
    INCONCLUSIVE = "inconclusive"  # exit 5


@dataclass(frozen=True, slots=True)
class Recommendation:
    refer: bool | None
    """The profile's ``refer``; None: the probe cannot tell."""
    refer_sub: bool | None
    attempts: list[str]
    """Transfer methods in order for agent_transfer ``attempts`` through this carrier."""
    why: str


@dataclass(slots=True)
class ProbeReport:
    profile: str
    options: OptionsSeen
    call: CallSeen | None
    verdicts: list[Verdict]
    conclusion: Conclusion
    recommendation: Recommendation
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["conclusion"] = self.conclusion.value
        data["verdicts"] = [{"capability": v.capability, "result": v.result.value, "detail": v.detail}
                            for v in self.verdicts]
        return data


# ------------------------------------------------------------------------------ judging
def options_verdicts(seen: OptionsSeen) -> list[Verdict]:
    answered = isinstance(seen.status, int)
    if not answered:
        why = "no answer" if seen.status == "timeout" else "unreachable" if seen.status == "transport" \
            else "not sent"
        return [Verdict("options", Result.NO, f"{why} ({seen.destination})"),
                Verdict("refer_in_allow", Result.UNKNOWN, "no answer to OPTIONS"),
                Verdict("norefersub_supported", Result.UNKNOWN, "no answer to OPTIONS")]
    rtt = f" in {seen.round_trip_ms:.0f} ms" if seen.round_trip_ms is not None else ""
    ok = 200 <= int(seen.status) < 300  # type: ignore[arg-type]
    rows = [Verdict("options", Result.YES if ok else Result.NO, f"{seen.status} {seen.reason}{rtt}")]
    if not ok or not seen.allow_present:
        why = "no Allow header" if ok else f"OPTIONS answered {seen.status}"
        rows.append(Verdict("refer_in_allow", Result.UNKNOWN, why))
    elif "REFER" in seen.allow:
        rows.append(Verdict("refer_in_allow", Result.YES, "Allow: " + ", ".join(seen.allow)))
    else:
        rows.append(Verdict("refer_in_allow", Result.NO, "Allow: " + ", ".join(seen.allow)))
    if not ok:
        rows.append(Verdict("norefersub_supported", Result.UNKNOWN, f"OPTIONS answered {seen.status}"))
    elif "norefersub" in seen.supported:
        rows.append(Verdict("norefersub_supported", Result.YES, "Supported: " + ", ".join(seen.supported)))
    else:
        rows.append(Verdict("norefersub_supported", Result.NO,
                            "Supported: " + (", ".join(seen.supported) or "(none)")))
    return rows


def call_verdicts(call: CallSeen) -> list[Verdict]:
    if not (isinstance(call.invite_status, int) and 200 <= call.invite_status < 300):
        untested = f"the test call to {call.dialled} was not answered ({call.invite_status} {call.invite_reason})"
        return [Verdict("test_call", Result.NO, untested.replace("  ", " ").rstrip()),
                *(Verdict(name, Result.NOT_TESTED, "no call to REFER")
                  for name in ("refer_accepted", "notify_sipfrag", "transfer_completed"))]
    rows = [Verdict("test_call", Result.YES, f"{call.dialled} answered {call.invite_status}")]
    accepted = isinstance(call.refer_status, int) and 200 <= call.refer_status < 300
    if call.refer_status is None:
        rows.append(Verdict("refer_accepted", Result.NOT_TESTED, "no REFER sent"))
    elif accepted:
        rtt = f" in {call.refer_round_trip_ms:.0f} ms" if call.refer_round_trip_ms is not None else ""
        rows.append(Verdict("refer_accepted", Result.YES, f"{call.refer_status} {call.refer_reason}{rtt}"))
    else:
        rows.append(Verdict("refer_accepted", Result.NO, f"{call.refer_status} {call.refer_reason}".rstrip()))
    if not accepted:
        rows += [Verdict("notify_sipfrag", Result.NOT_TESTED, "REFER not accepted"),
                 Verdict("transfer_completed", Result.NO, "REFER not accepted")]
        return rows
    frags = [n.sipfrag for n in call.notifies if n.sipfrag]
    if frags:
        rows.append(Verdict("notify_sipfrag", Result.YES, f"{len(call.notifies)} NOTIFY: " + ", ".join(frags)))
    elif call.notifies:
        rows.append(Verdict("notify_sipfrag", Result.NO, f"{len(call.notifies)} NOTIFY without a sipfrag"))
    elif not call.refer_sub:
        rows.append(Verdict("notify_sipfrag", Result.NOT_TESTED, "Refer-Sub: false asked for none"))
    else:
        rows.append(Verdict("notify_sipfrag", Result.NO, "no NOTIFY came"))
    if not call.refer_sub:
        honoured = (call.refer_sub_answer or "").strip().lower() == "false" and not call.notifies
        rows.append(Verdict("refer_sub_honoured", Result.YES if honoured else Result.NO,
                            f"2xx Refer-Sub: {call.refer_sub_answer or '(none)'}, {len(call.notifies)} NOTIFY"))
    if call.outcome == "succeeded":
        rows.append(Verdict("transfer_completed", Result.YES, f"final sipfrag {call.outcome_status} "
                            f"{call.outcome_reason}".rstrip()))
    elif call.outcome == "unconfirmed":
        rows.append(Verdict("transfer_completed", Result.UNKNOWN, "Refer-Sub: false: the 2xx is all there is"))
    elif isinstance(call.outcome_status, int):
        rows.append(Verdict("transfer_completed", Result.NO, f"final sipfrag {call.outcome_status} "
                            f"{call.outcome_reason}".rstrip()))
    else:
        rows.append(Verdict("transfer_completed", Result.NO, f"{call.outcome_status}: {call.outcome_reason}"))
    return rows


def judge(profile: str, options: OptionsSeen, call: CallSeen | None) -> ProbeReport:
    verdicts = options_verdicts(options)
    if call is not None:
        verdicts += call_verdicts(call)
    conclusion, recommendation = _recommend(options, call)
    return ProbeReport(profile, options, call, verdicts, conclusion, recommendation)


_REFER_FIRST = ["refer", "invite"]
_INVITE_ONLY = ["invite"]


def _recommend(options: OptionsSeen, call: CallSeen | None) -> tuple[Conclusion, Recommendation]:
    norefersub = "norefersub" in options.supported
    if call is None:
        if not isinstance(options.status, int):
            return Conclusion.INCONCLUSIVE, Recommendation(None, None, _INVITE_ONLY,
                                                           "the carrier did not answer OPTIONS")
        if not 200 <= options.status < 300:  # a challenge's or an error's Allow is no answer
            return Conclusion.INCONCLUSIVE, Recommendation(
                None, None, _INVITE_ONLY, f"the carrier answered OPTIONS {options.status}: --call NUMBER tries a REFER")
        if options.allow_present and "REFER" not in options.allow:
            return Conclusion.REFER_UNUSABLE, Recommendation(
                False, None, _INVITE_ONLY, "REFER is not in the carrier's Allow: transfer by INVITE")
        if options.allow_present:
            return Conclusion.REFER_WORKS, Recommendation(
                True, True, _REFER_FIRST, "REFER is in Allow (not yet tried: --call NUMBER tries it)")
        return Conclusion.INCONCLUSIVE, Recommendation(
            None, None, _REFER_FIRST, "OPTIONS has no Allow header: --call NUMBER tries a REFER")
    if not (isinstance(call.invite_status, int) and 200 <= call.invite_status < 300):
        return Conclusion.INCONCLUSIVE, Recommendation(None, None, _INVITE_ONLY,
                                                       "the test call was not answered, so no REFER was tried")
    status = call.refer_status
    if not (isinstance(status, int) and 200 <= status < 300):
        why = f"the carrier answered REFER {status}" if isinstance(status, int) else \
            f"the carrier did not answer the REFER ({status})"
        if status == 420 and not call.refer_sub:
            # RFC 4488 4: 420 to our Require: norefersub - it says nothing of REFER itself
            return Conclusion.INCONCLUSIVE, Recommendation(
                None, True, _REFER_FIRST, "420 to Require: norefersub: keep refer_sub: true "
                "and probe again with --refer-sub")
        return Conclusion.REFER_UNUSABLE, Recommendation(False, None, _INVITE_ONLY, why + ": transfer by INVITE")
    if call.outcome == "succeeded":
        return Conclusion.REFER_WORKS, Recommendation(
            True, True, _REFER_FIRST, "REFER accepted and the final NOTIFY reported "
            f"{call.outcome_status}; keep INVITE as the fallback")
    if call.outcome == "unconfirmed":
        return Conclusion.REFER_WORKS, Recommendation(
            True, False, _REFER_FIRST, "accepted with Refer-Sub: false: voicegw learns nothing after the 2xx")
    if isinstance(call.outcome_status, int):
        # the carrier reported the target's answer: REFER works, the target did not
        return Conclusion.REFER_WORKS, Recommendation(
            True, True, _REFER_FIRST, f"REFER works; the target answered {call.outcome_status} "
            f"{call.outcome_reason} (try a number that answers)".replace("  ", " "))
    # a 2xx and then no final sipfrag: the half implementation
    also = (" (it supports norefersub: refer_sub: false would take the 2xx as the hand-off, "
            "blind to failures)") if norefersub else ""
    return Conclusion.REFER_UNUSABLE, Recommendation(
        False, None, _INVITE_ONLY, "accepted but never reported the outcome (no final NOTIFY): voicegw "
        f"would wait notify_final and fall back; transfer by INVITE{also}")
