"""Challenge retry for the requests voicegw sends (voicegw/sip/request_auth.py): the
retried request (new CSeq and branch, same Call-ID, tags, Request-URI and body, the
credentials in place), at most two challenges answered per request, credentials sent
ahead on later requests of the dialog with the nonce's next count (qop=auth only),
challenges it cannot answer refused with the reason; and the INVITE session using it
for its BYE and re-INVITE (one dialog, a UAC session and a UAS session, no network).
The answers are checked with our digest server and recomputed here (RFC 7616 3.4.1)."""

from __future__ import annotations

import hashlib
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from voicegw.sip.build import make_response
from voicegw.sip.dialog_table import DialogRole
from voicegw.sip.digest import Credentials, DigestServer, Verdict
from voicegw.sip.digest_client import Account, DigestClient, Refused
from voicegw.sip.invite_session import InviteSession
from voicegw.sip.invite_session_actions import SessionConfig
from voicegw.sip.invite_session_io import (
    Accept,
    Bye,
    ByeFailed,
    IncomingRequest,
    IncomingResponse,
    Invite,
    Modify,
    ModifyCompleted,
    ModifyFailed,
    ModifyReceived,
    Output,
    RequestTimedOut,
    SendRequest,
)
from voicegw.sip.message import Headers, Request, Response
from voicegw.sip.offer_answer import make_answer
from voicegw.sip.parser import parse_message
from voicegw.sip.request_auth import MAX_CHALLENGES, RequestAuth, resend
from voicegw.sip.sdp import SdpBuilder
from voicegw.sip.sdp_fields import Direction

PASSWORD = "s3cret-pw"
ACCOUNT = Account("agent7", PASSWORD)
REALM = "voicegw.test"
URI = "sip:agent@10.0.0.2:5060"


def auth() -> RequestAuth:
    counter = itertools.count(1)
    return RequestAuth(DigestClient(ACCOUNT, cnonce=lambda: f"cn{next(counter)}"))


def request(method: str = "REFER", seq: int = 5, *extra: tuple[str, str]) -> Request:
    message = Request(method, URI, Headers([
        ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKfirst;rport"),
        ("From", "<sip:gw@10.0.0.1>;tag=atag"), ("To", "<sip:agent@10.0.0.2>;tag=btag"),
        ("Call-ID", "call-1@10.0.0.1"), ("CSeq", f"{seq} {method}"), ("Max-Forwards", "70"), *extra]))
    message.set_body(b"body-of-it", "text/plain")
    return message


def challenge(status: int = 401, nonce: str = "n1", *, qop: str | None = "auth", stale: bool = False,
              algorithm: str = "MD5", value: str | None = None) -> Response:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    if value is None:
        value = f'Digest realm="{REALM}", nonce="{nonce}", algorithm={algorithm}'
        value += f', qop="{qop}"' if qop else ""
        value += ", stale=true" if stale else ""
    return Response(status, "Unauthorized", Headers([(name, value)]), b"", "SIP/2.0")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def expected_response(method: str, fields: Credentials) -> str:
    """RFC 7616 3.4.1 with MD5, computed here: qop=auth, or the RFC 2069 form."""
    ha1 = md5(f"{ACCOUNT.username}:{fields.realm}:{PASSWORD}")
    ha2 = md5(f"{method}:{fields.uri}")
    if fields.qop is None:
        return md5(f"{ha1}:{fields.nonce}:{ha2}")
    return md5(f"{ha1}:{fields.nonce}:{fields.nc}:{fields.cnonce}:{fields.qop}:{ha2}")


def credentials(message: Request, name: str = "authorization") -> Credentials:
    [value] = message.headers.get_all(name)
    return Credentials.parse(value)


