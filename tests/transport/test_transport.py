"""The asyncio driver with the real UA core, over loopback, in-process.

Each test binds port 0 on 127.0.0.1 (never a developer's 5060) and closes what it
opened; every wait is bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio

import pytest
from peers.net import header, options, status_line

from voicegw.sip.build import make_response, new_tag
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.events import (
    Address,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from voicegw.sip.message import Headers, Request
from voicegw.transport.endpoint import SipEndpoint
from voicegw.transport.limits import TransportLimits

HOST = "127.0.0.1"
LOOPS = ["asyncio", "uvloop"]
_open: list[SipEndpoint] = []


@pytest.fixture(params=LOOPS)
def run(request):
    """Run a test coroutine on a fresh loop of each kind (the daemon runs uvloop, the
    stdlib loop is the fallback), bounded in time, closing every endpoint it started."""
    if request.param == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    else:
        factory = asyncio.new_event_loop

    def runner(test) -> None:
        async def main() -> None:
            try:
                async with asyncio.timeout(20):
                    await test()
            finally:
                while _open:
                    await _open.pop().close()

        with asyncio.Runner(loop_factory=factory) as loop_runner:
            loop_runner.run(main())

    return runner



class Recorder:
    """An application: records events; answers INVITE 480 from inside the callback."""

    def __init__(self) -> None:
        self.endpoint: SipEndpoint | None = None
        self.events: list[Event] = []
        self.raise_on_request = False

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, RequestReceived):
            if self.raise_on_request:
                raise RuntimeError("application bug")
            if event.request.method == "INVITE":
                assert self.endpoint is not None
                response = make_response(event.request, 480, to_tag=new_tag())
                self.endpoint.send_response(event.transaction_id, response)


async def start_endpoint(limits: TransportLimits | None = None) -> tuple[SipEndpoint, Recorder]:
    app = Recorder()
    endpoint = SipEndpoint(on_event=app, limits=limits)
    app.endpoint = endpoint
    _open.append(endpoint)
    await endpoint.start(HOST, 0, 0)
    udp, tcp = endpoint.udp_address, endpoint.tcp_address
    assert udp is not None and tcp is not None
    endpoint.core = UserAgentCore(CoreConfig(host=HOST, udp_port=udp.port, tcp_port=tcp.port))
    return endpoint, app


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    async def recv(self, timeout: float = 2.0) -> bytes:
        async with asyncio.timeout(timeout):
            return (await self.queue.get())[0]


async def udp_peer() -> UdpPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=(HOST, 0))
    return peer


async def read_message(reader: asyncio.StreamReader, timeout: float = 2.0) -> bytes:
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
        head = head.lstrip(b"\r\n")
        length = int(header(head, "content-length") or 0)
        return head + (await reader.readexactly(length) if length else b"")



async def _udp_options_round_trip():
    ep, _app = await start_endpoint()
    peer = await udp_peer()
    try:
        target = (HOST, ep.udp_address.port)
        peer.transport.sendto(options(target, peer.address), target)
        reply = await peer.recv()
        assert status_line(reply)[0] == 200
        assert "INVITE" in header(reply, "allow")
        stats = ep.statistics()
        assert stats.udp.datagrams_in == 1 and stats.udp.datagrams_out == 1
        assert stats.core.requests_received == 1
    finally:
        peer.transport.close()


async def _invite_answered_from_callback_and_timer_g_retransmits():
    ep, app = await start_endpoint()
    peer = await udp_peer()
    try:
        target = (HOST, ep.udp_address.port)
        invite = options(target, peer.address, method="INVITE")
        peer.transport.sendto(invite, target)
        assert status_line(await peer.recv())[0] == 100
        final = await peer.recv()
        assert status_line(final)[0] == 480
        # exactly one timer, the one the core asked for
        assert ep.next_timer == ep.core.get_timer() is not None
        # Timer G (T1 = 0.5 s): the 480 comes again because nobody ACKs it
        again = await peer.recv(timeout=1.5)
        assert again == final
        assert ep.statistics().timer_fires >= 1
        assert ep.next_timer == ep.core.get_timer()
        assert [type(e).__name__ for e in app.events][:1] == ["RequestReceived"]
    finally:
        peer.transport.close()


async def _client_request_gets_its_response_event():
    ep, app = await start_endpoint()
    peer = await udp_peer()
    try:
        request = Request(
            "OPTIONS",
            f"sip:peer@{HOST}:{peer.address[1]}",
            Headers(
                [
                    ("From", f"<sip:voicegw@{HOST}>;tag={new_tag()}"),
                    ("To", f"<sip:peer@{HOST}>"),
                    ("Call-ID", f"{new_tag()}@{HOST}"),
                    ("CSeq", "1 OPTIONS"),
                ]
            ),
        )
        tid = ep.send_request(request, Address("udp", HOST, peer.address[1]))
        assert ep.next_timer is not None  # Timer E/F armed
        sent = await peer.recv()
        from voicegw.sip.parser import parse_message

        got = parse_message(sent)
        reply = make_response(got, 200, to_tag=new_tag())
        peer.transport.sendto(bytes(reply), (HOST, ep.udp_address.port))
        async with asyncio.timeout(2):
            while not any(isinstance(e, ResponseReceived) for e in app.events):
                await asyncio.sleep(0.01)
        event = next(e for e in app.events if isinstance(e, ResponseReceived))
        assert event.transaction_id == tid and event.response.status == 200
    finally:
        peer.transport.close()


async def _tcp_framing_across_split_writes():
    ep, _app = await start_endpoint()
    reader, writer = await asyncio.open_connection(HOST, ep.tcp_address.port)
    try:
        local = writer.get_extra_info("sockname")[:2]
        data = options((HOST, ep.tcp_address.port), local, "TCP")
        for i in range(0, len(data), 11):  # header and blank line cut anywhere
            writer.write(data[i : i + 11])
            await writer.drain()
            await asyncio.sleep(0.001)
        reply = await read_message(reader)
        assert status_line(reply)[0] == 200
        # the response went back on this connection, which is reused for the next one
        writer.write(options((HOST, ep.tcp_address.port), local, "TCP", cseq=2))
        assert header(await read_message(reader), "cseq") == "2 OPTIONS"
        assert ep.statistics().tcp.accepted == 1
    finally:
        writer.close()


async def _tcp_good_message_before_framing_error_is_not_lost():
    ep, _app = await start_endpoint()
    reader, writer = await asyncio.open_connection(HOST, ep.tcp_address.port)
    try:
        local = writer.get_extra_info("sockname")[:2]
        target = (HOST, ep.tcp_address.port)
        good = options(target, local, "TCP", cseq=1)
        bad = options(target, local, "TCP", cseq=2).replace(b"Content-Length: 0\r\n", b"")
        writer.write(good + bad)
        first = await read_message(reader)
        second = await read_message(reader)
        assert (status_line(first)[0], header(first, "cseq")) == (200, "1 OPTIONS")
        assert status_line(second)[0] == 400
        async with asyncio.timeout(2):
            assert await reader.read() == b""  # closed after the answer
        assert ep.statistics().tcp.framing_errors == 1
    finally:
        writer.close()


async def _tcp_message_too_large_gets_513_and_close():
    ep, _ = await start_endpoint(TransportLimits(max_message_size=2000))
    try:
        reader, writer = await asyncio.open_connection(HOST, ep.tcp_address.port)
        local = writer.get_extra_info("sockname")[:2]
        big = options((HOST, ep.tcp_address.port), local, "TCP").replace(
            b"Content-Length: 0", b"Content-Type: text/plain\r\nContent-Length: 5000"
        )
        writer.write(big)
        reply = await read_message(reader)
        assert status_line(reply)[0] == 513
        async with asyncio.timeout(2):
            assert await reader.read() == b""
        writer.close()
    finally:
        await ep.close()


async def _udp_oversized_datagram_dropped():
    ep, _ = await start_endpoint(TransportLimits(max_message_size=1000))
    peer = await udp_peer()
    try:
        target = (HOST, ep.udp_address.port)
        big = options(target, peer.address, extra="X-Pad: " + "a" * 1200 + "\r\n")
        peer.transport.sendto(big, target)
        with pytest.raises(TimeoutError):
            await peer.recv(timeout=0.3)
        assert ep.statistics().udp.oversized_dropped == 1
        peer.transport.sendto(options(target, peer.address), target)
        assert status_line(await peer.recv())[0] == 200
    finally:
        peer.transport.close()
        await ep.close()


async def _tcp_connections_per_ip_limit():
    ep, _ = await start_endpoint(TransportLimits(max_tcp_connections_per_ip=2))
    conns = []
    try:
        for _ in range(3):
            conns.append(await asyncio.open_connection(HOST, ep.tcp_address.port))
        reader, _ = conns[2]
        async with asyncio.timeout(2):
            assert await reader.read() == b""  # the third is closed at once
        stats = ep.statistics().tcp
        assert stats.refused_limit == 1 and stats.connections_open == 2
        # the first two still work
        reader, writer = conns[0]
        writer.write(options((HOST, ep.tcp_address.port), writer.get_extra_info("sockname"), "TCP"))
        assert status_line(await read_message(reader))[0] == 200
    finally:
        for _, writer in conns:
            writer.close()
        await ep.close()


async def _tcp_idle_timeout_closes():
    ep, _ = await start_endpoint(TransportLimits(tcp_idle_timeout=0.3))
    try:
        reader, writer = await asyncio.open_connection(HOST, ep.tcp_address.port)
        await asyncio.sleep(0.15)
        writer.write(b"\r\n\r\n")  # a keep-alive ping is traffic: it moves the deadline
        assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
        async with asyncio.timeout(2):
            assert await reader.read() == b""
        assert ep.statistics().tcp.idle_closed == 1
        writer.close()
    finally:
        await ep.close()


async def _tcp_pongs_are_not_answered():
    # RFC 5626 4.4.1: two single-CRLF pongs in a row are no ping; only CRLFCRLF is
    ep, _ = await start_endpoint()
    try:
        reader, writer = await asyncio.open_connection(HOST, ep.tcp_address.port)
        for pongs in (1, 2):
            writer.write(b"\r\n")
            async with asyncio.timeout(5):  # each pong in its own read
                while ep.statistics().tcp.pongs < pongs:
                    await asyncio.sleep(0.01)
        assert ep.statistics().tcp.pings == 0
        writer.write(options((HOST, ep.tcp_address.port), writer.get_extra_info("sockname"), "TCP"))
        async with asyncio.timeout(2):
            first = await reader.readuntil(b"\r\n")
        assert first.startswith(b"SIP/2.0 200"), first  # no pong went out before it
        await read_message(reader)  # the rest of the 200
        writer.write(b"\r\n\r\n")  # a real ping is still answered with one CRLF
        assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
        assert ep.statistics().tcp.pings == 1
        writer.close()
    finally:
        await ep.close()


async def _outbound_tcp_request_opens_and_reuses_one_connection():
    ep, app = await start_endpoint()
    accepted: list[asyncio.StreamWriter] = []
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        from voicegw.sip.parser import parse_message

        while True:
            try:
                data = await read_message(reader, timeout=5)
            except (asyncio.IncompleteReadError, TimeoutError):
                return
            await got.put(data)
            writer.write(bytes(make_response(parse_message(data), 200, to_tag=new_tag())))

    server = await asyncio.start_server(serve, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for n in (1, 2):
            request = Request(
                "OPTIONS",
                f"sip:peer@{HOST}:{port};transport=tcp",
                Headers(
                    [
                        ("From", f"<sip:voicegw@{HOST}>;tag={new_tag()}"),
                        ("To", f"<sip:peer@{HOST}>"),
                        ("Call-ID", f"{new_tag()}@{HOST}"),
                        ("CSeq", f"{n} OPTIONS"),
                    ]
                ),
            )
            ep.send_request(request, Address("tcp", HOST, port))
            async with asyncio.timeout(3):
                await got.get()
        async with asyncio.timeout(2):
            while sum(isinstance(e, ResponseReceived) for e in app.events) < 2:
                await asyncio.sleep(0.01)
        assert len(accepted) == 1
        assert ep.statistics().tcp.connected == 1
    finally:
        for writer in accepted:
            writer.close()
        server.close()


async def _application_error_does_not_stop_the_endpoint():
    ep, app = await start_endpoint()
    app.raise_on_request = True
    peer = await udp_peer()
    try:
        target = (HOST, ep.udp_address.port)
        peer.transport.sendto(options(target, peer.address, method="INVITE"), target)
        assert status_line(await peer.recv())[0] == 100
        async with asyncio.timeout(2):
            while ep.statistics().application_errors == 0:
                await asyncio.sleep(0.01)
        peer.transport.sendto(options(target, peer.address), target)
        assert status_line(await peer.recv())[0] == 200
    finally:
        peer.transport.close()


async def _input_before_core_is_dropped_and_close_is_idempotent():
    ep = SipEndpoint()
    _open.append(ep)
    await ep.start(HOST, 0, None)
    peer = await udp_peer()
    try:
        target = (HOST, ep.udp_address.port)
        peer.transport.sendto(options(target, peer.address), target)
        async with asyncio.timeout(2):
            while ep.statistics().dropped_no_core == 0:
                await asyncio.sleep(0.01)
        assert ep.tcp_address is None
    finally:
        peer.transport.close()
        await ep.close()
        await ep.close()


async def _tcp_connect_failure_ends_the_client_transaction():
    """RFC 3261 17.1.4: a connection that cannot be opened is a transport error the
    core hears of at once (TransactionTimedOut, timer "transport"), not Timer F 32 s
    later; the endpoint's 20 s bound would fail the test if it were not reported."""
    import socket

    ep, app = await start_endpoint()
    closed = socket.socket()  # a free port with no listener: the connect is refused
    closed.bind((HOST, 0))
    port = closed.getsockname()[1]
    closed.close()
    request = Request("OPTIONS", f"sip:peer@{HOST}:{port};transport=tcp", Headers([
        ("From", f"<sip:voicegw@{HOST}>;tag={new_tag()}"), ("To", f"<sip:peer@{HOST}>"),
        ("Call-ID", f"{new_tag()}@{HOST}"), ("CSeq", "1 OPTIONS"),
    ]))
    tx_id = ep.send_request(request, Address("tcp", HOST, port))
    async with asyncio.timeout(5):
        while not any(isinstance(e, TransactionTimedOut) for e in app.events):
            await asyncio.sleep(0.01)
    assert [e for e in app.events if isinstance(e, TransactionTimedOut)] == [
        TransactionTimedOut(tx_id, "OPTIONS", "transport")]
    stats = ep.statistics()
    assert stats.tcp.connect_failures == 1 and stats.core.client_transactions == 0


