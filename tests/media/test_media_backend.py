"""The MediaBackend interface (voicegw/media/backend.py) against both implementations:
the in-process relay and a real rtpengine in userspace on loopback (tests/peers/rtpengine.py).

The peers are plain RTP sockets on loopback sending G.711 tones; every assertion is on
audio they received (Goertzel power at the far side's frequency) or on digits the
backend reported: a caller <-> bot call, a transfer that swaps the bot for an agent, a
prompt file played to the caller, and RFC 4733 DTMF from the caller.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import numpy as np
import pytest
from peers.calls import free_block

from voicegw.media import dtmf, g711, tones, wav
from voicegw.media.backend import MediaBackend, RelayBackend, RemoteMedia
from voicegw.media.ports import PortPool
from voicegw.media.rtpengine_backend import RtpengineBackend

CALLER_HZ, BOT_HZ, AGENT_HZ, PROMPT_HZ = 1000.0, 600.0, 850.0, 450.0


class RtpPeer(asyncio.DatagramProtocol):
    """A SIP peer's RTP side: sends a PCMU tone every 20 ms, keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.seq = self.ts = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append(data)

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def remote(self) -> RemoteMedia:
        return RemoteMedia("127.0.0.1", self.port, 0, 101)

    def send(self, to: tuple[str, int], payload: bytes, pt: int = 0, marker: bool = False,
             ts: int | None = None) -> None:
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self.seq & 0xFFFF,
                             (self.ts if ts is None else ts) & 0xFFFFFFFF, 0x1234)
        self.seq += 1
        self.transport.sendto(header + payload, to)

    async def tone(self, to: tuple[str, int], hz: float, seconds: float) -> None:
        samples = tones.generate(tones.ToneSpec((hz,), (), level_dbm0=-10.0), seconds)
        for start in range(0, len(samples) - 159, 160):
            self.send(to, g711.ulaw_encode(samples[start:start + 160]))
            self.ts += 160
            await asyncio.sleep(0.02)

    async def digit(self, to: tuple[str, int], digit: str) -> None:
        start = self.ts
        for payload, marker in dtmf.event_payloads(digit):
            self.send(to, payload, pt=101, marker=marker, ts=start)
            await asyncio.sleep(0.02)
        self.ts += 1600

    def heard(self, since: int = 0) -> np.ndarray:
        audio = [p[12:] for p in self.received[since:] if len(p) > 12 and p[1] & 0x7F == 0]
        return g711.ulaw_decode(b"".join(audio)) if audio else np.zeros(0, np.int16)


def hears(peer: RtpPeer, hz: float, since: int = 0) -> bool:
    """The tone at ``hz`` dominates what ``peer`` received (vs. the other test tones)."""
    x = peer.heard(since)
    if len(x) < 1600:
        return False
    power = tones.goertzel_power(x, hz)
    others = [tones.goertzel_power(x, f) for f in (CALLER_HZ, BOT_HZ, AGENT_HZ, PROMPT_HZ) if f != hz]
    return power > 1e-4 and power > 20 * max(others)


@pytest.fixture(params=["relay", "rtpengine"])
async def backend(request):
    if request.param == "relay":
        low = free_block(40)
        yield RelayBackend("127.0.0.1", PortPool(low, low + 39))
        return
    engine = request.getfixturevalue("rtpengine")
    media = await RtpengineBackend.connect(engine.ng, dtmf_listen=engine.dtmf)
    try:
        yield media
    finally:
        await media.close()


async def peers(n: int) -> list[RtpPeer]:
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(n):
        _, peer = await loop.create_datagram_endpoint(RtpPeer, local_addr=("127.0.0.1", 0),
                                                      family=socket.AF_INET)
        out.append(peer)
    return out


async def leg(media: MediaBackend, name: str, peer: RtpPeer):
    opened = await media.open_leg("call-1", name)
    port = opened.local
    await media.set_remote(opened, peer.remote())
    # the port was in voicegw's SDP before the peer's answer came: it must stay
    assert opened.local == port
    return opened


