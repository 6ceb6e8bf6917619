"""The engine in-process: voicegw's own SIP endpoint, UA core and engine on a virtual
clock (peers/vloop.py), talking to in-process SIP user agents over an in-memory UDP
network, for tests/engine/.

The engine is driven at its outer boundary only: bytes in and out of its SIP endpoint
(``transport/endpoint.py``, the real one, on the loop's fake UDP) and RTP in and out
of its media endpoints (the real ones, bound on the same fake network). Nothing of
the engine's inside is touched, so the tests hold while the engine is rebuilt.

- :class:`Lab` owns the loop, the engine and the peers (``caller``, ``bot``,
  ``agent``), runs virtual time (``run_for``, ``run_until``) and checks that nothing
  is left behind (:meth:`Lab.leftovers`), counted as ``GET /debug/objects`` counts
  (engine and UA core statistics, as tests/wire/test_leak_wire.py asserts them) plus
  what only the virtual loop can see: every armed timer, every task, every socket
  still bound, every RTP packet sent after the call ended.
- the peers (:class:`Peer`, :class:`MediaSink`: peers/inproc_ua.py) are SIP UAs
  built from voicegw/sip/ with an RTP sink each.

The engine's log lines are kept as data while a lab runs (``lab.logs``, the last ones
in :meth:`Lab.describe`): rendering them cost a tenth of a test's time.

No TTS engine runs in the harness (a subprocess has no place on a virtual clock):
``Lab`` points the engine's TTS at a command that does not exist, so every spoken
prompt is the 1 s beep the engine falls back to.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Self

import structlog
from structlog.testing import LogCapture

from voicegw.engine.b2bua import Engine
from voicegw.engine.call import Call, Leg
from voicegw.engine.events import CallEnded
from voicegw.engine.outbound import Dialing
from voicegw.engine.transfer_state import Transfer
from voicegw.media.endpoint import MediaEndpoint
from voicegw.media.player import Player
from voicegw.media.relay import Bridge
from voicegw.settings import EngineConfig, TransferConfig
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.transaction import ClientTransaction, ServerTransaction
from voicegw.transport.endpoint import SipEndpoint

from .inproc_ua import HOST, HOSTS, SIP_PORT, SUPPORTED, Answer, MediaSink, Peer, PeerCall, peer_uri
from .leftovers import CORE_KEYS, ENGINE_KEYS
from .vloop import Datagram, VirtualLoop

__all__ = ["HOST", "HOSTS", "SIP_PORT", "Answer", "Lab", "MediaSink", "Peer", "PeerCall", "engine_config", "peer_uri"]

RTP_LOW, RTP_HIGH = 20000, 20099
FORGET_AFTER = 32.0
"""64*T1: the UA core's last transactions and kept ACKs live this long after a call.
The engine forgets an ended call at once; the lab keeps it this long (``calls()``,
``call()``), so that a test can read the timeline of a call that just ended."""


def engine_config(**overrides: Any) -> EngineConfig:
    """An engine config for the lab: voicegw on HOST, a small RTP range, transfers
    allowed to the agents, short timeouts; ``transfer`` may be a dict of overrides."""
    transfer = overrides.pop("transfer", {})
    base = TransferConfig(allow=(peer_uri("agent"), peer_uri("agent2")), ring_timeout=10.0,
                          refer_timeout=8.0, notify_timeout=20.0)
    config = EngineConfig(host=HOST, sip_port=SIP_PORT, rtp_port_min=RTP_LOW, rtp_port_max=RTP_HIGH,
                          bot_answer_timeout=10.0, tts_cache_dir="/nonexistent/voicegw-harness-tts",
                          transfer=replace(base, **transfer) if isinstance(transfer, dict) else transfer)
    return replace(config, **overrides)


# ------------------------------------------------------------------------------ the lab
class Lab:
    """voicegw's engine and its peers on one virtual loop."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.loop = VirtualLoop()
        asyncio.set_event_loop(self.loop)
        # the engine's log lines are kept as data (cheap: no rendering), shown by
        # describe() when a test fails; structlog's own config is restored at close()
        self.logs = LogCapture()
        self._structlog = structlog.get_config()
        structlog.configure(processors=[structlog.contextvars.merge_contextvars,
                                        structlog.processors.format_exc_info, self.logs])
        self.config = config or engine_config()
        self.endpoint = SipEndpoint()
        self.engine: Engine = None  # type: ignore[assignment]
        self.peers = {role: Peer(self.loop, role) for role in HOSTS}
        self.ended_at: float | None = None
        self._ended: dict[str, tuple[Any, float]] = {}
        """Ended calls the engine has let go of, kept FORGET_AFTER for the tests' reads."""
        self.late_rtp: list[Datagram] = []
        """RTP voicegw sent after every call had ended (a player ticking on)."""
        self.loop.network.tap = self._watch
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        await self.endpoint.start(HOST, SIP_PORT, None, lag_probe=False)
        self.endpoint.core = UserAgentCore(CoreConfig(host=HOST, udp_port=SIP_PORT, tcp_port=SIP_PORT,
                                                      supported=SUPPORTED))
        self.engine = Engine(self.endpoint, self.config)
        self.engine.tts.command = "voicegw-harness-has-no-tts"
        self.engine.listeners.append(self._keep_ended)
        self.endpoint.on_event = self.engine.handle_event
        for peer in self.peers.values():
            await peer.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def caller(self) -> Peer:
        return self.peers["caller"]

    @property
    def bot(self) -> Peer:
        return self.peers["bot"]

    @property
    def agent(self) -> Peer:
        return self.peers["agent"]

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()
        asyncio.set_event_loop(None)
        structlog.configure(**self._structlog)

    # -- time ---------------------------------------------------------------------------
    def now(self) -> float:
        return self.loop.time()

    def run_for(self, seconds: float) -> None:
        self.loop.run_for(seconds)

    def run_until(self, condition: Callable[[], bool], within: float = 60.0, step: float = 0.05) -> bool:
        """Run until ``condition()`` holds (checked every ``step`` s of virtual time),
        for at most ``within`` s; whether it held."""
        deadline = self.now() + within
        while not condition():
            if self.now() >= deadline:
                return False
            self.run_for(step)
        return True

    # -- what the engine holds ---------------------------------------------------------
    def _keep_ended(self, call: Call, at: float, event: Any) -> None:
        if isinstance(event, CallEnded):
            self._ended[call.key] = (call, at)

    def _drop_ended(self) -> None:
        horizon = self.now() - FORGET_AFTER
        for key in [key for key, (_, at) in self._ended.items() if at <= horizon]:
            del self._ended[key]

    def calls(self) -> list[Any]:
        """The engine's calls, and those that ended less than FORGET_AFTER ago."""
        self._drop_ended()
        live = self.engine.calls
        return [call for key, (call, _) in self._ended.items() if key not in live] + list(live.values())

    def call(self) -> Any:
        """The one call (held by the engine, or ended less than FORGET_AFTER ago)."""
        (call,) = self.calls()
        return call

    def events(self) -> list[str]:
        """The one call's timeline as event names."""
        return [event.name for _, event in self.call().timeline]

    def rtp_to(self, peer: Peer, since: float = 0.0, until: float | None = None) -> int:
        """RTP packets voicegw sent to ``peer``'s sink in [since, until) (virtual time)."""
        until = self.now() + 1.0 if until is None else until
        return sum(1 for d in self.loop.network.log
                   if d.destination == peer.media.address and d.source[0] == HOST and since <= d.at < until)

    def when(self, name: str) -> float:
        """When the one call's timeline first shows the event ``name``."""
        return next(at for at, event in self.call().timeline if event.name == name)

    def errors(self) -> list[str]:
        """The tracebacks of the exceptions the engine (or its SIP endpoint) logged."""
        return [entry["exception"] for entry in self.logs.entries if "exception" in entry]

    def _watch(self, datagram: Datagram) -> None:
        source_host, source_port = datagram.source
        if (self.ended_at is not None and source_host == HOST and RTP_LOW <= source_port <= RTP_HIGH + 1
                and datagram.at > self.ended_at):
            self.late_rtp.append(datagram)

    def settle(self) -> None:
        """Every call over: run past the time ended calls stay indexed (64*T1), and
        the transactions' last timers, with the late-RTP watch on."""
        assert self.run_until(lambda: not self.engine.active_calls(), within=120.0), self.describe()
        self.ended_at = self.now()
        self.run_for(FORGET_AFTER + 10.0)
        self._drop_ended()

    def leftovers(self, *, instances: bool = False) -> dict[str, Any]:
        """Everything still held that should not be, by name (empty: nothing left).
        The engine's and UA core's counters as GET /debug/objects serves them; the
        virtual loop's armed timers and live tasks; sockets still bound on voicegw's
        RTP ports; RTP voicegw sent after the calls ended. ``instances``: also walk the
        collector's objects, as /debug/objects?instances does (slower)."""
        left: dict[str, Any] = {}
        stats = self.engine.statistics()
        for key in ENGINE_KEYS:
            if getattr(stats, key):
                left[f"engine.{key}"] = getattr(stats, key)
        core_stats = self.endpoint.core.statistics()
        for key in CORE_KEYS:
            if getattr(core_stats, key):
                left[f"core.{key}"] = getattr(core_stats, key)
        peer_endpoints = [peer.endpoint for peer in self.peers.values()]
        timers = [h for h in self.loop.pending_timers()
                  if getattr(getattr(h, "_callback", None), "__self__", None) not in peer_endpoints]
        if timers:
            left["loop.timers"] = [repr(h) for h in timers]
        current = asyncio.current_task(self.loop) if self.loop.is_running() else None
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not current and not t.done()]
        if tasks:
            left["loop.tasks"] = [repr(t) for t in tasks]
        bound = [addr for addr in self.loop.network.bound if addr[0] == HOST and addr[1] != SIP_PORT]
        if bound:
            left["rtp.bound"] = bound
        if self.late_rtp:
            left["rtp.after_end"] = len(self.late_rtp)
        if self.errors():
            left["exceptions"] = [error.strip().splitlines()[-1] for error in self.errors()]
        if instances:
            self._ended.clear()  # the lab's own references to ended calls do not count
            # the peers' own transactions are the peers' business (a peer told to
            # stay silent keeps its server transaction): not counted
            peers = [peer.core.statistics() for peer in self.peers.values()]
            held = {"live.ServerTransaction": sum(p.server_transactions for p in peers),
                    "live.ClientTransaction": sum(p.client_transactions for p in peers)}
            for key, count in _instances().items():
                if count - held.get(key, 0) > 0:
                    left[key] = count - held.get(key, 0)
        return left

    def assert_clean(self, *, instances: bool = False) -> None:
        """Settle, then nothing is left behind (see :meth:`leftovers`)."""
        self.settle()
        left = self.leftovers(instances=instances)
        assert left == {}, f"left behind: {left}\n{self.describe()}"

    def describe(self) -> str:
        """The calls' timelines and the peers' views, for assertion messages."""
        lines = []
        for call in self.calls():
            lines.append(f"call {call.id} {call.state.value}: "
                         + " ".join(f"{at - 1000:.2f}:{event.name}" for at, event in call.timeline))
        for role, peer in self.peers.items():
            for pc in peer.calls.values():
                lines.append(f"{role} {pc.call_id[:8]} {pc.state} statuses={pc.statuses} "
                             f"requests={pc.methods()} responses={pc.responses}")
        lines += self.errors()[-1:]
        for entry in self.logs.entries[-12:]:
            fields = " ".join(f"{k}={v}" for k, v in entry.items()
                              if k not in ("event", "log_level", "call_id", "exception"))
            lines.append(f"log {entry.get('log_level')} {entry.get('event')} {fields}")
        return "\n".join(lines)


def _instances() -> dict[str, int]:
    """Live engine objects the collector can still reach after a full collection."""
    gc.collect()
    kinds = {Call: "Call", Leg: "Leg", Transfer: "Transfer", Dialing: "Dialing", Player: "Player",
             ClientTransaction: "ClientTransaction", ServerTransaction: "ServerTransaction",
             MediaEndpoint: "MediaEndpoint", Bridge: "Bridge"}
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = kinds.get(type(obj))
        if name is not None and not (name == "Player" and not obj.running):
            counts[f"live.{name}"] = counts.get(f"live.{name}", 0) + 1
    return counts

