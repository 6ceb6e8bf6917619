"""The ACKs the UA core keeps for 2xx responses to INVITEs we sent.

RFC 3261 13.2.2.4: "The UAC core MUST generate an ACK request for each 2xx received
from the transaction layer"; the UAS retransmits its 2xx until that ACK arrives, for up
to 64*T1 (13.3.1.4). The ACK of a 2xx is the TU's, not a transaction's (17.1.1.2), so
without this store whoever sent it (the INVITE session, the engine's call) would have to
stay for 64*T1 after every call only to send it again. The core keeps the bytes it sent
and where, keyed by what a retransmitted 2xx carries (Call-ID, CSeq number, From tag,
To tag: the ACK has the same values, 17.1.1.3), and sends them again for each copy of
that 2xx, until 64*T1 after it.

Sans-I/O: every time is given in. Entries all live the same 64*T1, so insertion order
is expiry order: a deque expires them from its head.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .events import Address
from .message import Request, Response
from .transaction import T1

AckKey = tuple[str, int, str, str]  # (Call-ID, CSeq number, From tag, To tag)

KEEP_FOR = 64 * T1
"""How long a 2xx may be retransmitted after the first (13.3.1.4: Timer L/H)."""


@dataclass(frozen=True, slots=True)
class KeptAck:
    data: bytes
    destination: Address
    expires: float


class AckStore:
    """ACK bytes for each 2xx to INVITE we ACKed, until 64*T1 after it."""

    def __init__(self, keep_for: float = KEEP_FOR) -> None:
        self._keep_for = keep_for
        self._acks: dict[AckKey, KeptAck] = {}
        self._order: deque[tuple[float, AckKey]] = deque()

    def remember(self, ack: Request, data: bytes, destination: Address, now: float) -> None:
        """``ack`` (for a 2xx received at about ``now``) went to ``destination`` as
        ``data``. A second ACK for the same 2xx (the session re-sent it) keeps the
        first expiry: the 2xx's retransmissions end 64*T1 after the 2xx, not the ACK."""
        key = _key(ack.call_id, ack.cseq.seq, ack.from_.tag, ack.to.tag)
        kept = self._acks.get(key)
        expires = kept.expires if kept is not None else now + self._keep_for
        self._acks[key] = KeptAck(data, destination, expires)
        if kept is None:
            self._order.append((expires, key))

    def match(self, response: Response, now: float) -> KeptAck | None:
        """The ACK to send again for ``response``, if it is a copy of a 2xx to an
        INVITE we ACKed less than 64*T1 ago; else None."""
        if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
            return None
        self.expire(now)
        return self._acks.get(_key(response.call_id, response.cseq.seq, response.from_.tag, response.to.tag))

    def expire(self, now: float) -> None:
        order = self._order
        while order and order[0][0] <= now:
            expires, key = order.popleft()
            kept = self._acks.get(key)
            if kept is not None and kept.expires == expires:
                del self._acks[key]

    def next_expiry(self) -> float | None:
        return self._order[0][0] if self._order else None

    def __len__(self) -> int:
        return len(self._acks)


def _key(call_id: str, seq: int, from_tag: str | None, to_tag: str | None) -> AckKey:
    return (call_id, seq, from_tag or "", to_tag or "")


__all__ = ["KEEP_FOR", "AckStore", "KeptAck"]
