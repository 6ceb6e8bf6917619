"""The transfer scenarios written once and run with every peer that can play each part
(issue 11 item 3): tests/peers/roles.py has the roles (caller, agent, bot), the
roles_<peer>.py modules one adapter per peer and role.

Every scenario is the same call: the caller calls voicegw (``transfer_method: invite``,
``ring_timeout`` 2 s), voicegw connects it to the bot, the bot REFERs voicegw to the
agent, voicegw dials the agent:

- ``answered``: the agent answers; the caller's tone reaches the agent and the agent's
  the caller (between a detecting and an echoing peer: one tone there and back); the
  agent's INVITE carries voicegw's context; the caller hangs up, the agent gets the BYE.
- ``busy``: the agent answers 486; the bot is NOTIFYed 486, the caller is kept and is
  back with the bot (it hears the bot again), then hangs up.
- ``noanswer``: the agent rings and never answers; voicegw CANCELs after 2 s (the
  agent, even behind a PBX, sees the CANCEL) and keeps the caller with the bot.
- ``bot_refer``: the agent answers; the bot is NOTIFYed progress then 200 (final) and
  voicegw BYEs it; the caller stays in the call with the agent.

Which combinations run (:data:`CASES`): not the cross product (4 callers x 5 agents x
2 bots x 4 scenarios = 160 calls, over 10 minutes here) but, for every scenario, each
agent once, each caller and each bot at least once among those, rotated so that each
scenario pairs the peers differently. Two echoing peers (sipp caller, sipp agent) are
never paired where audio is asserted (with both sipp, ``busy`` rests on sipp's scripts:
the bot's INFO probe answered, the caller's clean exit without a BYE). A caller and an
agent behind two PBXs that both fix voicegw's port could not be combined; only Asterisk
fixes it (FreeSWITCH's ``bridge-<port>`` reaches any port), and one Asterisk serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from peers.calls import HOST, SIPP
from peers.daemon import DaemonProcess
from peers.net import free_port
from peers.pbx import start_voicegw, wait_logged
from peers.pjsua import AVAILABLE
from peers.roles import Agent, Bot, Caller
from peers.roles_baresip import BaresipAgent
from peers.roles_pbx import AsteriskAgent, AsteriskCaller, FreeSwitchAgent, FreeSwitchCaller
from peers.roles_pjsua import PjsuaAgent, PjsuaBot, PjsuaCaller
from peers.roles_sipp import SippAgent, SippBot, SippCaller

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(60),
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(not AVAILABLE, reason="pjsua2 not installed: pip install -e '.[test]'"),
]

CALLER_HZ = 500.0
AGENT_HZ = 1100.0


# ------------------------------------------------------------------------------ the cast
@dataclass
class Cast:
    caller: Caller
    agent: Agent
    bot: Bot
    daemon: DaemonProcess | None = None

    def report(self) -> str:
        parts = [f"--- caller {self.caller.name}\n{self.caller.report()}",
                 f"--- agent {self.agent.name}\n{self.agent.report()}",
                 f"--- bot {self.bot.name}\n{self.bot.report()}"]
        if self.daemon is not None:
            parts.append("--- voicegw (last 40 lines)\n" + "\n".join(self.daemon.lines[-40:]))
        return "\n".join(parts)


def _caller(name: str, request: pytest.FixtureRequest, workdir: Path) -> Caller:
    if name == "sipp":
        return SippCaller(workdir)
    if name == "pjsua":
        return PjsuaCaller(workdir)
    if name == "asterisk":
        return AsteriskCaller(request.getfixturevalue("pbx_lab"))
    if name == "freeswitch":
        return FreeSwitchCaller(request.getfixturevalue("freeswitch"))
    raise ValueError(name)


def _agent(name: str, request: pytest.FixtureRequest, workdir: Path) -> Agent:
    if name == "sipp":
        return SippAgent(workdir)
    if name == "pjsua":
        return PjsuaAgent(workdir)
    if name == "baresip":
        return BaresipAgent(workdir, AGENT_HZ)
    if name == "asterisk":
        return AsteriskAgent(request.getfixturevalue("pbx_lab"))
    if name == "freeswitch":
        return FreeSwitchAgent(request.getfixturevalue("freeswitch"))
    raise ValueError(name)


def _bot(name: str, request: pytest.FixtureRequest, workdir: Path) -> Bot:
    if name == "sipp":
        return SippBot(workdir)
    if name == "pjsua":
        return PjsuaBot(workdir)
    raise ValueError(name)


def start(cast: Cast, workdir: Path, mode: str, succeeds: bool) -> DaemonProcess:
    """The agent ready (``mode``), the bot listening, voicegw where the PBXs expect it,
    the caller connected, the bot's REFER sent."""
    cast.agent.start(mode)
    cast.bot.start(cast.agent.uri, succeeds)
    ports = {p for p in (cast.caller.voicegw_port(), cast.agent.voicegw_port()) if p is not None}
    assert len(ports) <= 1, f"caller and agent want voicegw on different ports: {ports}"
    port = ports.pop() if ports else free_port(HOST)
    calls = {"transfer_method": "invite", "transfer_allow": [cast.agent.allow], "ring_timeout": 2,
             "ringback": "silence"}
    cast.daemon = start_voicegw(workdir / "voicegw", port, calls=calls, args=("--bot-uri", cast.bot.uri))
    cast.caller.call(cast.daemon)
    cast.caller.talk(CALLER_HZ)
    cast.bot.refer()
    return cast.daemon


