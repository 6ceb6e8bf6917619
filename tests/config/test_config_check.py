"""``voicegw check`` and ``voicegw run --config`` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def voicegw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voicegw", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False)


def test_check_passes_on_the_repository_samples() -> None:
    result = voicegw("check", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: embedded default; profiles: agent-demo, bot-demo, carrier-loopback;")


def test_check_reports_each_problem_located(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "voicegw.yaml").write_text("sip:\n  port: 99999\n")
    result = voicegw("check", "--config", "voicegw.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == "voicegw.yaml:2: sip.port: input should be less than or equal to 65535 (got 99999)\n"
    assert "Traceback" not in result.stderr and "1 problem found" in result.stderr

    (tmp_path / "voicegw.yaml").write_text("default_flow: main\n")
    (tmp_path / "flows" / "main.yaml").write_text("nodes:\n  a: {type: message, text: hi, next: b}\n")
    result = voicegw("check", "--config", "voicegw.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["errors"] == [{"file": "flows/main.yaml", "line": 2, "field": "nodes.a.next",
                               "message": "unknown node 'b' (known: a)"}]


def test_check_json_on_a_valid_config(tmp_path: Path) -> None:
    (tmp_path / "voicegw.yaml").write_text("log_level: debug\n")
    result = voicegw("check", "--config", "voicegw.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"ok": True, "config": "voicegw.yaml", "profiles": [], "flows": [],
                                         "default_flow": "demo (built in)",
                                         "channels": [{"channel": "default", "match": {}, "flow": "demo (built in)",
                                                       "integration": None}],
                                         "errors": []}


def test_check_usage_errors_exit_2(tmp_path: Path) -> None:
    assert voicegw("check", "--config", "missing.yaml", cwd=tmp_path).returncode == 2
    assert voicegw("check", "--bogus", cwd=tmp_path).returncode == 2


def test_run_refuses_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "voicegw.yaml").write_text("sip:\n  hots: 1\n")
    result = voicegw("run", "--config", "voicegw.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "voicegw.yaml:2: sip.hots: unknown field" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_refuses_a_desk_outside_loopback_without_tls_and_bad_desk_entries(tmp_path: Path) -> None:
    (tmp_path / "voicegw.yaml").write_text(
        "api:\n  host: 0.0.0.0\ndesk:\n  enabled: true\n  agents:\n    alice: plain-password\n")
    result = voicegw("check", "--config", "voicegw.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = {(e["field"], e["message"]) for e in json.loads(result.stdout)["errors"]}
    assert any(field == "desk.tls_cert_file" and "needs TLS" in message for field, message in errors), errors
    assert any(field == "desk" and "not a scrypt hash" in message for field, message in errors), errors
    (tmp_path / "voicegw.yaml").write_text("desk:\n  enabled: true\n  queues:\n    sales: [bob]\n")
    result = voicegw("check", "--config", "voicegw.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert [e["message"] for e in json.loads(result.stdout)["errors"]] == ["queues.sales: 'bob' is not an agent"]


def test_check_refuses_what_the_rtpengine_media_plane_cannot_carry(tmp_path: Path) -> None:
    """``media.backend: rtpengine`` with the bot listening to transfers or the WebRTC desk:
    refused at check time (and so by ``voicegw run``), each problem at its file and field."""
    (tmp_path / "voicegw.yaml").write_text(
        "media:\n  backend: rtpengine\ncalls:\n  bot_listens: true\ndesk:\n  enabled: true\n")
    result = voicegw("check", "--config", "voicegw.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = {(e["file"], e["line"], e["field"]): e["message"] for e in json.loads(result.stdout)["errors"]}
    assert set(errors) == {("voicegw.yaml", 4, "calls.bot_listens"), ("voicegw.yaml", 6, "desk.enabled")}, errors
    assert "media.backend: relay" in errors[("voicegw.yaml", 4, "calls.bot_listens")]
    run = voicegw("run", "--config", "voicegw.yaml", cwd=tmp_path)
    assert run.returncode == 2 and "voicegw.yaml:4: calls.bot_listens: the bot cannot listen" in run.stderr
    assert "Traceback" not in run.stderr
    (tmp_path / "voicegw.yaml").write_text("media:\n  backend: relay\ncalls:\n  bot_listens: true\n")
    assert voicegw("check", "--config", "voicegw.yaml", cwd=tmp_path).returncode == 0
