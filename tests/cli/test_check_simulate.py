"""``voicegw check --simulate FLOW:NODE:STATUS`` as an operator runs it: the fallback's
dry run on the repository's support flow and on a flow written here (issue 13 item 4).
The answers come from the engine's own fallback machine, so each expectation below is
what the daemon would do with that failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FLOW = """\
name: sales
start: agent
nodes:
  agent:
    type: agent_transfer
    target: sip:desk@127.0.0.1:5090
    method: invite
    fallback:
      rules:
        - match: 4xx
          action: retry
          max_attempts: 2
          prompt: {text: Please hold.}
        - match: declined
          action: end
          end_message: {text: Goodbye.}
        - match: auth
          action: end
          prompt: {text: Our carrier refused us.}
      default: {action: goto, node: bye}
      max_total_attempts: 3
  bye:
    type: hangup
"""


def voicegw(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voicegw", "check", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def sales(tmp_path: Path) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "sales.yaml").write_text(FLOW)
    (tmp_path / "voicegw.yaml").write_text(
        "default_flow: sales\nflows_dir: flows\ncalls:\n  transfer_allow: [\"sip:*@127.0.0.1:5090\"]\n")
    return tmp_path


def test_busy_at_the_support_flow_goes_back_to_the_menu_after_the_apology() -> None:
    result = voicegw("--simulate", "support:agent:486")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "support:agent failing with 486:",
        ("  attempt 1 (refer sip:agent@127.0.0.1:5090) -> 486: rule '486' (exact) -> goto; "
        "prompt: say 'Sorry, all our agents are busy.'; then goto menu [attempts 1/3]"),
    ]


def test_refer_not_implemented_moves_to_the_invite_bridge_then_runs_out() -> None:
    steps = json.loads(voicegw("--simulate", "support:agent:501", "--json").stdout)["simulations"][0]["steps"]
    assert [(s["method"], s["rule"], s["action"], s["then"]) for s in steps] == [
        ("refer", "501", "next", "attempt 2: invite sip:agent@127.0.0.1:5090"),
        ("invite", "exhausted", "goto", "goto goodbye"),
    ]


def test_a_class_rule_retries_until_its_limit_then_the_exhausted_rule(sales: Path) -> None:
    result = voicegw("--config", "voicegw.yaml", "--simulate", "sales:agent:480", "--json", cwd=sales)
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)["simulations"][0]["steps"]
    # 480 is no_answer, but the class rule 4xx is more specific than a named condition
    assert [(s["attempt"], s["rule"], s["how"], s["action"], s["prompt"], s["then"], s["attempts_used"])
            for s in steps] == [
        (1, "4xx", "class", "retry", "say 'Please hold.'", "attempt 2: invite sip:desk@127.0.0.1:5090", 2),
        (2, "4xx", "class", "retry", "say 'Please hold.'", "attempt 3: invite sip:desk@127.0.0.1:5090", 3),
        (3, "exhausted", "exhausted", "goto", None, "goto bye", 3),
    ]


def test_all_lists_every_kind_of_status(sales: Path) -> None:
    result = voicegw("--config", "voicegw.yaml", "--simulate", "sales:agent:all", "--json", cwd=sales)
    runs = {run["status"]: run["steps"] for run in json.loads(result.stdout)["simulations"]}
    assert set(runs) >= {499, 599, 699, "timeout", "policy", "declined", "no_answer", "cancelled",
                         "auth", "dns"}
    assert (runs["declined"][0]["prompt"], runs["declined"][0]["then"]) == ("say 'Goodbye.'", "end the call")
    assert runs[599][0]["rule"] == "default" and runs[599][0]["then"] == "goto bye"
    human = voicegw("--config", "voicegw.yaml", "--simulate", "sales:agent:all", cwd=sales).stdout
    assert "sales:agent failing with 603:" not in human  # 603 is declined: its rule, shown once
    assert human.count("failing with") == len(runs)


def test_a_failed_digest_challenge_matches_its_named_rule_and_dns_the_default(sales: Path) -> None:
    """``auth`` (issue 12: the carrier's challenge could not be answered) and ``dns`` (the
    target's name did not resolve) are statuses rules can name."""
    result = voicegw("--config", "voicegw.yaml", "--simulate", "sales:agent:auth", cwd=sales)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "sales:agent failing with auth:",
        ("  attempt 1 (invite sip:desk@127.0.0.1:5090) -> auth: rule 'auth' (named) -> end; "
        "prompt: say 'Our carrier refused us.'; then end the call [attempts 1/3]"),
    ]
    steps = json.loads(voicegw("--config", "voicegw.yaml", "--simulate", "sales:agent:dns", "--json",
                               cwd=sales).stdout)["simulations"][0]["steps"]
    assert [(s["status"], s["rule"], s["how"], s["then"]) for s in steps] == [
        ("dns", "default", "default", "goto bye")]


@pytest.mark.parametrize(("target", "message"), [
    ("sales:agent", "expected FLOW:NODE:STATUS"),
    ("nope:agent:486", "no flow 'nope'"),
    ("sales:bye:486", "has no agent_transfer node 'bye' (its agent_transfer nodes: agent)"),
    ("sales:agent:200", "status '200': a SIP code 300-699"),
])
def test_bad_targets_say_why_without_a_traceback(sales: Path, target: str, message: str) -> None:
    result = voicegw("--config", "voicegw.yaml", "--simulate", target, cwd=sales)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
