"""Dialogs (RFC 3261 section 12) as event sequences on real messages.

The cast: voicegw at 10.0.0.1; a bot at 192.0.2.7 reached through two
record-routing proxies p1 (next to us) and p2 (next to the bot). p1 adds its
Record-Route first and p2 puts its own on top, so the bot sees ``p2, p1``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicegw.sip.dialog import Dialog, make_dialog_response
from voicegw.sip.dialog_table import TRANSITIONS, DialogId, DialogInput, DialogRole, DialogState
from voicegw.sip.errors import DialogError, ProtocolViolation, SipError
from voicegw.sip.message import Request, Response
from voicegw.sip.parser import parse_message
from voicegw.sip.uri import parse_uri
from voicegw.sip.validate import check_request

VIA = "SIP/2.0/UDP 10.0.0.1:5060"
CONTACT = "<sip:gw@10.0.0.1:5060>"


def msg(text: str) -> Request | Response:
    """Literal SIP text (written with LF here) to a parsed message, sent with CRLF."""
    data = text.lstrip("\n").replace("\n", "\r\n").encode()
    if not data.endswith(b"\r\n\r\n"):
        data += b"\r\n"
    return parse_message(data)


def req(text: str) -> Request:
    message = msg(text)
    assert isinstance(message, Request)
    return message


def resp(text: str) -> Response:
    message = msg(text)
    assert isinstance(message, Response)
    return message


def reparse(message: Request | Response) -> Request | Response:
    """What the peer sees: our message serialised and parsed again."""
    return parse_message(bytes(message))


# --- the UAC leg: we call the bot --------------------------------------------------------

INVITE_OUT = """
INVITE sip:bot@bot.example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv1
Max-Forwards: 70
To: "Bot" <sip:bot@bot.example.com>
From: "voicegw" <sip:gw@10.0.0.1>;tag=gw1
Call-ID: call-1@10.0.0.1
CSeq: 10 INVITE
Contact: <sip:gw@10.0.0.1:5060>
Content-Length: 0

"""

RINGING = """
SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv1
Record-Route: <sip:p2.example.com;lr>
Record-Route: <sip:p1.example.com;lr>
To: "Bot" <sip:bot@bot.example.com>;tag=bot1
From: "voicegw" <sip:gw@10.0.0.1>;tag=gw1
Call-ID: call-1@10.0.0.1
CSeq: 10 INVITE
Contact: <sip:bot@192.0.2.7:5070>
Content-Length: 0

"""

OK_INVITE = """
SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv1
Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr;transport=tcp>
To: "Bot" <sip:bot@bot.example.com>;tag=bot1
From: "voicegw" <sip:gw@10.0.0.1>;tag=gw1
Call-ID: call-1@10.0.0.1
CSeq: 10 INVITE
Contact: <sip:bot@192.0.2.7:5080;transport=tcp>
Content-Length: 0

"""


def uac_dialog(first: str = RINGING) -> Dialog:
    return Dialog.from_uac_response(req(INVITE_OUT), resp(first), local_via=VIA, contact=CONTACT)


def test_dialog_id_of_a_response_to_our_request_has_our_tag_local() -> None:
    assert DialogId.from_response(resp(RINGING)) == DialogId("call-1@10.0.0.1", "gw1", "bot1")
    trying = RINGING.replace("180 Ringing", "100 Trying").replace(";tag=bot1", "")
    assert DialogId.from_response(resp(trying)) is None


def test_dialog_id_of_an_incoming_request_has_our_tag_in_to() -> None:
    bye = req("""
BYE sip:gw@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKbye9
To: <sip:gw@10.0.0.1>;tag=gw1
From: <sip:bot@bot.example.com>;tag=bot1
Call-ID: call-1@10.0.0.1
CSeq: 1 BYE

