"""WAV prompts to 8 kHz mono int16, with the stdlib ``wave`` module and numpy.

Pure apart from reading the file it is given: no asyncio, no clock. Resampling is a
windowed-sinc low-pass FIR (when the rate goes down, to stop aliasing) followed by
linear interpolation at the new sample instants: not a polyphase filter bank, but for
speech and hold music towards an 8 kHz G.711 channel it is inaudibly different and
needs no scipy.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

TARGET_RATE = 8000
_TAPS = 63  # odd, so the filter has a centre tap and zero group-delay offset


class WavError(Exception):
    """A prompt file cannot be used (not a WAV, unsupported sample width...)."""


def _to_float_mono(raw: bytes, width: int, channels: int) -> np.ndarray:
    if width == 1:
        # 8-bit WAV is unsigned, centred on 128.
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0
    else:
        raise WavError(f"unsupported sample width: {8 * width} bits")
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1)
    return x


def lowpass_taps(cutoff: float, rate: float, taps: int = _TAPS) -> np.ndarray:
    """Windowed-sinc (Blackman) low-pass FIR with unit DC gain."""
    fc = cutoff / rate
    m = np.arange(taps) - (taps - 1) / 2
    h = 2 * fc * np.sinc(2 * fc * m) * np.blackman(taps)
    return h / h.sum()


def resample(samples: np.ndarray, src_rate: int, dst_rate: int = TARGET_RATE) -> np.ndarray:
    """Resample (float or int) samples to ``dst_rate``; returns float64."""
    x = np.asarray(samples, dtype=np.float64)
    if src_rate == dst_rate or len(x) == 0:
        return x
    if dst_rate < src_rate:
        # Cut at 90% of the new Nyquist frequency so the filter's transition band
        # ends before aliasing starts.
        x = np.convolve(x, lowpass_taps(0.45 * dst_rate, src_rate), mode="same")
    n_out = math.floor(len(x) * dst_rate / src_rate)
    pos = np.arange(n_out) * (src_rate / dst_rate)
    return np.interp(pos, np.arange(len(x)), x)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def load_wav(path: str | Path, rate: int = TARGET_RATE) -> np.ndarray:
    """Read a PCM WAV file (8/16/32-bit, any rate, any channel count) as mono int16
    at ``rate`` (8 kHz by default)."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, src_rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise WavError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise WavError(f"{path}: {exc.strerror or exc}") from exc
    return to_int16(resample(_to_float_mono(raw, width, channels), src_rate, rate))


def write_wav(path: str | Path, samples: np.ndarray, rate: int = TARGET_RATE) -> None:
    """Write mono int16 samples as a 16-bit PCM WAV (tests, debugging, caches)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
