"""A plain UDP socket on 127.0.0.1 standing for a phone, bot or agent in the media
unit tests (tests/media): what reaches it is queued; reads are bounded by a timeout."""

from __future__ import annotations

import asyncio

from voicegw.media.rtp import RtpPacket

HOST = "127.0.0.1"
TIMEOUT = 2.0
"""Seconds a read waits for a datagram before the test fails."""


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport

    @classmethod
    async def open(cls) -> UdpPeer:
        _, peer = await asyncio.get_running_loop().create_datagram_endpoint(cls, local_addr=(HOST, 0))
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def addr(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]

    def send(self, data: bytes, port: int) -> None:
        self.transport.sendto(data, (HOST, port))

    async def recv(self, timeout: float = TIMEOUT) -> bytes:
        return (await asyncio.wait_for(self.queue.get(), timeout))[0]

    async def packet(self) -> RtpPacket:
        return RtpPacket.parse(await self.recv())

    async def recv_n(self, n: int) -> list[RtpPacket]:
        return [await self.packet() for _ in range(n)]

    async def until(self, payload: bytes, limit: int = 200) -> list[RtpPacket]:
        """Packets received up to and including the first carrying ``payload`` (bounded)."""
        got = []
        for _ in range(limit):
            packet = await self.packet()
            got.append(packet)
            if packet.payload == payload:
                return got
        raise AssertionError(f"no packet with {payload[:1]!r} in {limit}")

    def clear(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    async def nothing(self, wait: float = 0.1) -> bool:
        """True when nothing arrives within ``wait`` seconds (or arrived before)."""
        await asyncio.sleep(wait)
        return self.queue.empty()
