"""sipp in the roles of tests/peers/roles.py: caller, agent, bot (it echoes RTP, it cannot
tell tones apart; its message log is its view of the wire)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from peers.calls import HOST, SCENARIOS, SipMessage, SippPeer
from peers.daemon import DaemonProcess, wait_until
from peers.lab import sipfrags
from peers.net import free_port


class _Sipp:
    """A sipp process kept by an adapter (its message log is its view of the wire)."""

    peer: SippPeer | None = None

    def _messages(self) -> list[SipMessage]:
        return self.peer.messages() if self.peer is not None else []

    def _flow(self) -> list[str]:
        return self.peer.flow() if self.peer is not None else []

    def _exited_ok(self, timeout: float) -> bool:
        assert self.peer is not None
        code = self.peer.wait(timeout)
        assert code == 0, f"sipp {self.peer.name} exited {code}\n{self.peer.report()}"
        return True

    def report(self) -> str:
        return self.peer.report() if self.peer is not None else ""

    def close(self) -> None:
        if self.peer is not None:
            self.peer.stop()


class SippCaller(_Sipp):
    """sipp as the caller (tests/peers/scenarios/ops_uac_call.xml): it echoes what it
    receives (``-rtp_echo``) and hangs up by itself after ``talk_ms`` (sipp takes no
    commands mid-call), so the scenario's checks must fit in that time; a BYE from
    voicegw before its own fails its script (exit code not 0)."""

    name = "sipp"
    detects = False
    user = "caller"  # ops_uac_call.xml's From

    def __init__(self, workdir: Path, talk_ms: int = 8000) -> None:
        self.workdir = workdir
        self.talk_ms = talk_ms

    def voicegw_port(self) -> int | None:
        return None

    def call(self, voicegw: DaemonProcess) -> None:
        self.peer = SippPeer("caller", SCENARIOS / "ops_uac_call.xml", self.workdir, remote=voicegw.address,
                             rtp_echo=True, extra=("-d", str(self.talk_ms))).start()
        self.voicegw = voicegw
        assert wait_until(lambda: "out ACK" in self._flow(), 10, 0.05), \
            f"the sipp caller's call was not connected\n{self.report()}"

    def talk(self, hz: float) -> None:
        pass  # sipp echoes

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        raise AssertionError("sipp cannot tell tones apart: it echoes (pair it with a detecting peer)")

    def kept(self) -> bool:
        return self.peer is not None and self.peer.proc is not None and self.peer.proc.poll() is None \
            and "in BYE" not in self._flow()

    def hang_up(self) -> None:
        self._exited_ok(self.talk_ms / 1000 + 10)
        assert "out BYE" in self._flow() and "in BYE" not in self._flow(), self._flow()


class SippAgent(_Sipp):
    """sipp as the agent: agent_answer.xml (its script checks voicegw's context headers;
    ``-rtp_echo``), agent_busy.xml (486), agent_noanswer.xml (180, then requires a CANCEL)."""

    name = "sipp"
    detects = False
    SCRIPTS: ClassVar[dict[str, str]] = {"answer": "agent_answer.xml", "busy": "agent_busy.xml",
                                         "never": "agent_noanswer.xml"}

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port(HOST)
        self.uri = f"sip:agent@{HOST}:{self.port}"
        self.allow = f"sip:*@{HOST}:{self.port}"

    def voicegw_port(self) -> int | None:
        return None

    def start(self, mode: str) -> None:
        self.peer = SippPeer("agent", SCENARIOS / self.SCRIPTS[mode], self.workdir, port=self.port,
                             rtp_echo=mode == "answer").start()

    def _wait_flow(self, line: str, timeout: float) -> bool:
        return wait_until(lambda: line in self._flow(), timeout, 0.05)

    def wait_answered(self, timeout: float = 10.0) -> bool:
        return self._wait_flow("in ACK", timeout)

    def talk(self, hz: float) -> None:
        pass

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        raise AssertionError("sipp cannot tell tones apart: it echoes (pair it with a detecting peer)")

    def invite(self, timeout: float = 5.0) -> SipMessage | None:
        self._wait_flow("in INVITE", timeout)
        return next((m for m in self._messages() if m.direction == "in" and m.method == "INVITE"
                     and m.status is None), None)

    def caller_context(self) -> str | None:
        invite = self.invite()
        return invite.header("x-vg-caller") if invite else None

    def wait_cancelled(self, timeout: float = 10.0) -> bool:
        # agent_noanswer.xml requires the CANCEL: its clean exit is the proof
        return self._wait_flow("in CANCEL", timeout) and self._exited_ok(timeout)

    def wait_bye(self, timeout: float = 10.0) -> bool:
        return self._wait_flow("in BYE", timeout) and self._exited_ok(timeout)


class SippBot(_Sipp):
    """sipp as the bot: bot_refer.xml (REFER, NOTIFYs, then voicegw's BYE) when the
    transfer should succeed, bot_refer_stay.xml (REFER, NOTIFYs, an INFO 1.5 s later
    proves its leg is still up, BYE when the call ends) when it should fail; it echoes
    the caller's audio (``-rtp_echo``)."""

    name = "sipp"
    detects = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port(HOST)
        self.uri = f"sip:bot@{HOST}:{self.port}"

    def start(self, refer_to: str, succeeds: bool) -> None:
        script = "bot_refer.xml" if succeeds else "bot_refer_stay.xml"
        self.peer = SippPeer("bot", SCENARIOS / script, self.workdir, port=self.port, rtp_echo=True,
                             keys={"refer_to": refer_to}).start()

    def refer(self) -> None:
        pass  # the script REFERs 300 ms after the ACK

    def sound(self, caller_hz: float) -> float:
        return caller_hz

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        raise AssertionError("sipp cannot tell tones apart: it echoes")

    def _frags(self) -> list[tuple[int, bool]]:
        return sipfrags(self._messages())

    def notified(self) -> list[int]:
        return [status for status, _ in self._frags()]

    def wait_final(self, timeout: float = 15.0) -> tuple[int, bool]:
        wait_until(lambda: any(final for _, final in self._frags()), timeout, 0.05)
        frags = self._frags()
        assert frags and frags[-1][1], f"no final NOTIFY reached the bot: {frags}\n{self.report()}"
        return frags[-1]

    def wait_bye(self, timeout: float = 10.0) -> bool:
        return wait_until(lambda: "in BYE" in self._flow(), timeout, 0.05)

    def wait_kept(self, timeout: float = 10.0) -> bool:
        # bot_refer_stay.xml's INFO, 1.5 s after the final NOTIFY, answered 200
        return wait_until(lambda: "in 200 INFO" in self._flow(), timeout, 0.05) \
            and "in BYE" not in self._flow()

    def finish(self) -> None:
        self._exited_ok(15)
