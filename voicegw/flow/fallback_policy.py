"""The fallback policy of an agent transfer: what the flow says to do when a transfer
fails. Plain frozen dataclasses, validated here, that a flow's agent_transfer node
carries (flow/runner.py) and the fallback machine (engine/fallback.py) follows; the
config layer builds them from YAML and turns :class:`FallbackConfigError` into
file/line messages (config/convert.py). Pure: no clock, no I/O.

Rules are matched by the most specific key: the exact code (``486``), then the class
(``4xx``), then a named condition (``timeout``, ``policy``, ``no_final``,
``declined`` = 603/607/608, ``no_answer`` = 408/480 or our ring timeout (which a
``timeout`` rule takes when there is no ``no_answer`` rule), ``cancelled``, ``auth`` (the carrier's digest challenge could not be answered),
``dns`` (the target's name did not resolve), ``no_agent`` (no desk agent available)),
then the default rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

RuleAction = Literal["goto", "end", "retry", "next"]
ACTIONS: tuple[str, ...] = ("goto", "end", "retry", "next")

#: Named match keys and the statuses they cover (besides themselves as a status).
NAMED_MATCHES: dict[str, frozenset[int]] = {
    "timeout": frozenset(),  # nothing final within the configured time
    "policy": frozenset(),  # target refused by the allow-list; never left the box
    "no_final": frozenset(),  # REFER subscription ended without a final sipfrag
    "declined": frozenset({603, 607, 608}),  # Decline, Unwanted (RFC 8197), Rejected (RFC 8688)
    "no_answer": frozenset({408, 480}),  # Request Timeout, Temporarily Unavailable
    "cancelled": frozenset(),  # an operator (API, CLI) or the flow cancelled a warm transfer
    # the outgoing leg never got past the carrier's digest challenge (RFC 3261 22.2):
    # a wrong password, a third challenge, an algorithm or qop we cannot answer
    "auth": frozenset(),
    # the target's name did not resolve (RFC 3263: NXDOMAIN, no usable record, a DNS timeout)
    "dns": frozenset(),
    # a desk:AGENT or desk:QUEUE target with nobody available to ring (voicegw/desk/)
    "no_agent": frozenset(),
}
#: Statuses that are not SIP codes.
NAMED_STATUSES = frozenset(NAMED_MATCHES)
DEFAULT_MATCH = "default"
EXHAUSTED_MATCH = "exhausted"

_CODE_RE = re.compile(r"[3-6][0-9][0-9]\Z")
_CLASS_RE = re.compile(r"[3-6]xx\Z")

Status = int | str
"""A failure's status: a SIP code 300-699 or one of NAMED_STATUSES."""


