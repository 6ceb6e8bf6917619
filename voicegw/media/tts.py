"""Text to speech for prompts, with the ``espeak-ng`` command, cached as WAV files.

espeak-ng is small, offline and packaged by Debian; voicegw runs it as a subprocess
(``espeak-ng -v VOICE -w OUT.wav TEXT``) so a crash or a slow render never touches the
event loop. Renders are cached by a hash of (voice, speed, text): a prompt is rendered
once per node, not once per call.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from voicegw.media.prompts import load_prompt

ESPEAK = "espeak-ng"


class TtsError(Exception):
    """The text could not be rendered (espeak-ng missing, failing or too slow)."""


class EspeakTts:
    """Renders text to 8 kHz int16 samples; ``await tts.render("Hello")``."""

    def __init__(self, cache_dir: str | Path, voice: str = "en-us", speed: int = 160,
                 command: str = ESPEAK, timeout: float = 30.0) -> None:
        self.cache_dir = Path(cache_dir)
        self.voice = voice
        self.speed = speed
        self.command = command
        self.timeout = timeout
        self._rendering: dict[Path, asyncio.Future[None]] = {}

    def cache_path(self, text: str, voice: str | None = None) -> Path:
        key = f"{voice or self.voice}\0{self.speed}\0{text}".encode()
        return self.cache_dir / f"{hashlib.sha256(key).hexdigest()[:32]}.wav"

    async def render(self, text: str, voice: str | None = None) -> np.ndarray:
        path = self.cache_path(text, voice)
        if not path.exists():
            # one render per prompt: a burst of new calls on a fresh cache waits for
            # the first call's espeak-ng instead of starting one each
            rendering = self._rendering.get(path)
            if rendering is None:
                rendering = asyncio.ensure_future(self._run(text, voice or self.voice, path))
                self._rendering[path] = rendering
                rendering.add_done_callback(lambda done, key=path: self._finished(key, done))
            await asyncio.shield(rendering)  # a caller that hangs up leaves the render to the rest
        # decoded once, then shared read-only by every call (media/prompts.py)
        return load_prompt(path)

    def _finished(self, path: Path, done: asyncio.Future[None]) -> None:
        self._rendering.pop(path, None)
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have hung up

    async def _run(self, text: str, voice: str, path: Path) -> None:
        exe = shutil.which(self.command)
        if exe is None:
            raise TtsError(f"{self.command} not found on PATH: install the Debian package "
                           "espeak-ng (scripts/bootstrap does)")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Render to a temporary name and rename: a concurrent reader never sees a
        # half-written WAV, and two calls rendering the same prompt both succeed.
        tmp = path.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
        # "--" ends the options, so a prompt starting with "-" is still text.
        proc = await asyncio.create_subprocess_exec(
            exe, "-v", voice, "-s", str(self.speed), "-w", str(tmp), "--", text,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            tmp.unlink(missing_ok=True)
            raise TtsError(f"{self.command} took more than {self.timeout}s") from None
        if proc.returncode != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            raise TtsError(f"{self.command} failed ({proc.returncode}): "
                           f"{err.decode(errors='replace').strip()[:200]}")
        os.replace(tmp, path)
