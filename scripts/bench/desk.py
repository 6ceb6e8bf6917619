#!/usr/bin/env python3
"""Agent desk benchmark: N concurrent desk legs with audio flowing both ways (issue 15).

Two processes, so the server side has a core of its own as far as a 2-core box allows:
  - the server (``--serve``): per leg exactly what voicegw runs for a desk agent, a
    ``voicegw.desk.audio.DeskAudio`` (PCMU RTP <-> aiortc frames) and an aiortc
    ``RTCPeerConnection`` (ICE on 127.0.0.1, DTLS-SRTP, the codec asked for), under uvloop;
  - the load (this process): per leg an aiortc peer in the browser's place, and a UDP
    socket in the place of the call's bridge, sending 20 ms PCMU packets to DeskAudio.

Each direction carries silence with a 20 ms 1 kHz burst once a second. The load sees
the burst leave (the PCMU packet, or its own track's frame) and arrive (the decoded
WebRTC frame, or the PCMU packet DeskAudio sent), on one CLOCK_MONOTONIC: the latency
added through aiortc and the desk's relay, per direction. Both include one aiortc
receive jitter buffer (it holds 4 packets, 80 ms, before the first frame): towards the
page the load's own (a browser has one too), towards the call voicegw's. Delivered
frames per second per leg tell whether the server keeps up (50 expected), and
``legs_flowing`` how many legs had more than 40 a second both ways. The
server's CPU is its user+system time over the measured window, in % of one core
(``cpu_pct_per_leg``, ``legs_per_core``: 100 / that); ``load_cpu_pct`` is the load
generator's own (near 100: it is the bottleneck, and the figures are not the server's)
and ``loadavg_1m`` the box's at the end of the window.

Both sides take the desk's G.711 short cuts (voicegw/desk/audio.py, fastpath.py): the
server as voicegw does, the load so that one process can play 50 browsers;
``--aiortc-path`` makes the server use aiortc's own decode/encode path (the before
figures).

    .venv/bin/python scripts/bench/desk.py --legs 10 --codec pcmu --seconds 10   # smoke
    .venv/bin/python scripts/bench/desk.py --legs 10,25,50 --codec pcmu,opus     # the quiet run
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from voicegw.desk.fastpath import tap
from voicegw.media import g711

RATE, FRAME = 8000, 160
BURST = (16000 * np.sin(2 * np.pi * 1000 * np.arange(FRAME) / RATE)).astype(np.int16)
SILENCE = np.zeros(FRAME, dtype=np.int16)
BURST_U, SILENCE_U = g711.ulaw_encode(BURST), g711.ulaw_encode(SILENCE)
EVERY = 50  # one burst per second


def loud(samples: np.ndarray) -> bool:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > 3000


# ------------------------------------------------------------------------------ server
async def serve(path: str, args: argparse.Namespace) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from voicegw.desk.audio import DeskAudio
    from voicegw.desk.ice import use_host_address
    from voicegw.desk.service import sent_codec

    use_host_address("127.0.0.1")

    async def leg(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = json.loads(await reader.readline())
        audio = DeskAudio()
        host, port = await audio.open("127.0.0.1", tuple(hello["rtp"]))
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = pc.addTransceiver(audio.track, direction="sendrecv")
        if not args.aiortc_path:
            audio.attach(transceiver)
        codecs = [c for c in RTCRtpSender.getCapabilities("audio").codecs
                  if c.mimeType.lower() == f"audio/{hello['codec']}"]
        transceiver.setCodecPreferences(codecs)
        pc.on("track", audio.listen)
        await pc.setRemoteDescription(RTCSessionDescription(hello["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        if not args.aiortc_path:
            audio.use_codec(sent_codec(pc.localDescription.sdp))
        writer.write((json.dumps({"sdp": pc.localDescription.sdp, "rtp": [host, port]}) + "\n").encode())
        await writer.drain()
        await reader.read()  # until the load closes the leg
        audio.close()
        await pc.close()

    server = await asyncio.start_unix_server(leg, path)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


# ------------------------------------------------------------------------------ load
class Clock:
    """Bursts leave at multiples of EVERY frames; send times kept per direction."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.arrived: list[float] = []

    def latencies(self) -> list[float]:
        out = []
        for t in self.arrived:
            before = [s for s in self.sent if s <= t]
            if before and t - before[-1] < 0.9:
                out.append(t - before[-1])
        return out