# ---------------------------------------------------------------------------- RequestAuth
def test_the_retry_is_a_new_transaction_of_the_same_request_with_the_answer() -> None:
    first = request("REFER", 5, ("Proxy-Authorization", ('Digest username="x", realm="proxy", nonce="p",'
                                                         ' uri="sip:x", response="00"')))
    again = auth().retry(first, challenge(401), cseq=6)
    assert isinstance(again, Request)
    assert (again.method, again.uri, again.cseq.seq, again.cseq.method) == ("REFER", URI, 6, "REFER")
    assert again.call_id == first.call_id and again.body == first.body
    assert again.from_.tag == "atag" and again.to.tag == "btag"
    assert again.top_via.branch != first.top_via.branch and again.top_via.branch.startswith("z9hG4bK")
    assert "rport" in again.headers.get("via")
    # another realm's credentials stay (RFC 3261 22.3), the new answer is added
    assert again.headers.get_all("proxy-authorization") == first.headers.get_all("proxy-authorization")
    fields = credentials(again)
    assert (fields.username, fields.realm, fields.uri, fields.nc, fields.qop) == ("agent7", REALM, URI, "00000001", "auth")
    assert fields.response == expected_response("REFER", fields)
    assert first.cseq.seq == 5 and "authorization" not in first.headers, "the challenged request is untouched"
    assert parse_message(bytes(again)).headers.get("content-length") == str(len(b"body-of-it"))


def test_our_digest_server_accepts_the_answer_for_sha256() -> None:
    server = DigestServer(REALM, b"k" * 32, algorithms=("SHA-256",))
    response = Response(407, "Proxy Authentication Required",
                        Headers([("Proxy-Authenticate", str(c)) for c in server.challenges(now=100.0)]), b"", "SIP/2.0")
    again = auth().retry(request("BYE"), response, cseq=6)
    assert isinstance(again, Request)
    fields = credentials(again, "proxy-authorization")
    assert server.verify(fields, method="BYE", password=PASSWORD, now=101.0, uri=URI) is Verdict.OK


def test_at_most_two_challenges_are_answered_per_request() -> None:
    client, message = auth(), request("BYE", 5)
    for seq, nonce in ((6, "n1"), (7, "n2")):
        again = client.retry(message, challenge(401, nonce, stale=True), cseq=seq)
        assert isinstance(again, Request)
        message = again
    third = client.retry(message, challenge(401, "n3", stale=True), cseq=8)
    assert isinstance(third, Refused) and "after 2 answered" in third.reason
    assert client.refused == third.reason and client.answered == MAX_CHALLENGES == 2


def test_the_same_challenge_again_is_refused_not_looped() -> None:
    client = auth()
    again = client.retry(request("BYE"), challenge(401, "n1"), cseq=6)
    assert isinstance(again, Request)
    refused = client.retry(again, challenge(401, "n1"), cseq=7)
    assert isinstance(refused, Refused) and "credentials refused" in refused.reason


def test_later_requests_of_the_dialog_carry_the_nonce_with_the_next_count() -> None:
    client = auth()
    assert client.preload(request("BYE", 9)) == [], "nothing ahead before any challenge"
    again = client.retry(request("INVITE", 1), challenge(407, "n1"), cseq=2)
    assert isinstance(again, Request)
    bye = request("BYE", 3)
    [(name, _)] = client.preload(bye)
    fields = credentials(bye, "proxy-authorization")
    assert name == "Proxy-Authorization" and fields.nonce == "n1" and fields.nc == "00000002"
    assert fields.response == expected_response("BYE", fields)
    # a server that does not take the reused nonce challenges afresh: answered as a first one
    retried = client.retry(bye, challenge(407, "n2"), cseq=4)
    assert isinstance(retried, Request)
    [value] = retried.headers.get_all("proxy-authorization")
    assert Credentials.parse(value).nonce == "n2" and Credentials.parse(value).nc == "00000001"


def test_no_credentials_ahead_without_qop() -> None:
    """RFC 2069 form: no nonce count, so the same answer again would be a replay."""
    client = auth()
    again = client.retry(request("INVITE", 1), challenge(401, "n1", qop=None), cseq=2)
    assert isinstance(again, Request) and credentials(again).qop is None
    assert credentials(again).response == expected_response("INVITE", credentials(again))
    assert client.preload(request("BYE", 3)) == []


def test_challenges_it_cannot_answer_are_refused_with_the_reason() -> None:
    cases = {
        f'Digest realm="{REALM}", qop="auth", algorithm=MD5': "bad challenge",
        f'Digest realm="{REALM}", nonce="n", qop="auth", algorithm=SHA-512-FOO': "unsupported challenge",
        f'Digest realm="{REALM}", nonce="n", qop="auth-int", algorithm=MD5': "unsupported challenge",
    }
    for value, why in cases.items():
        client = auth()
        result = client.retry(request("BYE"), challenge(401, value=value), cseq=6)
        assert isinstance(result, Refused) and why in result.reason, (value, result)
        assert PASSWORD not in result.reason


