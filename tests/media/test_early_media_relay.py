"""Early media in the media plane, over real UDP sockets on 127.0.0.1: a ringing
agent leg's RTP relayed one way to the caller in place of the ringback player
(media/relay.py EarlyMedia), the bridge's swap at the answer, the caller given back
to the bot when the leg fails, and MediaEndpoint.repoint (a fork's 183, a 2xx whose
SDP names another address than the 183's)."""

from __future__ import annotations

import pytest
from peers.udp import UdpPeer

from voicegw.media.endpoint import _STALE_PACKETS, MediaEndpoint, open_endpoint
from voicegw.media.player import ringback_player
from voicegw.media.ports import PortPool
from voicegw.media.relay import Bridge, EarlyMedia
from voicegw.media.rtp import build_rtp

HOST = "127.0.0.1"


@pytest.fixture
def pool() -> PortPool:
    return PortPool(43000, 43999)


def frame(ssrc: int, seq: int, tag: int) -> bytes:
    return build_rtp(0, seq, 160 * seq, ssrc, bytes([tag]) * 160)


async def call_with_bot(pool: PortPool) -> tuple[MediaEndpoint, MediaEndpoint, UdpPeer, UdpPeer, Bridge]:
    """Caller (a) bridged to the bot (b), both latched."""
    a, b = await open_endpoint(HOST, pool), await open_endpoint(HOST, pool)
    caller, bot = await UdpPeer.open(), await UdpPeer.open()
    a.set_remote(*caller.addr)
    b.set_remote(*bot.addr)
    bridge = Bridge(a, b)
    caller.send(frame(1, 0, 1), a.port)
    assert (await bot.packet()).payload == bytes([1]) * 160
    bot.send(frame(0xB0B, 0, 2), b.port)
    assert (await caller.packet()).payload == bytes([2]) * 160
    return a, b, caller, bot, bridge


async def test_early_media_replaces_ringback_then_the_answer_swaps_one_continuous_stream(pool: PortPool) -> None:
    a, b, caller, bot, bridge = await call_with_bot(pool)
    ring = ringback_player(a)
    await caller.packet()  # ringback reaches the caller
    c, agent = await open_endpoint(HOST, pool), await UdpPeer.open()
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
    assert (await bot.packet()).payload == bytes([3]) * 160
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
    assert (await agent.packet()).payload == bytes([5]) * 160
    bridge.close()
    for ep in (a, b, c):
        ep.close()


async def test_a_failed_leg_gives_the_caller_back_to_the_bot(pool: PortPool) -> None:
    a, b, caller, bot, bridge = await call_with_bot(pool)
    c, agent = await open_endpoint(HOST, pool), await UdpPeer.open()
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
    a, b, caller, _bot, bridge = await call_with_bot(pool)
    c = await open_endpoint(HOST, pool)
    fork1, fork2 = await UdpPeer.open(), await UdpPeer.open()
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
