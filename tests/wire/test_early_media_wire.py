"""Early media of an agent leg over the wire (issue 12 item 7): a 183 with SDP from the
agent of an INVITE transfer is relayed to the caller instead of voicegw's ringback,
per the agent profile's ``early_media`` (relay by default, or ringback).

One daemon for the module (``voicegw run --config`` with its own ``sip_profiles`` and
flow, written here): two agent profiles for the scripted agent (peers.agent.Agent) on
two ports fixed for the module, ``agent`` (``early_media`` left to its default, relay)
and ``agent-rb`` (``early_media: ringback``), and a flow whose menu transfers by INVITE
to the first (``2``) or the second (``4``), with a fallback rule for 486 that plays a
700 Hz prompt and hangs up. The calls' ringback is voicegw's 440+480 Hz
(voicegw.media.tones.RINGBACK_US); the agent's early media is a 1000 Hz tone (a
second fork's 1400 Hz). What the caller hears is told apart by Goertzel power on the
decoded PCMU, per 100 ms block (which resolves 440 from 480 Hz).

Cases: early tone heard and no ringback, then the 200 names another RTP address than
the 183 and the call's audio goes both ways there; the ringback profile keeps our
ringback; a 183 without SDP keeps our ringback; 486 after the 183 plays the fallback
prompt; two forks' 183s, the last one is heard. And the bot leg at call setup (its own
daemon): the bot's early media reaches the caller, and a 200 naming another RTP
address than its 183 is followed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from peers.agent import AGENT_TONE, CALLER_TONE, Agent, Carrier, dial, done
from peers.net import free_port
from peers.ops import OpsDaemon, nothing_broke
from peers.pbx import tone_frame

from voicegw.media import g711, tones
from voicegw.media.tones import goertzel_power
from voicegw.media.wav import write_wav
from voicegw.sip.message import Response

pytestmark = [pytest.mark.wire, pytest.mark.timeout(60)]

EARLY_HZ = 1000
FORK_HZ = 1400
BUSY_HZ = 700
RINGBACK = tones.RINGBACK_US.frequencies


def share(payload: bytes, freqs: tuple[float, ...]) -> float:
    """The share of a PCMU block's power at ``freqs``: 0.5 for a sum of sines at exactly those."""
    samples = g711.ulaw_decode(payload).astype(np.float64)
    total = float(np.mean((samples / 32768.0) ** 2))
    if total < 1e-6:
        return 0.0
    return sum(goertzel_power(samples, f) for f in freqs) / total


def blocks_with(caller: Carrier, freqs: tuple[float, ...], since: float, until: float = float("inf")) -> int:
    """How many 100 ms blocks (5 packets) the caller got in [since, until) are the tone at ``freqs``."""
    payloads = [p[12:] for p in caller.audio(since, until)]
    return sum(1 for i in range(0, len(payloads) - 4, 5) if share(b"".join(payloads[i:i + 5]), freqs) > 0.35)


# ------------------------------------------------------------------------------ the lab
@dataclass
class Lab:
    ops: OpsDaemon
    relay_port: int
    ringback_port: int


def _flow(busy: Path) -> dict[str, Any]:
    return {
        "name": "early", "start": "menu",
        "nodes": {
            "menu": {"type": "collect", "routes": {"2": "to_agent", "4": "to_agent_rb"},
                     "timeout": 60, "on_timeout": "hangup"},
            "to_agent": {"type": "agent_transfer", "target": "agent", "method": "invite",
                         "fallback": {"rules": [{"match": 486, "action": "goto", "node": "hangup",
                                                 "prompt": {"file": str(busy)}}]}},
            "to_agent_rb": {"type": "agent_transfer", "target": "agent-rb", "method": "invite"},
            "hangup": {"type": "hangup"},
        },
    }


@pytest.fixture(scope="module")
def _lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("early")
    relay_port, ringback_port = free_port(), free_port()
    relay_uri, ringback_uri = f"sip:agent@127.0.0.1:{relay_port}", f"sip:agent@127.0.0.1:{ringback_port}"
    profiles, flows = workdir / "profiles", workdir / "flows"
    profiles.mkdir()
    flows.mkdir()
    (profiles / "carrier.yaml").write_text(yaml.safe_dump({"kind": "carrier", "addresses": ["127.0.0.0/8"]}))
    (profiles / "agent.yaml").write_text(yaml.safe_dump({"kind": "agent", "uri": relay_uri}))
    (profiles / "agent-rb.yaml").write_text(yaml.safe_dump({"kind": "agent", "uri": ringback_uri,
                                                            "early_media": "ringback"}))
    busy = workdir / "busy.wav"
    t = np.arange(int(0.8 * 8000)) / 8000
    write_wav(busy, (12000 * np.sin(2 * np.pi * BUSY_HZ * t)).astype(np.int16))
    (flows / "early.yaml").write_text(yaml.safe_dump(_flow(busy), sort_keys=False))
    ops = OpsDaemon(workdir / "daemon", config={
        "calls": {"transfer_allow": [relay_uri, ringback_uri], "ring_timeout": 15, "ringback": "ringback"},
        "profiles_dir": str(profiles), "flows_dir": str(flows), "default_flow": "early",
    })
    with ops:
        yield Lab(ops, relay_port, ringback_port)


