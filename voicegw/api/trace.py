"""The SIP trace the control API keeps: the last messages of each SIP Call-ID, bounded.

Installed as the endpoint's trace tap (``SipEndpoint.trace``), so it sees every
message in and out exactly as it crossed the wire. It

- keeps, per SIP Call-ID, the last ``per_call`` messages (time, direction, peer, the
  bytes cut at ``max_message``) for ``voicegw call show``'s ladder diagram; Call-IDs
  beyond ``max_call_ids`` or the ``max_bytes`` budget are dropped oldest first, so an
  OPTIONS flood or a long day costs bounded memory;
- counts responses by direction and status code, and the final responses voicegw
  sent to INVITEs (what callers were told), for /status and /metrics.

The ``response`` hash of an ``Authorization`` or ``Proxy-Authorization`` (ours to a
carrier's challenge, or a caller's to ours) is kept as ``"redacted"``: with the nonce
beside it, it could be brute-forced for the password.

The tap runs on the signalling path: a regex for the Call-ID and a dict look-up, no
full parse, no logging.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

from ..sip.events import Address

# RFC 3261 20.8 / 7.3.3: "Call-ID" or its compact form "i", any case
_CALL_ID = re.compile(rb"\r\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)
_CSEQ = re.compile(rb"\r\n(?:cseq)[ \t]*:[ \t]*\d+[ \t]+([A-Za-z]+)", re.IGNORECASE)
# digest answers (RFC 3261 22.4): the response hash can be attacked offline for the
# password, so the ladder keeps the header but not the hash
_DIGEST_RESPONSE = re.compile(rb"(\r\n(?:proxy-)?authorization[ \t]*:[^\r\n]*?\bresponse[ \t]*=[ \t]*)"
                              rb"(\"[^\"\r\n]*\"|[^,\s]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class TraceEntry:
    time: float
    """Loop time (monotonic seconds) when the message crossed the socket."""
    direction: str
    """"in" (received by voicegw) or "out" (sent by voicegw)."""
    peer: str
    """The far end, transport:host:port."""
    first_line: str
    data: bytes
    """The message, cut at the trace's ``max_message`` bytes."""


class SipTrace:
    def __init__(self, per_call: int = 100, max_call_ids: int = 2000,
                 max_bytes: int = 16 * 1024 * 1024, max_message: int = 4096) -> None:
        self.per_call = per_call
        self.max_call_ids = max_call_ids
        self.max_bytes = max_bytes
        self.max_message = max_message
        self._by_call_id: OrderedDict[str, deque[TraceEntry]] = OrderedDict()
        self._bytes = 0
        self.responses: Counter[tuple[str, int]] = Counter()
        """(direction, status) -> responses seen."""
        self.invite_finals_sent: Counter[int] = Counter()
        """status -> final responses voicegw sent to an INVITE (what callers heard)."""
        self.messages: Counter[str] = Counter()
        """direction -> messages."""

    def __call__(self, direction: str, data: bytes, peer: Address, now: float) -> None:
        self.messages[direction] += 1
        if data.startswith(b"SIP/2.0 ") and data[8:11].isdigit():
            status = int(data[8:11])
            self.responses[(direction, status)] += 1
            if status >= 200 and direction == "out":
                cseq = _CSEQ.search(data)
                if cseq is not None and cseq.group(1) == b"INVITE":
                    self.invite_finals_sent[status] += 1
        match = _CALL_ID.search(data)
        if match is None:
            return
        call_id = match.group(1).strip().decode("utf-8", "replace")
        kept = data[: self.max_message]
        if b"uthorization" in kept or b"UTHORIZATION" in kept:
            kept = _DIGEST_RESPONSE.sub(rb'\1"redacted"', kept)
        end = kept.find(b"\r\n")
        first_line = (kept[:end] if end >= 0 else kept[:200]).decode("utf-8", "replace")
        entry = TraceEntry(now, direction, f"{peer.transport}:{peer.host}:{peer.port}", first_line, kept)
        entries = self._by_call_id.get(call_id)
        if entries is None:
            entries = self._by_call_id[call_id] = deque()
        else:
            self._by_call_id.move_to_end(call_id)
        if len(entries) >= self.per_call:
            self._bytes -= len(entries.popleft().data)
        entries.append(entry)
        self._bytes += len(kept)
        while self._by_call_id and (len(self._by_call_id) > self.max_call_ids or self._bytes > self.max_bytes):
            _, dropped = self._by_call_id.popitem(last=False)
            self._bytes -= sum(len(e.data) for e in dropped)

    def messages_for(self, call_ids: list[str]) -> list[tuple[str, TraceEntry]]:
        """(SIP Call-ID, entry) of every kept message of these Call-IDs, oldest first."""
        found = [(cid, e) for cid in dict.fromkeys(call_ids) for e in self._by_call_id.get(cid, ())]
        found.sort(key=lambda item: item[1].time)
        return found

    @property
    def size(self) -> tuple[int, int]:
        """(Call-IDs kept, bytes kept)."""
        return len(self._by_call_id), self._bytes
