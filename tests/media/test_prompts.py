"""The decoded-prompt cache (media/prompts.py): one shared read-only array per file,
decoded again when the file changes, bounded by bytes; a shared prompt followed by
silence (warm transfer's TTS hold) is one read-only array too."""

from __future__ import annotations

import os

import numpy as np
import pytest

from voicegw.media import tones
from voicegw.media.prompts import PromptCache, followed_by_silence
from voicegw.media.wav import write_wav


def tone(n: int, value: int) -> np.ndarray:
    return np.full(n, value, dtype=np.int16)


def test_a_prompt_is_decoded_once_and_shared_read_only(tmp_path):
    path = tmp_path / "greeting.wav"
    write_wav(path, tone(800, 1000))
    cache = PromptCache()
    first, second = cache.load(path), cache.load(path)
    assert first is second
    assert (first == 1000).all() and len(first) == 800
    with pytest.raises(ValueError):
        first[0] = 0  # shared by every call that plays it
    assert cache.statistics() == {"prompts": 1, "bytes": 1600, "hits": 1, "misses": 1}


def test_a_replaced_file_is_decoded_again(tmp_path):
    path = tmp_path / "menu.wav"
    write_wav(path, tone(800, 1000))
    cache = PromptCache()
    old = cache.load(path)
    write_wav(path, tone(1600, -2000))
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    new = cache.load(path)
    assert new is not old and len(new) == 1600 and (new == -2000).all()


def test_the_cache_keeps_at_most_its_bytes_oldest_out_first(tmp_path):
    cache = PromptCache(max_bytes=4000)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"p{i}.wav")
        write_wav(paths[-1], tone(800, i))  # 1600 bytes each
    for path in paths:
        cache.load(path)
    assert cache.statistics()["prompts"] == 2 and cache.statistics()["bytes"] == 3200
    cache.load(paths[2])
    assert cache.statistics()["hits"] == 1
    cache.load(paths[0])  # evicted: decoded again
    assert cache.statistics()["misses"] == 4


def test_a_missing_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        PromptCache().load(tmp_path / "nope.wav")


def test_a_shared_prompt_followed_by_silence_is_one_read_only_array(tmp_path):
    path = tmp_path / "notice.wav"
    write_wav(path, tones.generate(tones.BEEP, 0.5))
    notice = PromptCache().load(path)
    held = followed_by_silence(notice, 2.0)
    assert followed_by_silence(notice, 2.0) is held  # the next call on hold shares it
    assert not held.flags.writeable
    assert np.array_equal(held, np.concatenate([notice, np.zeros(16000, np.int16)]))
    writable = np.ones(80, np.int16)  # may change between calls: made each time
    assert followed_by_silence(writable, 1.0) is not followed_by_silence(writable, 1.0)
