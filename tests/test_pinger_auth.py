"""The OPTIONS pinger (voicegw/pinger.py) toward a target with ``auth`` (issue 12 item 1,
RFC 3261 22.2/22.3), with no network: the pinger runs on the test's loop against an
endpoint that records what it is asked to send, and the answers are fed to its tap as
the UA core would deliver them. A challenge is the ping's result (an answer) and the
OPTIONS goes again with CSeq+1, the same Call-ID and From tag, a new transaction and a
right answer (checked by our digest server); a second challenge is answered, a third
is not; the next ping carries the credentials ahead (the nonce's next count); a
refusal is logged once with its reason and never with the password; a target without
``auth`` is not answered."""

from __future__ import annotations

import itertools
from typing import Any

import structlog

from voicegw.config.defaults import SipConfig
from voicegw.pinger import OptionsPinger, PingResult, ping_auth
from voicegw.sip.build import make_response
from voicegw.sip.digest import Credentials, DigestServer, Verdict
from voicegw.sip.digest_client import Account
from voicegw.sip.events import Address, ResponseReceived, TransactionTimedOut
from voicegw.sip.message import Headers, Request
from voicegw.sip.parser import parse_message

PASSWORD = "opt-s3cret"
ACCOUNT = Account("trunk9", PASSWORD)
TARGET = "sip:gw.voicegw.test:5060"
PEER = Address("udp", "127.0.0.1", 5099)
SERVER = DigestServer("voicegw.test", b"k" * 32)