def test_a_response_that_is_not_a_challenge_is_not_answered() -> None:
    result = auth().answer(request(), Response(403, "Forbidden", Headers(), b"", "SIP/2.0"))
    assert isinstance(result, Refused)


def test_resend_adds_a_branch_to_a_via_without_one() -> None:
    message = request()
    message.headers.set("Via", "SIP/2.0/UDP 10.0.0.1:5060")
    again = resend(message, [("Authorization", "Digest x=y")], 9)
    assert again.top_via.branch and again.cseq.seq == 9


@settings(deadline=None, max_examples=150)
@given(st.lists(st.sampled_from(["same", "stale", "fresh", "bad", "407"]), min_size=1, max_size=6))
def test_any_run_of_challenges_answers_at_most_two_and_every_answer_is_right(kinds: list[str]) -> None:
    """Whatever a server sends, a request's chain answers at most two challenges, each
    answer is right for the nonce it names with a growing count, and a refusal ends it."""
    client, message, nonce_no, seq = auth(), request("UPDATE", 10), 0, 10
    counts: dict[str, int] = {}
    answered = 0
    for kind in kinds:
        nonce_no += kind != "same"
        nonce = f"n{nonce_no}"
        if kind == "bad":
            response = challenge(401, value=f'Digest realm="{REALM}", algorithm=MD5')
        else:
            response = challenge(407 if kind == "407" else 401, nonce, stale=kind == "stale")
        seq += 1
        result = client.retry(message, response, cseq=seq)
        if isinstance(result, Refused):
            assert result.reason
            break
        answered += 1
        assert answered <= MAX_CHALLENGES
        assert result.cseq.seq == seq and result.call_id == message.call_id
        for name in ("authorization", "proxy-authorization"):
            for value in result.headers.get_all(name):
                fields = Credentials.parse(value)
                if value in message.headers.get_all(name):
                    continue  # kept from an earlier answer (another header name)
                assert fields.response == expected_response("UPDATE", fields)
                assert int(fields.nc or "0", 16) > counts.get(fields.nonce, 0)
                counts[fields.nonce] = int(fields.nc or "0", 16)
        message = result


# ---------------------------------------------------------------------------- the INVITE session
CFG_A = SessionConfig(local_via="SIP/2.0/UDP 10.0.0.1:5060;rport", contact="<sip:gw@10.0.0.1:5060>")
CFG_B = SessionConfig(local_via="SIP/2.0/UDP 10.0.0.2:5060", contact="<sip:agent@10.0.0.2:5060>")
SDP_A = SdpBuilder(session_id=1, address="10.0.0.1")
SDP_B = SdpBuilder(session_id=2, address="10.0.0.2")


def low(lo: int, hi: int) -> int:
    return lo


def wire(message: Request | Response) -> Request | Response:
    return parse_message(bytes(message))


def sent(outputs: list[Output], method: str | None = None) -> list[Request]:
    return [wire(o.request) for o in outputs if isinstance(o, SendRequest)
            and (method is None or o.request.method == method)]  # type: ignore[misc]


class Dialog:
    """A UAC session (ours, with the authorizer) and a UAS session (the agent) set up."""

    def __init__(self, authorizer: RequestAuth | None) -> None:
        self.a = InviteSession(DialogRole.UAC, CFG_A, randint=low, authorizer=authorizer)
        invite = Request("INVITE", URI, Headers([
            ("From", "<sip:gw@10.0.0.1>;tag=atag"), ("To", f"<{URI}>"), ("Call-ID", "call-1@10.0.0.1"),
            ("CSeq", "1 INVITE"), ("Contact", "<sip:gw@10.0.0.1:5060>"), ("Max-Forwards", "70")]))
        invite.set_body(bytes(SDP_A.offer(port=40000)), "application/sdp")
        [sent_invite] = sent(self.a.handle(Invite(invite), 0.0))
        self.b = InviteSession(DialogRole.UAS, CFG_B, randint=low, local_tag="btag")
        self.b.handle(IncomingRequest(sent_invite, "inv"), 0.0)
        assert self.b.oa.pending_offer is not None
        answer = make_answer(self.b.oa.pending_offer, origin=SDP_B.origin, address="10.0.0.2", port=50000).sdp
        ok = next(o.response for o in self.b.handle(Accept(answer), 0.0) if hasattr(o, "response"))
        [ack] = sent(self.a.handle(IncomingResponse(wire(ok)), 0.0), "ACK")  # type: ignore[arg-type]
        self.b.handle(IncomingRequest(ack, ""), 0.0)

    def to_a(self, response: Response) -> list[Output]:
        return self.a.handle(IncomingResponse(wire(response)), 1.0)  # type: ignore[arg-type]


