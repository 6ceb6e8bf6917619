"""Early media in the media plane, over real UDP sockets on 127.0.0.1: a ringing
agent leg's RTP relayed one way to the caller in place of the ringback player
(media/relay.py EarlyMedia), the bridge's swap at the answer, the caller given back
to the bot when the leg fails, and MediaEndpoint.repoint (a fork's 183, a 2xx whose
SDP names another address than the 183's)."""

from __future__ import annotations

import asyncio

import pytest

from voicegw.media.endpoint import _STALE_PACKETS, MediaEndpoint, open_endpoint
from voicegw.media.player import ringback_player
from voicegw.media.ports import PortPool
from voicegw.media.relay import Bridge, EarlyMedia
from voicegw.media.rtp import RtpPacket, build_rtp

HOST = "127.0.0.1"
TIMEOUT = 2.0


class Peer(asyncio.DatagramProtocol):
    """A plain UDP socket standing for the caller, the bot or an agent."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport

    @classmethod
    async def open(cls) -> Peer:
        _, peer = await asyncio.get_running_loop().create_datagram_endpoint(cls, local_addr=(HOST, 0))
        return peer

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def addr(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]

    def send(self, data: bytes, port: int) -> None:
        self.transport.sendto(data, (HOST, port))

    async def recv(self) -> RtpPacket:
        return RtpPacket.parse((await asyncio.wait_for(self.queue.get(), TIMEOUT))[0])

    async def until(self, payload: bytes, limit: int = 200) -> list[RtpPacket]:
        """Packets received up to and including the first carrying ``payload`` (bounded)."""
        got = []
        for _ in range(limit):
            packet = await self.recv()
            got.append(packet)
            if packet.payload == payload:
                return got
        raise AssertionError(f"no packet with {payload[:1]!r} in {limit}")

    def clear(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    async def nothing(self, wait: float = 0.1) -> bool:
        await asyncio.sleep(wait)
        return self.queue.empty()


@pytest.fixture
def pool() -> PortPool:
    return PortPool(43000, 43999)


def frame(ssrc: int, seq: int, tag: int) -> bytes:
    return build_rtp(0, seq, 160 * seq, ssrc, bytes([tag]) * 160)


async def call_with_bot(pool: PortPool) -> tuple[MediaEndpoint, MediaEndpoint, Peer, Peer, Bridge]:
    """Caller (a) bridged to the bot (b), both latched."""
    a, b = await open_endpoint(HOST, pool), await open_endpoint(HOST, pool)
    caller, bot = await Peer.open(), await Peer.open()
    a.set_remote(*caller.addr)
    b.set_remote(*bot.addr)
    bridge = Bridge(a, b)
    caller.send(frame(1, 0, 1), a.port)
    assert (await bot.recv()).payload == bytes([1]) * 160
    bot.send(frame(0xB0B, 0, 2), b.port)
    assert (await caller.recv()).payload == bytes([2]) * 160
    return a, b, caller, bot, bridge


async def test_early_media_replaces_ringback_then_the_answer_swaps_one_continuous_stream(pool: PortPool) -> None:
    a, b, caller, bot, bridge = await call_with_bot(pool)
    ring = ringback_player(a)
    await caller.recv()  # ringback reaches the caller
    c, agent = await open_endpoint(HOST, pool), await Peer.open()
    c.set_remote(*agent.addr)
    early = EarlyMedia(c, a)
    assert not ring.running, "the agent's early media displaces the ringback"
    caller.clear()
    agent.send(frame(0xA6E, 100, 7), c.port)
    got = await caller.until(bytes([7]) * 160)
    assert got[-1].ssrc == 0xB0B, "the caller's stream stays one stream (SSRC kept)"
    assert early.packets == 1
    # one way: the caller's own audio still goes to the bot, nothing to the agent
    caller.send(frame(1, 1, 3), a.port)
    assert (await bot.recv()).payload == bytes([3]) * 160
    assert await agent.nothing()
    # the bot's audio does not reach the caller while the early media plays
    bot.send(frame(0xB0B, 1, 4), b.port)
    assert await caller.nothing()
    # answered: the relay stops, the bridge swaps to the agent, both ways
    early.close()
    old = bridge.replace_b(c)
    assert old is b
    agent.send(frame(0xA6E, 101, 8), c.port)
    after = await caller.until(bytes([8]) * 160)
    assert after[-1].ssrc == 0xB0B and after[-1].sequence == (got[-1].sequence + len(after)) & 0xFFFF
    caller.send(frame(1, 2, 5), a.port)
    assert (await agent.recv()).payload == bytes([5]) * 160
    bridge.close()
    for ep in (a, b, c):
        ep.close()


async def test_a_failed_leg_gives_the_caller_back_to_the_bot(pool: PortPool) -> None:
    a, b, caller, bot, bridge = await call_with_bot(pool)
    c, agent = await open_endpoint(HOST, pool), await Peer.open()
    c.set_remote(*agent.addr)
    early = EarlyMedia(c, a)
    agent.send(frame(0xA6E, 100, 7), c.port)
    await caller.until(bytes([7]) * 160)
    early.close()  # 486 after the 183: the relay ends before the leg closes
    c.close()
    bot.send(frame(0xB0B, 5, 9), b.port)
    assert (await caller.until(bytes([9]) * 160))[-1].ssrc == 0xB0B, "the bot is heard again"
    assert early.closed and a.writer is not None and a.writer is not early._direction
    bridge.close()
    a.close(), b.close()


async def test_repoint_follows_the_new_address_and_ignores_the_old_source_for_a_while(pool: PortPool) -> None:
    a, b, caller, bot, bridge = await call_with_bot(pool)
    c = await open_endpoint(HOST, pool)
    fork1, fork2 = await Peer.open(), await Peer.open()
    c.set_remote(*fork1.addr)
    early = EarlyMedia(c, a)
    fork1.send(frame(0xF1, 0, 11), c.port)
    await caller.until(bytes([11]) * 160)
    assert c.latched and c.remote_rtp == fork1.addr
    # the second fork's 183 names its own address: the last one wins
    c.repoint(*fork2.addr)
    assert c.remote_rtp == fork2.addr and not c.latched
    fork1.send(frame(0xF1, 1, 12), c.port)  # the first fork still sends: dropped
    assert await caller.nothing()
    assert not c.latched
    fork2.send(frame(0xF2, 0, 13), c.port)
    await caller.until(bytes([13]) * 160)
    assert c.latched and c.remote_rtp == fork2.addr
    # a source that keeps sending alone after a re-point is taken after all (NAT)
    c.repoint(HOST, 9)
    caller.clear()
    for seq in range(_STALE_PACKETS):
        fork2.send(frame(0xF2, 1 + seq, 14), c.port)
    assert await caller.nothing(0.2)
    fork2.send(frame(0xF2, 100, 15), c.port)
    await caller.until(bytes([15]) * 160)
    assert c.remote_rtp == fork2.addr
    early.close()
    bridge.close()
    for ep in (a, b, c):
        ep.close()
