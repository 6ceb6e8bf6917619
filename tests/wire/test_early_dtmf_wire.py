"""A key pressed the moment voicegw answers reaches the flow (engine: the call holds the
keys pressed before the flow listens, bounded, and the flow takes them first).

voicegw runs a flow whose first node waits for a key (``5``: hang up; no key within
30 s: a goodbye prompt first). The caller (peers.caller.Caller) sends the whole RFC 4733
event for ``5`` as soon as voicegw's 200 arrives, before its ACK: under load, before the
flow's task has taken its first step. Asserted on the wire: voicegw's BYE comes within
10 s (the key's way; the time-out's would take 30 s), and on the daemon's log: the
flow got the key.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml
from peers.caller import Caller
from peers.daemon import wait_until
from peers.lab import NO_SHEDDING, start_voicegw

from voicegw.media.dtmf import event_payloads

pytestmark = [pytest.mark.wire]

FLOW = {"start": "keys", "nodes": {
    "keys": {"type": "collect", "routes": {"5": "bye"}, "timeout": 30, "on_timeout": "late"},
    "late": {"type": "message", "text": "Goodbye.", "next": "bye"},
    "bye": {"type": "hangup"},
}}


@dataclass
class KeyAtAnswer(Caller):
    """Presses ``digit`` the moment the 200 arrives: the event's packets, then the ACK."""

    digit: str = "5"
    pressed: bool = False

    def _send_in_dialog(self, method: str, cseq: int | None = None, body: bytes = b"", extra: str = "") -> None:
        if method == "ACK" and not self.pressed:
            self.pressed = True
            self.rtp_ts += 160
            for payload, marker in event_payloads(self.digit):
                self.send_rtp(payload, pt=101, marker=marker)
        super()._send_in_dialog(method, cseq, body, extra)


def test_a_key_pressed_as_voicegw_answers_reaches_the_flow(lab) -> None:
    flows = lab.workdir / "flows"
    flows.mkdir()
    (flows / "keys.yaml").write_text(yaml.safe_dump(FLOW), encoding="utf-8")
    start_voicegw(lab, bot=False, sections={**NO_SHEDDING, "flows_dir": str(flows), "default_flow": "keys"})
    caller = KeyAtAnswer(lab.daemon.address)
    try:
        assert caller.invite().status == 200
        assert caller.pressed

        def hung_up() -> bool:
            caller.poll(0.05)
            return caller.got_request("BYE")

        assert wait_until(hung_up, 10), f"the key never reached the flow\n{lab.report()}"
    finally:
        caller.close()
    # the daemon's log is read by a thread: the line may trail the BYE a moment
    assert wait_until(lambda: lab.events("flow.dtmf"), 5), lab.report()
    assert [e["digit"] for e in lab.events("flow.dtmf")] == ["5"]