@pytest.fixture
def lab(_lab: Lab) -> Iterator[Lab]:
    with nothing_broke(_lab.ops):
        yield _lab


def call(lab: Lab, key: str, agent: Agent, rang: int = 1) -> Carrier:
    """A connected call that pressed ``key``, once voicegw took ``rang`` 183s of
    ``agent`` (its ``transfer.progress`` lines: what a 183 changes is done by then)."""
    caller = dial(lab.ops.address, key, user="alice")
    assert caller.listen(10, lambda: len(lab.ops.logged("transfer.progress", call_id=caller.call_id,
                                                         status=183)) >= rang), "the agent rang with 183"
    return caller


def timeline(lab: Lab, caller: Carrier) -> list[str]:
    """The events of the call's timeline (control API)."""
    return [entry["event"] for entry in lab.ops.http("GET", f"/calls/{caller.call_id}").json()["timeline"]]


def play_early(caller: Carrier, agent: Agent, frames: int = 50, *, fork: bool = False) -> tuple[float, float]:
    """The agent sends ``frames`` 20 ms of its early tone (and the second fork its own,
    from ``rtp2``) while the caller listens; the window it took."""
    start = time.monotonic()
    for i in range(frames):
        agent.send_rtp(tone_frame(EARLY_HZ, i), sock=agent.rtp)
        if fork:
            agent.send_rtp(tone_frame(FORK_HZ, i), sock=agent.rtp2)
        caller.listen(0.02)
    end = time.monotonic()
    caller.listen(0.2)
    return start, end + 0.2


# ------------------------------------------------------------------------------ tests
def test_caller_hears_the_agents_early_media_not_our_ringback_then_the_answer_at_its_new_address(lab: Lab) -> None:
    with Agent(port=lab.relay_port, early="sdp", moved=True, answer_delay=4.0) as agent:
        caller = call(lab, "2", agent)
        try:
            start, end = play_early(caller, agent)
            heard = blocks_with(caller, (EARLY_HZ,), start, end)
            assert heard >= 5, f"the caller hears the agent's 1000 Hz early media ({heard} blocks)"
            rang = blocks_with(caller, RINGBACK, start, end)
            assert rang == 0, f"and not voicegw's ringback meanwhile ({rang} blocks)"
            assert caller.listen(10, lambda: agent.call.acked), "the agent answered"
            # the 200's SDP names rtp2: voicegw's audio goes there, and rtp2's is heard
            mark = time.monotonic()
            for _ in range(25):
                caller.send_rtp(CALLER_TONE)
                agent.send_rtp(AGENT_TONE)  # from rtp2 now
                caller.listen(0.02)
            caller.listen(0.4)
            to_agent = sum(1 for t, p in list(agent.rtp2_in) if t >= mark and p[12:] == CALLER_TONE)
            to_caller = sum(1 for p in caller.audio(mark) if p[12:] == AGENT_TONE)
            assert to_agent >= 15 and to_caller >= 15, (to_agent, to_caller)
            assert blocks_with(caller, RINGBACK, mark) == 0
            assert "leg.agent.early_media" in timeline(lab, caller)
        finally:
            done(caller)


def test_profile_early_media_ringback_keeps_our_ringback(lab: Lab) -> None:
    with Agent(port=lab.ringback_port, early="sdp", answer_delay=9.0) as agent:
        caller = call(lab, "4", agent)
        try:
            start, end = play_early(caller, agent)
            heard = blocks_with(caller, (EARLY_HZ,), start, end)
            assert heard == 0, f"the agent's early media is not relayed ({heard} blocks)"
            # the ringback's cadence is 2 s on, 4 s off: one whole cycle has 2 s of it
            caller.listen(6.5, lambda: blocks_with(caller, RINGBACK, start) >= 5)
            rang = blocks_with(caller, RINGBACK, start)
            assert rang >= 5, f"the caller hears voicegw's ringback ({rang} blocks)"
            assert caller.listen(10, lambda: agent.call.acked), "the agent answered"
            assert "leg.agent.early_media" not in timeline(lab, caller)
        finally:
            done(caller)


