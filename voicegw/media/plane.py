"""The engine's seam to the media backend: endpoint, bridge and player objects.

The engine keeps its synchronous vocabulary (a leg's ``endpoint``, ``Bridge(a, b)`` with
``replace_b`` on a transfer, a ``Player`` it can ``stop`` or ``wait`` for) and asks its
``MediaPlane`` for them:

- ``RelayPlane`` hands out the in-process objects themselves (endpoint.py, relay.py,
  player.py): nothing changes for the default backend;
- ``RtpenginePlane`` hands out stand-ins with the same surface whose effects are ng
  requests to rtpengine (backend.py's ``MediaBackend`` calls on ``RtpengineBackend``).
  The engine's calls are synchronous, rtpengine's replies are not: the requests run in
  the order the engine made them, one at a time per call (a chain of tasks per call:
  calls do not wait for one another); a failed one is
  logged and the call goes on (rtpengine's own timeouts clean up).

Samples to play (prompts, TTS, hold music, ringback) become WAV files in a directory of
their own, named by a hash of the audio, which rtpengine's ``play media`` reads (one file
per distinct prompt, however many calls play it).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..sip.sdes import DEFAULT_SUITE
from . import tones
from .backend import RemoteMedia, SdesKeys
from .endpoint import EndpointStatistics, MediaEndpoint, open_endpoint
from .player import Player, hold_player, play_samples, ringback_player
from .ports import PortPool
from .relay import Bridge, BridgeStatistics, EarlyMedia, FlowStatistics
from .rtpengine_backend import RtpengineBackend, RtpengineLeg
from .rtpengine_ng import NgError
from .wav import write_wav

log = logging.getLogger(__name__)

__all__ = ["BRIDGES", "PLAYERS", "MediaPlane", "RelayPlane", "RtpengineBridge",
           "RtpengineEndpoint", "RtpenginePlane", "RtpenginePlayer"]


class RelayPlane:
    """The in-process relay (the default)."""

    watches_rtp = True
    """The engine's RTP inactivity check can read this plane's packet counters."""

    def __init__(self, host: str, pool: PortPool) -> None:
        self.host, self.pool = host, pool

    async def open_endpoint(self, call_id: str, role: str) -> MediaEndpoint:
        return await open_endpoint(self.host, self.pool)

    def bridge(self, a: Any, b: Any) -> Bridge:
        return Bridge(a, b)

    def play(self, endpoint: Any, samples: np.ndarray, loop: bool = False) -> Player:
        return play_samples(endpoint, samples, loop)

    def ringback(self, endpoint: Any) -> Player:
        return ringback_player(endpoint)

    def early_media(self, src: Any, dst: Any) -> EarlyMedia | None:
        """Relay a ringing leg's early media (``src``) to the caller (``dst``)."""
        return EarlyMedia(src, dst)

    def hold(self, endpoint: Any, music: np.ndarray | None = None) -> Player:
        return hold_player(endpoint, music)

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------------------- rtpengine
_NO_FLOW = FlowStatistics(0, 0, 0, 0, 0)


