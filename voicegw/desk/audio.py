"""The desk agent leg's audio: aiortc towards the browser, plain PCMU RTP towards the call.

The leg has an ordinary :class:`~voicegw.media.endpoint.MediaEndpoint` (so the bridge,
ringback and hold players, swaps and taps treat a desk agent exactly like a SIP one);
its far end is a :class:`DeskAudio` socket on the same host. What the bridge sends the
agent arrives there as PCMU and is queued for :class:`CallerTrack`, which aiortc sends
the browser over DTLS-SRTP in whatever codec the browser's offer and our preference
settled on. What the browser sends reaches :meth:`DeskAudio.from_page` and is sent to
the endpoint as PCMU packets with our own SSRC, sequence and timestamps.

G.711 takes short cuts (the desk's cost per leg, issue 15): towards the browser the
track hands aiortc the PCMU payload itself, or its A-law translation, as an
``av.Packet`` (aiortc's pre-encoded path: no decode, no resampler, no encoder run in
the loop's thread pool); from the browser, fastpath.py takes each complete frame
off aiortc's receiver on the loop thread, and a G.711 payload goes to the call as it
came (A-law translated). Only Opus is decoded and encoded (PyAV), 48 kHz <-> 8 kHz,
on the loop thread, the encoder in mono at a voice bitrate (:class:`OpusEncoder`).
"""

from __future__ import annotations

import asyncio
import fractions
import secrets
from collections import deque
from typing import Any

import av
import numpy as np
from aiortc.codecs import get_decoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..media import g711
from ..media.endpoint import Addr
from ..media.rtp import RTP_HEADER_SIZE, RtpError, build_rtp, payload_bounds
from .fastpath import tap

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz (RFC 3551 4.5.14: PCMU's default packetisation)
_TIME_BASE = fractions.Fraction(1, RATE)
_SILENCE = bytes([g711.ULAW_SILENCE]) * FRAME
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
        self._frames: deque[bytes] = deque(maxlen=_QUEUE)
        self._start: float | None = None
        self._pts = 0
        self.codec = ""
        """The codec aiortc sends the browser (``use_codec``): pcmu, pcma and opus go
        as packets, anything else as frames for aiortc to encode."""
        self._opus: OpusEncoder | None = None

    def push(self, ulaw: bytes) -> None:
        self._frames.append(ulaw)

    async def recv(self) -> av.AudioFrame | av.Packet:
        while True:
            ulaw = await self._next()
            if self.codec in ("pcmu", "pcma"):
                packet = av.Packet(ulaw if self.codec == "pcmu" else g711.ulaw_to_alaw(ulaw))
                packet.pts = self._pts
                packet.time_base = _TIME_BASE
                return packet
            frame = av.AudioFrame.from_ndarray(g711.ulaw_decode(ulaw).reshape(1, -1), format="s16",
                                               layout="mono")
            frame.sample_rate = RATE
            frame.pts = self._pts
            frame.time_base = _TIME_BASE
            if self.codec != "opus":
                return frame
            if self._opus is None:
                self._opus = OpusEncoder()
            packet = self._opus.encode(frame)
            if packet is not None:  # None: the resampler still fills (the first frame)
                return packet

    async def _next(self) -> bytes:
        """The next 20 ms of the caller, on the track's clock."""
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
        return self._frames.popleft() if self._frames else _SILENCE


class OpusEncoder:
    """Opus on the loop thread, mono (RFC 7587 3.1: a receiver decodes mono or stereo
    whatever the SDP's /2 says), at a voice bitrate: aiortc's own encoder runs every
    frame through the loop's thread pool, in stereo at 96 kbit/s, for 8 kHz audio."""

    RATE = 48000
    BITRATE = 32000  # wideband voice (RFC 7587 3.1.1: 8-12 kbit/s narrowband, 16-20 wideband)

    def __init__(self) -> None:
        self.codec = av.CodecContext.create("libopus", "w")
        self.codec.bit_rate = self.BITRATE
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = self.RATE
        self.codec.time_base = fractions.Fraction(1, self.RATE)
        self.codec.options = {"application": "voip"}
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=self.RATE, frame_size=960)
        self.time_base = fractions.Fraction(1, self.RATE)
        self.first: int | None = None

    def encode(self, frame: av.AudioFrame) -> av.Packet | None:
        """The packet of one 20 ms frame (None while the resampler fills: the first)."""
        packets = [p for out in self.resampler.resample(frame) for p in self.codec.encode(out)]
        if not packets:
            return None
        packet = packets[-1]
        if self.first is None:
            self.first = packet.pts or 0
        packet.pts = (packet.pts or 0) - self.first
        packet.time_base = self.time_base
        return packet


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
        self._tapped = False
        self._decoder: Any = None
        self._resampler: av.AudioResampler | None = None
        self._pending = np.empty(0, dtype=np.int16)
        self.frames_in = self.packets_out = 0

    async def open(self, host: str, leg: Addr) -> Addr:
        """Bind next to the leg's endpoint; returns our address (the endpoint's remote)."""
        self.leg = leg
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def attach(self, transceiver: Any) -> None:
        """Take the browser's frames off the transceiver's receiver (fastpath.py); call
        it before the connection starts. Without the short cut, ``listen`` does."""
        self._tapped = tap(transceiver.receiver, self.from_page) is not None

    def use_codec(self, name: str) -> None:
        """The codec the answer settled on (what aiortc sends the browser)."""
        self.track.codec = name.lower()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if addr != self.leg or self.held or len(data) < RTP_HEADER_SIZE or data[1] & 0x7F != 0:
            return  # only PCMU from our own leg (the endpoint is set to PCMU)
        try:
            start, end = payload_bounds(data)
        except RtpError:
            return
        self.track.push(data[start:end])

    # ------------------------------------------------------------------ from the page
    def from_page(self, codec: Any, frame: Any) -> None:
        """One complete frame from the browser (aiortc's codec and JitterFrame)."""
        self.frames_in += 1
        name = codec.name.lower()
        if name == "pcmu":
            self._send(frame.data)
        elif name == "pcma":
            self._send(g711.alaw_to_ulaw(frame.data))
        else:
            if self._decoder is None:
                self._decoder = get_decoder(codec)
            for decoded in self._decoder.decode(frame):
                self._pcm(decoded)

    def listen(self, remote: MediaStreamTrack) -> None:
        """Relay the browser's track (aiortc's decoded frames) into the call, when the
        short cut could not be taken."""
        if not self._tapped:
            self._pump = asyncio.get_running_loop().create_task(self._relay(remote))

    async def _relay(self, remote: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await remote.recv()
            except MediaStreamError:
                return
            self.frames_in += 1
            self._pcm(frame)

    def _pcm(self, frame: av.AudioFrame) -> None:
        """Decoded audio (any rate, any layout) to 20 ms PCMU packets."""
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        for out in self._resampler.resample(frame):
            self._pending = np.concatenate([self._pending, out.to_ndarray().reshape(-1)])
        while len(self._pending) >= FRAME:
            chunk, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            self._send(g711.ulaw_encode(chunk))

    def _send(self, ulaw: bytes) -> None:
        if self.transport is None or self.leg is None or self.held:
            return
        if self.muted:
            ulaw = bytes([g711.ULAW_SILENCE]) * len(ulaw)
        packet = build_rtp(0, self._seq, self._ts, self._ssrc, ulaw)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + len(ulaw)) & 0xFFFFFFFF
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


__all__ = ["FRAME", "RATE", "CallerTrack", "DeskAudio", "OpusEncoder"]
