"""``voicegw run`` over loopback, against real peers: sipp, raw UDP and TCP sockets.

Every process is started and stopped here; the daemon listens on a free port chosen
by the test (never 5060 on 127.0.0.1, where a developer's daemon may run). Every wait
is bounded.
"""

from __future__ import annotations

import re
import socket
import time

import pytest
from peers.conformance import load_cases
from peers.daemon import DaemonProcess, wait_until
from peers.net import (
    TcpReader,
    drain,
    free_port,
    header,
    options,
    recv_any,
    status_line,
    udp_request,
    udp_socket,
)
from peers.sipp import SIPP, run_sipp

pytestmark = pytest.mark.wire

CASES = load_cases()


@pytest.fixture(scope="module")
def daemon():
    with DaemonProcess() as proc:
        yield proc
        assert proc.running(), "the daemon died during the tests:\n" + "\n".join(proc.lines[-20:])


def ping(daemon: DaemonProcess, source: str = "127.0.0.1") -> int | None:
    reply = udp_request(daemon.address, lambda local: options(daemon.address, local), source=source)
    return status_line(reply)[0] if reply else None


# --- (a) sipp OPTIONS load ---------------------------------------------------------------
@pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap")
def test_sipp_options_udp_1000_at_250_per_second(daemon, tmp_path):
    result = run_sipp(daemon.address, "options_uac.xml", tmp_path, calls=1000, rate=250)
    assert result.stats, result.output[-2000:]
    assert result.successful == 1000, result.output[-2000:]
    assert result.failed == 0
    assert result.count("FailedRegexpDoesntMatch(C)") == 0
    assert result.returncode == 0, result.output[-2000:]


# --- (b) the RFC 4475 / 5118 torture messages, one datagram each -------------------------
# Where the core sends each answer: received (the source address 127.0.0.2) and the
# Via's sent-by port, or our own port when the Via has rport (RFC 3261 18.2.2, 3581).
SENT_BY_PORTS = (5060, 5050, 6050)


@pytest.fixture(scope="module")
def torture_sockets():
    source = udp_socket("127.0.0.2")
    listeners, unbound = [], []
    for port in SENT_BY_PORTS:
        try:
            listeners.append(udp_socket("127.0.0.2", port))
        except OSError:
            unbound.append(port)
    yield [source, *listeners], unbound
    for sock in [source, *listeners]:
        sock.close()


def _call_id(data: bytes) -> str | None:
    match = re.search(rb"^(?:call-id|i)[ \t]*:[ \t]*(.*?)[ \t]*\r?$", data, re.IGNORECASE | re.MULTILINE)
    return match.group(1).decode("utf-8", "replace") if match else None


@pytest.mark.skipif(not CASES, reason="conformance corpora not found")
@pytest.mark.parametrize("case", CASES, ids=[f"{c.corpus}-{c.name}" for c in CASES])
def test_torture_message_over_udp(daemon, torture_sockets, case):
    socks, unbound = torture_sockets
    drain(socks)
    socks[0].sendto(case.data, daemon.address)
    # The final answer counts; a provisional one (100 to an INVITE) only if alone.
    # Answers to earlier cases (Timer G retransmits an unacknowledged INVITE final)
    # are told apart by Call-ID.
    call_id = _call_id(case.data)
    status = None
    deadline = time.monotonic() + 0.5
    while (got := recv_any(socks, max(0.0, deadline - time.monotonic()))) is not None:
        if call_id is not None and _call_id(got[0]) != call_id:
            continue
        status = status_line(got[0])[0]
        if status >= 200:
            break
    if status is None and not case.passes(None) and unbound:
        pytest.skip(f"no answer; 127.0.0.2 ports {unbound} could not be bound for listening")
    assert case.passes(status), (
        f"{case.corpus}/{case.name}: answered {status}, allowed {case.pass_if}, "
        f"forbidden {case.fail_if} ({case.note})"
    )


@pytest.mark.skipif(not CASES, reason="conformance corpora not found")
def test_still_answers_after_torture(daemon, torture_sockets):
    socks, _ = torture_sockets
    drain(socks)
    for case in CASES:
        socks[0].sendto(case.data, daemon.address)
    time.sleep(0.2)
    drain(socks)
    assert ping(daemon) == 200


