"""A late copy of the bot's 2xx is ACKed again over the wire (RFC 3261 13.2.2.4,
issue 16): ``voicegw run`` between a raw-UDP caller and a raw-UDP bot on 127.0.0.1.
The call is set up and hung up by the caller; then the bot sends its 200 to the INVITE
again, as a UAS does whose ACK was lost (13.3.1.4), and gets the same ACK bytes again,
although the engine forgot the call at its end: the UA core keeps the ACK for 64*T1."""

from __future__ import annotations

import socket
import time

import pytest
from peers.calls import HOST, CallLab, SipMessage, caller_sdp
from peers.daemon import wait_until
from peers.net import udp_socket

pytestmark = [pytest.mark.wire]


def answer(raw: bytes, to_tag: str = "", body: bytes = b"", contact: str = "") -> bytes:
    """The bot's 200 to the request ``raw``: its Via, From, To (``to_tag`` added),
    Call-ID and CSeq, as 8.2.6.2 says."""
    lines = raw.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]
    out = ["SIP/2.0 200 OK"]
    for line in lines:
        name = line.split(":", 1)[0].strip().lower()
        if name in ("via", "from", "call-id", "cseq"):
            out.append(line)
        elif name == "to":
            out.append(line + (f";tag={to_tag}" if to_tag else ""))
    if contact:
        out.append(f"Contact: {contact}")
    if body:
        out.append("Content-Type: application/sdp")
    out.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(out) + "\r\n\r\n").encode() + body


def receive(sock: socket.socket, wanted: str, timeout: float = 10.0) -> tuple[bytes, tuple[str, int]]:
    """The next request ``wanted`` (a method) that reaches ``sock``, and its source."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, source = sock.recvfrom(70_000)
        except TimeoutError:
            break
        message = SipMessage.parse(data, "in")
        if message.status is None and message.method == wanted:
            return data, source
    raise AssertionError(f"no {wanted} within {timeout} s")


def test_a_copy_of_the_bots_2xx_after_the_call_ended_is_acked_again(tmp_path) -> None:
    with CallLab(tmp_path) as lab:
        lab.start_voicegw()
        assert lab.bot_port is not None
        bot = udp_socket(HOST, lab.bot_port)
        bot_rtp = udp_socket(HOST)
        try:
            caller = lab.raw_caller()
            caller.invite_branch = caller.request("INVITE", caller_sdp(caller.rtp_port))
            invite, daemon = receive(bot, "INVITE")
            ok = answer(invite, "rawbot1", caller_sdp(bot_rtp.getsockname()[1], telephone_event=None),
                        f"<sip:bot@{HOST}:{lab.bot_port}>")
            bot.sendto(ok, daemon)
            first_ack, _ = receive(bot, "ACK")
            final = caller.final_response("INVITE", timeout=10.0)
            assert final.status == 200, lab.report()
            caller.to_header = final.header("to") or caller.to_header
            caller.ack(final)
            assert caller.bye().status == 200
            bye, _ = receive(bot, "BYE")
            bot.sendto(answer(bye), daemon)
            assert wait_until(lambda: lab.events("call.ended"), 5), lab.report()
            time.sleep(1.0)  # the call is over: the engine forgot it at its end
            for _ in range(2):  # the bot's Timer G copies (its ACK lost): each gets it again
                bot.sendto(ok, daemon)
                again, _ = receive(bot, "ACK", timeout=5.0)
                assert again == first_ack, (again, first_ack)
            assert [e["reason"] for e in lab.events("call.ended")] == ["caller hung up"], lab.report()
        finally:
            bot.close()
            bot_rtp.close()
