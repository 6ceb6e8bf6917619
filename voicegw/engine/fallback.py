"""The transfer fallback state machine: what happens to the caller when a transfer fails.

How this works
--------------
One :class:`FallbackMachine` follows one agent transfer. It starts the first attempt
(a method and a target), and the engine reports each attempt's outcome:
:meth:`~FallbackMachine.succeeded`, :meth:`~FallbackMachine.failed` with a status
(a SIP code 300-699, or ``timeout``, ``policy``, ``no_final``, ``no_answer``,
``declined``, ``cancelled``, ``auth``, ``dns``), and :meth:`~FallbackMachine.prompt_finished` when a prompt it asked
for has played. Each call returns the actions for the engine to carry out, in order
(:class:`PlayPrompt`, :class:`StartAttempt`, :class:`GoToNode`, :class:`EndCall`),
and appends to :attr:`~FallbackMachine.record` what was decided and why.

The machine is ``TABLE``: ``(state, input) -> (actions, next state)``, in the h11/h2
style. Inputs are the three above plus the *decision inputs* the matched rule feeds
in FAILED and, once its prompt has played, in PROMPTING::

    IDLE --START--> TRANSFERRING --SUCCEEDED--> CONNECTED
                      ^     |
                      |     +--FAILED--> FAILED --(rule) PROMPT--> PROMPTING --PROMPT_FINISHED--+
                      |                    |                          |      (the rule's action)|
                      +--START-- RETRYING <+--RETRY / NEXT------------+<------------------------+
                                           +--GOTO--------------------+--> GOTO
                                           +--END---------------------+--> DONE        (EndCall)
                                           +--END_MESSAGE-------------+--> ENDING --PROMPT_FINISHED--> DONE

FAILED and RETRYING are decision points: the machine passes through them inside one
call, so they show in the record but never wait for input. Every (state, input)
pair is either a row of ``TABLE``, or listed in ``IGNORED`` (a stale input: the late
outcome of an attempt already given up on, a prompt ending while none was asked
for), or **invalid**: :class:`FallbackError` (a bug of the caller).

Rules. A :class:`FallbackPolicy` (per agent_transfer node, with a profile default)
holds rules matched by the most specific key: the exact code (``486``), then the
class (``4xx``), then a named condition (``timeout``, ``policy``, ``no_final``,
``declined`` = 603/607/608, ``no_answer`` = 408/480 or our ring timeout), then the
default rule. A rule says: optionally play a prompt, then ``goto`` a node, ``end``
(optionally with an end message, then BYE), ``retry`` the same attempt, or try the
``next`` attempt of the ordered list (REFER answered 405/501 -> INVITE bridge).

Limits, so it can never loop: a rule triggers at most ``max_attempts`` new attempts
and the transfer makes at most ``max_total_attempts`` attempts in all. A retry/next
over a limit, or a ``next`` with no attempt left, applies the policy's
``on_exhausted`` rule, which must be ``goto`` or ``end``. So the machine ends in
CONNECTED, GOTO or DONE after at most ``max_total_attempts`` failures, and it only
ever emits :class:`EndCall` for an ``end`` rule or an ``on_exhausted`` that says
``end``: a failed transfer never drops the caller by itself.

Pure: no clock, no I/O; the policy and its rules are plain dataclasses in
:mod:`voicegw.flow.fallback_policy` (a flow's agent_transfer node carries them; the
config layer builds them from YAML).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..flow.fallback_policy import (
    EXHAUSTED_MATCH,
    NAMED_STATUSES,
    Attempt,
    FallbackConfigError,
    FallbackPolicy,
    FallbackRule,
    Prompt,
    RuleAction,
    Status,
)

# =====================================================================================
# Actions for the engine, and the record
# =====================================================================================


@dataclass(frozen=True, slots=True)
class StartAttempt:
    """Start a transfer attempt; report its outcome with succeeded()/failed()."""

    number: int
    """1 for the first attempt."""
    method: str
    target: str


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Play a prompt to the caller; call prompt_finished() when it has played."""

    prompt: Prompt
    purpose: Literal["error", "end"]
    """``error``: the rule's prompt; ``end``: the end message before the BYE."""


