"""Players: int16 8 kHz audio (prompts, TTS, tones, hold music) sent to a leg as
G.711 RTP, one 20 ms packet of 160 samples at a time (RFC 3551 4.5.14, ptime 20).

Pacing is drift-free: packet k is due at ``start + k * 0.02`` on the loop's clock and
is scheduled with ``loop.call_at``, so timer lateness never accumulates (a loop of
``sleep(0.02)`` runs slow by the loop's overhead on every packet). A player is one
timer handle, not a task: hundreds of calls on hold cost no coroutines.
"""

from __future__ import annotations

import asyncio
import random
from typing import Protocol

import numpy as np

from voicegw.media import g711, tones
from voicegw.media.endpoint import MediaEndpoint
from voicegw.media.rtp import build_rtp

FRAME = 160  # samples per packet: 20 ms at 8 kHz
PTIME = 0.020
# Beyond this lateness (the loop was blocked), skip the missed packets instead of
# sending them in a burst; the timestamp still advances by the time that passed.
_MAX_LATE = 0.060


class SampleSource(Protocol):
    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` int16 samples; fewer (or none) means the source has ended."""
        ...


class ArraySource:
    """Samples from memory (a WAV prompt, TTS output), optionally looped (hold music)."""

    def __init__(self, samples: np.ndarray, loop: bool = False) -> None:
        self.samples = np.asarray(samples, dtype=np.int16)
        self.loop = loop and len(self.samples) > 0
        self.position = 0

    def read(self, n: int) -> np.ndarray:
        if not self.loop:
            out = self.samples[self.position:self.position + n]
            self.position += len(out)
            return out
        idx = (self.position + np.arange(n)) % len(self.samples)
        self.position = (self.position + n) % len(self.samples)
        return self.samples[idx]


class Player:
    """Plays a source to an endpoint until it ends or ``stop()``; ``await wait()``."""

    def __init__(self, endpoint: MediaEndpoint, source: SampleSource,
                 payload_type: int | None = None) -> None:
        self.endpoint = endpoint
        self.source = source
        self.payload_type = endpoint.payload_type if payload_type is None else payload_type
        self._encode = g711.encoder_for(self.payload_type)
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._handle: asyncio.TimerHandle | None = None
        self.ssrc = random.getrandbits(32)
        self.sequence = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self.packets_sent = 0
        self.late_skips = 0
        self._start = 0.0
        self._k = 0

    def start(self) -> Player:
        self.endpoint.claim(self)  # any relayed audio to this leg pauses meanwhile
        self._start = self._loop.time()
        self._k = 0
        self._tick()
        return self

    @property
    def running(self) -> bool:
        return not self._done.done()

    def _tick(self) -> None:
        now = self._loop.time()
        due = self._start + self._k * PTIME
        if now - due > _MAX_LATE:
            skipped = int((now - due) / PTIME)
            self._k += skipped
            self.timestamp = (self.timestamp + skipped * FRAME) & 0xFFFFFFFF
            self.late_skips += skipped
        samples = self.source.read(FRAME)
        if len(samples) == 0:
            self._finish()
            return
        if len(samples) < FRAME:  # last partial frame: pad with silence
            samples = np.concatenate([samples, np.zeros(FRAME - len(samples), np.int16)])
        packet = build_rtp(self.payload_type, self.sequence, self.timestamp, self.ssrc,
                           self._encode(samples), marker=self.packets_sent == 0)
        self.endpoint.send_rtp(packet)
        self.packets_sent += 1
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + FRAME) & 0xFFFFFFFF
        self._k += 1
        self._handle = self._loop.call_at(self._start + self._k * PTIME, self._tick)

    def _finish(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # the samples (a prompt, hold music with its notice) are not needed once it
        # stopped, but the ended call keeps its players for the API a while longer
        self.source = _ENDED
        if not self._done.done():
            self._done.set_result(None)
            self.endpoint.release(self)

    def yield_output(self) -> None:
        """Another writer took the leg (e.g. the bridge after a transfer): stop."""
        self._finish()

    def stop(self) -> None:
        self._finish()

    async def wait(self) -> None:
        await asyncio.shield(self._done)


_ENDED = ArraySource(np.zeros(0, dtype=np.int16))
"""What a player that ended reads: nothing."""


def play_samples(endpoint: MediaEndpoint, samples: np.ndarray, loop: bool = False) -> Player:
    """Start playing a prompt (``loop=True`` for hold music)."""
    return Player(endpoint, ArraySource(samples, loop)).start()


def ringback_player(endpoint: MediaEndpoint,
                    spec: tones.ToneSpec = tones.RINGBACK_US) -> Player:
    """Ringback while an agent's phone rings (INVITE transfer); runs until stopped."""
    return Player(endpoint, tones.ToneGenerator(spec)).start()


def hold_player(endpoint: MediaEndpoint, music: np.ndarray | None = None) -> Player:
    """Hold music looped, or the periodic hold beep when there is no music."""
    source: SampleSource = (ArraySource(music, loop=True) if music is not None
                            else tones.ToneGenerator(tones.HOLD_BEEP))
    return Player(endpoint, source).start()
