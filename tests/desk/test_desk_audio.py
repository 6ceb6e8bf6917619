"""The desk leg's audio through real aiortc (voicegw/desk/audio.py, fastpath.py): a
DeskAudio with its RTCPeerConnection, as the desk service builds them, against a second
aiortc peer in the browser's place, over loopback ICE and DTLS-SRTP, and a UDP socket
in the place of the call's endpoint.

Asserted on what crossed: with PCMU and PCMA the G.711 short cuts carry the call's
payloads to the browser byte for byte (PCMA as its exact A-law translation) and the
browser's to the call as PCMU in 20 ms packets with our own SSRC; aiortc's receiver
is tapped (its decoder thread stays idle, the frames come on the loop); Opus still
works both ways (decoded and encoded: the tone's frequency is what arrives); mute
and hold silence the agent towards the call.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from voicegw.desk.audio import DeskAudio
from voicegw.desk.fastpath import InlineFrames, tap
from voicegw.desk.ice import use_host_address
from voicegw.desk.service import sent_codec
from voicegw.media import g711
from voicegw.media.tones import goertzel_power

pytestmark = pytest.mark.timeout(60)
HOST = "127.0.0.1"
RATE = 8000


def tone(freq: float, n: int, start: int = 0) -> np.ndarray:
    t = (np.arange(n) + start) / RATE
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def strongest(samples: np.ndarray, freqs: tuple[float, ...]) -> float:
    return max(freqs, key=lambda f: goertzel_power(samples.astype(np.float64), f))


class Microphone(MediaStreamTrack):
    """The browser's microphone: a 600 Hz tone in 20 ms frames, paced."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        else:
            self.n += 1
            await asyncio.sleep(max(0.0, self.start + self.n * 0.02 - loop.time()))
        frame = av.AudioFrame.from_ndarray(tone(600, 160, self.n * 160).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.n * 160, fractions.Fraction(1, RATE)
        return frame


@dataclass
class Call(asyncio.DatagramProtocol):
    """The call's side: the leg endpoint's socket."""

    packets: list[bytes] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.packets.append(data)


@dataclass
class Pair:
    audio: DeskAudio
    call: Call
    desk_addr: tuple[str, int]
    page_frames: list[tuple[str, bytes]]
    page_track: list[MediaStreamTrack]
    inline: InlineFrames | None
    pcs: tuple[RTCPeerConnection, RTCPeerConnection]

    def send_from_call(self, payloads: list[bytes]) -> None:
        assert self.call.transport is not None
        for i, payload in enumerate(payloads):
            self.call.transport.sendto(struct.pack("!BBHII", 0x80, 0, i, i * 160, 0x1234) + payload,
                                       self.desk_addr)


@pytest.fixture
async def make_pair() -> AsyncIterator:  # type: ignore[type-arg]
    made: list[Pair] = []

    async def make(codec: str, page_taps: bool = True) -> Pair:
        use_host_address(HOST)
        loop = asyncio.get_running_loop()
        call = Call()
        await loop.create_datagram_endpoint(lambda: call, local_addr=(HOST, 0))
        assert call.transport is not None
        audio = DeskAudio()
        desk_addr = await audio.open(HOST, call.transport.get_extra_info("sockname")[:2])
        # the browser's side
        page = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        page_frames: list[tuple[str, bytes]] = []
        page_track: list[MediaStreamTrack] = []
        page_tx = page.addTransceiver(Microphone(), direction="sendrecv")
        if page_taps:
            assert tap(page_tx.receiver, lambda c, f: page_frames.append((c.name.lower(), f.data))) is not None
        else:
            page.on("track", page_track.append)
        await page.setLocalDescription(await page.createOffer())
        # the desk's side, as DeskService._negotiate builds it
        desk = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = desk.addTransceiver(audio.track, direction="sendrecv")
        audio.attach(transceiver)
        inline = getattr(transceiver.receiver, "_RTCRtpReceiver__decoder_queue", None)
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs
                                         if c.mimeType.lower() == f"audio/{codec}"])
        desk.on("track", audio.listen)
        await desk.setRemoteDescription(RTCSessionDescription(page.localDescription.sdp, "offer"))
        await desk.setLocalDescription(await desk.createAnswer())
        audio.use_codec(sent_codec(desk.localDescription.sdp))
        await page.setRemoteDescription(RTCSessionDescription(desk.localDescription.sdp, "answer"))
        pair = Pair(audio, call, desk_addr, page_frames, page_track,
                    inline if isinstance(inline, InlineFrames) else None, (page, desk))
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.audio.close()
        for pc in pair.pcs:
            await pc.close()
        if pair.call.transport is not None:
            pair.call.transport.close()