class _Chains:
    """Runs each call's media requests in the order made, one at a time."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}
        self.failures = 0

    def run(self, key: str, make: Callable[[], Awaitable[Any]]) -> asyncio.Future[None]:
        previous = self._tails.get(key)

        async def step() -> None:
            if previous is not None:
                await asyncio.wait({previous})
            try:
                await make()
            except (NgError, TimeoutError, OSError) as error:  # must not end the call
                self.failures += 1
                log.warning("rtpengine request failed: %s", error)

        tail = self._tails[key] = asyncio.ensure_future(step())
        tail.add_done_callback(lambda done: self._tails.pop(key, None) if self._tails.get(key) is done else None)
        return tail

    async def drain(self) -> None:
        while self._tails:
            await asyncio.wait(list(self._tails.values()))


class RtpengineEndpoint:
    """A leg on rtpengine, as the engine sees an endpoint: ``port`` is rtpengine's."""

    def __init__(self, plane: RtpenginePlane, call_id: str, leg: RtpengineLeg) -> None:
        self.plane, self.call_id, self.leg = plane, call_id, leg
        self.host, self.port = leg.local
        self.payload_type = 0
        self.dtmf_payload_type: int | None = 101
        self.remote_rtp: tuple[str, int] | None = None
        self.srtp: SdesKeys | None = None
        """SDES keys when the peer's side is RTP/SAVP (set_srtp): rtpengine does the SRTP."""
        self.closed = False
        self._on_dtmf: Callable[[str], None] | None = None

    @property
    def on_dtmf(self) -> Callable[[str], None] | None:
        return self._on_dtmf

    @on_dtmf.setter
    def on_dtmf(self, handler: Callable[[str], None] | None) -> None:
        self._on_dtmf = handler
        self.plane.backend.on_dtmf(self.leg, handler)

    def set_remote(self, host: str, port: int, rtcp_port: int | None = None) -> None:
        self.remote_rtp = (host, port)
        remote = RemoteMedia(host, port, self.payload_type, self.dtmf_payload_type, self.srtp)
        self.plane.chain.run(self.call_id, lambda: self.plane.backend.set_remote(self.leg, remote))

    def set_srtp(self, inbound_key: bytes | None, outbound_key: bytes | None = None,
                 suite: str | None = None) -> None:
        """As ``MediaEndpoint.set_srtp``: the keys take effect with the next
        ``set_remote`` (the engine sets both from one offer/answer, keys first), where
        rtpengine is told them (rtpengine_backend.py: SRTP on the peer's side)."""
        if inbound_key is None:
            self.srtp = None
            return
        if outbound_key is None:
            raise ValueError("set_srtp: both keys are needed")
        self.srtp = SdesKeys(suite or DEFAULT_SUITE, inbound_key, outbound_key)

    def _changed(self) -> None:
        pass

    def statistics(self) -> EndpointStatistics:
        return EndpointStatistics(self.port, self.remote_rtp, self.remote_rtp is not None,
                                  0, 0, 0, 0, 0, 0)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_dtmf = None
            self.plane.chain.run(self.call_id, lambda: self.plane.backend.close_leg(self.leg))


class RtpengineBridge:
    """A bridge of two rtpengine legs (``a`` stays, ``b`` is swapped on a transfer)."""

    def __init__(self, plane: RtpenginePlane, a: RtpengineEndpoint, b: RtpengineEndpoint) -> None:
        self.plane, self.a, self.b = plane, a, b
        self.swaps = 0
        self.closed = False
        plane.chain.run(a.call_id, lambda: plane.backend.bridge(a.leg, b.leg))

    def refresh(self) -> None:
        pass  # set_remote re-negotiates the partner itself

    def set_tap(self, mixer: object) -> None:
        pass  # no tap on rtpengine: the bot does not hear a transfer's audio

    def replace_b(self, new: RtpengineEndpoint) -> RtpengineEndpoint:
        if self.closed:
            raise RuntimeError("bridge is closed")
        old, self.b = self.b, new
        self.swaps += 1
        self.plane.chain.run(self.a.call_id, lambda: self.plane.backend.bridge(self.a.leg, new.leg))
        return old

    @property
    def transcoding(self) -> bool:
        """The legs' codecs differ: rtpengine transcodes (rtpengine_backend.py, VG_CODEC)."""
        return self.a.payload_type != self.b.payload_type

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(_NO_FLOW, _NO_FLOW, _NO_FLOW, _NO_FLOW, self.swaps, self.transcoding)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            a, b = self.a, self.b
            self.plane.chain.run(a.call_id, lambda: self._unbridge(a, b))

    async def _unbridge(self, a: RtpengineEndpoint, b: RtpengineEndpoint) -> None:
        if a.closed and b.closed:
            # the call ended: both legs are deleted next on this chain, so pointing their
            # vg sides elsewhere first would be 4 ng requests for nothing
            for side, other in ((a.leg, b.leg), (b.leg, a.leg)):
                if side.partner is other:
                    side.partner = None
            return
        await self.plane.backend.unbridge(a.leg)