""")
    assert DialogId.from_request(bye) == DialogId("call-1@10.0.0.1", "gw1", "bot1")
    assert DialogId.from_request(req(INVITE_OUT)) is None  # no To tag: outside any dialog
    assert hash(DialogId("a", "b", "c")) == hash(DialogId("a", "b", "c"))


def test_uac_early_dialog_from_180_then_confirmed_by_200() -> None:
    dialog = uac_dialog()
    assert dialog.role is DialogRole.UAC
    assert dialog.state is DialogState.EARLY
    assert dialog.id == DialogId("call-1@10.0.0.1", "gw1", "bot1")
    # 12.1.2: Record-Route reversed; remote target from Contact; seqs
    assert [str(r) for r in dialog.route_set] == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]
    assert dialog.remote_target == parse_uri("sip:bot@192.0.2.7:5070")
    assert dialog.local_seq == 10
    assert dialog.remote_seq is None
    assert not dialog.secure

    dialog.receive_response(resp(OK_INVITE))
    assert dialog.state is DialogState.CONFIRMED
    # 13.2.2.4: route set recomputed from the 2xx (a comma-joined Record-Route here,
    # URI parameters preserved), remote target from its Contact
    assert [str(r) for r in dialog.route_set] == [
        "<sip:p1.example.com;lr;transport=tcp>",
        "<sip:p2.example.com;lr>",
    ]
    assert str(dialog.remote_target) == "sip:bot@192.0.2.7:5080;transport=tcp"

    # a retransmitted 2xx and a late 180 change nothing
    dialog.receive_response(resp(OK_INVITE))
    dialog.receive_response(resp(RINGING))
    assert dialog.state is DialogState.CONFIRMED
    assert len(dialog.route_set) == 2
    assert str(dialog.remote_target) == "sip:bot@192.0.2.7:5080;transport=tcp"


def test_uac_dialog_straight_from_200() -> None:
    dialog = uac_dialog(OK_INVITE)
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.statistics().route_set_length == 2


def test_180_without_contact_falls_back_to_the_request_uri() -> None:
    dialog = uac_dialog(RINGING.replace("Contact: <sip:bot@192.0.2.7:5070>\n", ""))
    assert dialog.remote_target == parse_uri("sip:bot@bot.example.com")
    dialog.receive_response(resp(OK_INVITE))
    assert str(dialog.remote_target) == "sip:bot@192.0.2.7:5080;transport=tcp"


def test_only_dialog_creating_responses_create_dialogs() -> None:
    with pytest.raises(ProtocolViolation):
        uac_dialog(RINGING.replace(";tag=bot1", ""))
    with pytest.raises(ProtocolViolation):
        uac_dialog(RINGING.replace("180 Ringing", "486 Busy Here"))


def test_in_dialog_request_headers_exact() -> None:
    dialog = uac_dialog(OK_INVITE)
    bye, next_hop = dialog.create_request("BYE", branch="z9hG4bKbye1")
    assert bytes(bye) == (
        b"BYE sip:bot@192.0.2.7:5080;transport=tcp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbye1\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:p1.example.com;lr;transport=tcp>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b'To: "Bot" <sip:bot@bot.example.com>;tag=bot1\r\n'
        b'From: "voicegw" <sip:gw@10.0.0.1>;tag=gw1\r\n'
        b"Call-ID: call-1@10.0.0.1\r\n"
        b"CSeq: 11 BYE\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    # loose routing: send to the first Route (8.1.2)
    assert next_hop == parse_uri("sip:p1.example.com;lr;transport=tcp")
    assert dialog.state is DialogState.TERMINATED
    check_request(reparse(bye))  # type: ignore[arg-type]
    with pytest.raises(DialogError) as info:
        dialog.create_request("INFO")
    assert info.value.status == 481


def test_cseq_increments_and_ack_reuses_the_invite_number() -> None:
    dialog = uac_dialog(OK_INVITE)
    ack, hop = dialog.create_ack(10, branch="z9hG4bKack1")
    assert ack.method == "ACK" and str(ack.cseq) == "10 ACK"
    assert ack.uri == "sip:bot@192.0.2.7:5080;transport=tcp"
    assert "contact" not in ack.headers
    assert hop == parse_uri("sip:p1.example.com;lr;transport=tcp")
    assert dialog.local_seq == 10  # the ACK takes no new number

    info, _ = dialog.create_request(
        "INFO", body=b"Signal=5\r\n", content_type="application/dtmf-relay"
    )
    reinvite, _ = dialog.create_request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    assert [info.cseq.seq, reinvite.cseq.seq] == [11, 12]
    assert info.headers.get("content-length") == "10"
    assert info.headers.get("content-type") == "application/dtmf-relay"
    assert "contact" not in info.headers
    # 12.2.1.1: a target refresh request carries our Contact
    assert reinvite.headers.get("contact") == CONTACT
    assert info.top_via.branch != reinvite.top_via.branch
    assert info.top_via.branch.startswith("z9hG4bK")
    for request in (ack, info, reinvite):
        check_request(reparse(request))  # type: ignore[arg-type]
    with pytest.raises(ProtocolViolation):
        dialog.create_request("INFO", body=b"x")  # body without Content-Type
    assert dialog.local_seq == 12


def test_ack_and_cancel_are_not_built_by_create_request() -> None:
    dialog = uac_dialog(OK_INVITE)
    for method in ("ACK", "CANCEL"):
        with pytest.raises(ProtocolViolation):
            dialog.create_request(method)
    assert dialog.local_seq == 10


def test_2xx_to_our_reinvite_refreshes_the_target() -> None:
    dialog = uac_dialog(OK_INVITE)
    reinvite, _ = dialog.create_request("INVITE", branch="z9hG4bKre1")
    ok = resp(f"""
SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKre1
Record-Route: <sip:evil.example.com;lr>
To: "Bot" <sip:bot@bot.example.com>;tag=bot1
From: "voicegw" <sip:gw@10.0.0.1>;tag=gw1
Call-ID: call-1@10.0.0.1
CSeq: {reinvite.cseq.seq} INVITE
Contact: <sip:bot@192.0.2.99:5070>
Content-Length: 0

""")
    dialog.receive_response(ok)
    assert dialog.remote_target == parse_uri("sip:bot@192.0.2.99:5070")
    # 12.2: the route set is not touched by mid-dialog traffic
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p1.example.com;lr;transport=tcp",
        "sip:p2.example.com;lr",
    ]
    assert dialog.state is DialogState.CONFIRMED


def test_481_to_a_mid_dialog_request_ends_the_dialog() -> None:
    dialog = uac_dialog(OK_INVITE)
    info, _ = dialog.create_request("INFO")
    gone = OK_INVITE.replace("200 OK", "481 Call/Transaction Does Not Exist").replace(
        "10 INVITE", f"{info.cseq.seq} INFO"
    )
    dialog.receive_response(resp(gone))
    assert dialog.state is DialogState.TERMINATED


def test_non_2xx_final_ends_the_early_dialog_whatever_its_tag() -> None:
    dialog = uac_dialog()
    busy = RINGING.replace("180 Ringing", "486 Busy Here").replace("tag=bot1", "tag=proxy7")
    dialog.receive_response(resp(busy))
    assert dialog.state is DialogState.TERMINATED
    # ...but a 2xx from another fork branch is another dialog, not this one
    other = uac_dialog()
    with pytest.raises(DialogError):
        other.receive_response(resp(OK_INVITE.replace("tag=bot1", "tag=bot2")))
    assert other.state is DialogState.EARLY


def test_2xx_crossing_our_bye_on_an_early_dialog_is_still_acked() -> None:
    dialog = uac_dialog()
    dialog.create_request("BYE")  # 15: the caller may BYE an early dialog
    assert dialog.state is DialogState.TERMINATED
    dialog.receive_response(resp(OK_INVITE))
    assert dialog.state is DialogState.TERMINATED
    ack, _ = dialog.create_ack(10)
    assert str(ack.cseq) == "10 ACK"


def test_sips_request_uri_over_tls_makes_the_dialog_secure() -> None:
    invite = req(INVITE_OUT.replace("INVITE sip:bot", "INVITE sips:bot"))
    dialog = Dialog.from_uac_response(invite, resp(RINGING), local_via=VIA, contact=CONTACT)
    assert dialog.secure
    plain = Dialog.from_uac_response(
        invite, resp(RINGING), local_via=VIA, contact=CONTACT, over_tls=False
    )
    assert not plain.secure


# --- strict routing (12.2.1.1) -------------------------------------------------------------


def test_strict_router_goes_into_the_request_uri() -> None:
    ok = OK_INVITE.replace(
        "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr;transport=tcp>",
        "Record-Route: <sip:p2.example.com;lr>\n"
        "Record-Route: <sip:p1.example.com;method=INVITE;transport=udp>",
    )
    dialog = uac_dialog(ok)
    info, next_hop = dialog.create_request("INFO", branch="z9hG4bKs1")
    # first route has no lr: it becomes the Request-URI (minus the method parameter),
    # the rest of the route set follows, then the remote target as the last Route
    assert info.uri == "sip:p1.example.com;transport=udp"
    assert info.headers.get_all("route") == [
        "<sip:p2.example.com;lr>",
        "<sip:bot@192.0.2.7:5080;transport=tcp>",
    ]
    assert next_hop == parse_uri("sip:p1.example.com;transport=udp")
    assert dialog.next_hop() == next_hop
    check_request(reparse(info))  # type: ignore[arg-type]


def test_no_route_set_sends_to_the_remote_target() -> None:
    dialog = uac_dialog(OK_INVITE.replace(
        "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr;transport=tcp>\n", ""
    ))
    bye, next_hop = dialog.create_request("BYE")
    assert "route" not in bye.headers
    assert bye.uri == "sip:bot@192.0.2.7:5080;transport=tcp"
    assert next_hop == dialog.remote_target


# --- the UAS leg: the caller calls us -------------------------------------------------------

INVITE_IN = """
INVITE sip:support@10.0.0.1 SIP/2.0
Via: SIP/2.0/UDP sbc.carrier.example:5060;branch=z9hG4bKsbc1
Via: SIP/2.0/UDP 198.51.100.4:5060;branch=z9hG4bKphone1
Record-Route: <sip:sbc.carrier.example;lr>
Record-Route: <sip:edge.carrier.example;lr;ftag=abc>
Max-Forwards: 69
To: <sip:support@voicegw.example>
From: "Alice" <sip:+15551230000@carrier.example>;tag=alice1
Call-ID: xyz-42@198.51.100.4
CSeq: 314159 INVITE
Contact: <sip:+15551230000@198.51.100.4:5060>
Content-Type: application/sdp
Content-Length: 5

