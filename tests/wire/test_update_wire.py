"""UPDATE with an SDP offer (RFC 3311) in a confirmed dialog is answered per offer/answer."""

from __future__ import annotations

import pytest
from peers.caller import Caller
from peers.daemon import DaemonProcess


@pytest.mark.wire
def test_update_offer_hold_then_unhold() -> None:
    with DaemonProcess("127.0.0.1", None) as daemon:
        caller = Caller(daemon.address)
        try:
            assert caller.invite().status == 200
            port = caller.remote_media[1]
            for direction, expected in (("sendonly", "recvonly"), ("sendrecv", "sendrecv")):
                caller._send_in_dialog("UPDATE", body=caller.sdp(direction))
                answer = caller.wait_response("UPDATE", 5)
                assert answer.status == 200, answer
                body = answer.body.decode()
                assert f"a={expected}" in body, body
                assert f"m=audio {port} " in body, "the media address stays put"
            assert caller.bye().status == 200
        finally:
            caller.close()
