"""SRTP and SRTCP (RFC 3711) for a call leg, through libsrtp (``pylibsrtp``).

Carriers that require encrypted media send RTP/SAVP with SDES keys (RFC 4568,
``a=crypto``; the grammar is ``voicegw.sip.sdes``). One leg's
:class:`SrtpContext` holds two libsrtp sessions:

- *inbound*, keyed with the peer's key (the one in the peer's SDP), unprotects what
  the leg sends us: authentication (HMAC-SHA1, 80 or 32 bits) and the replay window
  are checked here, and a packet that fails either is dropped and counted;
- *outbound*, keyed with our key (the one in our SDP), protects what we send.

Both take any SSRC (libsrtp's ``ssrc_any_inbound`` / ``ssrc_any_outbound``), so a
far-side swap that changes the SSRC needs nothing here. The relay (relay.py) calls
these on its slow path; a leg without a context stays on the plain RTP fast path.

Each call returns the processed packet or None (failure, counted): no exception
crosses the per-packet path. Keys are made with ``secrets`` (``new_key``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from pylibsrtp import Error as _LibError
from pylibsrtp import Policy, Session

from voicegw.sip.sdes import (
    DEFAULT_SUITE,
    SUITES,
    CryptoAttribute,
    check_key,
)

__all__ = ["SrtpContext", "SrtpStatistics", "new_crypto", "new_key"]

_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
assert set(_PROFILES) == set(SUITES)

_FAILED = (_LibError, ValueError, TypeError)


def new_key(suite: str = DEFAULT_SUITE) -> bytes:
    """A fresh random master key || master salt for ``suite`` (30 bytes for AES_CM_128)."""
    return secrets.token_bytes(sum(SUITES[suite]))


def new_crypto(tag: int = 1, suite: str = DEFAULT_SUITE) -> CryptoAttribute:
    """Our ``a=crypto`` line for an offer, with a fresh key."""
    return CryptoAttribute(tag, suite, new_key(suite))


@dataclass(frozen=True, slots=True)
class SrtpStatistics:
    suite: str
    protected: int
    """RTP and RTCP packets protected (sent)."""
    unprotected: int
    """RTP and RTCP packets authenticated and decrypted (received)."""
    auth_failures: int
    """Received packets dropped: bad authentication tag, replayed, or malformed."""
    protect_failures: int
    """Packets we could not protect (too large, or libsrtp refused); not sent."""


class SrtpContext:
    """One leg's SRTP sessions: ``inbound_key`` is the peer's, ``outbound_key`` ours."""

    __slots__ = (
        "_in",
        "_keys",
        "_out",
        "auth_failures",
        "protect_failures",
        "protected",
        "suite",
        "unprotected",
    )

    def __init__(self, inbound_key: bytes, outbound_key: bytes,
                 suite: str = DEFAULT_SUITE) -> None:
        check_key(suite, inbound_key)
        check_key(suite, outbound_key)
        self.suite = suite
        self._keys = (inbound_key, outbound_key)
        profile = _PROFILES[suite]
        inbound = Policy(key=inbound_key, ssrc_type=Policy.SSRC_ANY_INBOUND,
                         srtp_profile=profile)
        outbound = Policy(key=outbound_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                          srtp_profile=profile)
        # A relay forwards what the other leg sends, duplicates included; libsrtp
        # would refuse to protect a repeated sequence number (RFC 3711 3.3.2 is about
        # the receiver's replay list; the sender side check is libsrtp's own).
        outbound.allow_repeat_tx = True
        self._in = Session(inbound)
        self._out = Session(outbound)
        self.protected = self.unprotected = self.auth_failures = self.protect_failures = 0

    def keyed_with(self, inbound_key: bytes, outbound_key: bytes, suite: str) -> bool:
        """Whether this context already runs these keys (a re-INVITE that kept them
        must keep the context: a new one would lose the rollover counter and the
        replay window, RFC 3711 3.3.1)."""
        return self.suite == suite and self._keys == (inbound_key, outbound_key)

    # the per-packet calls: bytes in, bytes or None out
    def protect_rtp(self, packet: bytes | bytearray) -> bytes | None:
        try:
            out = self._out.protect(bytes(packet))
        except _FAILED:
            self.protect_failures += 1
            return None
        self.protected += 1
        return out

    def unprotect_rtp(self, packet: bytes) -> bytes | None:
        try:
            out = self._in.unprotect(bytes(packet))
        except _FAILED:
            self.auth_failures += 1
            return None
        self.unprotected += 1
        return out

    def protect_rtcp(self, packet: bytes | bytearray) -> bytes | None:
        try:
            out = self._out.protect_rtcp(bytes(packet))
        except _FAILED:
            self.protect_failures += 1
            return None
        self.protected += 1
        return out

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            out = self._in.unprotect_rtcp(bytes(packet))
        except _FAILED:
            self.auth_failures += 1
            return None
        self.unprotected += 1
        return out

    def statistics(self) -> SrtpStatistics:
        return SrtpStatistics(self.suite, self.protected, self.unprotected,
                              self.auth_failures, self.protect_failures)