def challenged(message: Request, status: int = 401, nonce: str = "n1", stale: bool = False,
               value: str | None = None) -> Response:
    found = challenge(status, nonce, stale=stale, value=value)
    return make_response(message, status, to_tag="btag", headers=found.headers.copy())


def test_a_challenged_bye_is_sent_again_and_followed_to_its_2xx() -> None:
    dialog = Dialog(auth())
    [bye] = sent(dialog.a.handle(Bye(), 1.0), "BYE")
    assert dialog.a.terminated and not dialog.a.settled, "the session is over, its BYE still followed"
    [again] = sent(dialog.to_a(challenged(bye, 407)), "BYE")
    assert again.cseq.seq == bye.cseq.seq + 1 and again.top_via.branch != bye.top_via.branch
    assert (again.call_id, again.from_.tag, again.to.tag, again.uri) == (bye.call_id, "atag", "btag", bye.uri)
    fields = credentials(again, "proxy-authorization")
    assert fields.uri == str(again.uri) and fields.response == expected_response("BYE", fields)
    assert dialog.to_a(make_response(again, 200)) == [] and dialog.a.settled


def test_a_bye_challenge_it_cannot_answer_is_reported_and_the_session_stays_over() -> None:
    dialog = Dialog(auth())
    [bye] = sent(dialog.a.handle(Bye(), 1.0), "BYE")
    out = dialog.to_a(challenged(bye, value=f'Digest realm="{REALM}", qop="auth"'))
    assert sent(out) == []
    [failed] = [o for o in out if isinstance(o, ByeFailed)]
    assert failed.status == 401 and "not answered" in failed.reason and "bad challenge" in failed.reason
    assert dialog.a.settled


def test_a_bye_challenged_forever_stops_after_two_answers() -> None:
    dialog = Dialog(auth())
    [bye] = sent(dialog.a.handle(Bye(), 1.0), "BYE")
    byes = [bye]
    for nonce in ("n1", "n2", "n3"):
        out = dialog.to_a(challenged(byes[-1], 401, nonce, stale=True))
        byes += sent(out, "BYE")
    assert len(byes) == 3
    [failed] = [o for o in out if isinstance(o, ByeFailed)]
    assert failed.status == 401 and dialog.a.settled


def test_without_an_authorizer_a_bye_is_not_followed() -> None:
    dialog = Dialog(None)
    [bye] = sent(dialog.a.handle(Bye(), 1.0), "BYE")
    assert dialog.a.settled
    out = dialog.to_a(challenged(bye))
    assert sent(out) == [] and [o.status for o in out if isinstance(o, ByeFailed)] == [401]


def test_a_bye_that_times_out_is_reported() -> None:
    dialog = Dialog(auth())
    [bye] = sent(dialog.a.handle(Bye(), 1.0), "BYE")
    out = dialog.a.handle(RequestTimedOut("BYE", bye.cseq.seq), 33.0)
    assert [(o.status, o.reason) for o in out if isinstance(o, ByeFailed)] == [(408, "no response to our BYE")]
    assert dialog.a.settled


