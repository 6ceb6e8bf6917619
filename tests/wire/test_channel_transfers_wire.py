"""A channel's integration applies to the transfers no flow node describes (issue 13
item 1 left them out): a bot's REFER and an operator's transfer through the control API.

One daemon (``voicegw run --config`` with the API), ``routes:`` sending number 3000 to
channel ``billing`` (integration ``billing``: method invite, header ``X-Team:
billing``), its flow a bot node (so the call goes straight to the bot, a sipp bot that
REFERs to the agent, bot_refer.xml), and number 5000 to channel ``desk`` (same
integration), its flow a collect node that keeps the caller with voicegw until an
operator transfers it (``POST /calls/{id}/transfer``). A sipp agent (agent_hangup.xml:
answers, hangs up after 1.5 s) takes each transfer; what crossed the wire is the
agent's INVITE: it carries the integration's header.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from peers.caller import Caller
from peers.calls import SCENARIOS, SIPP, SippPeer
from peers.daemon import wait_until
from peers.net import free_port
from peers.ops import OpsDaemon

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(120),
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]


@dataclass
class Lab:
    ops: OpsDaemon
    bot_port: int
    agent_port: int
    workdir: Path

    @property
    def agent_uri(self) -> str:
        return f"sip:agent@127.0.0.1:{self.agent_port}"


def _config(workdir: Path, bot_port: int, agent_port: int) -> dict[str, Any]:
    flows, profiles = workdir / "flows", workdir / "sip_profiles"
    flows.mkdir()
    profiles.mkdir()
    (profiles / "refbot.yaml").write_text(yaml.safe_dump({"kind": "bot", "uri": f"sip:bot@127.0.0.1:{bot_port}"}))
    documents = {
        "botflow": {"nodes": {"talk": {"type": "bot", "profile": "refbot"}}},
        "hold": {"start": "wait", "nodes": {"wait": {"type": "collect", "routes": {"9": "bye"}, "timeout": 30, "on_timeout": "bye"},
                           "bye": {"type": "hangup"}}},
        "main": {"nodes": {"bye": {"type": "hangup"}}},
    }
    for name, flow in documents.items():
        (flows / f"{name}.yaml").write_text(yaml.safe_dump(flow))
    return {
        "calls": {"transfer_allow": [f"sip:agent@127.0.0.1:{agent_port}"], "ringback": "silence"},
        "profiles_dir": str(profiles), "flows_dir": str(flows), "default_flow": "main",
        "integrations": {"billing": {"method": "invite", "headers": {"X-Team": "billing"}}},
        "routes": [
            {"channel": "billing", "match": {"called": "3000"}, "flow": "botflow", "integration": "billing"},
            {"channel": "desk", "match": {"called": "5000"}, "flow": "hold", "integration": "billing"},
        ],
    }


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    bot_port, agent_port = free_port(), free_port()
    ops = OpsDaemon(tmp_path / "daemon", config=_config(tmp_path, bot_port, agent_port))
    with ops:
        yield Lab(ops, bot_port, agent_port, tmp_path)
        errors = [e for e in ops.daemon.events() if e.get("level") in ("error", "critical")]
        assert not errors, errors


def _agent(lab: Lab) -> SippPeer:
    return SippPeer("agent", SCENARIOS / "agent_hangup.xml", lab.workdir, port=lab.agent_port, rtp_echo=True,
                    timeout=30).start()


def _hung_up_by_voicegw(caller: Caller) -> bool:
    """The agent hung up, so voicegw ends the call: its BYE reaches the caller (who
    answers it, Caller.poll)."""
    def bye() -> bool:
        caller.poll(0.05)
        return caller.got_request("BYE")
    return wait_until(bye, 15)


def _agent_invite(agent: SippPeer) -> Any:
    return next(m for m in agent.messages() if m.direction == "in" and m.method == "INVITE")


def test_a_bots_refer_takes_the_channels_integration(lab: Lab) -> None:
    agent = _agent(lab)
    bot = SippPeer("bot", SCENARIOS / "bot_refer.xml", lab.workdir, port=lab.bot_port,
                   keys={"refer_to": lab.agent_uri}, timeout=30).start()
    caller = Caller(lab.ops.address, request_user="3000")
    try:
        assert caller.invite().status == 200
        assert _hung_up_by_voicegw(caller), "the agent took the call and hung up"
        assert bot.wait(30) == 0, bot.report()
        assert agent.wait(30) == 0, agent.report()
    finally:
        caller.close()
        bot.stop()
        agent.stop()
    invite = _agent_invite(agent)
    assert invite.header("x-team") == "billing", invite.headers
    started = lab.ops.logged("transfer.started")
    assert [(e["trigger"], e["method"]) for e in started] == [("bot", "invite")], started


def test_an_api_transfer_takes_the_channels_integration(lab: Lab) -> None:
    agent = _agent(lab)
    caller = Caller(lab.ops.address, request_user="5000")
    try:
        assert caller.invite().status == 200
        answer = lab.ops.http("POST", f"/calls/{caller.call_id}/transfer",
                              json={"target": lab.agent_uri, "method": "invite"})
        assert answer.status_code == 202, answer.text
        assert _hung_up_by_voicegw(caller), "the agent took the call and hung up"
        assert agent.wait(30) == 0, agent.report()
    finally:
        caller.close()
        agent.stop()
    invite = _agent_invite(agent)
    assert invite.header("x-team") == "billing", invite.headers
