"""Players of in-memory audio (prompts, hold music) send G.711 encoded once per array,
not once per packet: the packets that reach a peer over UDP on 127.0.0.1 carry the
same payloads as encoding each 20 ms of the samples (the last frame padded with
silence, a loop wrapping to its start); a shared prompt's payload is encoded once for
every player and forgotten with the array; a writable one (made for one call) is not
copied."""

from __future__ import annotations

import asyncio
import gc

import numpy as np
import pytest
from peers.ports import free_block

from voicegw.media import g711
from voicegw.media.endpoint import open_endpoint
from voicegw.media.player import _ENCODED, FRAME, ArraySource, Player, play_samples
from voicegw.media.ports import PortPool
from voicegw.media.rtp import RtpPacket

HOST = "127.0.0.1"
TIMEOUT = 5.0


class Receiver(asyncio.DatagramProtocol):
    """A plain UDP socket standing for the caller's phone."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)

    async def packets(self, n: int) -> list[RtpPacket]:
        return [RtpPacket.parse(await asyncio.wait_for(self.queue.get(), TIMEOUT)) for _ in range(n)]


async def endpoint_to_receiver(payload_type: int):
    low = free_block(4)
    endpoint = await open_endpoint(HOST, PortPool(low, low + 3), payload_type=payload_type)
    transport, receiver = await asyncio.get_running_loop().create_datagram_endpoint(
        Receiver, local_addr=(HOST, 0))
    endpoint.set_remote(*transport.get_extra_info("sockname")[:2])
    return endpoint, transport, receiver


def expected_frames(samples: np.ndarray, n: int, encode, loop: bool) -> list[bytes]:
    """What 20 ms at a time of ``samples`` encodes to, independently of the player."""
    if loop:
        stream = samples[np.arange(n * FRAME) % len(samples)]
    else:
        stream = np.concatenate([samples, np.zeros(-len(samples) % FRAME, np.int16)])
    return [encode(stream[i * FRAME:(i + 1) * FRAME]) for i in range(n)]


def speech_like(n: int, seed: int) -> np.ndarray:
    samples = (np.random.default_rng(seed).standard_normal(n) * 6000).clip(-32768, 32767).astype(np.int16)
    samples.setflags(write=False)  # as media/prompts.py shares a prompt
    return samples


async def test_a_prompt_with_a_partial_last_frame_arrives_as_encoded_per_frame() -> None:
    samples = speech_like(10 * FRAME + 37, seed=1)  # 11 packets, the last one padded
    endpoint, transport, receiver = await endpoint_to_receiver(g711.PCMA)
    player = play_samples(endpoint, samples)
    got = await receiver.packets(11)
    await asyncio.wait_for(player.wait(), TIMEOUT)
    assert [p.payload for p in got] == expected_frames(samples, 11, g711.alaw_encode, loop=False)
    assert {p.payload_type for p in got} == {g711.PCMA} and player.packets_sent == 11
    transport.close()
    endpoint.close()


@pytest.mark.parametrize("shared", [True, False], ids=["read-only", "writable"])
async def test_a_loop_shorter_than_a_frame_wraps_as_encoded_per_frame(shared: bool) -> None:
    samples = np.arange(-3000, 3000, 60, dtype=np.int16)  # 100 samples
    samples.setflags(write=not shared)
    endpoint, transport, receiver = await endpoint_to_receiver(g711.PCMU)
    player = Player(endpoint, ArraySource(samples, loop=True)).start()
    got = await receiver.packets(7)
    player.stop()
    assert [p.payload for p in got] == expected_frames(samples, 7, g711.ulaw_encode, loop=True)
    # a writable array (one call's hold audio) is not copied as payload for each player
    assert ((id(samples), g711.PCMU, True) in _ENCODED) is shared
    transport.close()
    endpoint.close()


async def test_a_shared_prompt_is_encoded_once_and_forgotten_with_its_array() -> None:
    samples = speech_like(3 * FRAME, seed=2)
    endpoint, transport, receiver = await endpoint_to_receiver(g711.PCMU)
    first = play_samples(endpoint, samples)
    await asyncio.wait_for(first.wait(), TIMEOUT)
    key = (id(samples), g711.PCMU, False)
    payload = _ENCODED[key]
    second = play_samples(endpoint, samples)  # the next caller's greeting
    await asyncio.wait_for(second.wait(), TIMEOUT)
    assert _ENCODED[key] is payload  # not encoded again
    got = await receiver.packets(6)
    assert [p.payload for p in got] == expected_frames(samples, 3, g711.ulaw_encode, loop=False) * 2
    del first, second, samples
    gc.collect()
    assert key not in _ENCODED
    transport.close()
    endpoint.close()