def test_a_challenged_reinvite_keeps_its_offer_and_later_requests_carry_credentials_ahead() -> None:
    dialog = Dialog(auth())
    hold = SDP_A.offer(port=40000, direction=Direction.SENDONLY)
    [reinvite] = sent(dialog.a.handle(Modify(hold), 1.0), "INVITE")
    assert "authorization" not in reinvite.headers
    [again] = sent(dialog.to_a(challenged(reinvite, 401, "n1")), "INVITE")
    assert again.cseq.seq == reinvite.cseq.seq + 1 and again.body == reinvite.body
    assert again.top_via.branch != reinvite.top_via.branch and again.to.tag == "btag"
    fields = credentials(again)
    assert fields.nc == "00000001" and fields.response == expected_response("INVITE", fields)
    # the agent takes it: its 2xx is ACKed with the retry's CSeq, the hold is in force
    received = dialog.b.handle(IncomingRequest(again, "re"), 1.0)
    [offer] = [o.offer for o in received if isinstance(o, ModifyReceived)]
    assert offer is not None
    answer = make_answer(offer, origin=SDP_B.origin, address="10.0.0.2", port=50000).sdp
    ok = next(o.response for o in dialog.b.handle(Accept(answer), 1.0) if hasattr(o, "response"))
    out = dialog.to_a(ok)
    [ack] = sent(out, "ACK")
    assert ack.cseq.seq == again.cseq.seq and [type(o) for o in out if isinstance(o, ModifyCompleted)]
    assert ack.headers.get_all("authorization") == again.headers.get_all("authorization")  # 13.2.2.4
    # the BYE goes with the same nonce, its next count (RFC 7616 3.4), and a higher CSeq
    [bye] = sent(dialog.a.handle(Bye(), 2.0), "BYE")
    ahead = credentials(bye)
    assert bye.cseq.seq == again.cseq.seq + 1
    assert (ahead.nonce, ahead.nc, ahead.uri) == ("n1", "00000002", str(bye.uri))
    assert ahead.response == expected_response("BYE", ahead)


def test_a_reinvite_challenged_forever_fails_and_the_session_stays_as_it_was() -> None:
    dialog = Dialog(auth())
    [reinvite] = sent(dialog.a.handle(Modify(SDP_A.offer(port=40000, direction=Direction.INACTIVE)), 1.0), "INVITE")
    requests = [reinvite]
    for nonce in ("n1", "n2", "n3"):
        out = dialog.to_a(challenged(requests[-1], 407, nonce, stale=True))
        requests += sent(out, "INVITE")
    assert len(requests) == 3
    [failed] = [o for o in out if isinstance(o, ModifyFailed)]
    assert failed.status == 407 and "after 2 answered" in failed.reason
    assert dialog.a.state.name == "CONFIRMED"


# ---------------------------------------------------------------------------- PRACK and ACK
def calling(authorizer: RequestAuth | None) -> tuple[InviteSession, Request]:
    """A UAC session whose INVITE is out (Supported: 100rel); no answer yet."""
    session = InviteSession(DialogRole.UAC, CFG_A, randint=low, authorizer=authorizer)
    invite = Request("INVITE", URI, Headers([
        ("From", "<sip:gw@10.0.0.1>;tag=atag"), ("To", f"<{URI}>"), ("Call-ID", "call-1@10.0.0.1"),
        ("CSeq", "1 INVITE"), ("Contact", "<sip:gw@10.0.0.1:5060>"), ("Max-Forwards", "70")]))
    invite.set_body(bytes(SDP_A.offer(port=40000)), "application/sdp")
    [sent_invite] = sent(session.handle(Invite(invite), 0.0))
    return session, sent_invite


def reliable_183(invite: Request, rseq: int = 1) -> Response:
    response = make_response(invite, 183, to_tag="btag", headers=Headers([
        ("Contact", "<sip:agent@10.0.0.2:5060>"), ("Require", "100rel"), ("RSeq", str(rseq))]))
    return wire(response)  # type: ignore[return-value]


