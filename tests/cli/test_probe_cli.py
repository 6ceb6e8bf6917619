"""``voicegw probe PROFILE [--call NUMBER]`` as an operator runs it, against the running
daemon and sipp carriers over loopback (issue 13 item 5): one that carries out the
REFER (202, a re-INVITE, NOTIFY 100 and 200), one that refuses it (403, 405, 501), one that
half-implements it (202, a session refresh by UPDATE, and only NOTIFY 100 Trying), one whose target is busy (NOTIFY
486), one that honours Refer-Sub: false (RFC 4488), one that challenges OPTIONS and the
INVITE (the profile's auth answers), and one whose OPTIONS Allow lacks REFER. Each test checks what crossed the wire (sipp's message log), the
verdicts printed and the exit status; ``--json`` gives the same report for scripts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from peers.ops import SCENARIOS, OpsDaemon, Sipp
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.timeout(120),
              pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]

NUMBER = "+4930123456"


def carrier_config(folder: Path, port: int, *, refer_sub: bool = True, extra: str = "") -> dict:
    """voicegw.yaml naming a carrier profile whose trunk is the sipp carrier on ``port``."""
    profiles = folder / "sip_profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / "telco.yaml").write_text(
        "kind: carrier\naddresses: [127.0.0.0/8]\n"
        f"trunk: \"sip:{{number}}@127.0.0.1:{port}\"\n"
        "numbers: {country_code: \"49\"}\n"
        f"refer_sub: {str(refer_sub).lower()}\n"
        "transfer_allow: [\"+4930*\"]\n"
        "timeouts: {ring: 10, refer_response: 5, notify_final: 3}\n" + extra)
    return {"profiles_dir": str(profiles)}


def probe(tmp_path: Path, scenario: str, *args: str, keys: dict[str, str] | None = None,
          calls: int = 2, profile: str = "") -> tuple[object, str, str]:
    """Run ``voicegw probe telco ARGS`` against the sipp carrier ``scenario``: (the
    completed CLI process, sipp's message log, sipp's output)."""
    extra = tuple(arg for key, value in (keys or {}).items() for arg in ("-key", key, value))
    carrier = Sipp(tmp_path, "carrier", scenario, extra=extra, calls=calls, timeout=30)
    with OpsDaemon(tmp_path / "ops", config=carrier_config(tmp_path, carrier.port, extra=profile)) as ops:
        carrier.start()
        try:
            result = ops.cli("probe", "telco", *args)
            status = carrier.wait(20)
        finally:
            carrier.stop()
        assert not [e for e in ops.daemon.events() if e.get("level") == "error"], ops.daemon.events()
    assert status == 0, carrier.output() or (result.stdout + result.stderr)
    return result, carrier.output(), ""


def verdicts(stdout: str) -> dict[str, str]:
    """capability -> result, from the printed verdict table."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"[│|]?\s*(\w+)\s+[│|]\s+(yes|no|unknown|not tested)\s+[│|]", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def sent_by_voicegw(log: str, method: str) -> list[str]:
    """The requests voicegw sent (sipp's 'received' entries), start line and headers."""
    found = []
    for block in re.split(r"-{10,}.*\n", log):
        head, _, message = block.partition(" bytes :")
        if "message received" in head and message.strip().startswith(f"{method} "):
            found.append(message.strip())
    return found


