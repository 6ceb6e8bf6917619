"""SDES (RFC 4568): SRTP keys in SDP ``a=crypto`` lines. Grammar only, no I/O.

``CryptoAttribute.parse(value)`` and ``str(attr)`` are a pair for the lines voicegw
builds and for the single-key lines carriers send. What voicegw can *use* is
narrower than what it parses (``usable``): one inline key (no MKI: libsrtp's
per-stream MKI is not exposed by pylibsrtp, and a key switch by MKI would need it),
a suite in ``SUITES``, and no session parameter that changes the transform
(UNENCRYPTED_SRTP/SRTCP, UNAUTHENTICATED_SRTP, a non-zero KDR, FEC_ORDER/FEC_KEY).
A line that does not parse or is not usable is skipped, never an error: RFC 4568
7.1.1 has the answerer pick "a crypto attribute it supports" among the offered ones.

Keys are directional (RFC 4568 6.1): the key in a side's SDP is the one that side
encrypts what it *sends* with. So for one stream, ``remote key`` unprotects what we
receive and ``our key`` protects what we send.

The key material is random; the caller makes it (``voicegw.media.srtp.new_key``
uses ``secrets``), so this module stays deterministic.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

#: suite -> (master key length, master salt length) in bytes (RFC 4568 6.2.1, 6.2.2)
SUITES: dict[str, tuple[int, int]] = {
    "AES_CM_128_HMAC_SHA1_80": (16, 14),
    "AES_CM_128_HMAC_SHA1_32": (16, 14),
}
DEFAULT_SUITE = "AES_CM_128_HMAC_SHA1_80"

# crypto-attribute = "crypto:" tag 1*WSP crypto-suite 1*WSP key-params
#                    *(1*WSP session-param)
# tag = 1*9DIGIT ; crypto-suite = 1*(ALPHA / DIGIT / "_")
# key-params = key-param *(";" key-param) ; key-param = key-method ":" key-info
_CRYPTO_RE = re.compile(r"([0-9]{1,9})[ \t]+([A-Za-z0-9_]+)[ \t]+([^ \t]+)((?:[ \t]+[^ \t]+)*)")
# key-info = key-salt ["|" lifetime] ["|" mki ":" mki-length]   (inline method, 6.1)
# key-salt = 1*(base64) ; lifetime = ["2^"] 1*(DIGIT) ; mki = 1*DIGIT ; mki-length = 1*3DIGIT
_INLINE_RE = re.compile(r"inline:([A-Za-z0-9+/]+={0,2})(?:\|((?:2\^)?[0-9]+))?(?:\|([0-9]+):([0-9]{1,3}))?")
#: session parameters that leave the default transform alone (RFC 4568 6.3, 6.4)
_HARMLESS = re.compile(r"(?:KDR=0|WSH=[0-9]+|FEC_ORDER=FEC_SRTP)")
MAX_TAG = 999_999_999


class SdesError(ValueError):
    """An ``a=crypto`` value that does not follow RFC 4568's grammar."""


@dataclass(frozen=True)
class CryptoAttribute:
    """One ``a=crypto:<tag> <suite> inline:<base64(key||salt)>[|lifetime][|mki:len] ...``."""

    tag: int
    suite: str
    key_salt: bytes
    """The master key followed by the master salt (30 bytes for the AES_CM_128 suites)."""
    lifetime: str | None = None
    mki: tuple[int, int] | None = None
    """(MKI value, MKI length in bytes), when the key has one."""
    session_params: tuple[str, ...] = ()
    extra_keys: int = 0
    """Further inline keys after the first (kept only as a count: voicegw cannot use them)."""

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        """Parse the value of an ``a=crypto`` line (after ``crypto:``)."""
        m = _CRYPTO_RE.fullmatch(value.strip())
        if m is None:
            raise SdesError("bad a=crypto line")
        tag, suite, key_params, rest = m.groups()
        keys = key_params.split(";")
        first = _INLINE_RE.fullmatch(keys[0])
        if first is None or any(_INLINE_RE.fullmatch(k) is None for k in keys[1:]):
            raise SdesError("bad a=crypto key parameter (only inline: keys exist, RFC 4568 6.1)")
        b64, lifetime, mki, mki_length = first.groups()
        try:
            key_salt = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise SdesError("bad base64 in a=crypto key") from None
        return cls(
            int(tag), suite, key_salt, lifetime,
            (int(mki), int(mki_length)) if mki is not None else None,
            tuple(rest.split()), len(keys) - 1,
        )

    def __str__(self) -> str:
        info = base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            info += f"|{self.lifetime}"
        if self.mki is not None:
            info += f"|{self.mki[0]}:{self.mki[1]}"
        return " ".join((str(self.tag), self.suite, f"inline:{info}", *self.session_params))

    @property
    def usable(self) -> bool:
        """Whether voicegw can run SRTP with this line (see the module docstring)."""
        lengths = SUITES.get(self.suite)
        return (
            lengths is not None
            and len(self.key_salt) == sum(lengths)
            and self.mki is None
            and self.extra_keys == 0
            and all(_HARMLESS.fullmatch(p) for p in self.session_params)
        )

    def answer(self, key_salt: bytes) -> CryptoAttribute:
        """Our line answering this one: same tag and suite, our key (RFC 4568 7.1.2:
        "the answerer MUST include ... the tag and crypto-suite from the offer")."""
        return CryptoAttribute(self.tag, self.suite, key_salt)


def crypto_lines(values: Iterable[str | None]) -> list[CryptoAttribute]:
    """The ``a=crypto`` values of one media section that parse, in order."""
    found: list[CryptoAttribute] = []
    for value in values:
        if value is None:
            continue
        try:
            found.append(CryptoAttribute.parse(value))
        except SdesError:
            continue  # RFC 4568 7.1.1: pick among the ones we understand
    return found


def pick(offered: Iterable[CryptoAttribute]) -> CryptoAttribute | None:
    """The first offered line voicegw can use, in the offerer's preference order."""
    return next((c for c in offered if c.usable), None)


def check_key(suite: str, key_salt: bytes) -> None:
    """Raise ``SdesError`` unless ``key_salt`` has the length ``suite`` needs."""
    lengths = SUITES.get(suite)
    if lengths is None:
        raise SdesError(f"unsupported SRTP suite {suite}")
    if len(key_salt) != sum(lengths):
        raise SdesError(f"{suite} needs a {sum(lengths)}-byte master key and salt")
