"""A flow that transfers each call at once, by INVITE, to one agent profile, and what the
daemon tells of it: the set-up of the wire tests about what stands between voicegw and
that agent (its digest challenges, peers/auth_transfer.py; DNS, test_dns_dial_wire.py).

The flow: ``to_agent`` (agent_transfer to ``agent-x``; the fallback's rule for the
tested status goes to ``wait``, a collect that keeps the caller; anything else ends the
call) and ``bye``. The daemon's control API is on (the timeline is read from it).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .daemon import DaemonProcess


def events(daemon: DaemonProcess, name: str) -> list[dict]:
    return [e for e in daemon.events() if e.get("event") == name]


def timeline(daemon: DaemonProcess, call_id: str) -> list[tuple[str, dict]]:
    token = (daemon.workdir / "var" / "api.token").read_text().strip()
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.api_port}/calls/{call_id}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return [(entry["event"], entry["detail"]) for entry in json.load(answer)["timeline"]]


def fallbacks(daemon: DaemonProcess, call_id: str) -> list[dict]:
    return [detail for event, detail in timeline(daemon, call_id) if event == "transfer.fallback"]


def write_config(workdir: Path, profile: dict[str, Any], status: str, *, target: str = "agent-x",
                 **sections: Any) -> Path:
    """The profile ``agent-x`` (``profile``: an agent, or a carrier whose trunk the flow
    dials ``target``, a number, through), the flow (its fallback keeps the caller on
    ``status``: ``auth``, ``dns``) and voicegw.yaml with any other top-level
    ``sections``; the latter's path."""
    (workdir / "profiles").mkdir()
    (workdir / "flows").mkdir()
    (workdir / "profiles" / "agent-x.yaml").write_text(yaml.safe_dump(profile))
    (workdir / "flows" / "main.yaml").write_text(yaml.safe_dump({"start": "to_agent", "nodes": {
        "to_agent": {"type": "agent_transfer", "target": target, "fallback": {
            "rules": [{"match": status, "action": "goto", "node": "wait"}],
            "default": {"action": "end"}}},
        "wait": {"type": "collect", "routes": {"9": "bye"}, "timeout": 30, "on_timeout": "bye"},
        "bye": {"type": "hangup"}}}))
    config = workdir / "voicegw.yaml"
    config.write_text(yaml.safe_dump({"profiles_dir": str(workdir / "profiles"),
                                      "flows_dir": str(workdir / "flows"), "default_flow": "main", **sections}))
    return config
