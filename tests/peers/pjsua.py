"""PJSIP (pjsua2) as a scriptable SIP user agent for wire tests: caller, agent, bot,
transferee, referring bot; DTMF (RFC 4733), hold, tones and recordings, REFER
(blind and with Replaces), digest registration, TLS and SRTP.

Why a subprocess per UA. pjsua2 keeps one global ``Endpoint`` per process, and
re-creating it after ``libDestroy`` in the same process is not something PJSIP
promises to survive (its pools, its threads, SWIG's director objects). A test needs
several UAs at once (caller, agent, bot; a transferee's second call) and a clean
start and stop per test; a PJSIP crash or assertion must fail one test, not kill
pytest. So each :class:`Pjsua` is its own process (``pjsua_child.py``: one
endpoint, one transport, one account) driven over a JSON-lines pipe: commands with
an id and an answer, events pushed as they happen (call states, media, DTMF, REFER
progress, and every SIP message PJSIP sent or received, taken from its message log).
The test process only reads events, so nothing of PJSIP runs inside pytest and no
pjsua2 callback ever runs on a thread PJSIP did not expect. Starting a UA costs
about 0.2 s.

Every wait here has a deadline; :meth:`Pjsua.stop` asks the child to hang up and
destroy its endpoint, and kills it if it does not exit in time. The child also exits
when its stdin closes (the test process died) and after ``max_life`` seconds.

Audio: a UA feeds each call a sine (``tone_hz``, or :meth:`PjCall.tone`) so that the
far side can tell who it hears, and records what it receives as 8 kHz 16-bit WAV
(:meth:`PjCall.record`), which :func:`tone_power` (Goertzel, voicegw.media.tones)
checks. Without a tone PJSIP sends silence (VAD is off so every packet counts).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from voicegw.media.tones import goertzel_power

from .calls import SipMessage

CHILD = Path(__file__).resolve().with_name("pjsua_child.py")
HOST = "127.0.0.1"

try:  # the tests that need it fail with one clear message when it is missing
    import pjsua2 as _pjsua2  # noqa: F401

    AVAILABLE = True
except ImportError:  # pragma: no cover - the test extras install it
    AVAILABLE = False


class PjsuaError(RuntimeError):
    """A command the PJSIP agent refused, or a wait that ran out."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS transport (the CA verifies the far side when ``verify``)."""

    ca: Path
    cert: Path
    key: Path
    verify: bool = False


@dataclass(frozen=True)
class Registration:
    """REGISTER with digest auth (RFC 3261 section 10, 22) at ``registrar``."""

    registrar: str
    """e.g. ``sip:127.0.0.1:5061``"""
    user: str
    password: str
    domain: str
    """The account's AOR host: the AOR is ``sip:user@domain``."""
    realm: str = "*"
    auth_user: str | None = None
    expires: int = 300
    proxy: str | None = None


def tone_power(samples: np.ndarray, hz: float) -> float:
    """Goertzel power of ``samples`` (8 kHz) at ``hz``: about 0.25 for a full-scale sine,
    about 0.015 for the default tone level (8000), 0 for silence."""
    return goertzel_power(samples, hz, 8000)


def hears(samples: np.ndarray, hz: float, floor: float = 1e-3) -> bool:
    """``hz`` is clearly present: above ``floor`` and 10 times stronger than at a
    neighbouring frequency 150 Hz away (so broadband noise or speech does not count)."""
    power = tone_power(samples, hz)
    return power > floor and power > 10 * tone_power(samples, hz + 150)


def rms(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.asarray(samples, dtype=np.float64) ** 2)))


