"""The RTP bridge over real UDP sockets on 127.0.0.1: relay, latching, swap with
stream continuity, transcoding, DTMF, RTCP; players and TTS."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest
from peers.udp import TIMEOUT, UdpPeer

from voicegw.media import dtmf, g711, tones
from voicegw.media.endpoint import MediaEndpoint, open_endpoint
from voicegw.media.player import ArraySource, Player, play_samples, ringback_player
from voicegw.media.ports import PortPool
from voicegw.media.relay import Bridge
from voicegw.media.rtp import RTCP_RR, RtcpPacket, RtpPacket, build_rtp
from voicegw.media.tts import EspeakTts, TtsError

HOST = "127.0.0.1"


@pytest.fixture
def pool() -> PortPool:
    return PortPool(41000, 41999)


def frames(ssrc: int, seq0: int, ts0: int, n: int, pt: int = 0, tag: int = 0) -> list[bytes]:
    # Payload i is 160 octets of (tag + i) % 256: order and content are checkable.
    return [build_rtp(pt, seq0 + i, ts0 + 160 * i, ssrc, bytes([(tag + i) % 256]) * 160)
            for i in range(n)]


async def legs(pool: PortPool, **options) -> tuple[MediaEndpoint, MediaEndpoint, UdpPeer, UdpPeer]:
    a = await open_endpoint(HOST, pool, **options)
    b = await open_endpoint(HOST, pool, **options)
    caller, bot = await UdpPeer.open(), await UdpPeer.open()
    a.set_remote(*caller.addr)
    b.set_remote(*bot.addr)
    return a, b, caller, bot


async def test_relay_both_ways_in_order(pool: PortPool) -> None:
    a, b, caller, bot = await legs(pool)
    bridge = Bridge(a, b)
    assert a.port % 2 == 0 and b.port % 2 == 0
    sent = frames(0x1111, 100, 1000, 50)
    for f in sent:
        caller.send(f, a.port)
    got = [await bot.recv() for _ in range(50)]
    assert got == sent  # untouched, every one, in order
    back = frames(0x2222, 7, 0, 50, tag=99)
    for f in back:
        bot.send(f, b.port)
    assert [await caller.recv() for _ in range(50)] == back
    st = bridge.statistics()
    assert (st.a_to_b.packets_in, st.a_to_b.packets_out, st.a_to_b.dropped) == (50, 50, 0)
    assert st.b_to_a.octets_out == 50 * 172 and not st.transcoding
    bridge.close()
    a.close(), b.close()
    assert len(pool) == pool.statistics().size


async def test_latching_overrides_sdp_address_and_drops_strangers(pool: PortPool) -> None:
    a, b, caller, bot = await legs(pool)
    a.set_remote(HOST, 9)  # the SDP says discard port; the real caller is elsewhere (NAT)
    bridge = Bridge(a, b)
    bot.send(frames(5, 0, 0, 1)[0], b.port)
    assert await caller.nothing(0.05)  # nowhere to send before the caller has spoken
    caller.send(frames(1, 0, 0, 1)[0], a.port)
    await bot.recv()
    assert a.remote_rtp == caller.addr and a.latched
    for f in frames(5, 1, 160, 3):
        bot.send(f, b.port)
    assert len(await caller.recv_n(3)) == 3
    stranger = await UdpPeer.open()
    stranger.send(frames(666, 0, 0, 1)[0], a.port)
    assert await bot.nothing(0.05)
    assert bridge.statistics().a_to_b.dropped == 1
    # Without latching, the SDP address is used as is.
    c = await open_endpoint(HOST, pool, latch=False)
    c.set_remote(*caller.addr)
    assert c.latched and c.remote_rtp == caller.addr
    for ep in (a, b, c):
        ep.close()


async def test_swap_keeps_ssrc_sequence_and_timestamp_continuous(pool: PortPool) -> None:
    a, b, caller, bot = await legs(pool)
    bridge = Bridge(a, b)
    caller.send(frames(1, 0, 0, 1)[0], a.port)  # latch the caller
    await bot.recv()
    for f in frames(0xB0B, 500, 80000, 20):
        bot.send(f, b.port)
    first = await caller.recv_n(20)
    assert first[-1].ssrc == 0xB0B
    # Bot -> ringback while the agent's phone rings -> agent.
    ring = ringback_player(a)
    during = await caller.recv_n(5)
    c = await open_endpoint(HOST, pool)
    agent = await UdpPeer.open()
    c.set_remote(*agent.addr)
    old = bridge.replace_b(c)
    assert old is b and not ring.running  # the agent's audio replaced the ringback
    for f in frames(0xA6E, 9, 123456, 20, tag=7):
        agent.send(f, c.port)
    # On a loaded machine the ringback gets a frame or two more out before the swap:
    # they belong to `during`; the agent's audio starts with its first frame.
    head = await caller.until(bytes([7]) * 160, limit=50)
    during += head[:-1]
    after = head[-1:] + await caller.recv_n(19)
    stream = first + during + after
    assert {p.ssrc for p in stream} == {0xB0B}
    seqs = [p.sequence for p in stream]
    assert seqs == [(500 + i) & 0xFFFF for i in range(len(stream))]
    steps = np.diff([p.timestamp for p in stream])
    assert all(s >= 160 and s % 160 == 0 for s in steps)
    assert during[0].marker and after[0].marker and not after[1].marker
    assert after[3].payload == bytes([10]) * 160  # the agent's audio, untouched
    # The caller's audio reaches the agent, and the old bot gets nothing any more.
    caller.send(frames(1, 1, 160, 1)[0], a.port)
    assert (await agent.recv_n(1))[0].sequence == 1
    assert await bot.nothing(0.05)
    assert bridge.statistics().swaps == 1
    for ep in (a, b, c):
        ep.close()


async def test_prompt_pauses_relayed_audio_then_bridge_resumes(pool: PortPool) -> None:
    a, b, caller, bot = await legs(pool)
    bridge = Bridge(a, b)
    caller.send(frames(1, 0, 0, 1)[0], a.port)
    await bot.recv()
    bot.send(frames(0xB0B, 10, 0, 1)[0], b.port)
    assert (await caller.recv_n(1))[0].sequence == 10
    player = play_samples(a, tones.generate(tones.BEEP, 0.06))  # 3 packets
    bot.send(frames(0xB0B, 11, 160, 1)[0], b.port)  # arrives while the beep plays
    beep = await caller.recv_n(3)
    await asyncio.wait_for(player.wait(), TIMEOUT)
    bot.send(frames(0xB0B, 12, 320, 1)[0], b.port)
    resumed = (await caller.recv_n(1))[0]
    assert [p.sequence for p in beep + [resumed]] == [11, 12, 13, 14]
    assert {p.ssrc for p in beep + [resumed]} == {0xB0B}
    assert bridge.statistics().b_to_a.dropped == 1  # the packet the beep covered
    a.close(), b.close()


async def test_transcoding_pcmu_to_pcma_and_back(pool: PortPool) -> None:
    a = await open_endpoint(HOST, pool, payload_type=g711.PCMU)
    b = await open_endpoint(HOST, pool, payload_type=g711.PCMA, dtmf_payload_type=96)
    caller, bot = await UdpPeer.open(), await UdpPeer.open()
    a.set_remote(*caller.addr)
    b.set_remote(*bot.addr)
    bridge = Bridge(a, b)
    tone = g711.ulaw_encode(tones.generate(tones.BEEP, 0.02))
    caller.send(build_rtp(0, 1, 160, 42, tone), a.port)
    got = (await bot.recv_n(1))[0]
    assert got.payload_type == g711.PCMA and got.payload == g711.ulaw_to_alaw(tone)
    assert got.ssrc == 42 and got.sequence == 1
    bot.send(build_rtp(8, 9, 0, 43, got.payload), b.port)
    back = (await caller.recv_n(1))[0]
    assert back.payload_type == g711.PCMU and back.payload == g711.alaw_to_ulaw(got.payload)
    # telephone-event is renumbered 101 -> 96 (each side picked its dynamic PT).
    caller.send(build_rtp(101, 2, 320, 42, dtmf_payload("5", end=False)), a.port)
    assert (await bot.recv_n(1))[0].payload_type == 96
    assert bridge.statistics().transcoding
    a.close(), b.close()


def dtmf_payload(digit: str, end: bool) -> bytes:
    return bytes(dtmf.TelephoneEvent(dtmf.EVENT_CODES[digit], end=end, duration=800))


async def test_dtmf_detected_once_per_press_while_relayed(pool: PortPool) -> None:
    a, b, caller, bot = await legs(pool)
    digits: list[str] = []
    a.on_dtmf = digits.append
    bridge = Bridge(a, b)
    seq = 0
    for n, digit in enumerate("0#"):
        for payload, marker in dtmf.event_payloads(digit, duration=480):
            caller.send(build_rtp(101, seq, 8000 * n, 7, payload, marker), a.port)
            seq += 1
    await bot.recv_n(seq)  # forwarded too: the bot may act on them
    assert digits == ["0", "#"]
    # Unbridged, the endpoint still detects.
    bridge.close()
    for payload, marker in dtmf.event_payloads("9"):
        caller.send(build_rtp(101, seq, 99999, 7, payload, marker), a.port)
        seq += 1
    for _ in range(100):
        if len(digits) == 3:
            break
        await asyncio.sleep(0.005)
    assert digits == ["0", "#", "9"]
    a.close(), b.close()


async def test_rtcp_relayed_on_odd_ports(pool: PortPool) -> None:
    a, b, caller, bot = await legs(pool)
    caller_rtcp, bot_rtcp = await UdpPeer.open(), await UdpPeer.open()
    a.set_remote(caller.addr[0], caller.addr[1], rtcp_port=caller_rtcp.addr[1])
    b.set_remote(bot.addr[0], bot.addr[1], rtcp_port=bot_rtcp.addr[1])
    bridge = Bridge(a, b)
    rr = bytes(RtcpPacket(RTCP_RR, 0, 0x1111, b""))
    caller_rtcp.send(rr, a.port + 1)
    assert await bot_rtcp.recv() == rr
    bot_rtcp.send(rr, b.port + 1)
    assert await caller_rtcp.recv() == rr
    assert bridge.statistics().rtcp_a_to_b.packets_out == 1
    a.close(), b.close()


async def test_player_paces_20ms_packets_with_the_tone(pool: PortPool) -> None:
    ep = await open_endpoint(HOST, pool, payload_type=g711.PCMA)
    rx = await UdpPeer.open()
    ep.set_remote(*rx.addr)
    loop = asyncio.get_running_loop()
    samples = tones.generate(tones.ToneSpec((1000.0,), level_dbm0=-10), 0.5)  # 25 frames
    t0 = loop.time()
    player = play_samples(ep, samples)
    arrivals, packets = [], []
    for _ in range(25):
        packets.append(RtpPacket.parse(await rx.recv()))
        arrivals.append(loop.time() - t0)
    await asyncio.wait_for(player.wait(), TIMEOUT)
    assert await rx.nothing(0.03)
    assert {p.payload_type for p in packets} == {g711.PCMA}
    assert all(len(p.payload) == 160 for p in packets) and packets[0].marker
    assert np.all(np.diff([p.sequence for p in packets]) % 65536 == 1)
    # 160 per packet, plus 160 per frame the player skipped had the loop run it over
    # 60 ms late (a loaded machine; its last, empty tick may skip too; the skips are
    # tested exactly on a virtual clock)
    steps = np.diff([p.timestamp for p in packets]) % 2**32
    assert np.all(steps % 160 == 0) and 160 * 24 <= steps.sum() <= 160 * (24 + player.late_skips)
    # Paced, not a burst: the last of 25 packets cannot come before 24 x 20 ms. (That
    # lateness does not accumulate is test_player_schedule_is_drift_free's, on a
    # virtual clock: an upper bound on wall time would fail on a loaded machine.)
    assert arrivals[-1] > 0.46
    audio = np.concatenate([g711.alaw_decode(p.payload) for p in packets])
    assert tones.goertzel_power(audio, 1000) > 100 * tones.goertzel_power(audio, 600)
    ep.close()


class VirtualLoop:
    """The part of the event loop a Player schedules on (time, call_at), with a clock
    the test moves: each callback runs when the test says, as late as it says."""

    def __init__(self) -> None:
        self.now = 100.0
        self.due: list[tuple[float, object]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback) -> asyncio.TimerHandle:
        self.due.append((when, callback))
        return asyncio.TimerHandle(when, callback, (), asyncio.get_running_loop())

    def run_next(self, late: float) -> float:
        when, callback = self.due.pop(0)
        self.now = when + late
        callback()
        return when


async def test_player_schedule_is_drift_free(pool: PortPool) -> None:
    # Packet k is due at start + k x 20 ms whatever the lateness of the ones before
    # (RFC 3550 5.1: the timestamp advances 160 per packet); past 60 ms late the
    # player skips what it missed instead of bursting it.
    ep = await open_endpoint(HOST, pool)
    rx = await UdpPeer.open()
    ep.set_remote(*rx.addr)
    clock = VirtualLoop()
    player = Player(ep, ArraySource(np.zeros(160 * 40, np.int16)))
    player._loop = clock  # type: ignore[assignment]
    player.start()
    lateness = [0.019, 0.0, 0.015, 0.002, 0.018] * 4  # always under 20 ms, never caught up
    due = [clock.run_next(late) for late in lateness]
    assert due == pytest.approx([100.0 + 0.02 * k for k in range(1, 21)])
    assert player.packets_sent == 21 and player.late_skips == 0
    clock.run_next(0.11)  # 110 ms late: the 5 frames it missed are skipped, not sent
    assert player.late_skips == 5 and player.packets_sent == 22
    assert clock.due[0][0] == pytest.approx(100.0 + 0.02 * 27)
    packets = await rx.recv_n(22)
    assert np.diff([p.timestamp for p in packets])[-1] % 2**32 == 160 * 6
    player.stop()
    ep.close()


async def test_player_loop_and_stop(pool: PortPool) -> None:
    ep = await open_endpoint(HOST, pool)
    rx = await UdpPeer.open()
    ep.set_remote(*rx.addr)
    player = Player(ep, ArraySource(np.arange(200, dtype=np.int16), loop=True)).start()
    got = await rx.recv_n(4)  # 4 x 160 samples from a 200-sample loop
    player.stop()
    await asyncio.wait_for(player.wait(), TIMEOUT)
    assert not player.running and len(got) == 4
    assert await rx.nothing(0.05)
    ep.close()


async def test_tts_renders_speech(tmp_path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/bootstrap installs it)")
    tts = EspeakTts(tmp_path / "tts")
    samples = await tts.render("Please hold while I transfer your call.")
    assert samples.dtype == np.int16 and 1.0 < len(samples) / 8000 < 6.0
    x = samples.astype(np.float64)
    assert np.sqrt(np.mean(x ** 2)) > 300  # speech energy, not silence
    speech_band = sum(tones.goertzel_power(x, f) for f in range(200, 3400, 100))
    assert speech_band > 0
    path = tts.cache_path("Please hold while I transfer your call.")
    assert path.exists()
    again = await tts.render("Please hold while I transfer your call.")
    assert np.array_equal(again, samples)


async def test_tts_missing_command_is_a_clear_error(tmp_path) -> None:
    tts = EspeakTts(tmp_path, command="espeak-ng-not-installed")
    with pytest.raises(TtsError, match="not found"):
        await tts.render("hello")


def test_relay_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test_relay_both_ways_in_order(PortPool(41000, 41999)))
        runner.run(test_swap_keeps_ssrc_sequence_and_timestamp_continuous(
            PortPool(41000, 41999)))