def test_a_183_without_sdp_keeps_our_ringback(lab: Lab) -> None:
    with Agent(port=lab.relay_port, early="nosdp", answer_delay=8.0) as agent:
        caller = call(lab, "2", agent)
        try:
            start = time.monotonic()
            # the ringback's cadence is 2 s on, 4 s off: one whole cycle has 2 s of it
            caller.listen(6.5, lambda: blocks_with(caller, RINGBACK, start) >= 5)
            rang = blocks_with(caller, RINGBACK, start)
            assert rang >= 5, f"no SDP, no early media: the caller hears voicegw's ringback ({rang} blocks)"
            assert caller.listen(10, lambda: agent.call.acked), "the agent answered"
        finally:
            done(caller)


def test_486_after_the_183_plays_the_fallback_prompt(lab: Lab) -> None:
    with Agent(port=lab.relay_port, early="sdp", mode="fail", answer_delay=2.5) as agent:
        caller = call(lab, "2", agent)
        try:
            start, end = play_early(caller, agent, 40)
            heard = blocks_with(caller, (EARLY_HZ,), start, end)
            assert heard >= 4, f"the caller hears the agent's early media ({heard} blocks)"
            assert caller.listen(10, lambda: agent.call.final is not None and agent.call.acked), "486 sent, ACKed"
            failed = time.monotonic()
            assert caller.listen(10, lambda: caller.got_request("BYE")), "the fallback goes to the hangup node"
            prompt = blocks_with(caller, (BUSY_HZ,), failed - 0.1)
            assert prompt >= 4, f"after the 486 the fallback's prompt is heard, not silence ({prompt} blocks)"
            assert blocks_with(caller, RINGBACK, start) == 0
        finally:
            done(caller)


def test_forked_183s_the_last_one_is_heard(lab: Lab) -> None:
    with Agent(port=lab.relay_port, early="fork", mode="never") as agent:
        caller = call(lab, "2", agent, rang=2)
        try:
            start, end = play_early(caller, agent, fork=True)
            last = blocks_with(caller, (FORK_HZ,), start, end)
            first = blocks_with(caller, (EARLY_HZ,), start + 0.2, end)
            assert last >= 5, f"the second fork's early media is heard ({last} blocks)"
            assert first == 0, f"the first fork's is not, once the second's 183 came ({first} blocks)"
        finally:
            done(caller)


def test_the_bots_200_at_another_address_than_its_183_is_followed(tmp_path: Path) -> None:
    with Agent(early="sdp", moved=True, answer_delay=3.0) as bot, \
            OpsDaemon(tmp_path / "bot", config={"calls": {"bot_uri": bot.uri}}) as ops:
        caller = Carrier(ops.address, user="alice")
        finals: list[Response] = []
        inviting = threading.Thread(target=lambda: finals.append(caller.invite(timeout=15)), daemon=True)
        inviting.start()
        try:
            deadline = time.monotonic() + 10
            while not any(isinstance(m, Response) and m.status == 183 for m in list(caller.received)):
                assert time.monotonic() < deadline, "voicegw relayed the bot's 183 to the caller"
                time.sleep(0.02)
            start = time.monotonic()
            for i in range(40):
                bot.send_rtp(tone_frame(EARLY_HZ, i), sock=bot.rtp)
                time.sleep(0.02)
            heard = blocks_with(caller, (EARLY_HZ,), start, time.monotonic() + 0.2)
            inviting.join(15)
            assert finals and finals[0].status == 200, finals
            assert heard >= 4, f"the bot's early media reached the caller ({heard} blocks)"
            to_bot, to_caller = _exchange_at_rtp2(caller, bot)
            assert to_bot >= 15 and to_caller >= 15, (to_bot, to_caller)
        finally:
            inviting.join(15)
            done(caller)


def _exchange_at_rtp2(caller: Carrier, agent: Agent) -> tuple[int, int]:
    """Both sides send marked audio, the agent from ``rtp2`` (the 200's address)."""
    mark = time.monotonic()
    for _ in range(25):
        caller.send_rtp(CALLER_TONE)
        agent.send_rtp(AGENT_TONE)
        caller.listen(0.02)
    caller.listen(0.4)
    to_agent = sum(1 for t, p in list(agent.rtp2_in) if t >= mark and p[12:] == CALLER_TONE)
    to_caller = sum(1 for p in caller.audio(mark) if p[12:] == AGENT_TONE)
    return to_agent, to_caller