async def test_caller_and_bot_hear_each_other(backend):
    caller, bot = await peers(2)
    a, b = await leg(backend, "caller", caller), await leg(backend, "bot", bot)
    await backend.bridge(a, b)
    await asyncio.gather(caller.tone(a.local, CALLER_HZ, 1.0), bot.tone(b.local, BOT_HZ, 1.0))
    await asyncio.sleep(0.2)
    assert hears(bot, CALLER_HZ) and hears(caller, BOT_HZ)
    for x in (a, b):
        await backend.close_leg(x)


async def test_transfer_swaps_the_bridge_to_the_agent(backend):
    caller, bot, agent = await peers(3)
    a, b = await leg(backend, "caller", caller), await leg(backend, "bot", bot)
    await backend.bridge(a, b)
    await asyncio.gather(caller.tone(a.local, CALLER_HZ, 0.6), bot.tone(b.local, BOT_HZ, 0.6))
    c = await leg(backend, "agent", agent)
    port_before = a.local
    await backend.bridge(a, c)
    assert a.local == port_before  # the caller keeps its port: no re-INVITE needed
    await asyncio.sleep(0.1)
    mark, bot_mark = len(caller.received), len(bot.received)
    await asyncio.gather(caller.tone(a.local, CALLER_HZ, 1.0), agent.tone(c.local, AGENT_HZ, 1.0),
                         bot.tone(b.local, BOT_HZ, 1.0))
    await asyncio.sleep(0.2)
    assert hears(caller, AGENT_HZ, since=mark)
    assert hears(agent, CALLER_HZ)
    assert not hears(caller, BOT_HZ, since=mark)
    assert len(bot.received) - bot_mark < 5  # the bot is out of the bridge
    for x in (a, b, c):
        await backend.close_leg(x)


async def test_prompt_file_is_heard_by_the_caller(backend, tmp_path):
    caller, = await peers(1)
    a = await leg(backend, "caller", caller)
    prompt = tmp_path / "prompt.wav"
    wav.write_wav(prompt, tones.generate(tones.ToneSpec((PROMPT_HZ,), (), level_dbm0=-10.0), 1.0))
    await backend.play(a, prompt)
    # a caller sends (symmetric RTP: some players and rtpengine wait for its address)
    await caller.tone(a.local, CALLER_HZ, 1.2)
    await asyncio.sleep(0.2)
    assert hears(caller, PROMPT_HZ)
    await backend.close_leg(a)


async def test_dtmf_from_the_caller_reaches_the_handler(backend):
    caller, bot = await peers(2)
    a, b = await leg(backend, "caller", caller), await leg(backend, "bot", bot)
    await backend.bridge(a, b)
    digits: list[str] = []
    backend.on_dtmf(a, digits.append)
    await caller.tone(a.local, CALLER_HZ, 0.2)
    for digit in "5#":
        await caller.digit(a.local, digit)
        await caller.tone(a.local, CALLER_HZ, 0.1)
    for _ in range(50):
        if len(digits) >= 2:
            break
        await asyncio.sleep(0.02)
    assert digits == ["5", "#"]
    for x in (a, b):
        await backend.close_leg(x)


async def test_hold_music_loops_until_stopped(backend, tmp_path):
    """Ringback and hold music are short files played in a loop: still heard after the
    file's length, and silent once stopped."""
    caller, = await peers(1)
    a = await leg(backend, "caller", caller)
    music = tmp_path / "hold.wav"
    wav.write_wav(music, tones.generate(tones.ToneSpec((PROMPT_HZ,), (), level_dbm0=-10.0), 0.4))
    await backend.play(a, music, loop=True)
    await caller.tone(a.local, CALLER_HZ, 0.6)
    mark = len(caller.received)
    await caller.tone(a.local, CALLER_HZ, 0.8)  # past two lengths of the file
    assert hears(caller, PROMPT_HZ, since=mark)
    await backend.stop_play(a)
    await caller.tone(a.local, CALLER_HZ, 0.3)
    mark = len(caller.received)
    await caller.tone(a.local, CALLER_HZ, 0.6)
    assert not hears(caller, PROMPT_HZ, since=mark)
    await backend.close_leg(a)
