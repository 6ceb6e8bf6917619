"""Desk agents' passwords, stored hashed with scrypt (RFC 7914) from hashlib.

The stored form is ``scrypt$N$r$p$salt_hex$hash_hex``: the parameters travel with the
hash so they can be raised later without breaking old entries. N=2**14, r=8, p=1 is
the interactive-login setting RFC 7914 section 2 and OWASP cite (16 MiB, ~50 ms).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def well_formed(stored: str) -> bool:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = (int(x) for x in parts[1:4])
        bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        return False
    return n > 1 and n & (n - 1) == 0 and r > 0 and p > 0


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison; a malformed entry never matches."""
    if not well_formed(stored):
        return False
    _, n, r, p, salt, expected = stored.split("$")
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                            p=int(p), maxmem=_MAXMEM, dklen=len(expected) // 2)
    return hmac.compare_digest(digest, bytes.fromhex(expected))


__all__ = ["hash_password", "verify_password", "well_formed"]
