"""The UA core re-ACKs copies of a 2xx to an INVITE we sent (RFC 3261 13.2.2.4,
13.3.1.4): sans-I/O, on a virtual clock. The ACK the application sent once is kept as
bytes with its destination, sent again for each copy of that 2xx even after the
application forgot the dialog, and dropped 64*T1 after the 2xx; a 2xx of another fork,
another INVITE or a non-2xx is not taken for a copy."""

from __future__ import annotations

from voicegw.sip.core import UserAgentCore
from voicegw.sip.events import Address, ResponseReceived
from voicegw.sip.message import Headers, Request
from voicegw.sip.transaction import T1

BOT = Address("udp", "127.0.0.2", 5080)


def invite(seq: int = 1) -> Request:
    return Request("INVITE", "sip:bot@127.0.0.2:5080", Headers([
        ("From", "<sip:gw@127.0.0.1>;tag=gw1"), ("To", "<sip:bot@127.0.0.2>"),
        ("Call-ID", "reack-1"), ("CSeq", f"{seq} INVITE"), ("Contact", "<sip:gw@127.0.0.1:5060>"),
        ("Content-Type", "application/sdp"),
    ]), b"v=0\r\n")


def ok(sent: Request, to_tag: str = "bot1", status: int = 200) -> bytes:
    """The bot's answer to ``sent`` as it crosses the wire (our Via, its To tag)."""
    return (
        f"SIP/2.0 {status} OK\r\n"
        f"Via: {sent.headers.get('via')}\r\n"
        "From: <sip:gw@127.0.0.1>;tag=gw1\r\n"
        f"To: <sip:bot@127.0.0.2>;tag={to_tag}\r\n"
        "Call-ID: reack-1\r\n"
        f"CSeq: {sent.cseq.seq} INVITE\r\n"
        "Contact: <sip:bot@127.0.0.2:5080>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def ack(seq: int = 1, to_tag: str = "bot1") -> Request:
    """The ACK the application (the INVITE session) builds from the dialog (13.2.2.4)."""
    return Request("ACK", "sip:bot@127.0.0.2:5080", Headers([
        ("From", "<sip:gw@127.0.0.1>;tag=gw1"), ("To", f"<sip:bot@127.0.0.2>;tag={to_tag}"),
        ("Call-ID", "reack-1"), ("CSeq", f"{seq} ACK"),
    ]))


def answered(core: UserAgentCore, now: float = 0.0) -> tuple[Request, bytes]:
    """Our INVITE out, its 2xx in at ``now``, the application's ACK out: (INVITE, ACK bytes)."""
    sent = invite()
    core.send_request(sent, BOT, now)
    core.datagrams_to_send(now)
    core.receive_datagram(ok(sent), BOT, now)
    event = core.next_event()
    assert isinstance(event, ResponseReceived) and event.response.status == 200
    core.send_request(ack(), BOT, now)
    ((data, to),) = core.datagrams_to_send(now)
    assert data.startswith(b"ACK ") and to == BOT
    return sent, data


def test_a_copy_of_the_2xx_after_the_dialog_is_forgotten_gets_the_same_ack_bytes() -> None:
    core = UserAgentCore()
    sent, first = answered(core)
    core.register_dialog("reack-1", "gw1", "bot1")
    core.forget_dialog("reack-1", "gw1", "bot1")  # the application let go of the call
    for now in (0.5, 1.5, 3.5, 7.5, 31.9):  # the bot's Timer G copies (its ACK was lost)
        core.handle_timer(now)
        core.receive_datagram(ok(sent), BOT, now)
        assert core.datagrams_to_send(now) == [(first, BOT)], now
        assert core.next_event() is None  # the application hears nothing of it
    stats = core.statistics()
    assert stats.acks_resent == 5 and stats.acks_kept == 1


def test_the_ack_is_dropped_64_t1_after_the_2xx_and_a_later_copy_is_not_acked() -> None:
    core = UserAgentCore()
    sent, _ = answered(core, now=10.0)
    due = core.get_timer()
    assert due is not None and due <= 10.0 + 64 * T1
    deadline = 10.0 + 64 * T1
    now = 10.0
    for _ in range(100):  # run the core's timers out, as the endpoint does
        due = core.get_timer()
        if due is None:
            break
        now = due
        core.handle_timer(now)
    assert core.get_timer() is None and now == deadline
    assert core.statistics().acks_kept == 0
    core.receive_datagram(ok(sent), BOT, deadline + 1)
    assert core.datagrams_to_send(deadline + 1) == []  # a stray response: dropped (17.1.3)
    assert core.statistics().stray_responses == 1


def test_expiry_is_checked_on_arrival_too() -> None:
    """A copy arriving after 64*T1 with no timer handled in between is not re-ACKed."""
    core = UserAgentCore()
    sent, _ = answered(core)
    core.receive_datagram(ok(sent), BOT, 64 * T1)
    assert core.datagrams_to_send(64 * T1) == []


def test_another_fork_another_invite_or_a_failure_is_no_copy() -> None:
    core = UserAgentCore()
    sent, first = answered(core)
    core.receive_datagram(ok(sent, to_tag="fork2"), BOT, 1.0)  # 13.2.2.4: a new dialog
    event = core.next_event()
    assert isinstance(event, ResponseReceived) and event.response.to.tag == "fork2"
    assert core.datagrams_to_send(1.0) == []  # the application ACKs (or BYEs) that one
    reinvite = invite(seq=2)
    core.send_request(reinvite, BOT, 2.0)
    core.datagrams_to_send(2.0)
    core.receive_datagram(ok(reinvite), BOT, 2.1)  # the re-INVITE's first 2xx
    event = core.next_event()
    assert isinstance(event, ResponseReceived) and event.response.cseq.seq == 2
    assert core.datagrams_to_send(2.1) == []
    core.receive_datagram(ok(sent), BOT, 2.2)  # the first INVITE's copy still is one
    assert core.datagrams_to_send(2.2) == [(first, BOT)]


def test_the_session_acking_a_copy_again_keeps_the_first_expiry() -> None:
    core = UserAgentCore()
    answered(core)
    core.send_request(ack(), BOT, 20.0)  # e.g. the INVITE session's own re-ACK
    core.datagrams_to_send(20.0)
    core.handle_timer(64 * T1)
    assert core.statistics().acks_kept == 0