@dataclass(frozen=True, slots=True)
class GoToNode:
    """Continue the call's flow at ``node``; the machine is done."""

    node: str


@dataclass(frozen=True, slots=True)
class EndCall:
    """End the call (BYE); only for an explicit ``end`` rule or exhausted attempts."""

    reason: str


FallbackAction = StartAttempt | PlayPrompt | GoToNode | EndCall


@dataclass(frozen=True, slots=True)
class FallbackDecision:
    """What was decided about one failure, and why (for the call record)."""

    attempt: int
    """The attempt that failed."""
    method: str
    target: str
    status: Status
    rule: str
    """The matched rule's key (``486``, ``4xx``, ``timeout``, ``default``) or ``exhausted``."""
    how: Literal["exact", "class", "named", "default", "exhausted"]
    action: RuleAction
    why: str
    """One line for people: ``486 matched rule '4xx' (class): retry``."""


# =====================================================================================
# The machine
# =====================================================================================


class FallbackState(enum.Enum):
    IDLE = "idle"  # made, no attempt yet
    TRANSFERRING = "transferring"  # an attempt is under way
    CONNECTED = "connected"  # the attempt succeeded (final)
    FAILED = "failed"  # decision point: a failure is being matched to a rule
    PROMPTING = "prompting"  # the rule's prompt plays; its action waits
    RETRYING = "retrying"  # decision point: another attempt was decided
    GOTO = "goto"  # the flow continues at a node (final)
    ENDING = "ending"  # the end message plays; the BYE follows
    DONE = "done"  # EndCall emitted (final)


class FallbackInput(enum.Enum):
    # from the engine
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PROMPT_FINISHED = "prompt finished"
    # decision inputs, fed by the machine itself from the matched rule
    START = "start an attempt"
    PROMPT = "rule has a prompt"
    GOTO = "rule: goto"
    END = "rule: end"
    END_MESSAGE = "rule: end, with an end message"
    RETRY = "rule: retry"
    NEXT = "rule: next"


class Act(enum.Enum):
    START_ATTEMPT = enum.auto()
    PLAY_ERROR_PROMPT = enum.auto()
    PLAY_END_MESSAGE = enum.auto()
    GO_TO_NODE = enum.auto()
    END_CALL = enum.auto()
    DECIDE = enum.auto()  # match the failure to a rule; feeds a decision input
    RUN_PENDING = enum.auto()  # feed the rule's action, held while its prompt played


S, I = FallbackState, FallbackInput

#: What a rule's action does, from FAILED (no prompt) or PROMPTING (prompt played).
_ACTION_ROWS: dict[FallbackInput, tuple[tuple[Act, ...], FallbackState]] = {
    I.GOTO: ((Act.GO_TO_NODE,), S.GOTO),
    I.END: ((Act.END_CALL,), S.DONE),
    I.END_MESSAGE: ((Act.PLAY_END_MESSAGE,), S.ENDING),
    I.RETRY: ((), S.RETRYING),  # then START, limits already checked
    I.NEXT: ((), S.RETRYING),
}

TABLE: dict[tuple[FallbackState, FallbackInput], tuple[tuple[Act, ...], FallbackState]] = {
    (S.IDLE, I.START): ((Act.START_ATTEMPT,), S.TRANSFERRING),
    (S.TRANSFERRING, I.SUCCEEDED): ((), S.CONNECTED),
    (S.TRANSFERRING, I.FAILED): ((Act.DECIDE,), S.FAILED),
    (S.FAILED, I.PROMPT): ((Act.PLAY_ERROR_PROMPT,), S.PROMPTING),
    **{(S.FAILED, i): row for i, row in _ACTION_ROWS.items()},
    (S.PROMPTING, I.PROMPT_FINISHED): ((Act.RUN_PENDING,), S.PROMPTING),
    **{(S.PROMPTING, i): row for i, row in _ACTION_ROWS.items()},
    (S.RETRYING, I.START): ((Act.START_ATTEMPT,), S.TRANSFERRING),
    (S.ENDING, I.PROMPT_FINISHED): ((Act.END_CALL,), S.DONE),
}

