"""Transaction state machines as event sequences on a virtual clock (RFC 3261 17).

Each test feeds inputs and timer ticks and checks what went out and when, so the
retransmission intervals and timeouts of the RFC are checked to the millisecond.
"""

from __future__ import annotations

import itertools

import pytest

from voicegw.sip.events import Address, ResponseReceived, TransactionTerminated, TransactionTimedOut
from voicegw.sip.message import Response
from voicegw.sip.parser import parse_message
from voicegw.sip.transaction import (
    INVITE_CLIENT,
    INVITE_SERVER,
    NON_INVITE_CLIENT,
    NON_INVITE_SERVER,
    T1,
    T2,
    ClientTransaction,
    ServerTransaction,
    State,
)

PEER = Address("udp", "127.0.0.1", 5070)
TCP_PEER = Address("tcp", "127.0.0.1", 5070)


def request(method: str = "INVITE", branch: str = "z9hG4bKabc") -> bytes:
    return (
        f"{method} sip:bot@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n"
        "From: <sip:a@example.com>;tag=from1\r\n"
        "To: <sip:bot@127.0.0.1>\r\n"
        "Call-ID: tx-test@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def response(status: int, method: str = "INVITE", tag: str = "to1") -> Response:
    data = (
        f"SIP/2.0 {status} Whatever\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc\r\n"
        "From: <sip:a@example.com>;tag=from1\r\n"
        f"To: <sip:bot@127.0.0.1>;tag={tag}\r\n"
        "Call-ID: tx-test@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def run_until(tx, end: float) -> list[float]:
    """Step the virtual clock from timer to timer; return when each output left."""
    sent_at: list[float] = []
    tx.outbox.clear()
    while (due := tx.get_timer()) is not None and due <= end:
        tx.handle_timer(due)
        sent_at.extend([round(due, 6)] * len(tx.outbox))
        tx.outbox.clear()
    return sent_at


def client(method: str = "INVITE", peer: Address = PEER) -> ClientTransaction:
    req = parse_message(request(method))
    return ClientTransaction("c1", req, peer, 0.0, reliable=peer.transport != "udp")


def server(method: str = "INVITE", peer: Address = PEER) -> ServerTransaction:
    req = parse_message(request(method))
    return ServerTransaction("s1", req, peer, 0.0, reliable=peer.transport != "udp")


def test_tables_only_name_their_own_states() -> None:
    assert {s for s, _ in INVITE_CLIENT} == {State.CALLING, State.PROCEEDING, State.ACCEPTED, State.COMPLETED}
    assert {s for s, _ in NON_INVITE_CLIENT} == {State.TRYING, State.PROCEEDING, State.COMPLETED}
    assert {s for s, _ in INVITE_SERVER} == {State.PROCEEDING, State.ACCEPTED, State.COMPLETED, State.CONFIRMED}
    assert {s for s, _ in NON_INVITE_SERVER} == {State.TRYING, State.PROCEEDING, State.COMPLETED}


def test_invite_client_timer_a_doubles_until_timer_b() -> None:
    tx = client()
    assert len(tx.outbox) == 1  # sent on creation
    sent = run_until(tx, 100.0)
    # Timer A: T1, 2T1, 4T1... retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 (17.1.1.2)
    assert sent == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert tx.state is State.TERMINATED
    timeouts = [e for e in tx.events if isinstance(e, TransactionTimedOut)]
    assert timeouts == [TransactionTimedOut("c1", "INVITE", "B")]
    assert TransactionTerminated("c1") in tx.events


def test_invite_client_provisional_stops_retransmissions() -> None:
    tx = client()
    tx.handle_timer(0.5)
    tx.receive_response(response(180), 0.7)
    assert tx.state is State.PROCEEDING
    assert isinstance(tx.events[-1], ResponseReceived)
    assert run_until(tx, 10.0) == []


def test_invite_client_failure_sends_ack_and_waits_timer_d() -> None:
    tx = client()
    tx.outbox.clear()
    tx.receive_response(response(486), 1.0)
    assert tx.state is State.COMPLETED
    (ack,) = tx.outbox
    assert ack.startswith(b"ACK sip:bot@127.0.0.1 SIP/2.0\r\n")
    assert b"CSeq: 1 ACK\r\n" in ack and b"branch=z9hG4bKabc" in ack and b"tag=to1" in ack
    tx.outbox.clear()
    tx.receive_response(response(486), 1.2)  # retransmitted final -> ACK again
    assert tx.outbox == [ack]
    assert tx.get_timer() == pytest.approx(33.0)  # Timer D >= 32 s over UDP
    tx.handle_timer(33.0)
    assert tx.state is State.TERMINATED
    responses = [e for e in tx.events if isinstance(e, ResponseReceived)]
    assert len(responses) == 1  # the retransmission was absorbed


def test_invite_client_2xx_is_accepted_and_retransmissions_reach_tu() -> None:
    tx = client()
    tx.receive_response(response(200), 0.2)
    assert tx.state is State.ACCEPTED
    tx.receive_response(response(200), 0.7)
    assert sum(isinstance(e, ResponseReceived) for e in tx.events) == 2  # TU re-ACKs
    assert tx.get_timer() == pytest.approx(0.2 + 64 * T1)  # Timer M (RFC 6026)


def test_invite_client_over_tcp_never_retransmits_and_timer_d_is_zero() -> None:
    tx = client(peer=TCP_PEER)
    assert tx.timers.keys() == {"B"}
    tx.outbox.clear()
    tx.receive_response(response(503), 1.0)
    assert tx.get_timer() == 1.0
    tx.handle_timer(1.0)
    assert tx.state is State.TERMINATED


def test_non_invite_client_timer_e_caps_at_t2_and_timer_f() -> None:
    tx = client("OPTIONS")
    sent = run_until(tx, 100.0)
    expected, t, interval = [], 0.0, T1
    while t + interval < 64 * T1:
        t += interval
        expected.append(round(t, 6))
        interval = min(interval * 2, T2)
    assert sent == expected  # 0.5, 1.5, 3.5, 7.5, 11.5, ... every 4 s
    assert sent[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert tx.state is State.TERMINATED
    assert TransactionTimedOut("c1", "OPTIONS", "F") in tx.events


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    tx = client("BYE")
    tx.receive_response(response(100, "BYE"), 0.1)
    assert tx.state is State.PROCEEDING
    sent = run_until(tx, 10.0)
    assert sent[0] == 0.5 and all(b - a == pytest.approx(T2) for a, b in itertools.pairwise(sent))


def test_non_invite_client_final_then_timer_k() -> None:
    tx = client("BYE")
    tx.receive_response(response(200, "BYE"), 0.3)
    assert tx.state is State.COMPLETED
    assert tx.get_timer() == pytest.approx(5.3)  # Timer K = T4
    tx.receive_response(response(200, "BYE"), 1.0)
    assert sum(isinstance(e, ResponseReceived) for e in tx.events) == 1
    tx.handle_timer(5.3)
    assert tx.state is State.TERMINATED


def test_invite_server_failure_retransmits_until_ack_then_timer_i() -> None:
    tx = server()
    final = response(486)
    assert tx.send_response(final, 0.0)
    assert tx.state is State.COMPLETED
    tx.outbox.clear()
    tx.handle_timer(0.5)
    tx.handle_timer(1.5)
    assert len(tx.outbox) == 2  # Timer G at T1, 2T1
    ack = parse_message(request("ACK"))
    tx.receive_request(ack, 2.0)
    assert tx.state is State.CONFIRMED
    assert tx.get_timer() == pytest.approx(2.0 + 5.0)  # Timer I = T4
    tx.outbox.clear()
    tx.receive_request(ack, 2.5)  # ACK retransmission absorbed
    assert tx.outbox == []
    tx.handle_timer(7.0)
    assert tx.state is State.TERMINATED


def test_invite_server_timer_h_without_ack() -> None:
    tx = server()
    tx.send_response(response(603), 0.0)
    sent = run_until(tx, 64.0)
    assert sent[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert tx.state is State.TERMINATED
    assert TransactionTimedOut("s1", "INVITE", "H") in tx.events


def test_invite_server_request_retransmission_resends_last_provisional() -> None:
    tx = server()
    tx.send_response(response(180), 0.0)
    tx.outbox.clear()
    tx.receive_request(parse_message(request()), 0.3)
    assert len(tx.outbox) == 1 and tx.outbox[0].startswith(b"SIP/2.0 180")


def test_invite_server_2xx_is_retransmitted_by_the_tu_until_ack() -> None:
    """13.3.1.4 and RFC 6026: the transaction keeps no Timer G for a 2xx; the TU (the
    INVITE session) sends it again through the Accepted transaction until the ACK."""
    tx = server()
    tx.send_response(response(200), 0.0)
    assert tx.state is State.ACCEPTED
    assert set(tx.timers) == {"L"}
    tx.outbox.clear()
    tx.handle_timer(3.5)
    assert tx.outbox == []
    for t in (0.5, 1.5):
        assert tx.send_response(response(200), t)
    assert len(tx.outbox) == 2
    tx.receive_request(parse_message(request("ACK")), 4.0)
    assert tx.state is State.CONFIRMED
    tx.outbox.clear()
    assert run_until(tx, 100.0) == []
    assert tx.state is State.TERMINATED
    assert not any(isinstance(e, TransactionTimedOut) for e in tx.events)


def test_invite_server_2xx_without_ack_times_out_with_timer_l() -> None:
    tx = server()
    tx.send_response(response(200), 0.0)
    run_until(tx, 100.0)
    assert TransactionTimedOut("s1", "INVITE", "L") in tx.events


def test_non_invite_server_absorbs_until_final_then_timer_j() -> None:
    tx = server("OPTIONS")
    tx.receive_request(parse_message(request("OPTIONS")), 0.1)
    assert tx.outbox == []  # Trying: retransmissions are discarded
    tx.send_response(response(200, "OPTIONS"), 0.2)
    tx.receive_request(parse_message(request("OPTIONS")), 1.0)
    assert len(tx.outbox) == 2  # the final, then its resend
    assert tx.get_timer() == pytest.approx(0.2 + 64 * T1)
    assert not tx.send_response(response(500, "OPTIONS"), 1.1)  # one final only


def test_non_invite_server_over_tcp_has_zero_timer_j() -> None:
    tx = server("BYE", TCP_PEER)
    tx.send_response(response(200, "BYE"), 3.0)
    assert tx.get_timer() == 3.0


def test_a_lingering_transaction_keeps_bytes_not_the_parsed_request() -> None:
    """Once final, a transaction only absorbs retransmissions: it lets the parsed
    request go and answers from the bytes it sent (issue 16: at 100 calls/s ~3,000
    calls' transactions linger for 32 s)."""
    tx = server()
    tx.send_response(response(200), 0.0)
    assert tx.state is State.ACCEPTED and tx.request is None
    assert (tx.method, tx.call_id, tx.cseq) == ("INVITE", "tx-test@127.0.0.1", 1)
    tx.outbox.clear()
    tx.handle_timer(T1)  # no Timer G for a 2xx: the TU (the INVITE session) resends it
    assert tx.send_response(response(200), T1)
    assert [parse_message(data).status for data in tx.outbox] == [200]
    failed = client()
    failed.receive_response(response(486), 0.0)
    assert failed.state is State.COMPLETED and failed.request is None
    failed.outbox.clear()
    failed.receive_response(response(486), 0.1)  # the retransmitted 486 is ACKed again
    assert [parse_message(data).method for data in failed.outbox] == ["ACK"]
    pending = server("OPTIONS")
    assert pending.request is not None  # still needed until the final response


def test_invite_client_cancelled_waits_64_t1_for_a_final_response_even_over_tcp() -> None:
    """RFC 3261 9.1: 64*T1 after the CANCEL, a final response still missing ends the
    INVITE transaction as timed out; over TCP too (it is not a retransmission wait)."""
    tx = client(peer=TCP_PEER)
    tx.receive_response(response(180), 1.0)
    assert tx.get_timer() is None  # Proceeding: the TU decides how long it rings
    tx.cancel_sent(5.0)
    assert tx.get_timer() == 5.0 + 64 * T1
    tx.handle_timer(5.0 + 64 * T1)
    assert tx.state is State.TERMINATED
    assert TransactionTimedOut("c1", "INVITE", "CANCEL") in tx.events
    answered = client()
    answered.cancel_sent(0.2)  # before any 1xx: the wait survives the move to Proceeding
    answered.receive_response(response(180), 0.3)
    answered.receive_response(response(487), 0.4)  # the usual end: 487, ACKed, Timer D
    assert answered.state is State.COMPLETED and set(answered.timers) == {"D"}
