"""The driver after a stalled loop: input that arrived during the stall is read before
the timers that came due meanwhile (transport/endpoint.py, ``UdpEndpoint.drain``).

uvloop (libuv) runs due timers before it polls for input. Without the drain, a response
that arrived while the loop was held up past T1 let Timer E (or A) resend a request that
was already answered: under load each such copy cost a send, and sipp's UAS aborted the
call on a copy of an INVITE it had answered. Each test runs on uvloop (the daemon's loop)
and on asyncio's own loop, with a plain socket as the peer so that it can answer while
the loop is held up; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from voicegw.sip.build import make_response, new_tag
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.events import Address, Event, ResponseReceived
from voicegw.sip.message import Headers, Request
from voicegw.sip.parser import parse_message
from voicegw.transport.endpoint import SipEndpoint

HOST = "127.0.0.1"


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_factory(request):
    if request.param == "uvloop":
        return pytest.importorskip("uvloop").new_event_loop
    return asyncio.new_event_loop


def _options(peer_port: int) -> Request:
    return Request("OPTIONS", f"sip:peer@{HOST}:{peer_port}", Headers([
        ("From", f"<sip:voicegw@{HOST}>;tag={new_tag()}"),
        ("To", f"<sip:peer@{HOST}>"),
        ("Call-ID", f"{new_tag()}@{HOST}"),
        ("CSeq", "1 OPTIONS"),
    ]))


class _Stall(asyncio.DatagramProtocol):
    """A socket on the loop whose datagram holds the loop up inside an input callback
    (where the daemon does its work): meanwhile the peer answers and Timer E comes due."""

    def __init__(self, work) -> None:
        self.work = work
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not self.done.done():
            self.work()
            self.done.set_result(None)


async def _answered_during_a_stall() -> tuple[list[bytes], list[Event], int]:
    """Send an OPTIONS; while the loop is held up past Timer E, the peer answers it.
    Returns what the peer received, the application's events and the datagrams sent."""
    loop = asyncio.get_running_loop()
    events: list[Event] = []
    endpoint = SipEndpoint(on_event=events.append)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stall_transport = None
    try:
        await endpoint.start(HOST, 0, None)
        assert endpoint.udp_address is not None
        ep_port = endpoint.udp_address.port
        endpoint.core = UserAgentCore(CoreConfig(host=HOST, udp_port=ep_port))
        peer.bind((HOST, 0))
        peer.settimeout(5)

        def stall() -> None:
            request = parse_message(peer.recv(65535))
            peer.sendto(bytes(make_response(request, 200, to_tag=new_tag())), (HOST, ep_port))
            while loop.time() < deadline + 0.05:
                time.sleep(0.01)

        stall_transport, trigger = await loop.create_datagram_endpoint(lambda: _Stall(stall), local_addr=(HOST, 0))
        endpoint.send_request(_options(peer.getsockname()[1]), Address("udp", HOST, peer.getsockname()[1]))
        deadline = endpoint.next_timer
        assert deadline is not None  # Timer E (T1) or F
        peer.sendto(b"stall", stall_transport.get_extra_info("sockname")[:2])
        async with asyncio.timeout(5):
            await trigger.done
            while not any(isinstance(e, ResponseReceived) for e in events):
                await asyncio.sleep(0.01)
        # a copy of the request would have been sent before the response was read, in
        # the same turn of the loop: it is in the peer's socket by now
        received: list[bytes] = []
        peer.setblocking(False)
        try:
            while True:
                received.append(peer.recv(65535))
        except BlockingIOError:
            pass
        return received, events, endpoint.statistics().udp.datagrams_out
    finally:
        peer.close()
        if stall_transport is not None:
            stall_transport.close()
        await endpoint.close()


def test_a_response_that_came_during_a_stall_stops_the_retransmission(loop_factory) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        received, events, sent = runner.run(asyncio.wait_for(_answered_during_a_stall(), 20))
    assert received == []  # no copy of the OPTIONS
    assert sent == 1
    responses = [e for e in events if isinstance(e, ResponseReceived)]
    assert [r.response.status for r in responses] == [200]