# ------------------------------------------------------------------------------ checks
def audio_both_ways(cast: Cast) -> None:
    """Caller and agent hear each other through voicegw."""
    caller, agent = cast.caller, cast.agent
    if caller.detects and agent.detects:
        agent.talk(AGENT_HZ)
        assert agent.hears(CALLER_HZ), f"the agent hears the caller's tone\n{cast.report()}"
        assert caller.hears(AGENT_HZ), f"the caller hears the agent's tone\n{cast.report()}"
    elif agent.detects:  # the caller echoes: the agent's tone went there and came back
        agent.talk(AGENT_HZ)
        assert agent.hears(AGENT_HZ), f"the agent hears its tone echoed by the caller\n{cast.report()}"
    elif caller.detects:  # the agent echoes
        assert caller.hears(CALLER_HZ), f"the caller hears its tone echoed by the agent\n{cast.report()}"
    else:
        raise AssertionError("two echoing peers cannot check audio: not a valid combination")


def back_with_the_bot(cast: Cast) -> None:
    """After a failed transfer the caller is kept, and is talking to the bot again."""
    caller, bot = cast.caller, cast.bot
    assert caller.kept(), f"a failed transfer never drops the caller\n{cast.report()}"
    if caller.detects:
        assert caller.hears(bot.sound(CALLER_HZ)), f"the caller hears the bot again\n{cast.report()}"
    elif bot.detects:  # the caller echoes the bot's tone back to it
        assert bot.hears(bot.sound(CALLER_HZ)), f"the bot hears its tone echoed by the caller\n{cast.report()}"
    assert bot.wait_kept(), f"the bot's leg is still up\n{cast.report()}"


# ------------------------------------------------------------------------------ scenarios
def answered(cast: Cast, workdir: Path) -> None:
    daemon = start(cast, workdir, "answer", succeeds=True)
    assert cast.agent.wait_answered(10), cast.report()
    wait_logged(daemon, "transfer.succeeded", status=200)
    assert cast.bot.wait_bye(10), f"voicegw hangs up the bot once the agent answered\n{cast.report()}"
    audio_both_ways(cast)
    invite = cast.agent.invite()
    assert invite is not None
    assert cast.agent.caller_context() == cast.caller.user, \
        f"voicegw's X-VG-Caller reaches the agent\n{invite.headers}"
    assert cast.caller.kept()
    cast.caller.hang_up()
    assert cast.agent.wait_bye(10), f"the caller's BYE reaches the agent\n{cast.report()}"
    cast.bot.finish()


def busy(cast: Cast, workdir: Path) -> None:
    daemon = start(cast, workdir, "busy", succeeds=False)
    wait_logged(daemon, "transfer.failed", status=486)
    assert cast.bot.wait_final() == (486, True), cast.report()
    back_with_the_bot(cast)
    cast.caller.hang_up()
    cast.bot.finish()


