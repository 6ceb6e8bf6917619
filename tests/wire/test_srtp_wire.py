"""SRTP on the caller's leg (RFC 4568 SDES): a carrier that offers RTP/SAVP gets an
RTP/SAVP answer with voicegw's own key; its SRTP is unprotected towards a plain-RTP
bot and protected again on the way back. Checked on the wire with libsrtp."""

from __future__ import annotations

import re
import struct
import subprocess
import time
from pathlib import Path

import pytest
from peers.caller import Caller
from peers.daemon import DaemonProcess
from peers.net import free_port
from peers.ports import free_block
from peers.sipp import SIPP

from voicegw.media.srtp import SrtpContext, new_key
from voicegw.sip.sdes import CryptoAttribute

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]
SUITE = "AES_CM_128_HMAC_SHA1_80"


class SrtpCaller(Caller):
    """The scripted caller, offering RTP/SAVP with an inline SDES key."""

    key: bytes = b""

    def sdp(self, direction: str = "sendrecv") -> bytes:
        crypto = CryptoAttribute(1, SUITE, self.key)
        return (
            "v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
            f"a=crypto:{crypto}\r\n"
            f"a=ptime:20\r\na={direction}\r\n"
        ).encode()


def test_srtp_caller_to_plain_rtp_bot_and_back(tmp_path: Path) -> None:
    bot_port, media = free_port(), free_block(4)
    bot = subprocess.Popen(
        [SIPP, "-sn", "uas", "-p", str(bot_port), "-i", "127.0.0.1", "-mp", str(media), "-rtp_echo",
         "-m", "1", "-nostdin", "-timeout", "30s", "-trace_msg", "-message_file", str(tmp_path / "bot.log")],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = free_block(40)
    daemon = DaemonProcess("127.0.0.1", None, "--bot-uri", f"sip:bot@127.0.0.1:{bot_port}",
                           "--rtp-ports", f"{base}-{base + 38}")
    caller = None
    try:
        time.sleep(0.3)
        daemon.start()
        caller = SrtpCaller(daemon.address)
        caller.key = new_key(SUITE)
        ok = caller.invite()
        assert ok.status == 200
        answer = ok.body.decode()
        assert re.search(r"m=audio \d+ RTP/SAVP 0", answer), answer
        line = re.search(r"a=crypto:(.*)\r\n", answer).group(1)  # type: ignore[union-attr]
        ours = CryptoAttribute.parse(line)
        assert ours.suite == SUITE and ours.key_salt != caller.key, "voicegw answers with its own key"
        srtp = SrtpContext(ours.key_salt, caller.key, SUITE)  # in: voicegw's, out: the caller's
        bot_log = (tmp_path / "bot.log").read_text(errors="replace")
        assert "RTP/AVP" in bot_log and "a=crypto" not in bot_log, "the bot leg stays plain RTP"

        sent = [bytes([i]) * 160 for i in range(1, 51)]
        for index, payload in enumerate(sent):
            plain = struct.pack("!BBHII", 0x80, 0, index, 160 * index, 0x5EC0DE) + payload
            caller.rtp.sendto(srtp.protect_rtp(plain), caller.remote_media)
            time.sleep(0.004)
        received = caller.receive_rtp(2.0)
        assert received, "SRTP comes back"
        back = [srtp.unprotect_rtp(p) for p in received]
        assert all(p is not None for p in back), "every packet voicegw sends authenticates with its key"
        payloads = [p[12:] for p in back if p is not None and p[1] & 0x7F == 0]
        assert [p for p in payloads if p in sent] == sent, "every payload comes back, in order"
        assert received[0][12:] != sent[0], "what crossed the wire was encrypted"
        assert caller.bye().status == 200
    finally:
        if caller is not None:
            caller.close()
        bot.kill()
        daemon.terminate()
