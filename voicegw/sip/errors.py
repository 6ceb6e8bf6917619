"""Errors that say which side broke the protocol and what to answer.

Modelled on h11's ``ProtocolError(msg, error_status_hint=400)``: every error the
sans-I/O core raises carries the SIP status a UAS should send back, so the UA
core can turn it straight into a response. Nothing above ``sip/`` ever sees a raw
``ValueError``, ``IndexError`` or ``UnicodeDecodeError`` from parsing.
"""

from __future__ import annotations


class SipError(Exception):
    """Base of every error raised by ``voicegw.sip``."""

    #: The status a UAS answers with when this error hits an incoming request.
    status: int = 500

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class ParseError(SipError):
    """Malformed bytes from the peer (RFC 3261 section 7 / 25 grammar).

    ``status`` is 400 by default; 505 for a bad SIP-Version, 413/513 for size limits.
    ``reason`` is short and safe to put in a reason phrase.
    """

    status = 400


class ProtocolViolation(SipError):
    """Well-formed message whose content breaks a rule (CSeq method mismatch, ...)."""

    status = 400


class DialogError(SipError):
    """A request that names a dialog or transaction we do not have (481)."""

    status = 481
