"""Call-progress tones as int16 samples at 8 kHz: ringback, hold beeps, single beeps.

Pure and stateless per call: a sample's value depends only on its absolute index, so a
generator can be read in 20 ms slices forever without phase jumps between slices.
Goertzel's algorithm is here too, as the single-frequency detector tests (and a future
in-band DTMF detector) need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 8000
# 0 dBm0 is a sine of peak 22787 in 16-bit linear PCM: G.711's digital milliwatt
# (G.711 table 5/6) sits at +3.14 dBm0 below full scale (32767).
_DBM0_PEAK = 32767 / 10 ** (3.14 / 20)


def dbm0_to_peak(level_dbm0: float) -> float:
    return _DBM0_PEAK * 10 ** (level_dbm0 / 20)


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A tone: summed sine frequencies, a level per frequency, and a cadence."""

    frequencies: tuple[float, ...]
    cadence: tuple[float, ...] = ()
    """Alternating on/off durations in seconds, repeating; empty means continuous."""
    level_dbm0: float = -19.0
    """Per-frequency level; -19 dBm0 is the North American ringback level (T1.401)."""


# North America: 440 + 480 Hz, 2 s on, 4 s off (ANSI T1.401, "audible ringing").
RINGBACK_US = ToneSpec((440.0, 480.0), (2.0, 4.0))
# Europe (ITU-T E.180 recommended value, CEPT): 425 Hz, 1 s on, 4 s off.
RINGBACK_EU = ToneSpec((425.0,), (1.0, 4.0), level_dbm0=-13.0)
# UK: 400 + 450 Hz, 0.4 on 0.2 off 0.4 on 2.0 off.
RINGBACK_UK = ToneSpec((400.0, 450.0), (0.4, 0.2, 0.4, 2.0))
# A short beep every 10 s, the usual "you are still on hold" reminder.
HOLD_BEEP = ToneSpec((440.0,), (0.25, 9.75), level_dbm0=-16.0)
# One beep, e.g. before a recording or a collect prompt; take 0.2 s of it.
BEEP = ToneSpec((1000.0,), (), level_dbm0=-13.0)


def tone_samples(spec: ToneSpec, n: int, start: int = 0,
                 rate: int = SAMPLE_RATE) -> np.ndarray:
    """Samples ``start`` to ``start + n`` of the tone, as int16."""
    idx = np.arange(start, start + n, dtype=np.float64)
    t = idx / rate
    peak = dbm0_to_peak(spec.level_dbm0)
    out = np.zeros(n, dtype=np.float64)
    for f in spec.frequencies:
        out += peak * np.sin(2.0 * math.pi * f * t)
    if spec.cadence:
        period = sum(spec.cadence)
        pos = np.mod(t, period)
        on = np.zeros(n, dtype=bool)
        edge = 0.0
        for i, seg in enumerate(spec.cadence):
            if i % 2 == 0:
                on |= (pos >= edge) & (pos < edge + seg)
            edge += seg
        out *= on
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


class ToneGenerator:
    """Reads a tone in consecutive slices (e.g. 160 samples per 20 ms packet)."""

    def __init__(self, spec: ToneSpec, rate: int = SAMPLE_RATE) -> None:
        self.spec = spec
        self.rate = rate
        self.position = 0

    def read(self, n: int) -> np.ndarray:
        out = tone_samples(self.spec, n, self.position, self.rate)
        self.position += n
        return out


def generate(spec: ToneSpec, seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """``seconds`` of the tone from its start, as int16 (e.g. one ringback period)."""
    return tone_samples(spec, round(seconds * rate), 0, rate)


def goertzel_power(samples: np.ndarray, freq: float, rate: int = SAMPLE_RATE) -> float:
    """Power of ``samples`` at ``freq`` (Goertzel), normalised so that a full-scale
    sine at exactly that frequency gives about 0.25 whatever the length."""
    x = np.asarray(samples, dtype=np.float64) / 32768.0
    n = len(x)
    if n == 0:
        return 0.0
    # Evaluating the DFT at one (not necessarily integer) bin is the same number as
    # Goertzel's recursion, and numpy does it without a Python loop per sample.
    w = 2.0 * math.pi * freq / rate
    phasor = np.exp(-1j * w * np.arange(n))
    return float(abs(np.dot(x, phasor)) ** 2) / (n * n)
