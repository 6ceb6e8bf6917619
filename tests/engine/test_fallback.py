"""The transfer fallback machine: its table, rule precedence, limits, and that a failed
transfer never drops the caller unless a rule says so."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicegw.engine.fallback import (
    EXTERNAL_INPUTS,
    FINAL_STATES,
    IGNORED,
    TABLE,
    EndCall,
    FallbackDecision,
    FallbackError,
    FallbackInput,
    FallbackMachine,
    FallbackState,
    GoToNode,
    PlayPrompt,
    StartAttempt,
)
from voicegw.flow.fallback_policy import (
    NAMED_STATUSES,
    Attempt,
    FallbackConfigError,
    FallbackPolicy,
    FallbackRule,
    Prompt,
)

SORRY = Prompt(text="Sorry, nobody can take your call right now.")
HOLD = Prompt(file="prompts/hold_on.wav")
BYE = Prompt(text="Goodbye.")

REFER = Attempt("refer", "sip:+4930123@carrier.example")
INVITE = Attempt("invite", "sip:+4930123@carrier.example")
QUEUE2 = Attempt("invite", "sip:queue2@pbx.example")


def policy(*rules: FallbackRule, default: FallbackRule | None = None, total: int = 3,
           on_exhausted: FallbackRule | None = None) -> FallbackPolicy:
    return FallbackPolicy(
        rules=rules,
        default=default or FallbackRule("default", "goto", prompt=SORRY, node="apology"),
        max_total_attempts=total,
        on_exhausted=on_exhausted,
    )


def machine(p: FallbackPolicy, *attempts: Attempt) -> FallbackMachine:
    m = FallbackMachine(p, attempts or (REFER, INVITE))
    assert m.start() == [StartAttempt(1, m.attempts[0].method, m.attempts[0].target)]
    return m


# --- the table --------------------------------------------------------------------------


def test_every_state_input_pair_is_a_row_ignored_or_invalid() -> None:
    # the three lists never overlap, and the external inputs are covered in every state
    assert not (set(TABLE) & IGNORED)
    for state in FallbackState:
        for event in EXTERNAL_INPUTS:
            pair = (state, event)
            kind = "row" if pair in TABLE else "ignored" if pair in IGNORED else "invalid"
            # invalid only where it cannot happen: before the first attempt, or at a
            # decision point the machine never rests in
            if kind == "invalid":
                assert state in (FallbackState.IDLE, FallbackState.FAILED, FallbackState.RETRYING), pair
    # final states have no rows: nothing leaves them
    assert not [pair for pair in TABLE if pair[0] in FINAL_STATES]


@pytest.mark.parametrize("state", list(FallbackState))
@pytest.mark.parametrize("event", EXTERNAL_INPUTS)
def test_external_inputs_in_every_state(state: FallbackState, event: FallbackInput) -> None:
    m = FallbackMachine(policy(FallbackRule("486", "retry"), total=5), (REFER, INVITE))
    m.state = state
    # a state that needs context gets it
    m._rule = FallbackRule("486", "end", prompt=SORRY, end_message=BYE)
    m._pending = FallbackInput.END_MESSAGE
    m.record.append(FallbackDecision(1, "refer", REFER.target, 486, "486", "exact", "end", "test"))
    call = {
        FallbackInput.SUCCEEDED: m.succeeded,
        FallbackInput.FAILED: lambda: m.failed(486),
        FallbackInput.PROMPT_FINISHED: m.prompt_finished,
    }[event]
    pair = (state, event)
    if pair in TABLE:
        call()
        # the row was taken (decision inputs may follow it within the same call)
        step = m.transitions[0]
        assert (step.state, step.input, step.next_state) == (state, event, TABLE[pair][1])
    elif pair in IGNORED:
        assert call() == []
        assert m.state is state and m.transitions[-1].note == "ignored"
    else:
        with pytest.raises(FallbackError):
            call()
        assert m.state is state


def test_success_connects() -> None:
    m = machine(policy())
    assert m.succeeded() == []
    assert m.state is FallbackState.CONNECTED and m.finished and m.record == []
    # a late or duplicate outcome changes nothing
    assert m.failed(486) == [] and m.succeeded() == [] and m.state is FallbackState.CONNECTED


def test_start_twice_and_bad_statuses_are_errors() -> None:
    m = machine(policy())
    with pytest.raises(FallbackError):
        m.start()
    for bad in (200, 99, 700, "busy", True):
        with pytest.raises(FallbackError):
            m.failed(bad)  # type: ignore[arg-type]


# --- rule precedence -----------------------------------------------------------------------

PRECEDENCE = policy(
    FallbackRule("no_answer", "goto", node="n-named"),
    FallbackRule("4xx", "goto", node="n-class"),
    FallbackRule("486", "goto", node="n-exact"),
    FallbackRule("declined", "goto", node="n-declined"),
    FallbackRule("timeout", "goto", node="n-timeout"),
    FallbackRule("policy", "goto", node="n-policy"),
    FallbackRule("6xx", "goto", node="n-6xx"),
    default=FallbackRule("default", "goto", node="n-default"),
)


@pytest.mark.parametrize("status, node, how", [
    (486, "n-exact", "exact"),  # exact beats class
    (404, "n-class", "class"),
    (408, "n-class", "class"),  # class beats named (no_answer covers 408)
    (480, "n-class", "class"),
    (603, "n-6xx", "class"),  # class beats named (declined covers 603)
    (503, "n-default", "default"),
    (302, "n-default", "default"),
    ("timeout", "n-timeout", "named"),
    ("policy", "n-policy", "named"),
    ("no_answer", "n-named", "named"),
    ("no_final", "n-default", "default"),
])
def test_precedence_exact_class_named_default(status: int | str, node: str, how: str) -> None:
    m = machine(PRECEDENCE)
    assert m.failed(status) == [GoToNode(node)]
    assert m.state is FallbackState.GOTO
    decision = m.record[-1]
    assert (decision.status, decision.how, decision.action) == (status, how, "goto")


def test_named_keys_cover_their_codes_when_nothing_more_specific_matches() -> None:
    p = policy(FallbackRule("declined", "goto", node="d"), FallbackRule("no_answer", "goto", node="na"))
    assert machine(p).failed(603) == [GoToNode("d")]
    assert machine(p).failed(608) == [GoToNode("d")]
    assert machine(p).failed(480) == [GoToNode("na")]
    assert machine(p).failed("declined") == [GoToNode("d")]


# --- actions ---------------------------------------------------------------------------------


def test_prompt_then_goto() -> None:
    m = machine(policy(FallbackRule("486", "goto", prompt=SORRY, node="menu")))
    assert m.failed(486) == [PlayPrompt(SORRY, "error")]
    assert m.state is FallbackState.PROMPTING
    assert m.succeeded() == [] and m.failed(503) == []  # stale outcomes while prompting
    assert m.prompt_finished() == [GoToNode("menu")]
    assert m.state is FallbackState.GOTO
    assert m.record[-1].why == "486 matched rule '486' (exact): goto"


def test_end_with_prompt_and_end_message_then_bye() -> None:
    m = machine(policy(FallbackRule("5xx", "end", prompt=SORRY, end_message=BYE)))
    assert m.failed(503) == [PlayPrompt(SORRY, "error")]
    assert m.prompt_finished() == [PlayPrompt(BYE, "end")]
    assert m.state is FallbackState.ENDING
    [end] = m.prompt_finished()
    assert isinstance(end, EndCall) and "503" in end.reason
    assert m.state is FallbackState.DONE


def test_end_without_prompts_ends_at_once() -> None:
    m = machine(policy(FallbackRule("6xx", "end")))
    [end] = m.failed(600)
    assert isinstance(end, EndCall) and m.state is FallbackState.DONE


def test_refer_405_501_falls_to_invite_bridge() -> None:
    p = policy(FallbackRule("405", "next"), FallbackRule("501", "next"))
    for code in (405, 501):
        m = machine(p)
        assert m.failed(code) == [StartAttempt(2, "invite", INVITE.target)]
        assert m.state is FallbackState.TRANSFERRING
        assert m.succeeded() == [] and m.state is FallbackState.CONNECTED
        assert [t.state for t in m.transitions] == [
            FallbackState.IDLE, FallbackState.TRANSFERRING, FallbackState.FAILED,
            FallbackState.RETRYING, FallbackState.TRANSFERRING,
        ]


def test_retry_with_prompt_restarts_the_same_attempt() -> None:
    m = machine(policy(FallbackRule("486", "retry", prompt=HOLD, max_attempts=1)), INVITE, QUEUE2)
    assert m.failed(486) == [PlayPrompt(HOLD, "error")]
    assert m.prompt_finished() == [StartAttempt(2, "invite", INVITE.target)]


# --- limits -------------------------------------------------------------------------------------


def test_per_rule_limit_then_on_exhausted() -> None:
    p = policy(FallbackRule("486", "retry", prompt=HOLD, max_attempts=2), total=10,
               on_exhausted=FallbackRule("exhausted", "goto", prompt=SORRY, node="voicemail"))
    m = machine(p, INVITE)
    for n in (2, 3):
        assert m.failed(486) == [PlayPrompt(HOLD, "error")]
        assert m.prompt_finished() == [StartAttempt(n, "invite", INVITE.target)]
    # the rule is used up: the exhausted rule applies, its own prompt, not "hold on"
    assert m.failed(486) == [PlayPrompt(SORRY, "error")]
    assert m.prompt_finished() == [GoToNode("voicemail")]
    assert m.record[-1].how == "exhausted" and m.record[-1].rule == "exhausted"
    assert "used 2 of 2 times" in m.record[-1].why


def test_total_limit() -> None:
    p = policy(FallbackRule("4xx", "retry", max_attempts=9), FallbackRule("5xx", "retry", max_attempts=9),
               total=3)
    m = machine(p, INVITE)
    assert m.failed(486) == [StartAttempt(2, "invite", INVITE.target)]
    assert m.failed(503) == [StartAttempt(3, "invite", INVITE.target)]
    assert m.failed(404) == [PlayPrompt(SORRY, "error")]  # default: goto apology
    assert m.prompt_finished() == [GoToNode("apology")]
    assert m.attempt_count == 3 and "3 of 3 attempts made" in m.record[-1].why


def test_next_with_no_attempt_left_is_exhausted() -> None:
    m = machine(policy(FallbackRule("405", "next", max_attempts=5), total=5), REFER, INVITE)
    assert m.failed(405) == [StartAttempt(2, "invite", INVITE.target)]
    assert m.failed(405) == [PlayPrompt(SORRY, "error")]
    assert "no next method or target" in m.record[-1].why


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, path, words", [
    ({"rules": (FallbackRule("busy", "goto", node="x"),)}, "rules[0].match", "unknown match key"),
    ({"rules": (FallbackRule("2xx", "end"),)}, "rules[0].match", "unknown match key"),
    ({"rules": (FallbackRule("250", "end"),)}, "rules[0].match", "unknown match key"),
    ({"rules": (FallbackRule("486", "goto"),)}, "rules[0].node", "goto needs a node"),
    ({"rules": (FallbackRule("486", "end", node="x"),)}, "rules[0].node", "only for goto"),
    ({"rules": (FallbackRule("486", "jump"),)}, "rules[0].action", "unknown action"),  # type: ignore[arg-type]
    ({"rules": (FallbackRule("486", "retry", max_attempts=0),)}, "rules[0].max_attempts", ">= 1"),
    ({"rules": (FallbackRule("486", "end"), FallbackRule("486", "retry"))}, "rules[1].match", "duplicate"),
    ({"rules": (FallbackRule("default", "end"),)}, "rules[0].match", "default field"),
    ({"rules": (FallbackRule("486", "goto", node="x", end_message=BYE),)}, "rules[0].end_message", "only for end"),
    ({"rules": (FallbackRule("486", "end", prompt=Prompt()),)}, "rules[0].prompt", "exactly one"),
    ({"rules": (FallbackRule("486", "end", prompt=Prompt(file="a", text="b")),)}, "rules[0].prompt", "exactly one"),
    ({"rules": (FallbackRule("486", "end", prompt=Prompt(text=" ")),)}, "rules[0].prompt", "empty"),
    ({"default": FallbackRule("default", "retry")}, "default.action", "on_exhausted"),
    ({"on_exhausted": FallbackRule("exhausted", "next")}, "on_exhausted.action", "goto or end"),
    ({"max_total_attempts": 0}, "max_total_attempts", ">= 1"),
])
def test_validation_names_the_field(kwargs: dict[str, object], path: str, words: str) -> None:
    fields: dict[str, object] = {"rules": (), "default": FallbackRule("default", "end")}
    fields.update(kwargs)
    with pytest.raises(FallbackConfigError) as info:
        FallbackPolicy(**fields)  # type: ignore[arg-type]
    assert info.value.path == path and words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_retrying_default_is_fine_with_an_explicit_on_exhausted() -> None:
    p = FallbackPolicy((), FallbackRule("default", "retry"), 2, FallbackRule("exhausted", "end", end_message=BYE))
    m = machine(p, INVITE)
    assert m.failed("timeout") == [StartAttempt(2, "invite", INVITE.target)]
    assert m.failed("timeout") == [PlayPrompt(BYE, "end")]
    [end] = m.prompt_finished()
    assert isinstance(end, EndCall)


def test_machine_needs_an_attempt() -> None:
    with pytest.raises(FallbackConfigError):
        FallbackMachine(policy(), ())


# --- the property: always ends, never drops the caller by itself --------------------------------

statuses = st.one_of(st.integers(300, 699), st.sampled_from(sorted(NAMED_STATUSES)))
keys = st.one_of(
    st.integers(300, 699).map(str), st.sampled_from(["3xx", "4xx", "5xx", "6xx"]),
    st.sampled_from(sorted(NAMED_STATUSES)),
)
prompts = st.one_of(st.none(), st.just(SORRY))


@st.composite
def rules(draw: st.DrawFn) -> FallbackRule:
    action = draw(st.sampled_from(["goto", "end", "retry", "next"]))
    return FallbackRule(
        match=draw(keys), action=action, prompt=draw(prompts),
        node="node-" + draw(keys) if action == "goto" else None,
        max_attempts=draw(st.integers(1, 4)),
        end_message=draw(prompts) if action == "end" else None,
    )


@st.composite
def policies(draw: st.DrawFn) -> FallbackPolicy:
    drawn = draw(st.lists(rules(), max_size=8, unique_by=lambda r: r.match))
    default = draw(rules())
    default = FallbackRule("default", default.action, default.prompt, default.node,
                           default.max_attempts, default.end_message)
    on_exhausted = None
    if default.action not in ("goto", "end") or draw(st.booleans()):
        on_exhausted = FallbackRule("exhausted", draw(st.sampled_from(["goto", "end"])), draw(prompts))
        if on_exhausted.action == "goto":
            on_exhausted = FallbackRule("exhausted", "goto", on_exhausted.prompt, node="last-resort")
    return FallbackPolicy(tuple(drawn), default, draw(st.integers(1, 5)), on_exhausted)


@settings(max_examples=300, deadline=None)
@given(policies(), st.lists(st.one_of(statuses, st.just("ok")), min_size=1, max_size=40),
       st.integers(1, 3))
def test_any_failures_end_connected_goto_or_explicit_end_within_the_limit(
    p: FallbackPolicy, outcomes: list[int | str], n_attempts: int
) -> None:
    m = FallbackMachine(p, [Attempt("refer", "a"), Attempt("invite", "b"), Attempt("invite", "c")][:n_attempts])
    actions = m.start()
    failures = 0
    for outcome in outcomes:
        if m.finished:
            break
        assert m.state is FallbackState.TRANSFERRING
        if outcome == "ok":
            actions += m.succeeded()
            continue
        failures += 1
        actions += m.failed(outcome)
        while m.state in (FallbackState.PROMPTING, FallbackState.ENDING):
            actions += m.prompt_finished()
    # never more attempts than allowed, never more failures than attempts
    starts = [a for a in actions if isinstance(a, StartAttempt)]
    assert len(starts) == m.attempt_count <= p.max_total_attempts
    assert failures <= p.max_total_attempts
    ends = [a for a in actions if isinstance(a, EndCall)]
    if m.finished:
        assert m.state in (FallbackState.CONNECTED, FallbackState.GOTO, FallbackState.DONE)
    else:
        assert m.state is FallbackState.TRANSFERRING  # ran out of outcomes mid-way
    if ends:
        # the only way to drop the caller: an explicit end rule or an exhausted one
        assert len(ends) == 1 and actions[-1] is ends[0]
        assert m.state is FallbackState.DONE and m.record[-1].action == "end"
    else:
        assert m.state is not FallbackState.DONE
    if m.state is FallbackState.GOTO:
        assert isinstance(actions[-1], GoToNode)
    # every failure has a decision in the record
    assert len(m.record) == failures


def test_an_operators_cancel_is_its_own_match_key_not_a_server_error() -> None:
    from voicegw.engine.fallback_runner import _fallback_status

    policy = FallbackPolicy(rules=(FallbackRule("5xx", "end"),), default=FallbackRule("default", "goto", node="menu"))
    rule, _how = policy.match(_fallback_status("cancelled"))
    assert (rule.match, rule.action) == ("default", "goto")
    cancelled = FallbackPolicy(rules=(FallbackRule("cancelled", "goto", node="bot"),), default=FallbackRule("default", "end"))
    assert cancelled.match("cancelled")[0].node == "bot"


def test_a_ring_timeout_takes_the_timeout_rule_when_there_is_no_no_answer_rule() -> None:
    """``no_answer`` (our ring timeout) is a timeout too: configs with only a ``timeout``
    rule keep catching it; a ``no_answer`` rule, more specific, wins when there is one."""
    only_timeout = policy(FallbackRule("timeout", "goto", node="t"))
    assert machine(only_timeout).failed("no_answer") == [GoToNode("t")]
    both = policy(FallbackRule("timeout", "goto", node="t"), FallbackRule("no_answer", "goto", node="na"))
    assert machine(both).failed("no_answer") == [GoToNode("na")]
    assert machine(both).failed("timeout") == [GoToNode("t")]