def tone_track(clock: Clock, codec: str):
    """The browser's microphone: pre-encoded packets (aiortc's pack path), PCMU or
    Opus through voicegw's own encoder, as the server sends its side."""
    from aiortc.mediastreams import MediaStreamTrack

    from voicegw.desk.audio import OpusEncoder

    class Tone(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.start: float | None = None
            self.opus = OpusEncoder() if codec == "opus" else None

        async def recv(self) -> av.AudioFrame | av.Packet:
            while True:
                now = time.monotonic()
                if self.start is None:
                    self.start = now
                else:
                    self.n += 1
                    wait = self.start + self.n * FRAME / RATE - now
                    if wait > 0:
                        await asyncio.sleep(wait)
                burst = self.n % EVERY == EVERY - 1
                if burst:
                    clock.sent.append(time.monotonic())
                if codec == "pcmu":
                    packet = av.Packet(BURST_U if burst else SILENCE_U)
                    packet.pts, packet.time_base = self.n * FRAME, fractions.Fraction(1, RATE)
                    return packet
                frame = av.AudioFrame.from_ndarray((BURST if burst else SILENCE).reshape(1, -1), format="s16",
                                                   layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = RATE, self.n * FRAME, fractions.Fraction(1, RATE)
                if self.opus is None:
                    return frame
                packet = self.opus.encode(frame)
                if packet is not None:
                    return packet

    return Tone()


class Leg(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.to_page, self.to_call = Clock(), Clock()
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.page_frames = self.call_packets = 0
        self.was_loud_page = self.was_loud_call = False
        self.seq = 0
        self.pc = None
        self.writer = None
        self.decoder = None
        self.resampler = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        self.call_packets += 1
        samples = g711.ulaw_decode(data[12:])
        now_loud = loud(samples)
        if now_loud and not self.was_loud_call:
            self.to_call.arrived.append(time.monotonic())
        self.was_loud_call = now_loud

    def send(self, n: int) -> None:
        if self.transport is None or self.remote is None:
            return
        burst = n % EVERY == EVERY - 1
        if burst:
            self.to_page.sent.append(time.monotonic())
        payload = g711.ulaw_encode(BURST if burst else SILENCE)
        self.transport.sendto(struct.pack("!BBHII", 0x80, 0, n & 0xFFFF, (n * FRAME) & 0xFFFFFFFF, 0x1234) + payload,
                              self.remote)

    def from_server(self, codec, frame) -> None:  # type: ignore[no-untyped-def]
        """One complete frame from the server's aiortc, on the loop (voicegw.desk.fastpath)."""
        arrived = time.monotonic()
        self.page_frames += 1
        if codec.name.lower() == "pcmu":
            self._page(g711.ulaw_decode(frame.data), arrived)
            return
        if self.decoder is None:
            from aiortc.codecs import get_decoder

            self.decoder = get_decoder(codec)
            self.resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        for decoded in self.decoder.decode(frame):
            for out in self.resampler.resample(decoded):
                self._page(out.to_ndarray().reshape(-1), arrived)

    def _page(self, samples: np.ndarray, arrived: float) -> None:
        now_loud = loud(samples)
        if now_loud and not self.was_loud_page:
            self.to_page.arrived.append(arrived)
        self.was_loud_page = now_loud


async def open_leg(path: str, codec: str, tasks: list) -> Leg:  # type: ignore[type-arg]
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    loop = asyncio.get_running_loop()
    leg = Leg()
    await loop.create_datagram_endpoint(lambda: leg, local_addr=("127.0.0.1", 0))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    leg.pc = pc
    transceiver = pc.addTransceiver(tone_track(leg.to_call, codec), direction="sendrecv")
    assert tap(transceiver.receiver, leg.from_server) is not None, "aiortc's receiver without the short cut"
    await pc.setLocalDescription(await pc.createOffer())
    reader, writer = await asyncio.open_unix_connection(path)
    leg.writer = writer
    assert leg.transport is not None
    hello = {"sdp": pc.localDescription.sdp, "codec": codec, "rtp": list(leg.transport.get_extra_info("sockname")[:2])}
    writer.write((json.dumps(hello) + "\n").encode())
    await writer.drain()
    answer = json.loads(await reader.readline())
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    leg.remote = tuple(answer["rtp"])
    return leg


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def trial(path: str, server_pid: int, legs_n: int, codec: str, seconds: float) -> dict:
    tasks: list = []  # type: ignore[type-arg]
    legs = [await open_leg(path, codec, tasks) for _ in range(legs_n)]
    stop = False

    async def pace() -> None:
        start, n = time.monotonic(), 0
        while not stop:
            for leg in legs:
                leg.send(n)
            n += 1
            wait = start + n * 0.02 - time.monotonic()
            await asyncio.sleep(max(wait, 0))

    sender = asyncio.get_running_loop().create_task(pace())
    # ICE, DTLS, first frames: every leg flowing both ways, or 30 s (a loaded box)
    for _ in range(300):
        await asyncio.sleep(0.1)
        if all(leg.page_frames > 50 and leg.call_packets > 50 for leg in legs):
            break
    await asyncio.sleep(1)
    for leg in legs:
        leg.page_frames = leg.call_packets = 0
        leg.to_page.sent.clear(), leg.to_page.arrived.clear(), leg.to_call.sent.clear(), leg.to_call.arrived.clear()
    cpu0, load0, t0 = cpu_seconds(server_pid), cpu_seconds(os.getpid()), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, load1, t1 = cpu_seconds(server_pid), cpu_seconds(os.getpid()), time.monotonic()
    loadavg = os.getloadavg()[0]
    stop = True
    await sender
    wall = t1 - t0
    page = [x for leg in legs for x in leg.to_page.latencies()]
    call = [x for leg in legs for x in leg.to_call.latencies()]
    result = {
        "legs": legs_n, "codec": codec, "seconds": round(wall, 1),
        "server_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
        "cpu_pct_per_leg": round(100 * (cpu1 - cpu0) / wall / legs_n, 2),
        "legs_per_core": round(legs_n / ((cpu1 - cpu0) / wall), 1) if cpu1 > cpu0 else None,
        "load_cpu_pct": round(100 * (load1 - load0) / wall, 1), "loadavg_1m": round(loadavg, 2),
        "legs_flowing": sum(1 for leg in legs if leg.page_frames / wall > 40 and leg.call_packets / wall > 40),
        "to_page_fps_per_leg": round(sum(leg.page_frames for leg in legs) / wall / legs_n, 1),
        "to_call_pps_per_leg": round(sum(leg.call_packets for leg in legs) / wall / legs_n, 1),
        "to_page_latency_ms": _pct(page), "to_call_latency_ms": _pct(call),
        "bursts_to_page": [sum(len(leg.to_page.sent) for leg in legs), sum(len(leg.to_page.arrived) for leg in legs)],
        "bursts_to_call": [sum(len(leg.to_call.sent) for leg in legs), sum(len(leg.to_call.arrived) for leg in legs)],
    }
    for leg in legs:
        leg.writer.close()
        await leg.pc.close()
        leg.transport.close()
    for task in tasks:
        task.cancel()
    await asyncio.sleep(1)
    return result


def _pct(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ms = sorted(v * 1000 for v in values)
    return {"n": len(ms), "p50": round(statistics.median(ms), 1), "p95": round(ms[int(0.95 * (len(ms) - 1))], 1),
            "max": round(ms[-1], 1)}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "desk.sock")
        server = subprocess.Popen([sys.executable, __file__, "--serve", path,  # noqa: ASYNC220
                                   *(["--aiortc-path"] if args.aiortc_path else [])], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            for codec in args.codec.split(","):
                for n in (int(x) for x in args.legs.split(",")):
                    print(json.dumps(await trial(path, server.pid, n, codec.lower(), args.seconds)), flush=True)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", default="10", help="comma-separated leg counts")
    parser.add_argument("--codec", default="pcmu", help="pcmu, pcma, opus (comma-separated)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--aiortc-path", action="store_true",
                        help="the server leaves aiortc's own decode/encode path (the before figures)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(serve(args.serve, args) if args.serve else main(args))