v=0
"""


def uas_dialog(status: int = 180) -> tuple[Request, Response, Dialog]:
    invite = req(INVITE_IN)
    response = make_dialog_response(invite, status, local_tag="gwtag", contact=CONTACT)
    dialog = Dialog.from_uas_response(invite, response, local_via=VIA)
    return invite, response, dialog


def test_uas_response_and_dialog_with_record_route() -> None:
    invite, ringing, dialog = uas_dialog()
    # 12.1.1: Record-Route copied, To tagged, Contact added
    assert ringing.headers.get_all("record-route") == [
        "<sip:sbc.carrier.example;lr>",
        "<sip:edge.carrier.example;lr;ftag=abc>",
    ]
    assert ringing.to.tag == "gwtag"
    assert ringing.headers.get("contact") == CONTACT
    assert len(ringing.vias) == 2

    assert dialog.role is DialogRole.UAS
    assert dialog.state is DialogState.EARLY
    assert dialog.id == DialogId("xyz-42@198.51.100.4", "gwtag", "alice1")
    # route set in order, remote target from the INVITE's Contact, remote seq its CSeq
    assert [str(r) for r in dialog.route_set] == [
        "<sip:sbc.carrier.example;lr>",
        "<sip:edge.carrier.example;lr;ftag=abc>",
    ]
    assert dialog.remote_target == parse_uri("sip:+15551230000@198.51.100.4:5060")
    assert dialog.remote_seq == 314159
    assert dialog.local_seq is None
    assert dialog.contact == CONTACT

    ok = dialog.respond(invite, 200, body=b"v=0\r\n", content_type="application/sdp")
    assert dialog.state is DialogState.CONFIRMED
    assert ok.to.tag == "gwtag" and ok.headers.get("contact") == CONTACT
    assert ok.headers.get("content-length") == "5"
    assert reparse(ok).body == b"v=0\r\n"


def test_uas_first_request_picks_the_initial_seq_and_routes_in_order() -> None:
    _invite, _, dialog = uas_dialog(200)
    assert dialog.state is DialogState.CONFIRMED
    bye, next_hop = dialog.create_request("BYE", branch="z9hG4bKgwbye")
    assert bytes(bye) == (
        b"BYE sip:+15551230000@198.51.100.4:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKgwbye\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:sbc.carrier.example;lr>\r\n"
        b"Route: <sip:edge.carrier.example;lr;ftag=abc>\r\n"
        b'To: "Alice" <sip:+15551230000@carrier.example>;tag=alice1\r\n'
        b"From: <sip:support@voicegw.example>;tag=gwtag\r\n"
        b"Call-ID: xyz-42@198.51.100.4\r\n"
        b"CSeq: 1 BYE\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    assert next_hop == parse_uri("sip:sbc.carrier.example;lr")


def test_callee_must_not_bye_an_early_dialog() -> None:
    invite, _, dialog = uas_dialog(183)
    with pytest.raises(ProtocolViolation):
        dialog.create_request("BYE")
    assert dialog.state is DialogState.EARLY and dialog.local_seq is None
    # it answers the INVITE instead (12.3: the early dialog ends)
    final = dialog.respond(invite, 480)
    assert final.status == 480 and final.to.tag == "gwtag"
    assert "contact" not in final.headers
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(DialogError):
        dialog.respond(invite, 200)


def in_dialog(method: str, seq: int, extra: str = "", tag: str = "gwtag") -> Request:
    return req(f"""
{method} sip:gw@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP sbc.carrier.example:5060;branch=z9hG4bK{method.lower()}{seq}
Max-Forwards: 69
To: <sip:support@voicegw.example>;tag={tag}
From: "Alice" <sip:+15551230000@carrier.example>;tag=alice1
Call-ID: xyz-42@198.51.100.4
CSeq: {seq} {method}
{extra}Content-Length: 0