class Pjsua:
    """One PJSIP user agent in its own process; ``with Pjsua(tmp_path, "agent") as ua``.

    ``incoming``: what to do with an incoming INVITE: ``answer`` (180, then 200 after
    ``answer_delay``), ``busy`` (``busy_status``, 486 by default), ``ignore`` (180, then
    nothing: rings until CANCEL) or ``manual`` (180; :meth:`PjCall.answer` decides).
    ``accept_transfer``: 202 lets PJSIP's own REFER handling make the new call (a new
    call object, ``xfer_request`` event names it); another status refuses the REFER.
    ``bye_after_transfer``: hang up once a REFER we sent got its final 2xx NOTIFY.
    ``srtp``: None, ``"optional"`` or ``"mandatory"`` (SDES, RFC 4568).
    ``register``: REGISTER at a registrar with digest auth; ``credentials`` (user,
    password): answer digest challenges to any request without registering.
    """

    def __init__(self, workdir: Path, name: str = "pjsua", *, user: str | None = None,
                 incoming: str = "answer", answer_delay: float = 0.0, busy_status: int = 486,
                 tone_hz: float | None = None, transport: str = "udp", tls: TlsFiles | None = None,
                 sips: bool = False, srtp: str | None = None, srtp_secure_signaling: int = 0,
                 register: Registration | None = None,
                 credentials: tuple[str, str] | None = None, accept_transfer: int = 202,
                 bye_after_transfer: bool = True, host: str = HOST, port: int = 0,
                 max_life: float = 300.0) -> None:
        self.workdir = Path(workdir)
        self.name = name
        self.config: dict[str, Any] = {
            "name": name, "user": user or name, "host": host, "port": port,
            "incoming": incoming, "answer_delay": answer_delay, "busy_status": busy_status,
            "tone_hz": tone_hz, "transport": "tls" if tls else transport, "sips": sips,
            "srtp": srtp, "srtp_secure_signaling": srtp_secure_signaling,
            "accept_transfer": accept_transfer, "bye_after_transfer": bye_after_transfer,
            "max_life": max_life, "log": str(self.workdir / f"{name}_pjsip.log"),
            "credentials": list(credentials) if credentials else None,
        }
        if tls:
            self.config["tls"] = {"ca": str(tls.ca), "cert": str(tls.cert), "key": str(tls.key),
                                  "verify": tls.verify}
        if register:
            self.config["register"] = {
                "registrar": register.registrar, "user": register.user,
                "password": register.password, "domain": register.domain,
                "realm": register.realm, "auth_user": register.auth_user,
                "expires": register.expires, "proxy": register.proxy,
            }
        self.host = host
        self.port = 0
        self.uri = ""
        self.events: list[dict[str, Any]] = []
        """Everything the agent reported but SIP messages, in order."""
        self.sip: list[SipMessage] = []
        """Every SIP message PJSIP sent ("out") or received ("in"), in order."""
        self.sip_times: list[float] = []
        self.sip_transports: list[str] = []
        """The transport of each message in :attr:`sip` ("UDP", "TLS", "TCP")."""
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._next_id = 0
        self._records = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stderr = self.workdir / f"{name}_stderr.log"

    # ------------------------------------------------------------------ life
    def start(self, timeout: float = 10.0) -> Pjsua:
        if not AVAILABLE:
            raise RuntimeError("pjsua2 is not installed: pip install -e '.[test]' (pjsua2-python)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self._stderr, "wb") as err:
            self._proc = subprocess.Popen(
                [sys.executable, str(CHILD), json.dumps(self.config)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, cwd=self.workdir,
            )
        self._reader = threading.Thread(target=self._read, name=f"pjsua-{self.name}", daemon=True)
        self._reader.start()
        ready = self.wait_event("ready", timeout)
        self.port = int(ready["port"])
        self.uri = str(ready["uri"])
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """Hang up everything, destroy the endpoint, end the process (killed after
        ``timeout``); returns its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                self._send({"id": -1, "op": "quit"})
            except OSError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(5)
        return proc.returncode

    def stop_nowait(self) -> None:
        """Ask the agent to quit without waiting (see :func:`stop_all`)."""
        if self.running():
            try:
                self._send({"id": -1, "op": "quit"})
            except OSError:
                pass

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def contact(self, user: str | None = None) -> str:
        """A URI that reaches this UA directly (``sip:user@host:port;transport=...``)."""
        scheme = "sips" if self.config["sips"] else "sip"
        params = {"tls": ";transport=tls", "tcp": ";transport=tcp"}.get(self.config["transport"], "")
        return f"{scheme}:{user or self.config['user']}@{self.host}:{self.port}{params}"

    # ------------------------------------------------------------------ protocol
    def _send(self, obj: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(obj) + "\n").encode())
        self._proc.stdin.flush()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if "id" in obj:
                    self._replies[int(obj["id"])] = obj
                elif obj.get("event") == "sip":
                    data = obj["data"].replace("\r\n", "\n").replace("\n", "\r\n").encode()
                    self.sip.append(SipMessage.parse(data, obj["dir"]))
                    self.sip_times.append(float(obj["t"]))
                    self.sip_transports.append(str(obj.get("transport", "")).upper())
                else:
                    self.events.append(obj)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"event": "exited"})
            self._cond.notify_all()

    def request(self, op: str, timeout: float = 5.0, **args: Any) -> Any:
        """Run one command in the agent; its result (PjsuaError if it failed)."""
        if not self.running():
            raise PjsuaError(f"pjsua {self.name} is not running\n{self.report()}")
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        self._send({"id": ident, "op": op, "args": args})
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running():
                    raise PjsuaError(f"pjsua {self.name}: no answer to {op} in {timeout} s")
                self._cond.wait(min(left, 0.1))
            reply = self._replies.pop(ident)
        if not reply.get("ok"):
            raise PjsuaError(f"pjsua {self.name}: {op} {args} failed: {reply.get('error')}")
        return reply.get("result")

    # ------------------------------------------------------------------ events
    def find(self, name: str, since: int = 0, **fields: Any) -> dict[str, Any] | None:
        """The first event ``name`` at index >= ``since`` whose fields match."""
        with self._cond:
            for event in self.events[since:]:
                if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                    return event
        return None

    def all(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events
                    if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())]

    def wait_event(self, name: str, timeout: float = 10.0, since: int = 0, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.find(name, since, **fields)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (name != "exited" and self.find("exited") is not None):
                    raise PjsuaError(f"pjsua {self.name}: no {name} {fields} in {timeout} s"
                                     f"{' (the agent exited)' if left > 0 else ''}\n" + self.report())
                self._cond.wait(min(left, 0.1))

    def incoming(self, timeout: float = 10.0, index: int = 0) -> PjCall:
        """The ``index``-th incoming call (0: the first), waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.all("incoming")
            if len(calls) > index:
                return PjCall(self, calls[index]["call"])
            if time.monotonic() >= deadline:
                raise PjsuaError(f"pjsua {self.name}: no incoming call #{index} in {timeout} s\n"
                                 + self.report())
            with self._cond:
                self._cond.wait(0.1)

    # ------------------------------------------------------------------ actions
    def call(self, uri: str, headers: dict[str, str] | None = None) -> PjCall:
        """INVITE ``uri`` (with extra ``headers``); the call, still ringing."""
        return PjCall(self, self.request("call", uri=uri, headers=headers or {}))

    def set(self, **behaviour: Any) -> None:
        """Change how the UA behaves from now on (``incoming``, ``answer_delay``,
        ``accept_transfer``, ``bye_after_transfer``, ``tone_hz``)."""
        self.request("set", **behaviour)
        self.config.update(behaviour)

    # ------------------------------------------------------------------ the wire
    def messages(self) -> list[SipMessage]:
        with self._cond:
            return list(self.sip)

    def requests(self, method: str, direction: str = "in") -> list[SipMessage]:
        return [m for m in self.messages()
                if m.direction == direction and m.status is None and m.method == method]

    def responses(self, method: str, direction: str = "in") -> list[SipMessage]:
        return [m for m in self.messages()
                if m.direction == direction and m.status is not None and m.method == method]

    def flow(self) -> list[str]:
        """What crossed the wire, as "out INVITE", "in 180 INVITE", ..."""
        return [m.describe() for m in self.messages()]

    def wait_sip(self, method: str, direction: str = "in", timeout: float = 10.0,
                 status: int | None = None, count: int = 1) -> list[SipMessage]:
        """Wait until ``count`` requests (or responses with ``status``) went that way."""
        deadline = time.monotonic() + timeout
        while True:
            if status is None:
                found = self.requests(method, direction)
            else:
                found = [m for m in self.responses(method, direction) if m.status == status]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise PjsuaError(f"pjsua {self.name}: {count} x {direction} {status or ''} {method} "
                                 f"not seen in {timeout} s; flow {self.flow()}")
            with self._cond:
                self._cond.wait(0.05)

    def wait_final(self, method: str, direction: str = "in", timeout: float = 10.0) -> SipMessage:
        """The first final response to ``method`` that went ``direction``, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.responses(method, direction) if (m.status or 0) >= 200]
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise PjsuaError(f"pjsua {self.name}: no final {direction} response to {method} "
                                 f"in {timeout} s; flow {self.flow()}")
            with self._cond:
                self._cond.wait(0.05)

    def report(self) -> str:
        err = self._stderr.read_text(errors="replace")[-1500:] if self._stderr.exists() else ""
        events = [{k: v for k, v in e.items() if k != "data"} for e in self.events[-25:]]
        return (f"--- pjsua {self.name} ({self.uri}) events {events}\n--- flow {self.flow()}\n"
                f"--- stderr {err}\n--- log {self.config['log']}")

    def _record_path(self, key: str) -> Path:
        self._records += 1
        return self.workdir / f"{self.name}-{key}-{self._records}.wav"


class PjCall:
    """One call of a :class:`Pjsua` (our id ``c1``, ``c2``...; not the SIP Call-ID)."""

    def __init__(self, ua: Pjsua, key: str) -> None:
        self.ua = ua
        self.key = key

    def __repr__(self) -> str:
        return f"PjCall({self.ua.name}/{self.key})"

    # --- state
    def states(self) -> list[str]:
        return [e["state"] for e in self.ua.all("state", call=self.key)]

    @property
    def state(self) -> str:
        states = self.states()
        return states[-1] if states else "NULL"

    def last(self, name: str) -> dict[str, Any] | None:
        found = self.ua.all(name, call=self.key)
        return found[-1] if found else None

    def wait_state(self, state: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the call reached ``state`` (CONFIRMED, DISCONNECTED, EARLY...)."""
        return self.ua.wait_event("state", timeout, call=self.key, state=state)

    def wait_confirmed(self, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_state("CONFIRMED", timeout)

    def wait_disconnected(self, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_state("DISCONNECTED", timeout)

    @property
    def status(self) -> int | None:
        """The last status PJSIP reported for the call (e.g. the final response)."""
        event = self.last("state")
        return None if event is None else int(event["status"])

    @property
    def call_id(self) -> str | None:
        """The SIP Call-ID."""
        for event in self.ua.all("state", call=self.key):
            if event.get("call_id"):
                return str(event["call_id"])
        return None

    def info(self) -> dict[str, Any]:
        return self.ua.request("info", call=self.key)

    def rx_packets(self) -> int:
        streams = self.info().get("streams") or [{}]
        return int(streams[0].get("rx", 0))

    # --- actions
    def answer(self, status: int = 200) -> None:
        self.ua.request("answer", call=self.key, status=status)

    def hangup(self, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        self.ua.request("hangup", call=self.key, status=status or 0, headers=headers or {})

    def hold(self) -> None:
        self.ua.request("hold", call=self.key)

    def unhold(self) -> None:
        self.ua.request("unhold", call=self.key)

    def dtmf(self, digits: str, duration_ms: int = 160) -> None:
        """RFC 4733 telephone-events in the call's RTP."""
        self.ua.request("dtmf", call=self.key, digits=digits, duration=duration_ms)

    def tone(self, hz: float | None, level: int = 8000) -> None:
        """Feed a continuous sine of ``hz`` into the call (None: stop)."""
        self.ua.request("tone", call=self.key, hz=hz, level=level)

    def refer(self, target: str, headers: dict[str, str] | None = None) -> None:
        """REFER the far side to ``target`` (RFC 3515); progress comes as
        ``xfer_status`` events (the NOTIFY sipfrags). PJSIP puts ``target`` in Refer-To
        as given, so a bare URI is wrapped in <>: without them its ``;transport=tls``
        would be a header parameter of Refer-To, not part of the URI (RFC 3261 20.10)."""
        if "<" not in target:
            target = f"<{target}>"
        self.ua.request("refer", call=self.key, target=target, headers=headers or {})

    def refer_replaces(self, other: PjCall, headers: dict[str, str] | None = None) -> None:
        """REFER the far side to ``other``'s remote party with Replaces (RFC 3891)."""
        self.ua.request("refer_replaces", call=self.key, other=other.key, headers=headers or {})

    def transfer_statuses(self) -> list[tuple[int, bool]]:
        """(sipfrag status, final?) of every NOTIFY PJSIP reported for our REFER."""
        return [(int(e["status"]), bool(e["final"])) for e in self.ua.all("xfer_status", call=self.key)]

    def wait_transfer_final(self, timeout: float = 15.0) -> int:
        return int(self.ua.wait_event("xfer_status", timeout, call=self.key, final=True)["status"])

    def transferred_to(self, timeout: float = 10.0) -> PjCall:
        """The new call PJSIP made when it accepted a REFER on this call."""
        event = self.ua.wait_event("xfer_request", timeout, call=self.key)
        if not event.get("new_call"):
            raise PjsuaError(f"the REFER on {self} was refused ({event.get('status')})")
        return PjCall(self.ua, event["new_call"])

    def replaced_by(self, timeout: float = 10.0) -> PjCall:
        """The call that replaced this one (an INVITE with Replaces, RFC 3891)."""
        return PjCall(self.ua, self.ua.wait_event("replaced", timeout, call=self.key)["new_call"])

    def dtmf_received(self) -> str:
        return "".join(e["digit"] for e in self.ua.all("dtmf", call=self.key))

    # --- audio
    def record_start(self) -> Path:
        path = self.ua._record_path(self.key)
        self.ua.request("record_start", call=self.key, path=str(path))
        return path

    def record_stop(self) -> np.ndarray:
        """Stop the recording; what it holds as int16 samples at 8 kHz."""
        path = self.ua.request("record_stop", call=self.key)
        if not path:
            return np.zeros(0, dtype=np.int16)
        return read_wav(Path(path))

    def listen(self, check: Callable[[np.ndarray], bool], timeout: float = 8.0,
               window: float = 1.0) -> bool:
        """Record ``window``-second slices of what the call receives until ``check``
        accepts one (True) or ``timeout`` has passed (False): a prompt rendered late on a
        loaded machine is still heard, and a test never waits longer than it must."""
        deadline = time.monotonic() + timeout
        while True:
            if check(self.record(window)):
                return True
            if time.monotonic() + window > deadline:
                return False

    def record(self, seconds: float) -> np.ndarray:
        """``seconds`` of what the call receives, as int16 samples at 8 kHz."""
        self.record_start()
        time.sleep(seconds)
        return self.record_stop()


def stop_all(*uas: Pjsua, timeout: float = 5.0) -> None:
    """Stop several agents at once (each takes a few hundred ms to hang up)."""
    for ua in uas:
        ua.stop_nowait()
    for ua in uas:
        ua.stop(timeout)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: not 16-bit mono")
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype="<i2").copy()


class PjsuaLab:
    """The PJSIP agents of one test, each in ``workdir``; all stopped together on exit
    (the ``pjsua`` fixture in tests/conftest.py is one)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.uas: list[Pjsua] = []

    def ua(self, name: str, **options: Any) -> Pjsua:
        """A started :class:`Pjsua` named ``name`` (options as for :class:`Pjsua`)."""
        ua = Pjsua(self.workdir, name, **options)
        self.uas.append(ua)
        return ua.start()

    def report(self) -> str:
        return "\n".join(ua.report() for ua in self.uas)

    def dropped(self) -> list[str]:
        """Messages some agent received and threw away as unparsable (PJSIP's log)."""
        return [f"{ua.name}: {e['text']}" for ua in self.uas for e in ua.all("dropped")]

    def close(self) -> None:
        stop_all(*self.uas)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