#: Stale inputs, recorded and otherwise ignored. An attempt's late outcome after we
#: gave up on it (a NOTIFY 200 after our timeout), a duplicate outcome, a prompt
#: ending while no prompt of ours plays (hold music during an attempt).
IGNORED: frozenset[tuple[FallbackState, FallbackInput]] = frozenset(
    {(state, i) for state in (S.CONNECTED, S.PROMPTING, S.GOTO, S.ENDING, S.DONE)
     for i in (I.SUCCEEDED, I.FAILED)}
    | {(state, I.PROMPT_FINISHED) for state in (S.IDLE, S.TRANSFERRING, S.CONNECTED, S.GOTO, S.DONE)}
)
"""Everything neither in TABLE nor here is invalid (FallbackError): an outcome before
the first attempt, an input while the machine is at a decision point."""

EXTERNAL_INPUTS = (I.SUCCEEDED, I.FAILED, I.PROMPT_FINISHED)
FINAL_STATES = frozenset({S.CONNECTED, S.GOTO, S.DONE})


class FallbackError(Exception):
    """An input the machine cannot take in its state (a bug of the caller)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of the machine, for the call record."""

    state: FallbackState
    input: FallbackInput
    next_state: FallbackState
    note: str = ""


@dataclass(eq=False)
class FallbackMachine:
    """Follows one transfer and its fallback; see the module docstring."""

    policy: FallbackPolicy
    attempts: Sequence[Attempt]
    """Ordered: the first is tried first, ``next`` moves along the list."""
    state: FallbackState = field(default=FallbackState.IDLE, init=False)
    record: list[FallbackDecision] = field(default_factory=list, init=False)
    """Every failure and what was done about it."""
    transitions: list[Transition] = field(default_factory=list, init=False)
    """Every step taken, ignored inputs included (note ``ignored``)."""
    _attempt_count: int = field(default=0, init=False)
    _index: int = field(default=0, init=False)  # the attempt under way (or last)
    _target_index: int = field(default=0, init=False)  # the attempt START begins
    _rule_uses: dict[str, int] = field(default_factory=dict, init=False)
    _rule: FallbackRule | None = field(default=None, init=False)
    _pending: FallbackInput | None = field(default=None, init=False)  # held during a prompt

    def __post_init__(self) -> None:
        if not self.attempts:
            raise FallbackConfigError("attempts", "at least one method and target")

    # --- views --------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def attempt_count(self) -> int:
        return self._attempt_count

    @property
    def current_attempt(self) -> Attempt:
        return self.attempts[self._index]

    # --- inputs from the engine ------------------------------------------------------
    def start(self) -> list[FallbackAction]:
        """The first attempt."""
        return self._feed(I.START)

    def succeeded(self) -> list[FallbackAction]:
        return self._feed(I.SUCCEEDED)

    def failed(self, status: Status) -> list[FallbackAction]:
        """The current attempt failed with ``status`` (300-699 or a NAMED_STATUSES key)."""
        if isinstance(status, bool) or not (
            (isinstance(status, int) and 300 <= status <= 699) or status in NAMED_STATUSES
        ):
            raise FallbackError(f"bad failure status {status!r}")
        return self._feed(I.FAILED, status)

    def prompt_finished(self) -> list[FallbackAction]:
        return self._feed(I.PROMPT_FINISHED)

    # --- the one place where the table is applied -----------------------------------
    def _feed(self, event: FallbackInput, status: Status | None = None) -> list[FallbackAction]:
        out: list[FallbackAction] = []
        queue: list[FallbackInput] = [event]
        while queue:
            current = queue.pop(0)
            row = TABLE.get((self.state, current))
            if row is None:
                if (self.state, current) in IGNORED:
                    self.transitions.append(Transition(self.state, current, self.state, "ignored"))
                    continue
                raise FallbackError(f"{current.value} is invalid in state {self.state.value}")
            acts, next_state = row
            before = self.state
            self.state = next_state
            note = ""
            for act in acts:
                follow = self._perform(act, status, out)
                if follow is not None:
                    queue.append(follow)
                    note = follow.value
            self.transitions.append(Transition(before, current, next_state, note))
            if next_state is S.RETRYING:
                queue.append(I.START)
        return out

    def _perform(self, act: Act, status: Status | None, out: list[FallbackAction]) -> FallbackInput | None:
        if act is Act.START_ATTEMPT:
            self._attempt_count += 1
            self._index = self._target_index
            attempt = self.attempts[self._index]
            out.append(StartAttempt(self._attempt_count, attempt.method, attempt.target))
        elif act is Act.DECIDE:
            assert status is not None
            return self._decide(status)
        elif act is Act.PLAY_ERROR_PROMPT:
            assert self._rule is not None and self._rule.prompt is not None
            out.append(PlayPrompt(self._rule.prompt, "error"))
        elif act is Act.RUN_PENDING:
            pending, self._pending = self._pending, None
            assert pending is not None
            return pending
        elif act is Act.PLAY_END_MESSAGE:
            assert self._rule is not None and self._rule.end_message is not None
            out.append(PlayPrompt(self._rule.end_message, "end"))
        elif act is Act.GO_TO_NODE:
            assert self._rule is not None and self._rule.node is not None
            out.append(GoToNode(self._rule.node))
        elif act is Act.END_CALL:
            assert self._rule is not None
            decision = self.record[-1]
            out.append(EndCall(f"transfer failed ({decision.status}): {decision.why}"))
        return None

    def _decide(self, status: Status) -> FallbackInput:
        """Match ``status`` to a rule, apply the limits, and say what the rule does."""
        rule, how = self.policy.match(status)
        why = f"{status} matched rule {rule.match!r} ({how}): {rule.action}"
        final_how: Literal["exact", "class", "named", "default", "exhausted"] = how  # type: ignore[assignment]
        if rule.action in ("retry", "next"):
            uses = self._rule_uses.get(rule.match, 0)
            next_index = self._index + 1 if rule.action == "next" else self._index
            limit = None
            if uses >= rule.max_attempts:
                limit = f"rule {rule.match!r} used {uses} of {rule.max_attempts} times"
            elif self._attempt_count >= self.policy.max_total_attempts:
                limit = f"{self._attempt_count} of {self.policy.max_total_attempts} attempts made"
            elif next_index >= len(self.attempts):
                limit = "no next method or target"
            if limit is None:
                self._rule_uses[rule.match] = uses + 1
                self._target_index = next_index
            else:
                why = f"{why}, but {limit}: {self.policy.exhausted_rule.action}"
                rule, final_how = self.policy.exhausted_rule, "exhausted"
        attempt = self.current_attempt
        self.record.append(FallbackDecision(
            attempt=self._attempt_count, method=attempt.method, target=attempt.target,
            status=status, rule=rule.match if final_how != "exhausted" else EXHAUSTED_MATCH,
            how=final_how, action=rule.action, why=why,
        ))
        self._rule = rule
        action = _RULE_INPUT[rule.action]
        if rule.action == "end" and rule.end_message is not None:
            action = I.END_MESSAGE
        if rule.prompt is not None:
            self._pending = action
            return I.PROMPT
        return action


_RULE_INPUT: dict[str, FallbackInput] = {
    "goto": I.GOTO, "end": I.END, "retry": I.RETRY, "next": I.NEXT,
}


__all__ = [
    "EXTERNAL_INPUTS",
    "FINAL_STATES",
    "IGNORED",
    "TABLE",
    "EndCall",
    "FallbackAction",
    "FallbackDecision",
    "FallbackError",
    "FallbackInput",
    "FallbackMachine",
    "FallbackState",
    "GoToNode",
    "PlayPrompt",
    "StartAttempt",
    "Transition",
]
