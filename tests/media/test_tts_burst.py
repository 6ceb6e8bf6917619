"""EspeakTts under a burst of calls on a fresh cache: one espeak-ng run for many
concurrent renders of one prompt, and every caller gets the speech (not the failure
beep), with no temporary file left behind."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from voicegw.media.tts import EspeakTts


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing: run scripts/bootstrap")
def test_a_burst_of_calls_on_a_fresh_cache_runs_espeak_once(tmp_path: Path) -> None:
    # espeak-ng itself, behind a wrapper that counts its runs
    runs = tmp_path / "runs.txt"
    wrapper = tmp_path / "espeak-counting"
    wrapper.write_text(f'#!/bin/sh\necho run >> "{runs}"\nexec "{shutil.which("espeak-ng")}" "$@"\n')
    wrapper.chmod(0o755)
    tts = EspeakTts(tmp_path / "tts", command=str(wrapper))

    async def burst() -> list[np.ndarray]:
        return await asyncio.gather(*(tts.render("Welcome to the burst test.") for _ in range(20)))

    rendered = asyncio.run(burst())
    assert runs.read_text().splitlines() == ["run"]
    assert all(np.array_equal(r, rendered[0]) for r in rendered)
    x = rendered[0].astype(np.float64)
    assert len(x) > 4000 and np.sqrt(np.mean(x**2)) > 300  # speech, not the failure beep
    assert not list((tmp_path / "tts").glob("*.tmp"))