def test_a_challenged_prack_is_sent_again_with_its_rack_and_credentials() -> None:
    """RFC 3262 7.2 and RFC 3261 22.2: a proxy's 407 to our PRACK gets the same PRACK
    (RAck unchanged) as the dialog's next request, with the answer."""
    session, invite = calling(auth())
    [prack] = sent(session.handle(IncomingResponse(reliable_183(invite)), 0.1), "PRACK")
    assert "proxy-authorization" not in prack.headers
    [again] = sent(session.handle(IncomingResponse(wire(challenged(prack, 407))), 0.2), "PRACK")  # type: ignore[arg-type]
    assert again.headers.get("rack") == prack.headers.get("rack") == "1 1 INVITE"
    assert again.cseq.seq == prack.cseq.seq + 1 and again.top_via.branch != prack.top_via.branch
    assert (again.call_id, again.from_.tag, again.to.tag, again.uri) == (prack.call_id, "atag", "btag", prack.uri)
    fields = credentials(again, "proxy-authorization")
    assert (fields.uri, fields.nc) == (str(again.uri), "00000001")
    assert fields.response == expected_response("PRACK", fields)
    assert session.state.name == "EARLY"
    # the next reliable 1xx's PRACK carries the credentials ahead (the nonce's next count)
    [ahead] = sent(session.handle(IncomingResponse(reliable_183(invite, 2)), 0.3), "PRACK")
    fields = credentials(ahead, "proxy-authorization")
    assert (fields.nonce, fields.nc) == ("n1", "00000002") and ahead.cseq.seq == again.cseq.seq + 1
    assert fields.response == expected_response("PRACK", fields)


def test_a_prack_challenged_forever_stops_after_two_answers() -> None:
    session, invite = calling(auth())
    [prack] = sent(session.handle(IncomingResponse(reliable_183(invite)), 0.1), "PRACK")
    pracks = [prack]
    for nonce in ("n1", "n2", "n3"):
        out = session.handle(IncomingResponse(wire(challenged(pracks[-1], 401, nonce, stale=True))), 0.2)  # type: ignore[arg-type]
        pracks += sent(out, "PRACK")
    assert len(pracks) == 3 and session.state.name == "EARLY"  # the UAS ends it (RFC 3262 3)


def test_without_an_authorizer_a_challenged_prack_is_not_sent_again() -> None:
    session, invite = calling(None)
    [prack] = sent(session.handle(IncomingResponse(reliable_183(invite)), 0.1), "PRACK")
    assert sent(session.handle(IncomingResponse(wire(challenged(prack, 407))), 0.2)) == []  # type: ignore[arg-type]


def test_the_ack_of_a_2xx_carries_the_credentials_of_the_invite() -> None:
    """RFC 3261 13.2.2.4: "The ACK MUST contain the same credentials as the INVITE"."""
    session, invite = calling(auth())
    [again] = sent(session.handle(IncomingResponse(wire(challenged(invite, 407))), 0.1), "INVITE")  # type: ignore[arg-type]
    [value] = again.headers.get_all("proxy-authorization")
    ok = make_response(again, 200, to_tag="btag", headers=Headers([("Contact", "<sip:agent@10.0.0.2:5060>")]))
    assert again.body
    ok.set_body(bytes(make_answer(SdpBuilder(session_id=1, address="10.0.0.1").offer(port=40000),
                                  origin=SDP_B.origin, address="10.0.0.2", port=50000).sdp), "application/sdp")
    [ack] = sent(session.handle(IncomingResponse(wire(ok)), 0.2), "ACK")  # type: ignore[arg-type]
    assert ack.headers.get_all("proxy-authorization") == [value] and ack.cseq.seq == again.cseq.seq
    # a retransmitted 2xx gets the same ACK again
    [ack_again] = sent(session.handle(IncomingResponse(wire(ok)), 0.3), "ACK")  # type: ignore[arg-type]
    assert ack_again.headers.get_all("proxy-authorization") == [value]


def test_an_unchallenged_invite_is_acked_without_credentials() -> None:
    dialog = Dialog(auth())
    [reinvite] = sent(dialog.a.handle(Modify(SDP_A.offer(port=40000)), 1.0), "INVITE")
    received = dialog.b.handle(IncomingRequest(reinvite, "re"), 1.0)
    [offer] = [o.offer for o in received if isinstance(o, ModifyReceived)]
    assert offer is not None
    answer = make_answer(offer, origin=SDP_B.origin, address="10.0.0.2", port=50000).sdp
    ok = next(o.response for o in dialog.b.handle(Accept(answer), 1.0) if hasattr(o, "response"))
    [ack] = sent(dialog.to_a(ok), "ACK")
    assert "authorization" not in ack.headers and "proxy-authorization" not in ack.headers