def test_a_carrier_that_carries_out_the_refer_gets_refer_works(tmp_path: Path) -> None:
    result, log, _ = probe(tmp_path, "probe_carrier_refer_ok.xml", "--call", "030 123456")
    assert result.returncode == 0, result.stdout + result.stderr
    seen = verdicts(result.stdout)
    assert seen == {"options": "yes", "refer_in_allow": "yes", "norefersub_supported": "yes",
                    "test_call": "yes", "refer_accepted": "yes", "notify_sipfrag": "yes",
                    "transfer_completed": "yes"}, result.stdout
    assert "NOTIFY" in result.stdout and "SIP/2.0 100 Trying" in result.stdout
    assert "SIP/2.0 200 OK [terminated;reason=noresource] -> 200" in result.stdout
    assert "call ended by voicegw" in result.stdout
    assert "recommended: refer: true, refer_sub: true; transfer attempts: refer then invite" in result.stdout
    # on the wire: OPTIONS, the test call to the number, REFER to the same number via the trunk
    (options,) = sent_by_voicegw(log, "OPTIONS")
    assert options.startswith("OPTIONS sip:127.0.0.1:")
    (invite,) = sent_by_voicegw(log, "INVITE")
    assert invite.startswith(f"INVITE sip:{NUMBER}@127.0.0.1:")
    (refer,) = sent_by_voicegw(log, "REFER")
    assert re.search(rf"Refer-To: <sip:{re.escape(NUMBER)}@127\.0\.0\.1:\d+>", refer), refer
    assert "Refer-Sub" not in refer
    assert len(sent_by_voicegw(log, "BYE")) == 1
    # RFC 5589 6.1: the final NOTIFY is answered before the BYE (CSeq 3 is that NOTIFY's)
    assert log.rindex("CSeq: 3 NOTIFY") < log.index("BYE sip:")


def test_json_gives_the_report_for_scripts(tmp_path: Path) -> None:
    result, _, _ = probe(tmp_path, "probe_carrier_refer_ok.xml", "--call", NUMBER, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    report = data["report"]
    assert data["state"] == "done" and report["conclusion"] == "refer_works"
    assert report["options"]["status"] == 200 and "REFER" in report["options"]["allow"]
    assert report["options"]["round_trip_ms"] is not None
    call = report["call"]
    assert call["refer_status"] == 202 and call["outcome"] == "succeeded"
    assert [(n["status"], n["answer"]) for n in call["notifies"]] == [(100, 200), (200, 200)]
    assert report["recommendation"] == {"refer": True, "refer_sub": True, "attempts": ["refer", "invite"],
                                        "why": report["recommendation"]["why"]}


def refusing_carrier(folder: Path, status: int, reason: str) -> str:
    """probe_carrier_refer_403.xml with another final status for the REFER (sipp reads a
    response code when it loads the scenario, so a -key cannot set it)."""
    text = (SCENARIOS / "probe_carrier_refer_403.xml").read_text()
    scenario = folder / f"probe_carrier_refer_{status}.xml"
    scenario.write_text(text.replace("SIP/2.0 403 Forbidden", f"SIP/2.0 {status} {reason}"))
    return str(scenario)


@pytest.mark.parametrize(("status", "reason"),
                         [(403, "Forbidden"), (405, "Method Not Allowed"), (501, "Not Implemented")])
def test_a_carrier_that_refuses_refer_gets_refer_unusable(tmp_path: Path, status: int, reason: str) -> None:
    result, log, _ = probe(tmp_path, refusing_carrier(tmp_path, status, reason), "--call", NUMBER)
    assert result.returncode == 1, result.stdout + result.stderr
    seen = verdicts(result.stdout)
    assert seen["refer_in_allow"] == "yes" and seen["norefersub_supported"] == "no"
    assert seen["refer_accepted"] == "no" and seen["transfer_completed"] == "no"
    assert f"{status} {reason}" in result.stdout
    assert "recommended: refer: false; transfer attempts: invite" in result.stdout
    assert len(sent_by_voicegw(log, "REFER")) == 1
    assert len(sent_by_voicegw(log, "BYE")) == 1  # voicegw ends its test call


def test_a_carrier_that_only_says_trying_is_a_half_implementation(tmp_path: Path) -> None:
    result, log, _ = probe(tmp_path, "probe_carrier_refer_half.xml", "--call", NUMBER,
                           keys={"frag": "100 Trying", "sub_state": "active;expires=60"})
    assert result.returncode == 1, result.stdout + result.stderr
    seen = verdicts(result.stdout)
    assert seen["refer_accepted"] == "yes" and seen["notify_sipfrag"] == "yes"
    assert seen["transfer_completed"] == "no"
    assert "outcome: failed timeout" in result.stdout
    assert "never reported the outcome" in result.stdout
    assert "recommended: refer: false; transfer attempts: invite" in result.stdout
    assert len(sent_by_voicegw(log, "BYE")) == 1


def test_a_busy_target_is_reported_and_refer_still_works(tmp_path: Path) -> None:
    result, _, _ = probe(tmp_path, "probe_carrier_refer_half.xml", "--call", NUMBER, "--json",
                         keys={"frag": "486 Busy Here", "sub_state": "terminated;reason=noresource"})
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)["report"]
    call = report["call"]
    assert call["outcome"] == "failed" and call["outcome_status"] == 486
    assert [n["sipfrag"] for n in call["notifies"]] == ["SIP/2.0 486 Busy Here"]
    assert {v["capability"]: v["result"] for v in report["verdicts"]}["transfer_completed"] == "no"
    assert "486" in report["recommendation"]["why"]