class RtpenginePlayer:
    """``play media`` of a WAV file to a leg; ``wait()`` returns when it has played."""

    def __init__(self, plane: RtpenginePlane, endpoint: RtpengineEndpoint, path: Path,
                 seconds: float, loop: bool) -> None:
        self.plane, self.endpoint = plane, endpoint
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None
        self.running = True
        leg = endpoint.leg

        async def start() -> None:
            try:
                await plane.backend.play(leg, path, loop)
            finally:
                if self.running and not loop:
                    self._timer = asyncio.get_running_loop().call_later(seconds, self._finish)
        plane.chain.run(endpoint.call_id, start)

    def _finish(self) -> None:
        self.running = False
        if not self._done.done():
            self._done.set_result(None)

    def stop(self) -> None:
        if not self.running:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._finish()
        leg = self.endpoint.leg
        self.plane.chain.run(self.endpoint.call_id, lambda: self.plane.backend.stop_play(leg))

    async def wait(self) -> None:
        await asyncio.shield(self._done)


class RtpenginePlane:
    """rtpengine as the media plane: ``await RtpenginePlane.connect(...)``."""

    watches_rtp = False
    """No per-packet counters here: rtpengine's own ``--timeout`` ends silent legs."""

    def __init__(self, backend: RtpengineBackend, files: Path) -> None:
        self.backend = backend
        self.files = files
        self.chain = _Chains()
        self._legs = itertools.count(1)
        files.mkdir(parents=True, exist_ok=True)

    @classmethod
    async def connect(cls, ng: tuple[str, int], dtmf_listen: tuple[str, int] | None,
                      files: str | Path) -> RtpenginePlane:
        return cls(await RtpengineBackend.connect(ng, dtmf_listen), Path(files))

    async def open_endpoint(self, call_id: str, role: str) -> RtpengineEndpoint:
        leg = await self.backend.open_leg(call_id, f"{role}-{next(self._legs)}")
        return RtpengineEndpoint(self, call_id, leg)

    def bridge(self, a: RtpengineEndpoint, b: RtpengineEndpoint) -> RtpengineBridge:
        return RtpengineBridge(self, a, b)

    def audio_file(self, samples: np.ndarray) -> Path:
        """The WAV file of ``samples`` (written once: named by the audio's hash)."""
        data = np.ascontiguousarray(samples, dtype=np.int16)
        path = self.files / f"{hashlib.sha256(data.tobytes()).hexdigest()[:32]}.wav"
        if not path.exists():
            partial = path.with_suffix(".part")
            write_wav(partial, data)
            partial.replace(path)  # whole or absent: rtpengine may read it any moment
        return path

    def play(self, endpoint: RtpengineEndpoint, samples: np.ndarray,
             loop: bool = False) -> RtpenginePlayer:
        return RtpenginePlayer(self, endpoint, self.audio_file(samples), len(samples) / 8000, loop)

    def ringback(self, endpoint: RtpengineEndpoint) -> RtpenginePlayer:
        return self.play(endpoint, tones.generate(tones.RINGBACK_US, 6.0), loop=True)

    def early_media(self, src: RtpengineEndpoint, dst: RtpengineEndpoint) -> None:
        """Not relayed on rtpengine: its bridge is both ways, and a ringing leg must not
        take the caller from the bot before it answers. The caller keeps our ringback."""

    def hold(self, endpoint: RtpengineEndpoint, music: np.ndarray | None = None) -> RtpenginePlayer:
        return self.play(endpoint, music if music is not None
                         else tones.generate(tones.HOLD_BEEP, 10.0), loop=True)

    async def close(self) -> None:
        await self.chain.drain()
        await self.backend.close()


MediaPlane = RelayPlane | RtpenginePlane
BRIDGES = (Bridge, RtpengineBridge)
PLAYERS = (Player, RtpenginePlayer)
