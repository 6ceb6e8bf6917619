"""The carrier probe's judgement (voicegw/probe/report.py), without the wire: what each
answer a carrier can give means for the verdicts, the conclusion (the CLI's exit
status) and the recommended profile settings; hypothesis over every combination checks
that the three never contradict one another. What crosses the wire is tested in
tests/cli/test_probe_cli.py (sipp carriers) and tests/wire/test_asterisk_probe.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voicegw.probe.report import CallSeen, Conclusion, NotifySeen, OptionsSeen, Result, judge

ALLOW = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REFER", "NOTIFY"]


def options(status=200, allow=ALLOW, supported=("norefersub",), allow_present=True) -> OptionsSeen:
    return OptionsSeen("sip:192.0.2.1", "udp:192.0.2.1:5060", status, "OK", list(allow), allow_present,
                       list(supported), "", 12.0)


def call(**fields) -> CallSeen:
    base = {"dialled": "sip:+4930999@192.0.2.1", "refer_to": "sip:+4930123@192.0.2.1", "refer_sub": True,
            "invite_status": 200, "invite_reason": "OK", "refer_status": 202, "refer_reason": "Accepted"}
    base.update(fields)
    return CallSeen(**base)


def notify(status: int, state: str = "active") -> NotifySeen:
    return NotifySeen(10.0, state, f"SIP/2.0 {status} X", status, 200)


def results(report) -> dict[str, str]:
    return {v.capability: v.result.value for v in report.verdicts}


def test_options_only_refer_in_allow_is_a_tentative_yes() -> None:
    report = judge("telco", options(), None)
    assert results(report) == {"options": "yes", "refer_in_allow": "yes", "norefersub_supported": "yes"}
    assert report.conclusion is Conclusion.REFER_WORKS
    assert "--call" in report.recommendation.why


def test_options_without_allow_says_nothing_about_refer() -> None:
    report = judge("telco", options(allow=(), allow_present=False), None)
    assert results(report)["refer_in_allow"] == "unknown"
    assert report.conclusion is Conclusion.INCONCLUSIVE


def test_no_answer_to_options_is_inconclusive() -> None:
    report = judge("telco", options(status="timeout", allow=(), allow_present=False, supported=()), None)
    assert results(report) == {"options": "no", "refer_in_allow": "unknown", "norefersub_supported": "unknown"}
    assert report.conclusion is Conclusion.INCONCLUSIVE


def test_a_challenge_to_options_is_no_answer_about_refer() -> None:
    report = judge("telco", options(status=407, allow=["INVITE"]), None)
    assert results(report)["refer_in_allow"] == "unknown"
    assert report.conclusion is Conclusion.INCONCLUSIVE and "407" in report.recommendation.why


def test_a_202_is_not_success_only_the_2xx_sipfrag_is() -> None:
    half = judge("telco", options(supported=()), call(notifies=[notify(100)], outcome="failed",
                                                      outcome_status="timeout", outcome_reason="no final"))
    assert results(half)["refer_accepted"] == "yes" and results(half)["transfer_completed"] == "no"
    assert half.conclusion is Conclusion.REFER_UNUSABLE and half.recommendation.refer is False
    done = judge("telco", options(), call(notifies=[notify(100), notify(200, "terminated")],
                                          outcome="succeeded", outcome_status=200, outcome_reason="OK"))
    assert results(done)["transfer_completed"] == "yes"
    assert done.conclusion is Conclusion.REFER_WORKS
    assert done.recommendation.attempts == ["refer", "invite"]


def test_a_busy_target_means_refer_works() -> None:
    report = judge("telco", options(), call(notifies=[notify(486, "terminated")], outcome="failed",
                                            outcome_status=486, outcome_reason="Busy Here"))
    assert report.conclusion is Conclusion.REFER_WORKS and "486" in report.recommendation.why


def test_refer_sub_false_honoured_or_not() -> None:
    honoured = judge("telco", options(), call(refer_sub=False, refer_sub_answer="false",
                                              outcome="unconfirmed", outcome_status=202))
    assert results(honoured)["refer_sub_honoured"] == "yes"
    assert honoured.recommendation.refer_sub is False
    ignored = judge("telco", options(), call(refer_sub=False, notifies=[notify(200, "terminated")],
                                             outcome="succeeded", outcome_status=200))
    assert results(ignored)["refer_sub_honoured"] == "no"


def test_420_to_require_norefersub_is_no_verdict_on_refer() -> None:
    report = judge("telco", options(supported=()), call(refer_sub=False, refer_status=420,
                                                        refer_reason="Bad Extension"))
    assert report.conclusion is Conclusion.INCONCLUSIVE and report.recommendation.refer_sub is True


def test_an_unanswered_test_call_tests_nothing() -> None:
    report = judge("telco", options(), call(invite_status=486, invite_reason="Busy Here", refer_status=None))
    seen = results(report)
    assert seen["test_call"] == "no"
    assert {seen[k] for k in ("refer_accepted", "notify_sipfrag", "transfer_completed")} == {"not tested"}
    assert report.conclusion is Conclusion.INCONCLUSIVE


statuses = st.one_of(st.none(), st.sampled_from(["timeout", "transport", "no_final"]), st.integers(100, 699))
seen_options = st.builds(
    OptionsSeen, st.just("sip:h"), st.just("udp:h:5060"), statuses, st.just(""),
    st.lists(st.sampled_from(["INVITE", "REFER", "BYE"]), unique=True), st.booleans(),
    st.lists(st.sampled_from(["norefersub", "timer"]), unique=True), st.just(""), st.none())
seen_calls = st.builds(
    CallSeen, st.just("sip:a@h"), st.just("sip:b@h"), st.booleans(), statuses, st.just(""),
    st.lists(st.integers(100, 199), max_size=2), statuses, st.just(""),
    st.sampled_from([None, "false", "true"]), st.none(),
    st.lists(st.builds(notify, st.integers(100, 699)), max_size=3),
    st.sampled_from(["", "succeeded", "failed", "unconfirmed"]), statuses, st.just(""),
    st.sampled_from(["", "voicegw", "carrier"]))


@given(seen_options, st.one_of(st.none(), seen_calls))
def test_the_verdicts_the_conclusion_and_the_advice_agree(options_seen, call_seen) -> None:
    report = judge("p", options_seen, call_seen)
    names = [v.capability for v in report.verdicts]
    assert len(names) == len(set(names))
    assert all(isinstance(v.result, Result) and v.detail for v in report.verdicts)
    if report.conclusion is Conclusion.REFER_WORKS:
        assert report.recommendation.refer is True and report.recommendation.attempts[0] == "refer"
    if report.conclusion is Conclusion.REFER_UNUSABLE:
        assert report.recommendation.refer is False and report.recommendation.attempts == ["invite"]
    if results(report).get("transfer_completed") == "yes":
        assert report.conclusion is Conclusion.REFER_WORKS
    report.as_dict()  # JSON-ready for the API
