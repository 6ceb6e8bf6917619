"""The desk leg's short cut through aiortc's receiver (issue 15: the cost of a desk leg).

aiortc hands every complete frame its receiver's jitter buffer releases to a decoder
*thread* through a ``queue.Queue``, and each decoded frame back to the event loop with
``run_coroutine_threadsafe`` (a coroutine, a concurrent future and a wake-up of the
loop through its self-pipe): two thread hops per 20 ms per leg, for a G.711 frame whose
"decoding" the desk would undo at once (it sends PCMU to the call). Profiled on the
desk bench, that path was the largest share of a PCMU leg's CPU.

:func:`tap` puts an :class:`InlineFrames` in the place of the receiver's decoder queue
before the receiver starts: each complete frame (its codec and payload, after aiortc's
SRTP, RTP parsing and jitter buffer) goes to ``sink`` on the loop thread, and the
decoder thread aiortc still starts waits idle on it until the receiver stops (then it
gets ``None``, as from aiortc's own queue, and ends the remote track as before).

This reaches one private attribute, ``RTCRtpReceiver.__decoder_queue`` (aiortc 1.x; a
unit test in tests/desk/ fails if a new aiortc drops it): :func:`tap` returns False
when the attribute is not there or the receiver has started, and the leg keeps
aiortc's own path (the remote track's decoded frames).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("voicegw.desk")
_QUEUE = "_RTCRtpReceiver__decoder_queue"
_THREAD = "_RTCRtpReceiver__decoder_thread"

Sink = Callable[[Any, Any], None]
"""``sink(codec, frame)``: aiortc's RTCRtpCodecParameters and JitterFrame (``.data``)."""


class InlineFrames:
    """Stands in for the decoder thread's ``queue.Queue``: ``put`` runs on the loop."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._stopped = threading.Event()
        self.frames = self.failures = 0

    def put(self, task: tuple[Any, Any] | None) -> None:
        if task is None:  # the receiver stops: release the idle decoder thread
            self._stopped.set()
            return
        self.frames += 1
        try:
            self._sink(*task)
        except Exception as error:  # noqa: BLE001 - one bad frame must not stop aiortc's receiver
            self.failures += 1
            if self.failures == 1:
                log.warning("desk.frame_failed", error=repr(error))

    def get(self) -> None:
        """The decoder thread's only call: block until the receiver stops."""
        self._stopped.wait()


def tap(receiver: Any, sink: Sink) -> InlineFrames | None:
    """Send ``receiver``'s complete frames to ``sink`` on the loop thread; None when
    this aiortc has no such queue or the receiver already started (aiortc's path stays)."""
    if not isinstance(getattr(receiver, _QUEUE, None), queue.Queue) or getattr(receiver, _THREAD, 1) is not None:
        log.warning("desk.fastpath_unavailable", receiver=type(receiver).__name__)
        return None
    inline = InlineFrames(sink)
    setattr(receiver, _QUEUE, inline)
    return inline


__all__ = ["InlineFrames", "Sink", "tap"]