def noanswer(cast: Cast, workdir: Path) -> None:
    daemon = start(cast, workdir, "never", succeeds=False)
    wait_logged(daemon, "transfer.failed", timeout=15, status="no_answer")
    assert cast.agent.wait_cancelled(10), f"voicegw's CANCEL reaches the ringing agent\n{cast.report()}"
    status, final = cast.bot.wait_final()
    assert final and status >= 300, (status, final)
    assert 180 in cast.bot.notified(), "the agent's ringing was NOTIFYed to the bot"
    back_with_the_bot(cast)
    cast.caller.hang_up()
    cast.bot.finish()


def bot_refer(cast: Cast, workdir: Path) -> None:
    start(cast, workdir, "answer", succeeds=True)
    assert cast.bot.wait_final() == (200, True), cast.report()
    statuses = cast.bot.notified()
    assert statuses[-1] == 200 and all(s < 200 for s in statuses[:-1]), statuses
    assert cast.bot.wait_bye(10), f"voicegw BYEs the bot after the final NOTIFY\n{cast.report()}"
    assert cast.agent.wait_answered(10)
    assert cast.caller.kept()
    cast.caller.hang_up()
    assert cast.agent.wait_bye(10), cast.report()
    cast.bot.finish()


SCENARIOS: dict[str, Callable[[Cast, Path], None]] = {
    "answered": answered, "busy": busy, "noanswer": noanswer, "bot_refer": bot_refer,
}

# (scenario, caller, agent, bot): per scenario every agent once, every caller and bot at
# least once, rotated so that each scenario pairs the peers differently.
CASES: list[tuple[str, str, str, str]] = [
    ("answered", "pjsua", "sipp", "sipp"),
    ("answered", "sipp", "pjsua", "pjsua"),
    ("answered", "asterisk", "baresip", "sipp"),
    ("answered", "freeswitch", "asterisk", "pjsua"),
    ("answered", "pjsua", "freeswitch", "sipp"),
    ("busy", "sipp", "sipp", "sipp"),
    ("busy", "asterisk", "pjsua", "pjsua"),
    ("busy", "freeswitch", "baresip", "sipp"),
    ("busy", "pjsua", "asterisk", "sipp"),
    ("busy", "pjsua", "freeswitch", "pjsua"),
    ("noanswer", "freeswitch", "sipp", "pjsua"),
    ("noanswer", "pjsua", "pjsua", "sipp"),
    ("noanswer", "sipp", "baresip", "pjsua"),
    ("noanswer", "asterisk", "asterisk", "sipp"),
    ("noanswer", "pjsua", "freeswitch", "pjsua"),
    ("bot_refer", "asterisk", "sipp", "pjsua"),
    ("bot_refer", "freeswitch", "pjsua", "sipp"),
    ("bot_refer", "pjsua", "baresip", "pjsua"),
    ("bot_refer", "sipp", "asterisk", "sipp"),
    ("bot_refer", "freeswitch", "freeswitch", "pjsua"),
]


@pytest.mark.parametrize(("scenario", "caller", "agent", "bot"), CASES,
                         ids=[f"{s}-caller_{c}-agent_{a}-bot_{b}" for s, c, a, b in CASES])
def test_scenario(scenario: str, caller: str, agent: str, bot: str, request: pytest.FixtureRequest,
                  tmp_path: Path) -> None:
    parts: list = []
    cast: Cast | None = None
    try:
        parts.append(_agent(agent, request, tmp_path))
        parts.append(_bot(bot, request, tmp_path))
        parts.append(_caller(caller, request, tmp_path))
        cast = Cast(caller=parts[2], agent=parts[0], bot=parts[1])
        SCENARIOS[scenario](cast, tmp_path)
        assert cast.daemon is not None
        errors = [e for e in cast.daemon.events() if e.get("level") in ("error", "critical")]
        assert not errors, errors
    finally:
        for part in reversed(parts):
            part.close()
        if cast is not None and cast.daemon is not None and cast.daemon.running():
            try:
                cast.daemon.terminate()
            finally:
                cast.daemon.kill()