async def until(check, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return bool(check())


@pytest.mark.parametrize("codec", ["pcmu", "pcma"])
async def test_g711_crosses_byte_for_byte_both_ways_through_the_short_cuts(make_pair, codec: str) -> None:  # type: ignore[no-untyped-def]
    pair = await make_pair(codec)
    assert pair.audio.track.codec == codec
    assert pair.inline is not None, "aiortc's receiver is tapped: no decoder thread hop"
    # the browser's microphone reaches the call as PCMU, 20 ms a packet, our SSRC
    assert await until(lambda: len(pair.call.packets) >= 50), "the browser's audio reaches the call"
    packets = pair.call.packets[-40:]
    assert all(p[1] & 0x7F == 0 and len(p) == 12 + 160 for p in packets)
    assert len({p[8:12] for p in packets}) == 1
    seqs = [struct.unpack("!H", p[2:4])[0] for p in packets]
    stamps = [struct.unpack("!I", p[4:8])[0] for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(stamps))
    heard = g711.ulaw_decode(b"".join(p[12:] for p in packets))
    assert strongest(heard, (600.0, 1000.0)) == 600.0
    assert pair.inline.frames >= 50 and pair.inline.failures == 0

    # the call's payloads reach the browser as they were (PCMA: the exact translation)
    payloads = [bytes([0x80 + (i % 100), *range(1, 160)]) for i in range(3)]
    for _ in range(60):  # the desk keeps 3 frames: send them a few times over
        pair.send_from_call(payloads)
        await asyncio.sleep(0.06)
        wanted = [p if codec == "pcmu" else g711.ulaw_to_alaw(p) for p in payloads]
        if any(data in wanted for _, data in pair.page_frames):
            break
    wanted = [p if codec == "pcmu" else g711.ulaw_to_alaw(p) for p in payloads]
    assert {c for c, _ in pair.page_frames} == {codec}
    assert any(data in wanted for _, data in pair.page_frames), "the call's payload, byte for byte"

    # mute, then hold: the call gets silence, then nothing
    pair.audio.muted = True
    await asyncio.sleep(0.3)  # what was sent before is received by now (the same loop)
    n = len(pair.call.packets)
    assert await until(lambda: len(pair.call.packets) >= n + 10)
    assert all(set(p[12:]) == {g711.ULAW_SILENCE} for p in pair.call.packets[n:])
    pair.audio.muted, pair.audio.held = False, True
    await asyncio.sleep(0.1)
    n = len(pair.call.packets)
    await asyncio.sleep(0.3)
    assert len(pair.call.packets) == n, "held: nothing of the agent reaches the call"


async def test_opus_is_decoded_and_encoded_both_ways(make_pair) -> None:  # type: ignore[no-untyped-def]
    pair = await make_pair("opus", page_taps=False)
    assert pair.audio.track.codec == "opus"
    assert await until(lambda: len(pair.call.packets) >= 50), "the browser's Opus reaches the call as PCMU"
    heard = g711.ulaw_decode(b"".join(p[12:] for p in pair.call.packets[-25:]))
    assert strongest(heard, (600.0, 1000.0)) == 600.0
    assert all(p[1] & 0x7F == 0 and len(p) == 12 + 160 for p in pair.call.packets[-25:])
    assert pair.page_track, "the desk's track reached the browser's side"
    track = pair.page_track[0]
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    got = np.empty(0, dtype=np.int16)
    for i in range(150):
        pair.send_from_call([g711.ulaw_encode(tone(1000, 160, i * 160))])
        frame = await asyncio.wait_for(track.recv(), 2)
        for out in resampler.resample(frame):
            got = np.concatenate([got, out.to_ndarray().reshape(-1)])
        if len(got) >= 8000 and strongest(got[-1600:], (600.0, 1000.0)) == 1000.0 \
                and np.sqrt(np.mean(got[-1600:].astype(np.float64) ** 2)) > 1000:
            break
    assert strongest(got[-1600:], (600.0, 1000.0)) == 1000.0, "the call's audio reaches the browser in Opus"
