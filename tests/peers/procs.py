"""Stopping a process a test (or scripts/demo.py) started: by its own PID, never by name."""

from __future__ import annotations

import signal
import subprocess


def stop(proc: subprocess.Popen | None, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """``sig`` (the program's orderly stop: SIGTERM, or SIGINT where that is its quit),
    then SIGKILL when it has not exited after ``timeout`` seconds; reaped either way.
    Nothing when it never started or has exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