class RecordingEndpoint:
    """What the pinger asks the SIP endpoint to send, as it went out (serialized)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Request, Address]] = []
        self.ids = itertools.count(1)

    def send_request(self, request: Request, destination: Address) -> str:
        transaction = f"tx{next(self.ids)}"
        self.sent.append((transaction, parse_message(bytes(request)), destination))  # type: ignore[arg-type]
        return transaction


def challenge_to(request: Request, status: int = 401, *, now: float = 100.0, stale: bool = False) -> Any:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    offers = SERVER.challenges(now=now, stale=stale)  # SHA-256 first, then MD5 (RFC 8760)
    return make_response(request, status, to_tag="gwtag", headers=Headers([(name, str(o)) for o in offers]))


def verified(request: Request, name: str = "authorization") -> Credentials:
    [value] = request.headers.get_all(name)
    fields = Credentials.parse(value)
    assert fields.uri == str(request.uri) == TARGET
    assert SERVER.verify(fields, method="OPTIONS", password=PASSWORD, now=101.0, uri=TARGET) is Verdict.OK
    return fields


async def pinged(auth_account: Account | None) -> tuple[OptionsPinger, RecordingEndpoint, list[PingResult], Any]:
    endpoint = RecordingEndpoint()
    pinger = OptionsPinger(endpoint, SipConfig())
    results: list[PingResult] = []
    auth = ping_auth(auth_account)
    pinger.ping(TARGET, PEER, 5.0, results.append, auth=auth)
    return pinger, endpoint, results, auth


async def test_a_challenged_ping_is_an_answer_and_goes_again_with_credentials() -> None:
    pinger, endpoint, results, _ = await pinged(ACCOUNT)
    [(tx, first, where)] = endpoint.sent
    assert "authorization" not in first.headers and where == PEER
    assert pinger.tap(ResponseReceived(challenge_to(first), tx))
    assert [r.status for r in results] == [401], "the challenge is the ping's answer: the peer is alive"
    [_, (tx2, again, where2)] = endpoint.sent
    assert where2 == PEER and again.method == "OPTIONS" and again.uri == TARGET
    assert again.cseq.seq == first.cseq.seq + 1 and again.call_id == first.call_id
    assert again.from_.tag == first.from_.tag
    fields = verified(again)
    assert (fields.username, fields.nc, fields.qop, fields.algorithm) == ("trunk9", "00000001", "auth", "SHA-256")
    # the retry's answer is taken and dropped: the ping had its result
    assert pinger.tap(ResponseReceived(make_response(again, 200, to_tag="gwtag"), tx2))
    assert len(results) == 1 and len(endpoint.sent) == 2


async def test_the_next_ping_carries_the_credentials_ahead() -> None:
    pinger, endpoint, results, auth = await pinged(ACCOUNT)
    [(tx, first, _)] = endpoint.sent
    pinger.tap(ResponseReceived(challenge_to(first), tx))
    (tx2, again, _) = endpoint.sent[1]
    pinger.tap(ResponseReceived(make_response(again, 200, to_tag="gwtag"), tx2))
    pinger.ping(TARGET, PEER, 5.0, results.append, auth=auth)
    (tx3, ahead, _) = endpoint.sent[2]
    fields = verified(ahead)
    assert fields.nonce == verified(again).nonce and fields.nc == "00000002"
    assert ahead.call_id != first.call_id, "a ping of its own"
    pinger.tap(ResponseReceived(make_response(ahead, 200, to_tag="gwtag"), tx3))
    assert [r.status for r in results] == [401, 200] and len(endpoint.sent) == 3


async def test_at_most_two_challenges_per_ping_and_the_refusal_is_logged_once() -> None:
    pinger, endpoint, results, auth = await pinged(ACCOUNT)
    with structlog.testing.capture_logs() as logs:
        for round_ in range(2):
            if round_:
                pinger.ping(TARGET, PEER, 5.0, results.append, auth=auth)
            for step in range(3):  # a server that challenges forever (stale nonces)
                tx, request, _ = endpoint.sent[-1]
                pinger.tap(ResponseReceived(challenge_to(request, 407, now=100.0 + step, stale=True), tx))
    assert len(endpoint.sent) == 6, "per ping: the OPTIONS and two answers, not a third"
    assert [r.status for r in results] == [407, 407]
    refused = [e for e in logs if e["event"] == "options.auth_refused"]
    assert len(refused) == 1 and refused[0]["target"] == TARGET, logs
    assert "after 2 answered" in refused[0]["reason"] and refused[0]["log_level"] == "warning"
    assert PASSWORD not in repr(logs)
    # accepted again: said once
    with structlog.testing.capture_logs() as logs:
        pinger.ping(TARGET, PEER, 5.0, results.append, auth=auth)
        tx, request, _ = endpoint.sent[-1]
        pinger.tap(ResponseReceived(make_response(request, 200, to_tag="gwtag"), tx))
    assert [e["event"] for e in logs] == ["options.auth_accepted"]


async def test_a_challenge_it_cannot_answer_is_refused_with_the_reason() -> None:
    pinger, endpoint, results, _ = await pinged(ACCOUNT)
    [(tx, first, _)] = endpoint.sent
    bad = make_response(first, 401, to_tag="gwtag", headers=Headers([
        ("WWW-Authenticate", 'Digest realm="voicegw.test", nonce="n1", qop="auth-int"')]))
    with structlog.testing.capture_logs() as logs:
        assert pinger.tap(ResponseReceived(bad, tx))
    assert [r.status for r in results] == [401] and len(endpoint.sent) == 1
    [refused] = [e for e in logs if e["event"] == "options.auth_refused"]
    assert "unsupported challenge" in refused["reason"]


async def test_without_auth_a_challenge_is_only_the_answer() -> None:
    pinger, endpoint, results, _ = await pinged(None)
    [(tx, first, _)] = endpoint.sent
    assert pinger.tap(ResponseReceived(challenge_to(first), tx))
    assert [r.status for r in results] == [401] and len(endpoint.sent) == 1


async def test_a_retry_that_times_out_is_dropped_quietly() -> None:
    pinger, endpoint, results, _ = await pinged(ACCOUNT)
    [(tx, first, _)] = endpoint.sent
    pinger.tap(ResponseReceived(challenge_to(first), tx))
    (tx2, _again, _) = endpoint.sent[1]
    assert pinger.tap(TransactionTimedOut(tx2, "OPTIONS", "F"))
    assert [r.status for r in results] == [401]
    assert not pinger.tap(TransactionTimedOut(tx2, "OPTIONS", "F")), "forgotten once done"