class FallbackConfigError(ValueError):
    """A rule that cannot work. ``path`` names the field (``rules[2].node``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Prompt:
    """Audio for the caller: a file, or text for the TTS engine (exactly one)."""

    file: str | None = None
    text: str | None = None

    def validate(self, path: str) -> None:
        if (self.file is None) == (self.text is None):
            raise FallbackConfigError(path, "a prompt needs exactly one of file or text")
        if not (self.file or self.text or "").strip():
            raise FallbackConfigError(path, "empty prompt")


@dataclass(frozen=True, slots=True)
class FallbackRule:
    """``match`` -> optional ``prompt``, then ``action``."""

    match: str
    """``486``, ``4xx``, a named key (NAMED_MATCHES) or ``default``."""
    action: RuleAction
    prompt: Prompt | None = None
    """Played first (the error prompt)."""
    node: str | None = None
    """The flow node for ``goto`` (required there, refused elsewhere)."""
    max_attempts: int = 1
    """For ``retry``/``next``: how many new attempts this rule may start."""
    end_message: Prompt | None = None
    """For ``end``: played after ``prompt``, just before the BYE."""

    def validate(self, path: str) -> None:
        key = self.match
        if not (_CODE_RE.match(key) or _CLASS_RE.match(key) or key in NAMED_MATCHES
                or key in (DEFAULT_MATCH, EXHAUSTED_MATCH)):
            raise FallbackConfigError(
                f"{path}.match",
                f"unknown match key {key!r} (expected a code 300-699, 3xx/4xx/5xx/6xx, "
                f"{', '.join(NAMED_MATCHES)} or {DEFAULT_MATCH})",
            )
        if self.action not in ACTIONS:
            raise FallbackConfigError(
                f"{path}.action", f"unknown action {self.action!r} (expected {', '.join(ACTIONS)})"
            )
        if self.action == "goto" and not self.node:
            raise FallbackConfigError(f"{path}.node", "goto needs a node")
        if self.action != "goto" and self.node is not None:
            raise FallbackConfigError(f"{path}.node", f"node is only for goto, not {self.action}")
        if self.end_message is not None and self.action != "end":
            raise FallbackConfigError(f"{path}.end_message", "end_message is only for end")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise FallbackConfigError(f"{path}.max_attempts", "must be a whole number >= 1")
        if self.prompt is not None:
            self.prompt.validate(f"{path}.prompt")
        if self.end_message is not None:
            self.end_message.validate(f"{path}.end_message")


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    """The rules of one agent_transfer node (or a profile's default)."""

    rules: tuple[FallbackRule, ...]
    default: FallbackRule
    max_total_attempts: int = 3
    """Attempts in all, the first included."""
    on_exhausted: FallbackRule | None = None
    """When a retry/next is over a limit or no attempt is left: ``goto`` or ``end``.
    None: the default rule, which must then be ``goto`` or ``end`` itself."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        seen: dict[str, int] = {}
        for index, rule in enumerate(self.rules):
            path = f"rules[{index}]"
            rule.validate(path)
            if rule.match in (DEFAULT_MATCH, EXHAUSTED_MATCH):
                raise FallbackConfigError(f"{path}.match", f"use the policy's {rule.match} field")
            if rule.match in seen:
                raise FallbackConfigError(
                    f"{path}.match", f"duplicate of rules[{seen[rule.match]}] ({rule.match!r})"
                )
            seen[rule.match] = index
        self.default.validate("default")
        if not isinstance(self.max_total_attempts, int) or self.max_total_attempts < 1:
            raise FallbackConfigError("max_total_attempts", "must be a whole number >= 1")
        final = self.exhausted_rule
        path = "on_exhausted" if self.on_exhausted is not None else "default"
        if self.on_exhausted is not None:
            self.on_exhausted.validate(path)
        if final.action not in ("goto", "end"):
            raise FallbackConfigError(
                f"{path}.action",
                "what to do when attempts run out must be goto or end"
                + ("" if self.on_exhausted is not None else " (or set on_exhausted)"),
            )

    @property
    def exhausted_rule(self) -> FallbackRule:
        return self.on_exhausted if self.on_exhausted is not None else self.default

    def match(self, status: Status) -> tuple[FallbackRule, str]:
        """The rule for ``status`` and how it matched: exact > class > named > default."""
        by_key = {rule.match: rule for rule in self.rules}
        if isinstance(status, int):
            exact = by_key.get(str(status))
            if exact is not None:
                return exact, "exact"
            klass = by_key.get(f"{status // 100}xx")
            if klass is not None:
                return klass, "class"
            for name, codes in NAMED_MATCHES.items():
                if status in codes and name in by_key:
                    return by_key[name], "named"
        elif status in by_key:
            return by_key[status], "named"
        elif status == "no_answer" and "timeout" in by_key:
            return by_key["timeout"], "named"  # a ring timeout is a timeout too
        return self.default, "default"


APOLOGY = Prompt(text="Sorry, we could not connect you to an agent.")


def default_policy(on_failure: str | None) -> FallbackPolicy:
    """An agent_transfer node without rules: apologise, then its on_failure (or the end)."""
    if on_failure:
        rule = FallbackRule("default", "goto", prompt=APOLOGY, node=on_failure)
    else:
        rule = FallbackRule("default", "end", prompt=APOLOGY)
    return FallbackPolicy(rules=(), default=rule)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One way to transfer: a method and a target."""

    method: str
    """``"refer"``, ``"invite"`` or ``"bye"``."""
    target: str
    """A SIP/tel URI or a number, as the engine understands it."""


__all__ = [
    "ACTIONS",
    "APOLOGY",
    "DEFAULT_MATCH",
    "EXHAUSTED_MATCH",
    "NAMED_MATCHES",
    "NAMED_STATUSES",
    "Attempt",
    "FallbackConfigError",
    "FallbackPolicy",
    "FallbackRule",
    "Prompt",
    "RuleAction",
    "Status",
    "default_policy",
]
