"""Tones, WAV loading and resampling, DTMF payloads and detection, the port pool."""

from __future__ import annotations

import numpy as np
import pytest

from voicegw.media import dtmf, tones, wav
from voicegw.media.ports import PortPool, PortPoolExhausted


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


def test_tone_frequencies_detected_by_goertzel() -> None:
    x = tones.generate(tones.RINGBACK_US, 1.0)
    assert x.dtype == np.int16 and len(x) == 8000
    p440 = tones.goertzel_power(x, 440)
    p480 = tones.goertzel_power(x, 480)
    p1000 = tones.goertzel_power(x, 1000)
    assert p440 > 100 * p1000 and p480 > 100 * p1000


def test_ringback_cadence_on_then_off() -> None:
    x = tones.generate(tones.RINGBACK_US, 6.0).astype(np.float64)
    on, off = x[: 2 * 8000], x[2 * 8000:]
    assert np.sqrt(np.mean(on ** 2)) > 1000
    assert not off.any()


def test_tone_generator_slices_are_seamless() -> None:
    gen = tones.ToneGenerator(tones.RINGBACK_EU)
    sliced = np.concatenate([gen.read(160) for _ in range(50)])
    assert np.array_equal(sliced, tones.generate(tones.RINGBACK_EU, 1.0))
    assert abs(peak_frequency(sliced, 8000) - 425) <= 2


def test_resample_16k_to_8k_keeps_frequency(tmp_path) -> None:
    t = np.arange(16000) / 16000
    x = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    y = wav.resample(x, 16000, 8000)
    assert len(y) == 8000
    assert abs(peak_frequency(y, 8000) - 1000) <= 2
    assert tones.goertzel_power(y, 1000) > 1000 * tones.goertzel_power(y, 3000)


def test_resample_removes_what_would_alias() -> None:
    # 6 kHz at 16 kHz would fold to 2 kHz at 8 kHz without the low-pass filter.
    t = np.arange(16000) / 16000
    x = 8000 * np.sin(2 * np.pi * 6000 * t)
    y = wav.resample(x, 16000, 8000)
    assert np.sqrt(np.mean(y[100:-100] ** 2)) < 8000 * 0.01


@pytest.mark.parametrize("rate,channels,width", [(16000, 1, 2), (44100, 2, 2),
                                                 (8000, 1, 1), (22050, 2, 1)])
def test_load_wav_downmix_resample(tmp_path, rate: int, channels: int, width: int) -> None:
    import wave
    t = np.arange(rate) / rate
    mono = np.sin(2 * np.pi * 600 * t)
    if width == 2:
        frames = (mono * 10000).astype("<i2")
    else:
        frames = (mono * 100 + 128).astype(np.uint8)
    data = np.repeat(frames, channels) if channels > 1 else frames
    path = tmp_path / "p.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    x = wav.load_wav(path)
    assert x.dtype == np.int16 and abs(len(x) - 8000) <= 1
    assert abs(peak_frequency(x, 8000) - 600) <= 2


def test_load_wav_errors(tmp_path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    with pytest.raises(wav.WavError):
        wav.load_wav(bad)
    with pytest.raises(wav.WavError):
        wav.load_wav(tmp_path / "missing.wav")


def test_telephone_event_round_trip() -> None:
    ev = dtmf.TelephoneEvent(11, end=True, volume=10, duration=1600)
    raw = bytes(ev)
    assert raw == b"\x0b\x8a\x06\x40"
    assert dtmf.TelephoneEvent.parse(raw) == ev and ev.digit == "#"
    with pytest.raises(dtmf.DtmfError):
        dtmf.TelephoneEvent.parse(b"\x01")


def test_event_payloads_shape() -> None:
    pkts = dtmf.event_payloads("5", duration=800)
    assert pkts[0][1] is True and not any(m for _, m in pkts[1:])
    events = [dtmf.TelephoneEvent.parse(p) for p, _ in pkts]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]


def test_detector_one_digit_per_press_with_retransmitted_ends() -> None:
    det = dtmf.DtmfDetector()
    got = ""
    for i, digit in enumerate("1#9*0"):
        ts = 1000 + i * 8000
        for payload, _ in dtmf.event_payloads(digit):
            got += det.feed(ts, payload)
        got += det.feed(ts, dtmf.event_payloads(digit)[-1][0])  # a late duplicate end
    assert got == "1#9*0"
    assert det.flush() == ""


def test_detector_same_digit_twice_and_lost_ends() -> None:
    det = dtmf.DtmfDetector()
    pkts = dtmf.event_payloads("7")
    starts_only = [p for p, _ in pkts if not dtmf.TelephoneEvent.parse(p).end]
    got = "".join(det.feed(100, p) for p, _ in pkts)
    got += "".join(det.feed(2000, p) for p, _ in pkts)  # same digit, new press
    got += "".join(det.feed(4000, p) for p in starts_only)  # every end lost
    assert got == "77"
    got += "".join(det.feed(6000, p) for p, _ in dtmf.event_payloads("8"))
    assert got == "7778"
    assert det.flush() == ""
    det.feed(9000, starts_only[0])
    assert det.flush() == "7"


def test_detector_ignores_non_dtmf_and_garbage() -> None:
    det = dtmf.DtmfDetector()
    assert det.feed(1, bytes(dtmf.TelephoneEvent(16, end=True))) == ""  # flash
    assert det.feed(2, b"\x00") == ""


def test_port_pool_allocate_release_exhaust() -> None:
    pool = PortPool(40001, 40009)  # odd start rounds up: 40002, 40004, 40006, 40008
    got = [pool.allocate() for _ in range(4)]
    assert got == [40002, 40004, 40006, 40008]
    with pytest.raises(PortPoolExhausted):
        pool.allocate()
    pool.release(40004)
    pool.release(40002)
    assert pool.allocate() == 40004  # least recently released first
    with pytest.raises(ValueError):
        pool.release(40002)
    st = pool.statistics()
    assert (st.size, st.in_use, st.allocations, st.exhaustions) == (4, 3, 5, 1)
    with pytest.raises(ValueError):
        PortPool(40000, 40001 - 1)
