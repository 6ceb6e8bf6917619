"""What the caller and the far side get when voicegw hands a flow's call on (issue 13 item 6).

One daemon for the module (``voicegw run --config`` with its own ``sip_profiles`` and
flow, written here): a carrier profile that names the BYE hand-back's destination
header (``X-Queue``), an agent profile (the scripted agent, peers.agent.Agent, on a
port fixed for the module), and a flow whose menu sends the call

- ``1``: back to the carrier by BYE (``destination`` set in the node),
- ``2``: to the agent by INVITE (bridge), ringback while it rings,
- ``3``: to the agent by a warm transfer completed by bridge,

and whose ``post_agent`` resumes at ``survey``, a message node playing a 700 Hz tone
(WAV written here). What the caller hears is told apart by Goertzel power on the
decoded PCMU at the tone's frequencies: the survey at 700 Hz, the ringback at 440 and
480 Hz (voicegw.media.tones.RINGBACK_US).

The agent profile maps ``transcript_url`` and ``summary``: a transcript attached to the
call through the control API goes with the flow's transfer, and its link works 10 times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from peers.agent import Agent, Carrier, dial, done
from peers.net import free_port
from peers.ops import OpsDaemon, nothing_broke

from voicegw.media import g711, tones
from voicegw.media.tones import goertzel_power
from voicegw.media.wav import write_wav

pytestmark = [pytest.mark.wire, pytest.mark.timeout(60)]

SURVEY_HZ = 700
QUEUE = "sip:sales-queue@sbc.example.net"


def tone_wav(path: Path, freq: float, seconds: float = 0.8) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    write_wav(path, (12000 * np.sin(2 * np.pi * freq * t)).astype(np.int16))
    return path


def share(payload: bytes, freqs: tuple[float, ...]) -> float:
    """The share of a PCMU block's power at ``freqs``: 0.5 for a sum of sines at exactly those."""
    samples = g711.ulaw_decode(payload).astype(np.float64)
    total = float(np.mean((samples / 32768.0) ** 2))
    if total < 1e-6:
        return 0.0
    return sum(goertzel_power(samples, f) for f in freqs) / total


def blocks_with(caller: Carrier, freqs: tuple[float, ...], since: float, until: float = float("inf"),
                threshold: float = 0.35) -> int:
    """How many 100 ms blocks (5 packets) the caller got since ``since`` are the tone
    at ``freqs``: 100 ms resolve 10 Hz, which 440 and 480 Hz need (20 ms would not)."""
    payloads = [p[12:] for p in caller.audio(since, until)]
    return sum(1 for i in range(0, len(payloads) - 4, 5) if share(b"".join(payloads[i:i + 5]), freqs) > threshold)


# ------------------------------------------------------------------------------ the lab
@dataclass
class Lab:
    ops: OpsDaemon
    agent_port: int
    workdir: Path


def _flow(agent_uri: str, survey: Path) -> dict[str, Any]:
    return {
        "name": "handoff", "start": "menu", "post_agent": {"goto": "survey"},
        "nodes": {
            "menu": {"type": "collect", "routes": {"1": "to_bye", "2": "to_agent", "3": "to_warm"},
                     "timeout": 60, "on_timeout": "hangup"},
            "to_bye": {"type": "agent_transfer", "target": agent_uri, "method": "bye", "destination": QUEUE},
            "to_agent": {"type": "agent_transfer", "target": "agent", "method": "invite"},
            "to_warm": {"type": "agent_transfer", "target": "agent", "method": "warm"},
            "survey": {"type": "message", "file": str(survey), "next": "hangup"},
            "hangup": {"type": "hangup"},
        },
    }


