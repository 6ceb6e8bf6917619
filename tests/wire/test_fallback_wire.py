"""The fallback rules of a flow's agent_transfer node, over the wire (issue 4).

One daemon for the module (``voicegw run --config`` with ``flows_dir``/``default_flow``
pointing at a flow this module writes, its control API on a free port). Every prompt
is a WAV file written here with its own tone, so what reached the caller tells which
prompt played:

=============  =======  ==========================================================
prompt         Hz       where
=============  =======  ==========================================================
``retry``      300      message node ``retry`` (a 486's goto)
``busy``       600      rule ``486`` (goto retry; retry in node ``agent_retry``)
``noanswer``   900      rule ``[timeout, no_answer]`` (goto apology)
``next``       1100     rule ``[405, 501]``: next attempt (REFER -> INVITE)
``default``    1400     the default rule (end, with an end message)
``apology``    1900     message node ``apology``
``endmsg``     2400     the default rule's end message, before the BYE
``exhausted``  2800     ``on_exhausted`` of node ``agent_retry`` (goto apology)
=============  =======  ==========================================================

Each WAV is 0.4 s of tone then 0.12 s of silence, so two plays of one prompt stay two.
The scripted caller (peers.agent.Carrier: RTP recorded with arrival times) presses a
key in the ``menu`` node; the agent is a sipp UAS (tests/peers/scenarios/agent_*.xml) on the port
the flow names: busy (486), unavailable (503), ringing until CANCEL (``ring_timeout``
2 s), answering with RTP echo. Each 20 ms packet the caller got is labelled with the
prompt tone that dominates it (Goertzel on the decoded PCMU), runs of one label are
the prompts heard, in order. Which node ran next is read from the call's timeline
(control API: ``flow.prompt node=...``, ``transfer.fallback rule/action``), and the
caller's SIP tells whether it was hung up (only an ``end`` rule may).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from peers.agent import Carrier, _ok, dial
from peers.calls import SIPP, SippPeer
from peers.net import free_port
from peers.ops import OpsDaemon, nothing_broke

from voicegw.media import g711
from voicegw.media.tones import goertzel_power
from voicegw.media.wav import write_wav
from voicegw.sip.message import Request
from voicegw.sip.parser import parse_message

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(60),
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
]
SCENARIOS = Path(__file__).resolve().parents[1] / "peers" / "scenarios"

TONES = {"retry": 300, "busy": 600, "noanswer": 900, "next": 1100, "default": 1400,
         "apology": 1900, "endmsg": 2400, "exhausted": 2800}
TONE_SECONDS, GAP_SECONDS = 0.4, 0.12


# ------------------------------------------------------------------------------ audio
def tone_wav(path: Path, freq: float) -> Path:
    t = np.arange(int(TONE_SECONDS * 8000)) / 8000
    tone = 12000 * np.sin(2 * np.pi * freq * t)
    write_wav(path, np.concatenate([tone, np.zeros(int(GAP_SECONDS * 8000))]).astype(np.int16))
    return path


@functools.lru_cache(maxsize=100_000)
def label(payload: bytes) -> str | None:
    """The prompt whose tone dominates a 20 ms PCMU payload, or None (silence, other audio)."""
    samples = g711.ulaw_decode(payload).astype(np.float64)
    if np.sqrt(np.mean(samples**2)) < 500:
        return None
    total = float(np.mean((samples / 32768.0) ** 2))
    powers = {name: goertzel_power(samples, freq) for name, freq in TONES.items()}
    name = max(powers, key=powers.__getitem__)
    # a pure sine of mean power P has Goertzel power P/2 at its frequency
    return name if powers[name] > 0.35 * total else None


def heard(caller: Carrier, since: float = 0.0, min_packets: int = 8) -> list[str]:
    """The prompts the caller heard since ``since``, in order: runs of packets with one
    label (at least ``min_packets``, 160 ms), split by silence or a change of label."""
    runs: list[list[Any]] = []
    previous = None
    for when, data in list(caller.rtp_log):
        if when < since or len(data) <= 12 or data[1] & 0x7F != 0:
            continue
        name = label(data[12:])
        if name is not None and name == previous:
            runs[-1][1] += 1
        elif name is not None:
            runs.append([name, 1])
        previous = name
    return [name for name, count in runs if count >= min_packets]


def prompt_ended(caller: Carrier, name: str, since: float, quiet: float = 0.25) -> bool:
    """``name`` was heard and nothing has arrived for ``quiet`` seconds after it."""
    if name not in heard(caller, since):
        return False
    times = [t for t, _ in list(caller.rtp_log) if t >= since]
    return bool(times) and time.monotonic() - times[-1] >= quiet


# ------------------------------------------------------------------------------ the lab
@dataclass
class Lab:
    ops: OpsDaemon
    agent_port: int
    workdir: Path
    agent_uri: str


def _flow(prompts: dict[str, Path], agent: str) -> dict[str, Any]:
    def wav(name: str) -> dict[str, str]:
        return {"file": str(prompts[name])}

    return {
        "name": "fallback", "start": "menu",
        "nodes": {
            "menu": {"type": "collect", "routes": {"1": "agent", "2": "agent_next", "3": "agent_retry"},
                     "timeout": 60, "on_timeout": "hangup"},
            "agent": {
                "type": "agent_transfer", "target": agent, "method": "invite",
                "fallback": {
                    "rules": [
                        {"match": 486, "action": "goto", "node": "retry", "prompt": wav("busy")},
                        {"match": ["timeout", "no_answer"], "action": "goto", "node": "apology",
                         "prompt": wav("noanswer")},
                    ],
                    "default": {"action": "end", "prompt": wav("default"), "end_message": wav("endmsg")},
                },
            },
            "agent_next": {
                "type": "agent_transfer", "target": agent,
                "attempts": [{"method": "refer"}, {"method": "invite"}],
                "fallback": {
                    "rules": [{"match": [405, 501], "action": "next", "prompt": wav("next")}],
                    "default": {"action": "goto", "node": "apology"},
                },
            },
            "agent_retry": {
                "type": "agent_transfer", "target": agent, "method": "invite",
                "fallback": {
                    "rules": [{"match": 486, "action": "retry", "max_attempts": 2, "prompt": wav("busy")}],
                    "default": {"action": "goto", "node": "apology"},
                    "on_exhausted": {"action": "goto", "node": "apology", "prompt": wav("exhausted")},
                    "max_total_attempts": 3,
                },
            },
            "retry": {"type": "message", "file": str(prompts["retry"]), "next": "menu"},
            "apology": {"type": "message", "file": str(prompts["apology"]), "next": "menu"},
            "hangup": {"type": "hangup"},
        },
    }


@pytest.fixture(scope="module")
def _lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("fallback")
    prompts = {name: tone_wav(workdir / f"{name}.wav", freq) for name, freq in TONES.items()}
    flows = workdir / "flows"
    flows.mkdir()
    agent_port = free_port()
    agent = f"sip:agent@127.0.0.1:{agent_port}"
    (flows / "fallback.yaml").write_text(yaml.safe_dump(_flow(prompts, agent), sort_keys=False))
    ops = OpsDaemon(workdir / "daemon", config={
        "calls": {"transfer_allow": [agent], "ring_timeout": 2, "ringback": "silence",
                  "refer_timeout": 5, "notify_timeout": 5},
        "flows_dir": str(flows), "default_flow": "fallback",
    })
    with ops:
        yield Lab(ops, agent_port, workdir, agent)


@pytest.fixture
def lab(_lab: Lab, tmp_path: Path) -> Iterator[Lab]:
    with nothing_broke(_lab.ops, json_only=True):
        yield Lab(_lab.ops, _lab.agent_port, tmp_path, _lab.agent_uri)


def agent(lab: Lab, scenario: str, *, calls: int = 1, rtp_echo: bool = False) -> SippPeer:
    return SippPeer("agent", SCENARIOS / scenario, lab.workdir, port=lab.agent_port, calls=calls,
                    rtp_echo=rtp_echo, timeout=20).start()


def call(lab: Lab, key: str, cls: type[Carrier] = Carrier) -> tuple[Carrier, float]:
    """A connected call that pressed ``key`` in the menu; the time of the key."""
    return dial(lab.ops.address, key, cls=cls), time.monotonic()


def timeline(lab: Lab, caller: Carrier) -> list[tuple[str, dict[str, Any]]]:
    data = lab.ops.http("GET", f"/calls/{caller.call_id}").json()
    return [(entry["event"], entry["detail"]) for entry in data["timeline"]]


def prompted_nodes(lab: Lab, caller: Carrier) -> list[str]:
    return [d["node"] for e, d in timeline(lab, caller) if e == "flow.prompt"]


def fallbacks(lab: Lab, caller: Carrier) -> list[tuple[object, str, str]]:
    return [(d["status"], d["rule"], d["action"]) for e, d in timeline(lab, caller) if e == "transfer.fallback"]


def finish(caller: Carrier, peer: SippPeer) -> None:
    try:
        code = peer.wait(20)
        assert code == 0, peer.report()
    finally:
        peer.stop()
        caller.hang_up_quietly()
        caller.close()


# ------------------------------------------------------------------------------ tests
def test_busy_486_plays_its_prompt_then_the_retry_node_and_the_caller_stays(lab: Lab) -> None:
    peer = agent(lab, "agent_busy.xml")
    caller, pressed = call(lab, "1")
    try:
        assert caller.listen(10, lambda: prompt_ended(caller, "retry", pressed)), heard(caller, pressed)
        assert heard(caller, pressed) == ["busy", "retry"], "the 486 rule's prompt, then node retry"
        assert fallbacks(lab, caller) == [(486, "486", "goto")]
        assert prompted_nodes(lab, caller) == ["retry"], "node retry ran next (and then the menu waits)"
        caller.listen(0.5)
        assert not caller.got_request("BYE"), "a failed transfer never drops the caller"
        assert caller.bye().status == 200
    finally:
        finish(caller, peer)


def test_agent_503_matches_the_default_rule_end_prompt_end_message_then_bye(lab: Lab) -> None:
    peer = agent(lab, "agent_unavailable.xml")
    caller, pressed = call(lab, "1")
    try:
        assert caller.listen(10, lambda: caller.got_request("BYE")), heard(caller, pressed)
        bye_at = caller.requests_at("BYE")[0]
        assert heard(caller, pressed) == ["default", "endmsg"], "the default prompt, then the end message"
        tones = [t for t, d in list(caller.rtp_log) if t >= pressed and len(d) > 12 and label(d[12:]) == "endmsg"]
        assert bye_at >= tones[-1] - 0.05, "the BYE comes after the end message has played"
        assert fallbacks(lab, caller) == [(503, "default", "end")]
        assert prompted_nodes(lab, caller) == [], "no node ran after an end rule"
        ended = next(d for e, d in timeline(lab, caller) if e == "call.ended")
        assert "503" in ended["reason"], ended
    finally:
        finish(caller, peer)


def test_agent_never_answers_ring_timeout_plays_the_no_answer_prompt_then_apology(lab: Lab) -> None:
    peer = agent(lab, "agent_noanswer.xml")  # its scenario requires our CANCEL
    caller, pressed = call(lab, "1")
    try:
        assert caller.listen(12, lambda: prompt_ended(caller, "apology", pressed)), heard(caller, pressed)
        assert heard(caller, pressed) == ["noanswer", "apology"]
        assert fallbacks(lab, caller) == [("no_answer", "no_answer", "goto")]
        assert prompted_nodes(lab, caller) == ["apology"]
        failed = next(d for e, d in timeline(lab, caller) if e == "transfer.failed")
        assert failed["status"] == "no_answer", "our ring timeout is a no_answer (fallback_policy.py)"
        assert not caller.got_request("BYE")
        assert caller.bye().status == 200
    finally:
        finish(caller, peer)


def test_agent_answers_no_fallback_prompt_and_media_reaches_the_agent(lab: Lab) -> None:
    peer = agent(lab, "agent_answer.xml", rtp_echo=True)
    caller, pressed = call(lab, "1")
    try:
        assert caller.listen(8, lambda: any(e == "transfer.succeeded" for e, _ in timeline(lab, caller)))
        sent = [bytes([i]) * 160 for i in range(1, 31)]
        mark = time.monotonic()
        for payload in sent:
            caller.send_rtp(payload)
            time.sleep(0.005)
        caller.listen(1.0)
        echoed = [d[12:] for t, d in list(caller.rtp_log) if t >= mark and len(d) > 12 and d[1] & 0x7F == 0]
        assert [p for p in echoed if p in sent] == sent, "the agent's echo comes back: caller <-> agent"
        assert heard(caller, pressed) == [], "no fallback prompt played"
        assert fallbacks(lab, caller) == []
        assert not caller.got_request("BYE")
        assert caller.bye().status == 200
    finally:
        finish(caller, peer)


@dataclass
class NoReferCarrier(Carrier):
    """A carrier that cannot REFER: 405 Method Not Allowed."""

    def poll(self, timeout: float = 0.05) -> Request | Any:
        self.sip.settimeout(timeout)
        try:
            data, addr = self.sip.recvfrom(65535)
        except (TimeoutError, BlockingIOError):
            return None
        message = parse_message(data)
        self.received.append(message)
        self.sip_log.append((time.monotonic(), message))
        if isinstance(message, Request) and message.method == "REFER":
            self.refers.append(message)
            answer = _ok(data, message).replace(b"200 OK", b"405 Method Not Allowed", 1)
            self.sip.sendto(answer.replace(b"Content-Length", b"Allow: INVITE, ACK, BYE, CANCEL\r\nContent-Length", 1),
                            addr)
        elif isinstance(message, Request) and message.method != "ACK":
            self.sip.sendto(_ok(data, message), addr)
        return message


def test_refer_405_next_rule_prompt_then_invite_bridge_succeeds(lab: Lab) -> None:
    peer = agent(lab, "agent_answer.xml", rtp_echo=True)
    caller, pressed = call(lab, "2", NoReferCarrier)
    try:
        assert caller.listen(10, lambda: any(e == "transfer.succeeded" for e, _ in timeline(lab, caller)))
        assert len(caller.refers) == 1 and caller.refers[0].headers.get("refer-to") == f"<{lab.agent_uri}>"
        caller.listen(0.3)
        assert heard(caller, pressed) == ["next"], "the next rule's prompt, before the INVITE"
        assert fallbacks(lab, caller) == [(405, "405", "next")]
        methods = [d["method"] for e, d in timeline(lab, caller) if e == "transfer.started"]
        assert methods == ["refer", "invite"]
        invite_at = [d for e, d in timeline(lab, caller) if e == "leg.agent.dialing"]
        assert len(invite_at) == 1
        assert not caller.got_request("BYE"), "the caller stays, now with the agent"
        assert caller.bye().status == 200
    finally:
        finish(caller, peer)


def test_retry_rule_twice_then_exhausted_goes_to_the_configured_node(lab: Lab) -> None:
    peer = agent(lab, "agent_busy.xml", calls=3)  # busy three times; its scenario needs three INVITEs
    caller, pressed = call(lab, "3")
    try:
        assert caller.listen(15, lambda: prompt_ended(caller, "apology", pressed)), heard(caller, pressed)
        assert heard(caller, pressed) == ["busy", "busy", "exhausted", "apology"]
        assert fallbacks(lab, caller) == [(486, "486", "retry"), (486, "486", "retry"), (486, "exhausted", "goto")]
        assert [d["method"] for e, d in timeline(lab, caller) if e == "transfer.started"] == ["invite"] * 3
        assert prompted_nodes(lab, caller) == ["apology"]
        assert not caller.got_request("BYE")
        assert caller.bye().status == 200
    finally:
        finish(caller, peer)