""")


def test_reinvite_refreshes_the_remote_target_and_info_does_not() -> None:
    _invite, _, dialog = uas_dialog(200)
    dialog.receive_request(in_dialog("ACK", 314159))
    dialog.receive_request(
        in_dialog("INVITE", 314160, "Contact: <sip:+15551230000@203.0.113.9:5062>\n")
    )
    assert dialog.remote_target == parse_uri("sip:+15551230000@203.0.113.9:5062")
    assert dialog.remote_seq == 314160
    dialog.receive_request(
        in_dialog("INFO", 314161, "Contact: <sip:+15551230000@203.0.113.10>\n")
    )
    assert dialog.remote_target == parse_uri("sip:+15551230000@203.0.113.9:5062")
    dialog.receive_request(
        in_dialog("UPDATE", 314170, "Contact: <sip:+15551230000@203.0.113.11>\n")
    )
    assert dialog.remote_target == parse_uri("sip:+15551230000@203.0.113.11")
    assert dialog.remote_seq == 314170  # gaps are fine (12.2.2)
    # Record-Route in a mid-dialog request does not touch the route set (12.2)
    assert len(dialog.route_set) == 2
    # our 2xx to the re-INVITE is not the dialog-creating one and carries our Contact
    reinvite = in_dialog("INVITE", 314171)
    dialog.receive_request(reinvite)
    ok = dialog.respond(reinvite, 200)
    assert ok.headers.get("contact") == CONTACT
    assert dialog.state is DialogState.CONFIRMED


def test_lower_cseq_is_rejected_with_500_but_ack_is_not() -> None:
    _, _, dialog = uas_dialog(200)
    dialog.receive_request(in_dialog("INFO", 314165))
    with pytest.raises(ProtocolViolation) as info:
        dialog.receive_request(in_dialog("INFO", 314164))
    assert info.value.status == 500
    assert dialog.remote_seq == 314165
    # the ACK for the INVITE carries the INVITE's number, below the INFO's
    dialog.receive_request(in_dialog("ACK", 314159))
    assert dialog.remote_seq == 314165
    with pytest.raises(ProtocolViolation):
        dialog.receive_request(in_dialog("CANCEL", 314159))


def test_bye_terminates_and_later_requests_get_481() -> None:
    _, _, dialog = uas_dialog(200)
    bye = in_dialog("BYE", 314160)
    dialog.receive_request(bye)
    assert dialog.state is DialogState.TERMINATED
    ok = dialog.respond(bye, 200)  # answering the BYE is still possible
    assert ok.status == 200 and ok.to.tag == "gwtag" and "contact" not in ok.headers
    with pytest.raises(DialogError) as info:
        dialog.receive_request(in_dialog("INFO", 314161))
    assert info.value.status == 481


def test_a_request_for_another_dialog_gets_481() -> None:
    _, _, dialog = uas_dialog(200)
    with pytest.raises(DialogError):
        dialog.receive_request(in_dialog("INFO", 314160, tag="someone-else"))
    assert dialog.remote_seq == 314159


def test_ack_in_an_early_dialog_is_a_violation() -> None:
    _, _, dialog = uas_dialog(180)
    with pytest.raises(ProtocolViolation):
        dialog.receive_request(in_dialog("ACK", 314159))
    assert dialog.state is DialogState.EARLY


def test_invite_without_contact_cannot_create_a_dialog() -> None:
    invite = req(INVITE_IN.replace("Contact: <sip:+15551230000@198.51.100.4:5060>\n", ""))
    response = make_dialog_response(invite, 180, local_tag="t", contact=CONTACT)
    with pytest.raises(ProtocolViolation) as info:
        Dialog.from_uas_response(invite, response, local_via=VIA)
    assert info.value.status == 400


def test_statistics_and_repr() -> None:
    _, _, dialog = uas_dialog(200)
    stats = dialog.statistics()
    assert stats.state is DialogState.CONFIRMED
    assert (stats.local_seq, stats.remote_seq, stats.route_set_length) == (None, 314159, 2)
    assert stats.role is DialogRole.UAS and not stats.secure
    text = repr(dialog)
    assert "UAS CONFIRMED" in text and "xyz-42@198.51.100.4" in text and "routes=2" in text


# --- both ends, over the wire ----------------------------------------------------------------


def proxy_forward(request: Request) -> Request:
    """A loose router that finds itself in the top Route pops it (16.4)."""
    forwarded = reparse(request)
    assert isinstance(forwarded, Request)
    forwarded.headers.pop_first("route")
    return forwarded


def test_two_legs_talk_through_two_record_routing_proxies() -> None:
    # our INVITE reaches the bot with Record-Route p2, p1 (each proxy adds on top)
    invite = req(INVITE_OUT)
    at_bot = reparse(invite)
    assert isinstance(at_bot, Request)
    at_bot.headers.insert_first("Record-Route", "<sip:p1.example.com;lr>")
    at_bot.headers.insert_first("Record-Route", "<sip:p2.example.com;lr>")
    bot_contact = "<sip:bot@192.0.2.7:5070>"
    ok = make_dialog_response(at_bot, 200, local_tag="bot1", contact=bot_contact)
    bot = Dialog.from_uas_response(at_bot, ok, local_via="SIP/2.0/UDP 192.0.2.7:5070")
    at_gw = reparse(ok)
    assert isinstance(at_gw, Response)
    gw = Dialog.from_uac_response(invite, at_gw, local_via=VIA, contact=CONTACT)
    assert gw.id == DialogId(bot.id.call_id, bot.id.remote_tag, bot.id.local_tag)
    assert [str(r.uri) for r in gw.route_set] == [str(r.uri) for r in reversed(bot.route_set)]

    ack, hop = gw.create_ack(invite.cseq.seq)
    assert hop == parse_uri("sip:p1.example.com;lr")
    bot.receive_request(proxy_forward(proxy_forward(ack)))

    # the bot re-INVITEs from a new address; we see the target move
    bot.contact = "<sip:bot@192.0.2.8:5070>"
    reinvite, hop = bot.create_request("INVITE")
    assert hop == parse_uri("sip:p2.example.com;lr")
    arrived = proxy_forward(proxy_forward(reinvite))
    assert arrived.uri == "sip:gw@10.0.0.1:5060" and "route" not in arrived.headers
    gw.receive_request(arrived)
    assert gw.remote_target == parse_uri("sip:bot@192.0.2.8:5070")
    assert gw.remote_seq == 1
    bot.receive_response(reparse(gw.respond(arrived, 200)))  # type: ignore[arg-type]
    assert bot.remote_target == parse_uri("sip:gw@10.0.0.1:5060")

    bye, _ = gw.create_request("BYE")
    at_bot_bye = proxy_forward(proxy_forward(bye))
    assert at_bot_bye.uri == "sip:bot@192.0.2.8:5070"
    bot.receive_request(at_bot_bye)
    gw.receive_response(reparse(bot.respond(at_bot_bye, 200)))  # type: ignore[arg-type]
    assert gw.state is bot.state is DialogState.TERMINATED


# --- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(DialogState))
@pytest.mark.parametrize("event", list(DialogInput))
def test_every_state_input_pair_is_a_row_or_a_sip_error(
    state: DialogState, event: DialogInput
) -> None:
    _, _, dialog = uas_dialog(200)
    dialog.state = state
    if (state, event) in TRANSITIONS:
        assert dialog._fire(event) is TRANSITIONS[(state, event)]
    else:
        expected = DialogError if state is DialogState.TERMINATED else ProtocolViolation
        with pytest.raises(expected):
            dialog._fire(event)
        assert dialog.state is state


def test_terminated_is_absorbing_and_terminate_always_works() -> None:
    for (state, _), target in TRANSITIONS.items():
        if state is DialogState.TERMINATED:
            assert target is DialogState.TERMINATED
    for state in DialogState:
        assert TRANSITIONS[(state, DialogInput.TERMINATE)] is DialogState.TERMINATED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**31 - 1), min_size=1, max_size=20))
def test_remote_seq_only_moves_forward(seqs: list[int]) -> None:
    _, _, dialog = uas_dialog(200)
    dialog.remote_seq = None  # as on a UAC dialog before the peer's first request
    highest: int | None = None
    for seq in seqs:
        request = in_dialog("INFO", seq)
        if highest is not None and seq < highest:
            with pytest.raises(ProtocolViolation):
                dialog.receive_request(request)
        else:
            dialog.receive_request(request)
            highest = seq
        assert dialog.remote_seq == highest


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["INFO", "UPDATE", "INVITE", "NOTIFY", "REFER"]), max_size=15))
def test_local_cseq_strictly_increases(methods: list[str]) -> None:
    dialog = uac_dialog(OK_INVITE)
    seqs = [dialog.create_request(m)[0].cseq.seq for m in methods]
    assert seqs == list(range(11, 11 + len(methods)))


def test_errors_are_sip_errors() -> None:
    assert issubclass(DialogError, SipError) and issubclass(ProtocolViolation, SipError)


def test_dialog_and_sipfrag_modules_stay_sans_io() -> None:
    import ast
    from pathlib import Path

    import voicegw.sip

    forbidden = {"asyncio", "socket", "time", "pydantic", "structlog", "uvloop", "selectors"}
    package = Path(voicegw.sip.__file__).parent
    for name in ("dialog.py", "sipfrag.py"):
        for node in ast.walk(ast.parse((package / name).read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{name} imports {roots & forbidden}"