@pytest.fixture(scope="module")
def _lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("handoff")
    agent_port = free_port()
    agent_uri = f"sip:agent@127.0.0.1:{agent_port}"
    profiles, flows = workdir / "profiles", workdir / "flows"
    profiles.mkdir()
    flows.mkdir()
    (profiles / "carrier.yaml").write_text(yaml.safe_dump({
        "kind": "carrier", "addresses": ["127.0.0.0/8"], "bye_destination_header": "X-Queue",
        "context_headers": {"X-VG-Caller": "caller"}}))
    (profiles / "agent.yaml").write_text(yaml.safe_dump({
        "kind": "agent", "uri": agent_uri,
        "context_headers": {"X-VG-Caller": "caller", "X-VG-Transcript": "transcript_url",
                            "X-VG-Summary": "summary", "X-VG-Intent": "ivr.intent",
                            "User-to-User": "bot_session"}}))
    survey = tone_wav(workdir / "survey.wav", SURVEY_HZ)
    briefing = tone_wav(workdir / "briefing.wav", 1500, 0.3)
    (flows / "handoff.yaml").write_text(yaml.safe_dump(_flow(agent_uri, survey), sort_keys=False))
    ops = OpsDaemon(workdir / "daemon", config={
        "calls": {"transfer_allow": [agent_uri], "ring_timeout": 10, "ringback": "ringback",
                  "warm": {"hold": "silence", "briefing_file": str(briefing), "auto_complete": True,
                           "complete_by": "bridge"}},
        "profiles_dir": str(profiles), "flows_dir": str(flows), "default_flow": "handoff",
    })
    with ops:
        yield Lab(ops, agent_port, workdir)


@pytest.fixture
def lab(_lab: Lab) -> Iterator[Lab]:
    with nothing_broke(_lab.ops):
        yield _lab


def call(lab: Lab, key: str, before: Callable[[Carrier], None] | None = None) -> tuple[Carrier, float]:
    """A connected call that pressed ``key`` in the menu (``before`` it, ``before(caller)``)."""
    return dial(lab.ops.address, key, before=before, user="alice"), time.monotonic()


def timeline(lab: Lab, caller: Carrier) -> list[tuple[str, Any]]:
    """(event, node) of the call's timeline (control API)."""
    data = lab.ops.http("GET", f"/calls/{caller.call_id}").json()
    return [(entry["event"], entry["detail"].get("node")) for entry in data["timeline"]]


# ------------------------------------------------------------------------------ tests
def test_bye_hand_back_names_the_destination_in_the_header_the_carrier_profile_names(lab: Lab) -> None:
    caller, _ = call(lab, "1")
    try:
        assert caller.listen(10, lambda: caller.got_request("BYE")), "voicegw hands the call back by BYE"
        bye = next(m for _, m in caller.sip_log if getattr(m, "method", None) == "BYE")
        assert bye.headers.get("x-queue") == QUEUE, bye.headers
        assert bye.headers.get("x-transfer-destination") is None, "the profile's header, not the default"
        assert bye.headers.get("x-vg-caller") == "alice", "the carrier's context headers go with it"
    finally:
        done(caller)


def test_ringback_while_the_agent_rings_then_the_survey_after_the_agent_hangs_up(lab: Lab) -> None:
    with Agent(port=lab.agent_port, answer_delay=2.5) as agent:
        caller, pressed = call(lab, "2")
        try:
            assert caller.listen(10, lambda: agent.call is not None and agent.call.acked), "the agent answered"
            answered = time.monotonic()
            ringing = blocks_with(caller, tones.RINGBACK_US.frequencies, pressed, answered)
            assert ringing >= 10, f"the caller hears >= 1 s of 440+480 Hz ringback while the agent rings ({ringing})"
            assert blocks_with(caller, (SURVEY_HZ,), pressed) == 0
            caller.listen(0.5)
            assert blocks_with(caller, tones.RINGBACK_US.frequencies, answered + 0.2) == 0, \
                "the ringback stops when the agent answers"

            hung_up = time.monotonic()
            agent.bye()
            assert caller.listen(8, lambda: caller.got_request("BYE")), "the survey ends with the flow's hangup"
            heard = blocks_with(caller, (SURVEY_HZ,), hung_up)
            assert heard >= 5, f"after the agent's BYE the caller hears the post_agent node's prompt ({heard})"
            assert ("flow.post_agent", "survey") in timeline(lab, caller), "the flow resumed at post_agent"
        finally:
            done(caller)