# --- (c) several source addresses ------------------------------------------------------
@pytest.mark.parametrize("source", ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.1"])
def test_options_from_several_sources(daemon, source):
    assert ping(daemon, source) == 200


# --- (d) what the core answers by itself, over the wire ---------------------------------
def test_out_of_dialog_bye_gets_481(daemon):
    reply = udp_request(daemon.address, lambda local: options(daemon.address, local, method="BYE"))
    assert reply is not None and status_line(reply)[0] == 481


def test_unknown_method_gets_501(daemon):
    reply = udp_request(
        daemon.address, lambda local: options(daemon.address, local, method="FOOBAR")
    )
    assert reply is not None and status_line(reply)[0] == 501
    assert "INVITE" in (header(reply, "allow") or "")


def test_malformed_request_gets_400_naming_the_problem(daemon):
    reply = udp_request(
        daemon.address, lambda local: options(daemon.address, local, omit=("Call-ID",))
    )
    assert reply is not None
    status, reason = status_line(reply)
    assert status == 400
    assert "Call-ID" in reason


def test_body_shorter_than_content_length_gets_400(daemon):
    """RFC 3261 18.3: a UDP request whose datagram ends before its body gets 400."""
    for length in (b"500", b"100000"):
        reply = udp_request(
            daemon.address,
            lambda local, length=length: options(daemon.address, local).replace(
                b"Content-Length: 0", b"Content-Length: " + length),
        )
        assert reply is not None
        status, reason = status_line(reply)
        assert status == 400 and "Content-Length" in reason, (length, status, reason)


def test_bad_cseq_gets_400_naming_the_problem(daemon):
    reply = udp_request(
        daemon.address,
        lambda local: options(daemon.address, local).replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS"),
    )
    assert reply is not None
    status, reason = status_line(reply)
    assert status == 400 and "CSeq" in reason


def test_stray_response_gets_no_answer(daemon):
    response = (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKstray1;rport\r\n"
        b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n"
        b"Call-ID: stray@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert udp_request(daemon.address, response, timeout=0.5) is None
    assert ping(daemon) == 200


def test_invite_gets_100_at_once_and_cancel_is_answered(daemon):
    # What follows the 100 is the application's (480 from the placeholder, the
    # engine's call flow later; see test_rejecting_application_answers_480); the
    # CANCEL ends whatever it started.
    with udp_socket("127.0.0.1") as sock:
        local = sock.getsockname()
        sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        invite = options(daemon.address, local, method="INVITE").replace(
            b"Content-Length: 0\r\n\r\n",
            b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % len(sdp),
        ) + sdp
        sock.sendto(invite, daemon.address)
        got = recv_any([sock], 1.0)
        assert got is not None and status_line(got[0])[0] == 100
        cancel = re.sub(rb"CSeq: 1 INVITE", b"CSeq: 1 CANCEL", invite.split(b"Content-Type")[0])
        cancel = cancel.replace(b"INVITE sip:", b"CANCEL sip:", 1) + b"Content-Length: 0\r\n\r\n"
        sock.sendto(cancel, daemon.address)
        answers = []
        deadline = time.monotonic() + 2.0
        while (got := recv_any([sock], max(0.0, deadline - time.monotonic()))) is not None:
            answers.append((status_line(got[0])[0], header(got[0], "cseq")))
            if any(cseq == "1 CANCEL" for _, cseq in answers):
                break
    assert any(cseq == "1 CANCEL" and status in (200, 481) for status, cseq in answers), answers
    assert ping(daemon) == 200


def test_rejecting_application_answers_480():
    """The placeholder application, in-process on a free port: INVITE -> 100, 480."""
    import asyncio

    from voicegw.config.defaults import DaemonConfig, SipConfig
    from voicegw.daemon import Daemon, RejectingApplication

    port = free_port()
    config = DaemonConfig(sip=SipConfig(udp_port=port, tcp_port=None))

    async def main() -> list[int]:
        daemon = Daemon(config, application_factory=RejectingApplication)
        task = asyncio.create_task(daemon.serve())
        try:
            async with asyncio.timeout(10):
                while daemon.endpoint.core is None:
                    await asyncio.sleep(0.01)
                loop = asyncio.get_running_loop()
                with udp_socket("127.0.0.1") as sock:
                    sock.setblocking(False)
                    target = ("127.0.0.1", port)
                    await loop.sock_sendto(sock, options(target, sock.getsockname(), method="INVITE"), target)
                    statuses = []
                    while not statuses or statuses[-1] < 200:
                        statuses.append(status_line(await loop.sock_recv(sock, 65536))[0])
                    return statuses
        finally:
            daemon.stop()
            assert await asyncio.wait_for(task, 5) == 0

    assert asyncio.run(main()) == [100, 480]


# --- (e) TCP -------------------------------------------------------------------------
def _tcp(daemon: DaemonProcess) -> socket.socket:
    return socket.create_connection(daemon.address, timeout=3)


def test_options_over_tcp(daemon):
    with _tcp(daemon) as sock:
        sock.sendall(options(daemon.address, sock.getsockname(), transport="TCP"))
        reply = TcpReader(sock).read()
    assert reply is not None and status_line(reply)[0] == 200


def test_two_pipelined_options_in_one_tcp_write(daemon):
    with _tcp(daemon) as sock:
        local = sock.getsockname()
        two = options(daemon.address, local, "TCP", cseq=1) + options(daemon.address, local, "TCP", cseq=2)
        sock.sendall(two)
        reader = TcpReader(sock)
        replies = [reader.read(), reader.read()]
    assert all(r is not None for r in replies), replies
    assert sorted(header(r, "cseq") for r in replies) == ["1 OPTIONS", "2 OPTIONS"]
    assert all(status_line(r)[0] == 200 for r in replies)


def test_tcp_message_split_across_writes(daemon):
    with _tcp(daemon) as sock:
        data = options(daemon.address, sock.getsockname(), "TCP")
        for i in range(0, len(data), 37):
            sock.sendall(data[i : i + 37])
            time.sleep(0.005)
        reply = TcpReader(sock).read()
    assert reply is not None and status_line(reply)[0] == 200


def test_tcp_framing_error_answered_then_closed(daemon):
    with _tcp(daemon) as sock:
        good = options(daemon.address, sock.getsockname(), "TCP")
        bad = good.replace(b"Content-Length: 0\r\n", b"")  # no Content-Length on a stream
        sock.sendall(good + bad)
        reader = TcpReader(sock)
        first, second = reader.read(), reader.read()
        assert first is not None and status_line(first)[0] == 200
        assert second is not None and status_line(second)[0] == 400
        assert "Content-Length" in status_line(second)[1]
        sock.settimeout(3)
        assert sock.recv(100) == b""  # closed by the daemon
    assert ping(daemon) == 200


def test_tcp_keepalive_ping_gets_pong(daemon):
    with _tcp(daemon) as sock:
        sock.sendall(b"\r\n\r\n")
        sock.settimeout(3)
        assert sock.recv(10) == b"\r\n"


@pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap")
def test_sipp_options_tcp(daemon, tmp_path):
    result = run_sipp(daemon.address, "options_uac.xml", tmp_path, calls=300, rate=150, transport="t1")
    assert result.successful == 300, result.output[-2000:]
    assert result.failed == 0
    assert result.returncode == 0, result.output[-2000:]


# --- (f) stop and logs -------------------------------------------------------------------
def test_sigterm_exits_0_quickly_and_logs_are_json():
    with DaemonProcess() as proc:
        assert ping(proc) == 200
        bad = lambda local: options(proc.address, local, omit=("Call-ID",))
        assert udp_request(proc.address, bad) is not None
        with socket.create_connection(proc.address, timeout=3):  # an open TCP connection
            start = time.monotonic()
            code = proc.terminate(timeout=10)
            elapsed = time.monotonic() - start
    assert code == 0
    assert elapsed < 3, elapsed
    events = proc.events()  # every line is JSON
    names = [e["event"] for e in events]
    assert names[0] == "daemon.started"
    assert "sip.rejected" in names
    assert names[-2:] == ["daemon.stopping", "daemon.stopped"]
    rejected = next(e for e in events if e["event"] == "sip.rejected")
    assert rejected["status"] == 400 and "Call-ID" in rejected["reason"]
    assert all({"event", "level", "timestamp"} <= e.keys() for e in events)


def test_sigint_exits_0():
    proc = DaemonProcess().start()
    try:
        proc._proc.send_signal(2)  # type: ignore[union-attr]
        assert wait_until(lambda: not proc.running(), 10)
        assert proc._proc.returncode == 0  # type: ignore[union-attr]
    finally:
        proc.kill()


def test_port_in_use_exits_1():
    with DaemonProcess() as first:
        second = DaemonProcess(port=first.port)
        with pytest.raises(RuntimeError, match="daemon.failed"):
            second.start(timeout=10)


# --- INVITEs that cannot start a call (issue 13) -----------------------------------------
SDP_OFFER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


@pytest.mark.parametrize(("contact", "problem"), [
    (None, "missing Contact"),
    ("*", "Contact * outside REGISTER"),
    ("<tel:+15551234>", "Contact is not a SIP or SIPS URI"),
    ("<mailto:someone@example.com>", "Contact is not a SIP or SIPS URI"),
    ("<sip:a@127.0.0.1>, <sip:b@127.0.0.1>", "more than one Contact"),
])
def test_invite_without_a_usable_contact_gets_400_naming_it(daemon, contact, problem):
    """RFC 3261 8.1.1.8: an INVITE names one SIP/SIPS remote target. Without one the
    daemon answers 400 with the reason, logs it at info, and no engine task fails."""
    extra = "" if contact is None else f"Contact: {contact}\r\n"
    with udp_socket("127.0.0.1") as sock:
        head = options(daemon.address, sock.getsockname(), method="INVITE",
                       extra=extra + "Content-Type: application/sdp\r\n")
        body = SDP_OFFER.encode()
        sock.sendto(head.replace(b"Content-Length: 0", b"Content-Length: %d" % len(body)) + body,
                    daemon.address)
        final = None
        for _ in range(5):
            got = recv_any([sock], 3.0)
            assert got is not None, "no final response"
            if status_line(got[0])[0] >= 200:
                final = status_line(got[0])
                break
    assert final == (400, f"Bad Request ({problem})")
    assert wait_until(lambda: any(e.get("event") == "call.refused" and e.get("detail") == problem
                                  and e.get("level") == "info" for e in daemon.events()), 3.0)
    assert not [e for e in daemon.events() if e.get("event") == "engine.task_failed"]
