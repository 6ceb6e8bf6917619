"""The desk agent leg's audio: aiortc towards the browser, plain PCMU RTP towards the call.

The leg has an ordinary :class:`~voicegw.media.endpoint.MediaEndpoint` (so the bridge,
ringback and hold players, swaps and taps treat a desk agent exactly like a SIP one);
its far end is a :class:`DeskAudio` socket on the same host. What the bridge sends the
agent arrives there as PCMU, is decoded and queued for :class:`CallerTrack`, which
aiortc encodes for the browser in whatever codec the browser's offer and our
preference settled on (Opus, PCMU or PCMA) and sends over DTLS-SRTP. What the browser
sends is decoded by aiortc, resampled to 8 kHz mono (PyAV's resampler) and sent to the
endpoint as 20 ms PCMU packets with our own SSRC, sequence and timestamps.
"""

from __future__ import annotations

import asyncio
import fractions
import secrets
from collections import deque

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..media import g711
from ..media.endpoint import Addr
from ..media.rtp import RTP_HEADER_SIZE, RtpError, build_rtp, payload_bounds

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz (RFC 3551 4.5.14: PCMU's default packetisation)
_TIME_BASE = fractions.Fraction(1, RATE)
_QUEUE = 3
"""Frames of caller audio kept for the browser (60 ms of jitter): the track and the
call both run at 50 frames/s, so whatever stands in this queue stays there as delay;
past it the oldest frame is dropped (measured: a 10-frame queue added ~200 ms)."""


class CallerTrack(MediaStreamTrack):
    """The caller's audio towards the browser, paced at 20 ms per frame (silence when
    the call sends nothing, so the browser's jitter buffer keeps its clock)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._frames: deque[np.ndarray] = deque(maxlen=_QUEUE)
        self._silence = np.zeros((1, FRAME), dtype=np.int16)
        self._start: float | None = None
        self._pts = 0

    def push(self, samples: np.ndarray) -> None:
        self._frames.append(samples)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        samples = self._frames.popleft().reshape(1, -1) if self._frames else self._silence
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        return frame


class DeskAudio(asyncio.DatagramProtocol):
    """The RTP peer of the desk leg's endpoint, and the glue to aiortc's tracks."""

    def __init__(self) -> None:
        self.track = CallerTrack()
        self.transport: asyncio.DatagramTransport | None = None
        self.leg: Addr | None = None
        """The leg endpoint's RTP address: the only source accepted, the only destination."""
        self.muted = False
        """The agent's microphone is replaced by silence (the caller hears nothing)."""
        self.held = False
        """On hold: neither side's audio passes here (the caller hears the hold player)."""
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._pump: asyncio.Task[None] | None = None
        self.frames_in = self.packets_out = 0

    async def open(self, host: str, leg: Addr) -> Addr:
        """Bind next to the leg's endpoint; returns our address (the endpoint's remote)."""
        self.leg = leg
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if addr != self.leg or self.held or len(data) < RTP_HEADER_SIZE or data[1] & 0x7F != 0:
            return  # only PCMU from our own leg (the endpoint is set to PCMU)
        try:
            start, end = payload_bounds(data)
        except RtpError:
            return
        self.track.push(g711.ulaw_decode(data[start:end]))

    def listen(self, remote: MediaStreamTrack) -> None:
        """Relay the browser's track (aiortc's decoded frames) into the call."""
        self._pump = asyncio.get_running_loop().create_task(self._relay(remote))

    async def _relay(self, remote: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        pending = np.empty(0, dtype=np.int16)
        while True:
            try:
                frame = await remote.recv()
            except MediaStreamError:
                return
            self.frames_in += 1
            for out in resampler.resample(frame):
                pending = np.concatenate([pending, out.to_ndarray().reshape(-1)])
            while len(pending) >= FRAME:
                chunk, pending = pending[:FRAME], pending[FRAME:]
                self._send(chunk)

    def _send(self, chunk: np.ndarray) -> None:
        if self.transport is None or self.leg is None or self.held:
            return
        if self.muted:
            chunk = np.zeros(FRAME, dtype=np.int16)
        packet = build_rtp(0, self._seq, self._ts, self._ssrc, g711.ulaw_encode(chunk))
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + FRAME) & 0xFFFFFFFF
        self.transport.sendto(packet, self.leg)
        self.packets_out += 1

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        self.track.stop()
        if self.transport is not None:
            self.transport.close()
            self.transport = None


__all__ = ["FRAME", "RATE", "CallerTrack", "DeskAudio"]
