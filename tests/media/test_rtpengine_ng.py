"""rtpengine's ng protocol: bencode, framing, message builders and the two clients.

Everything but the last test runs without rtpengine: the clients talk to a small fake
ng server on loopback. The last test drives Debian's rtpengine-daemon in userspace
(``--table=-1``) when it is installed (``scripts/bench/rtp_relay.py --rtpengine``
installs it) and relays real RTP through it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from peers.net import free_port
from peers.ports import free_block

from voicegw.media import rtpengine_ng as ng
from voicegw.media.rtpengine_ng import BencodeError, NgError, bdecode, bencode

# ---------------------------------------------------------------------------- bencode


@pytest.mark.parametrize("value, encoded", [
    (0, b"i0e"),
    (42, b"i42e"),
    (-7, b"i-7e"),
    (2**70, b"i1180591620717411303424e"),
    ("", b"0:"),
    ("spam", b"4:spam"),
    (b"\x00\xff", b"2:\x00\xff"),
    ("é", b"2:\xc3\xa9"),
    ([], b"le"),
    (["spam", 1, []], b"l4:spami1elee"),
    ({}, b"de"),
    ({"cow": "moo", "spam": "eggs"}, b"d3:cow3:moo4:spam4:eggse"),
    ({"spam": ["a", "b"]}, b"d4:spaml1:a1:bee"),
])
def test_bencode_known_values(value, encoded):
    assert bencode(value) == encoded
    back = bdecode(encoded, text=not isinstance(value, bytes))
    assert back == value


def test_dictionary_keys_are_sorted_by_raw_bytes():
    assert bencode({"b": 1, "a": 2, "B": 3, "call-id": 4}) == b"d1:Bi3e1:ai2e1:bi1e7:call-idi4ee"
    assert bencode({"z": 1, b"a": 2}) == b"d1:ai2e1:zi1ee"


def test_tuples_encode_as_lists():
    assert bencode(("a", ("b",))) == b"l1:al1:bee"


@pytest.mark.parametrize("value", [True, False, None, 1.5, {1: "x"}, object(), {"a": 1, b"a": 2}])
def test_bencode_refuses_what_it_cannot_carry(value):
    with pytest.raises(BencodeError):
        bencode(value)


@pytest.mark.parametrize("data", [
    b"", b"i", b"i42", b"ie", b"i-e", b"i03e", b"i-0e", b"i1.5e", b"4:spa", b"5spam",
    b"04:spam", b"l", b"li1e", b"d", b"d3:cow", b"di1ei2ee", b"d1:ai1e1:ai2ee", b"x",
    b"i1ei2e", b"4:spam ", b"-1:a",
])
def test_bdecode_rejects_malformed(data):
    with pytest.raises(BencodeError):
        bdecode(data)


def test_bdecode_depth_is_bounded():
    with pytest.raises(BencodeError):
        bdecode(b"l" * 100 + b"e" * 100)
    assert bdecode(b"l" * 10 + b"e" * 10) == [[[[[[[[[[]]]]]]]]]]


def test_non_utf8_strings_survive_a_text_round_trip():
    raw = b"4:\xff\xfeok"
    text = bdecode(raw)
    assert isinstance(text, str)
    assert bencode(text) == raw
    assert bdecode(raw, text=False) == b"\xff\xfeok"


values = st.recursive(
    st.integers() | st.text() | st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@given(values)
def test_round_trip(value):
    encoded = bencode(value)
    assert bdecode(encoded) == value
    assert bencode(bdecode(encoded)) == encoded  # canonical: one encoding per value


@given(st.binary(max_size=64))
def test_bdecode_raises_only_bencode_errors(data):
    try:
        bdecode(data)
    except BencodeError:
        pass


# ---------------------------------------------------------------------------- framing
def test_frame_is_cookie_space_bencoded_dictionary():
    assert ng.frame("5323_1", {"command": "ping"}) == b"5323_1 d7:command4:pinge"
    assert ng.parse_frame(b"5323_1 d6:result4:ponge") == ("5323_1", {"result": "pong"})


def test_frame_keeps_sdp_bytes_exactly():
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    data = ng.frame("c1", ng.offer("call", "tag", sdp))
    cookie, message = ng.parse_frame(data)
    assert cookie == "c1" and message["sdp"] == sdp
    assert b"3:sdp%d:%s" % (len(sdp), sdp.encode()) in data


@pytest.mark.parametrize("cookie", ["", "a b", "a\tb"])
def test_frame_refuses_bad_cookies(cookie):
    with pytest.raises(ValueError):
        ng.frame(cookie, ng.ping())


@pytest.mark.parametrize("data", [b"d6:result4:ponge", b" d6:result4:ponge", b"c1 le", b"c1 i1e", b"c1 d"])
def test_parse_frame_rejects_what_is_not_an_ng_message(data):
    with pytest.raises(BencodeError):
        ng.parse_frame(data)


def test_cookies_are_fresh_tokens():
    cookies = {ng.new_cookie() for _ in range(1000)}
    assert len(cookies) == 1000
    assert all(c.isalnum() for c in cookies)


# ---------------------------------------------------------------------------- messages
def test_message_builders():
    assert ng.ping() == {"command": "ping"}
    assert ng.offer("c", "f", "SDP") == {
        "command": "offer", "call-id": "c", "from-tag": "f", "sdp": "SDP",
        "replace": ["origin", "session-connection"]}
    assert ng.offer("c", "f", "SDP", flags=["trust-address"], replace=(),
                    extra={"ICE": "remove"}) == {
        "command": "offer", "call-id": "c", "from-tag": "f", "sdp": "SDP",
        "flags": ["trust-address"], "ICE": "remove"}
    assert ng.answer("c", "f", "t", "SDP", replace=())["to-tag"] == "t"
    assert ng.delete("c") == {"command": "delete", "call-id": "c"}
    assert ng.delete("c", "f", "t") == {"command": "delete", "call-id": "c", "from-tag": "f", "to-tag": "t"}
    assert ng.query("c", "f") == {"command": "query", "call-id": "c", "from-tag": "f"}


def test_check_reply():
    assert ng.check_reply({"result": "pong"}) == {"result": "pong"}
    ok = {"result": "ok", "sdp": "x", "warning": "w"}
    assert ng.check_reply(ok) == ok
    with pytest.raises(NgError) as error:
        ng.check_reply({"result": "error", "error-reason": "Unknown call-id"})
    assert error.value.reason == "Unknown call-id"
    assert error.value.reply["result"] == "error"
    with pytest.raises(NgError):
        ng.check_reply({"sdp": "no result"})


# ---------------------------------------------------------------------------- clients
class FakeNg:
    """A loopback ng server: answers ping and echoes offers; may drop some requests."""

    def __init__(self, drop_first: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.drop_first = drop_first
        self.received: list[tuple[str, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            cookie, message = ng.parse_frame(data)
            self.received.append((cookie, message))
            if len(self.received) <= self.drop_first:
                continue
            command = message.get("command")
            if command == "ping":
                reply = {"result": "pong"}
            elif command == "offer":
                reply = {"result": "ok", "sdp": message["sdp"].replace("5000", "40000")}
            else:
                reply = {"result": "error", "error-reason": f"Unknown call-id {message.get('call-id')}"}
            self.sock.sendto(b"stale d6:result2:oke", peer)  # a reply to someone else
            self.sock.sendto(ng.frame(cookie, reply), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def fake():
    server = FakeNg()
    yield server
    server.close()


def test_blocking_client(fake):
    with ng.NgClient(fake.address, timeout=2) as client:
        assert client.ping() == {"result": "pong"}
        reply = client.offer("call", "from", "m=audio 5000 RTP/AVP 0\r\n")
        assert reply["sdp"] == "m=audio 40000 RTP/AVP 0\r\n"
        with pytest.raises(NgError, match="Unknown call-id"):
            client.delete("call", "from")
    assert [m["command"] for _, m in fake.received] == ["ping", "offer", "delete"]


def test_blocking_client_retransmits_with_the_same_cookie():
    server = FakeNg(drop_first=2)
    try:
        with ng.NgClient(server.address, timeout=2, retransmit=0.1) as client:
            assert client.ping()["result"] == "pong"
        cookies = [c for c, _ in server.received]
        assert len(cookies) == 3 and len(set(cookies)) == 1
    finally:
        server.close()


def test_blocking_client_times_out():
    server = FakeNg(drop_first=100)
    try:
        with ng.NgClient(server.address, timeout=0.3, retransmit=0.1) as client:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                client.ping()
            assert time.monotonic() - started < 1.0
    finally:
        server.close()


def test_blocking_client_nothing_listening():
    with ng.NgClient(("127.0.0.1", free_port()), timeout=0.5, retransmit=0.1) as client, \
            pytest.raises((NgError, TimeoutError)):
        client.ping()


async def test_async_client_many_in_flight(fake):
    client = await ng.AsyncNgClient.connect(fake.address, timeout=2)
    try:
        replies = await asyncio.gather(*(client.request(ng.ping()) for _ in range(20)),
                                       client.request(ng.offer("c", "f", "5000")))
        assert replies[:20] == [{"result": "pong"}] * 20
        assert replies[20]["sdp"] == "40000"
        with pytest.raises(NgError):
            await client.request(ng.delete("c"))
    finally:
        client.close()


async def test_async_client_retransmits_and_times_out():
    server = FakeNg(drop_first=1)
    try:
        client = await ng.AsyncNgClient.connect(server.address, timeout=2, retransmit=0.1)
        assert (await client.request(ng.ping()))["result"] == "pong"
        assert len(server.received) == 2 and server.received[0][0] == server.received[1][0]
        server.drop_first = 100
        client.timeout = 0.3
        with pytest.raises(TimeoutError):
            await client.request(ng.ping())
        client.close()
    finally:
        server.close()


# ---------------------------------------------------------------------------- rtpengine
RTPENGINE = shutil.which("rtpengine")


def _sdp(port: int) -> str:
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def _media_port(sdp: str) -> int:
    line = next(line for line in sdp.splitlines() if line.startswith("m=audio "))
    return int(line.split()[1])


@pytest.mark.wire
@pytest.mark.skipif(RTPENGINE is None, reason="rtpengine not installed (Debian rtpengine-daemon: scripts/bootstrap; "
                    "scripts/bench/rtp_relay.py --rtpengine installs it)")
def test_real_rtpengine_offer_answer_relay_delete(tmp_path):
    ng_port = free_port()
    low = free_block(100)
    log = (tmp_path / "rtpengine.log").open("wb")
    proc = subprocess.Popen(
        [RTPENGINE, "--table=-1", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{ng_port}",
         f"--port-min={low}", f"--port-max={low + 99}", "--foreground", "--log-stderr",
         "-L", "5", "--num-threads=1", f"--pidfile={tmp_path / 'rtpengine.pid'}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        with ng.NgClient(("127.0.0.1", ng_port), timeout=0.5, retransmit=0.1) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert client.ping() == {"result": "pong"}
                    break
                except (NgError, TimeoutError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            client.timeout = 3
            offered = client.offer("call-1", "tag-a", _sdp(a.getsockname()[1]))
            answered = client.answer("call-1", "tag-a", "tag-b", _sdp(b.getsockname()[1]))
            to_b, to_a = _media_port(offered["sdp"]), _media_port(answered["sdp"])
            assert low <= to_a <= low + 99 and low <= to_b <= low + 99 and to_a != to_b
            assert "telephone-event/8000" in offered["sdp"]

            # a -> rtpengine (the port in the answer) -> b, and back
            a.settimeout(2)
            b.settimeout(2)
            packet = bytes([0x80, 0, 0, 1]) + bytes(8) + bytes(160)
            a.sendto(packet, ("127.0.0.1", to_a))
            assert b.recvfrom(2048)[0] == packet
            b.sendto(packet, ("127.0.0.1", to_b))
            assert a.recvfrom(2048)[0] == packet

            totals = client.query("call-1")["totals"]["RTP"]
            assert totals["packets"] >= 2
            deleted = client.delete("call-1", "tag-a", extra={"delete-delay": 0})
            assert deleted["totals"]["RTP"]["packets"] >= 2
            with pytest.raises(NgError):
                client.query("call-1")
    finally:
        a.close()
        b.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