def test_no_refer_sub_tries_rfc_4488_and_sees_it_honoured(tmp_path: Path) -> None:
    result, log, _ = probe(tmp_path, "probe_carrier_refer_nosub.xml", "--call", NUMBER, "--no-refer-sub")
    assert result.returncode == 0, result.stdout + result.stderr
    seen = verdicts(result.stdout)
    assert seen["refer_accepted"] == "yes" and seen["refer_sub_honoured"] == "yes"
    assert seen["notify_sipfrag"] == "not tested" and seen["transfer_completed"] == "unknown"
    assert "recommended: refer: true, refer_sub: false" in result.stdout
    (refer,) = sent_by_voicegw(log, "REFER")
    assert "Refer-Sub: false" in refer and "Require: norefersub" in refer
    assert len(sent_by_voicegw(log, "BYE")) == 1


def test_a_carrier_that_challenges_gets_the_profiles_auth(tmp_path: Path) -> None:
    (tmp_path / "sip_profiles").mkdir()
    (tmp_path / "sip_profiles" / "telco.pw").write_text("pr0be-pw\n")
    result, log, _ = probe(tmp_path, "probe_carrier_auth.xml", "--call", NUMBER,
                           profile="auth: {username: probe-user, password_file: telco.pw}\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "note: OPTIONS challenged with 401: answered as probe-user" in result.stdout
    assert "note: INVITE challenged with 401: answered as probe-user" in result.stdout
    assert verdicts(result.stdout)["transfer_completed"] == "yes"
    options, retried = sent_by_voicegw(log, "OPTIONS")
    assert "Authorization" not in options and 'Authorization: Digest username="probe-user"' in retried
    first, second = sent_by_voicegw(log, "INVITE")
    assert re.search(r"CSeq: 1 INVITE", first) and re.search(r"CSeq: 2 INVITE", second)
    assert "pr0be-pw" not in result.stdout + log


def test_a_carrier_whose_allow_lacks_refer(tmp_path: Path) -> None:
    result, log, _ = probe(tmp_path, "probe_carrier_no_refer.xml", calls=1)
    assert result.returncode == 1, result.stdout + result.stderr
    seen = verdicts(result.stdout)
    assert seen == {"options": "yes", "refer_in_allow": "no", "norefersub_supported": "no"}
    assert "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS" in result.stdout
    assert "recommended: refer: false; transfer attempts: invite" in result.stdout
    assert len(sent_by_voicegw(log, "OPTIONS")) == 1 and not sent_by_voicegw(log, "INVITE")


def test_usage_errors_name_the_problem(tmp_path: Path) -> None:
    with OpsDaemon(tmp_path / "ops", config=carrier_config(tmp_path, 9)) as ops:
        unknown = ops.cli("probe", "nosuch")
        assert unknown.returncode == 1 and "no profile 'nosuch' (carrier profiles: telco)" in unknown.stderr
        bad = ops.cli("probe", "telco", "--call", "not-a-number")
        assert bad.returncode == 1 and "not a phone number" in bad.stderr
        assert ops.cli("probe", "telco", "--dial", NUMBER).returncode == 2
