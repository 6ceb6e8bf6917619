"""Decoded prompts kept in memory, shared by every call that plays them.

A prompt file (a TTS render in the cache directory, a flow's WAV) used to be read,
resampled and converted on every play: a few milliseconds of numpy on the loop and a
fresh array of some 60 KB per call, kept as long as the call was (the API keeps the
last 500). Decoded once here, it is one read-only array that every player reads.

The cache is keyed by the file's path, size and modification time (a file replaced on
disk is decoded again) and bounded by the bytes it holds, least recently used first
out. Nothing here is specific to the loop: ``load`` is a plain blocking call.
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np

from voicegw.media.wav import load_wav

_Key = tuple[str, int, int]


class PromptCache:
    def __init__(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[_Key, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def load(self, path: str | Path) -> np.ndarray:
        """The file's samples (mono int16, 8 kHz), read-only; ``WavError`` as
        :func:`~voicegw.media.wav.load_wav` raises it, OSError when it is missing."""
        stat = os.stat(path)
        key = (os.fspath(path), stat.st_mtime_ns, stat.st_size)
        samples = self._entries.get(key)
        if samples is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return samples
        self.misses += 1
        samples = load_wav(path)
        samples.setflags(write=False)  # shared: no player may change it for the others
        self._entries[key] = samples
        self._bytes += samples.nbytes
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.nbytes
        return samples

    def statistics(self) -> dict[str, int]:
        return {"prompts": len(self._entries), "bytes": self._bytes,
                "hits": self.hits, "misses": self.misses}


PROMPTS = PromptCache()
"""The daemon's cache (one per process: prompts are the same files for every call)."""


def load_prompt(path: str | Path) -> np.ndarray:
    """A prompt file's samples through the process-wide cache."""
    return PROMPTS.load(path)


_FOLLOWED: OrderedDict[tuple[int, int], tuple[weakref.ref[np.ndarray], np.ndarray]] = OrderedDict()
_FOLLOWED_MAX = 16


def followed_by_silence(samples: np.ndarray, seconds: float) -> np.ndarray:
    """``samples`` then ``seconds`` of silence, read-only. For a shared prompt (read-only,
    from this cache) one array for every call: warm transfer's TTS hold (its notice then
    20 s of silence, looped) was made again for each call on hold, 360 KB apiece, and a
    writable array is encoded 20 ms at a time (media/player.py)."""
    key = (id(samples), round(seconds * 8000))
    found = _FOLLOWED.get(key)
    if found is not None and found[0]() is samples:  # not another array at a reused id
        _FOLLOWED.move_to_end(key)
        return found[1]
    followed = np.concatenate([samples, np.zeros(key[1], dtype=np.int16)])
    followed.setflags(write=False)
    if not samples.flags.writeable:  # a writable one may change: made each time
        _FOLLOWED[key] = (weakref.ref(samples), followed)
        while len(_FOLLOWED) > _FOLLOWED_MAX:
            _FOLLOWED.popitem(last=False)
    return followed
