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
import weakref
from collections.abc import Callable
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


class EncodedFrames:
    """An :class:`ArraySource`'s samples as G.711 payload encoded once: a frame is a slice.

    Encoding 20 ms at a time cost numpy's per-call overhead on every packet (a slice,
    the look-up table, ``tobytes``: ~13 us, ~35 us looped with ``np.arange`` and a
    modulo): with 500 callers hearing a greeting, a third of a core spent encoding the
    same prompt again for each of them. A read-only array (a cached prompt,
    media/prompts.py) is encoded once per payload type and kept while the array lives.
    A writable one (made for one call, like warm transfer's notice and 20 s of silence)
    is still encoded a frame at a time: a copy per player would hold 1 byte per sample
    for as long as the call is on hold. The frames are the bytes the per-packet path
    sends: the last one padded with encoded silence, a loop wrapping to its start.
    """

    __slots__ = ("length", "loop", "payload", "position")

    def __init__(self, payload: bytes, length: int, loop: bool) -> None:
        self.payload = payload
        """A loop's payload holds its start again after its end, so no frame wraps."""
        self.length = length
        self.loop = loop
        self.position = 0

    def read(self) -> bytes:
        """The next frame's payload; empty once a prompt has ended."""
        frame = self.payload[self.position:self.position + FRAME]
        self.position = (self.position + FRAME) % self.length if self.loop else self.position + len(frame)
        return frame


_ENCODED: dict[tuple[int, int, bool], bytes] = {}
"""Payloads of live read-only arrays by (id of the array, payload type, looped)."""


def encoded_frames(source: ArraySource, payload_type: int,
                   encode: Callable[[np.ndarray], bytes]) -> EncodedFrames | None:
    """The source's frames from its array's shared payload; None for a writable array
    (nobody may change samples under a cached payload) or one already being read."""
    samples = source.samples
    if samples.flags.writeable or source.position or not len(samples):
        return None
    key = (id(samples), payload_type, source.loop)
    payload = _ENCODED.get(key)
    if payload is None:
        if source.loop:  # a frame's worth of the start again after the end: no frame wraps
            framed = np.resize(samples, len(samples) + FRAME)  # repeats it cyclically
        else:  # padded with silence to whole frames
            framed = np.concatenate([samples, np.zeros(-len(samples) % FRAME, np.int16)])
        payload = encode(framed)
        if not any(k[0] == key[0] for k in _ENCODED):  # the array dies: its payloads go
            weakref.finalize(samples, _forget, key[0])
        _ENCODED[key] = payload
    return EncodedFrames(payload, len(samples) if source.loop else len(payload), source.loop)


def _forget(array_id: int) -> None:
    for key in [k for k in _ENCODED if k[0] == array_id]:
        del _ENCODED[key]


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
        self._frames = (encoded_frames(source, self.payload_type, self._encode)
                        if isinstance(source, ArraySource) else None)

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
        if self._frames is not None:
            payload = self._frames.read()
        else:
            samples = self.source.read(FRAME)
            if len(samples) < FRAME and len(samples):  # last partial frame: pad with silence
                samples = np.concatenate([samples, np.zeros(FRAME - len(samples), np.int16)])
            payload = self._encode(samples) if len(samples) else b""
        if not payload:
            self._finish()
            return
        packet = build_rtp(self.payload_type, self.sequence, self.timestamp, self.ssrc,
                           payload, marker=self.packets_sent == 0)
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
        self._frames = None
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