def test_warm_transfer_completed_by_bridge_agent_hangs_up_flow_resumes_at_post_agent(lab: Lab) -> None:
    with Agent(port=lab.agent_port) as agent:
        caller, _ = call(lab, "3")
        try:
            assert caller.listen(15, lambda: bool(lab.ops.logged("transfer.succeeded"))
                                 and any(e.get("call_id") == caller.call_id
                                         for e in lab.ops.logged("transfer.succeeded"))), \
                "the warm transfer completes"
            # caller and agent talk: the agent's audio reaches the caller
            mark = time.monotonic()
            for _ in range(15):
                agent.send_rtp(bytes([0xA5]) * 160)
                caller.listen(0.02)
            caller.listen(0.3)
            assert sum(1 for p in caller.audio(mark) if p[12:] == bytes([0xA5]) * 160) >= 10

            hung_up = time.monotonic()
            agent.bye()
            assert caller.listen(8, lambda: caller.got_request("BYE")), "the survey ends with the flow's hangup"
            heard = blocks_with(caller, (SURVEY_HZ,), hung_up)
            assert heard >= 5, f"after the agent's BYE the caller hears the post_agent node's prompt ({heard})"
            assert ("flow.post_agent", "survey") in timeline(lab, caller), "the flow resumed at post_agent"
        finally:
            done(caller)


def test_flow_transfer_carries_the_transcript_link_which_works_ten_times_then_410(lab: Lab) -> None:
    summary = "Wants to change the billing address."

    def attach(caller: Carrier) -> None:
        reply = lab.ops.http("POST", f"/calls/{caller.call_id}/transcript",
                             json={"transcript": "bot: hello\ncaller: my address moved", "summary": summary})
        assert reply.status_code == 201, reply.text

    with Agent(port=lab.agent_port) as agent:
        caller, _ = call(lab, "2", before=attach)
        try:
            assert caller.listen(10, lambda: agent.call is not None and agent.call.acked), "the agent answered"
            invite = agent.call.invite
            url = invite.headers.get("x-vg-transcript")
            assert url is not None and "/t/" in url, invite.headers
            assert invite.headers.get("x-vg-summary") == summary
            reads = [httpx.get(url, timeout=5) for _ in range(11)]
            assert [r.status_code for r in reads] == [200] * 10 + [410]
            assert "my address moved" in reads[0].text and summary in reads[0].text
            assert [r.headers["x-uses-left"] for r in reads[:10]] == [str(9 - i) for i in range(10)]
        finally:
            done(caller)


def test_context_set_through_the_api_goes_with_the_flows_transfer(lab: Lab) -> None:
    def patch(caller: Carrier) -> None:
        path = f"/calls/{caller.call_id}/context"
        bad = lab.ops.http("PATCH", path, json={"context": {"favourite_colour": "blue"}})
        assert bad.status_code == 422, bad.text
        reply = lab.ops.http("PATCH", path, json={"context": {"ivr.intent": "billing", "bot_session": "s-42",
                                                              "ivr.lang": "de"}})
        assert reply.status_code == 200, reply.text
        reply = lab.ops.http("PATCH", path, json={"context": {"ivr.lang": None}})
        assert reply.json()["context"] == {"ivr.intent": "billing", "bot_session": "s-42"}

    with Agent(port=lab.agent_port) as agent:
        caller, _ = call(lab, "2", before=patch)
        try:
            assert caller.listen(10, lambda: agent.call is not None), "the agent was invited"
            invite = agent.call.invite
            assert invite.headers.get("x-vg-intent") == "billing", invite.headers
            assert invite.headers.get("user-to-user") == f"{b's-42'.hex()};encoding=hex"
        finally:
            done(caller)