# --- each test on both loops ---------------------------------------------------------
def test_udp_options_round_trip(run):
    run(_udp_options_round_trip)


def test_invite_answered_from_callback_and_timer_g_retransmits(run):
    run(_invite_answered_from_callback_and_timer_g_retransmits)


def test_client_request_gets_its_response_event(run):
    run(_client_request_gets_its_response_event)


def test_tcp_framing_across_split_writes(run):
    run(_tcp_framing_across_split_writes)


def test_tcp_good_message_before_framing_error_is_not_lost(run):
    run(_tcp_good_message_before_framing_error_is_not_lost)


def test_tcp_message_too_large_gets_513_and_close(run):
    run(_tcp_message_too_large_gets_513_and_close)


def test_udp_oversized_datagram_dropped(run):
    run(_udp_oversized_datagram_dropped)


def test_tcp_connections_per_ip_limit(run):
    run(_tcp_connections_per_ip_limit)


def test_tcp_idle_timeout_closes(run):
    run(_tcp_idle_timeout_closes)


def test_tcp_pongs_are_not_answered(run):
    run(_tcp_pongs_are_not_answered)


def test_outbound_tcp_request_opens_and_reuses_one_connection(run):
    run(_outbound_tcp_request_opens_and_reuses_one_connection)


def test_application_error_does_not_stop_the_endpoint(run):
    run(_application_error_does_not_stop_the_endpoint)


def test_input_before_core_is_dropped_and_close_is_idempotent(run):
    run(_input_before_core_is_dropped_and_close_is_idempotent)


def test_tcp_connect_failure_ends_the_client_transaction(run):
    run(_tcp_connect_failure_ends_the_client_transaction)


def test_the_sip_socket_has_a_receive_buffer_that_outlasts_a_stalled_loop() -> None:
    """Issue 16: with Linux's default SO_RCVBUF, datagrams that came while the loop was
    held up for a second were dropped (a 202 lost, the REFER resent); the kernel
    grants twice what is asked, capped at net.core.rmem_max (socket(7))."""
    import socket
    from pathlib import Path

    from voicegw.transport.udp import RECEIVE_BUFFER, open_udp

    async def granted() -> int:
        endpoint = await open_udp("127.0.0.1", 0, lambda data, source: None, 65535)
        try:
            return endpoint._transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        finally:
            endpoint.close()

    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    assert asyncio.run(granted()) >= 2 * min(RECEIVE_BUFFER, rmem_max)
