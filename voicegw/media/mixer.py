"""A listening tap: both directions of a bridge, mixed into one stream for a third leg.

When the bot stays on a transferred call to transcribe it, it must hear the caller
and the agent as one ordinary audio stream, and say nothing. The bridge feeds each
direction's decoded audio here; a :class:`~voicegw.media.player.Player` on the bot's
leg pulls one mixed 20 ms frame at a time (``read``), so the bot gets a paced,
continuous stream with its own SSRC. Pure: numpy and the G.711 tables.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from . import g711
from .rtp import RTP_HEADER_SIZE

FRAME = 160  # 20 ms at 8 kHz
MAX_QUEUED = 10  # frames per side (200 ms): a side that runs ahead loses its oldest


class TapMixer:
    """Mixes what two sources send; ``feed`` from the relay, ``read`` from a player."""

    def __init__(self) -> None:
        self._queues: dict[int, deque[np.ndarray]] = {}
        self.frames_in = self.frames_out = self.overflow = 0

    def feed(self, source: object, packet: bytes | bytearray) -> None:
        """One plain RTP packet from ``source`` (a media endpoint): its G.711 audio
        is queued; anything else (telephone-event, comfort noise) is skipped."""
        if len(packet) <= RTP_HEADER_SIZE:
            return
        pt = packet[1] & 0x7F
        if pt not in (0, 8):
            return
        offset = RTP_HEADER_SIZE + 4 * (packet[0] & 0x0F)
        samples = g711.decoder_for(pt)(bytes(packet[offset:]))
        queue = self._queues.setdefault(id(source), deque())
        if len(queue) >= MAX_QUEUED:
            queue.popleft()
            self.overflow += 1
        queue.append(samples)
        self.frames_in += 1

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples: every source's oldest frame summed (silence for a
        source with nothing queued), clipped to 16 bits. Never ends."""
        mixed = np.zeros(n, dtype=np.int32)
        for queue in self._queues.values():
            if queue:
                frame = queue.popleft()
                length = min(n, len(frame))
                mixed[:length] += frame[:length]
        self.frames_out += 1
        return np.clip(mixed, -32768, 32767).astype(np.int16)
