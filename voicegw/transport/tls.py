"""TLS for SIP (RFC 3261 26.2, RFC 5630 for sips): the TCP transport with an SSL context.

Everything about connections is tcp.py's: one table keyed by the remote
``(host, port)``, responses on the connection the request came in on (18.2.2),
``StreamFramer`` framing, the connection limits, idle timeout and write bounds. This
module adds only the two SSL contexts and names the transport ``"tls"``, so the core
sees ``Address("tls", ...)``, puts ``SIP/2.0/TLS`` in its Via and answers a request
on the same TLS connection.

Policy (docs/security.md, "TLS and SRTP"):

- TLS 1.2 or later only (``min_version`` "1.2" or "1.3"); SSLv3, TLS 1.0 and 1.1
  clients fail the handshake and never reach the framer. RFC 8996 deprecates both.
- the server certificate chain and key come from ``cert_file`` / ``key_file`` (PEM);
  a file that cannot be read or does not match stops the daemon at start, naming it.
- client certificates: ``verify_client`` "none" (default, what carriers' SBCs expect
  of a server), "optional" (checked when presented) or "required" (mutual TLS);
  checked against ``ca_file``.
- outbound connections verify the peer's certificate (``verify_server``, default on)
  against ``ca_file`` or the system store. A target located from a name (RFC 3263)
  carries it (``Address.name``): it is sent as SNI and checked against the peer's
  certificate (RFC 5922 4). RFC 6066 3 forbids IP literals in SNI: for targets dialled
  as an IP, ``server_names`` maps the address to the name to send and check; an IP
  with no entry gets no SNI and its certificate must name the IP address.
- the handshake must finish within ``handshake_timeout`` seconds; a failed handshake
  closes the socket before any SIP is read.

Limits: TLS connections have their own table, under the same ``limits`` as TCP's
(``max_tcp_connections``, per IP, idle timeout, write bound); a connection counts
once its handshake is done. Handshakes in progress are bounded by the listen backlog
and ``handshake_timeout``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from .limits import TransportLimits
from .tcp import InvalidHandler, MessageHandler, TcpTransport

VERIFY_CLIENT = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                 "required": ssl.CERT_REQUIRED}
MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

log = structlog.get_logger("voicegw.transport.tls")


class TlsConfigError(ValueError):
    """A TLS setting is wrong or a certificate file is unusable; the message names it."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The ``tls:`` config section (plain: DESIGN.md, config reaches the adapters so)."""

    enabled: bool = False
    """Listen for SIP over TLS (sips) on ``port``; outbound ``tls`` addresses work
    only when enabled too."""
    port: int = 5061
    """The TLS listener's port (RFC 3261 26.2: 5061 for sips); 0: any free port."""
    cert_file: str | None = None
    """PEM certificate chain presented to peers (server and client side)."""
    key_file: str | None = None
    """PEM private key of ``cert_file`` (unencrypted)."""
    ca_file: str | None = None
    """PEM CA bundle for verifying peers; None: the system store (outbound only)."""
    verify_client: str = "none"
    """Client certificates on inbound connections: none | optional | required."""
    verify_server: bool = True
    """Verify the certificate of peers we connect to (never turn off in production)."""
    min_version: str = "1.2"
    """Lowest TLS version accepted, both directions: "1.2" or "1.3"."""
    ciphers: str | None = None
    """OpenSSL cipher list for TLS 1.2 (None: OpenSSL's defaults, which exclude
    anything without forward secrecy at Debian's security level 2)."""
    server_names: Mapping[str, str] = field(default_factory=dict)
    """Peer IP address -> host name for SNI and certificate checks on outbound TLS."""
    handshake_timeout: float = 10.0
    """Seconds a TLS handshake may take, each direction."""

    def check(self) -> None:
        """Raise ``TlsConfigError`` naming the first wrong field."""
        if self.verify_client not in VERIFY_CLIENT:
            raise TlsConfigError("tls.verify_client: must be none, optional or required")
        if self.min_version not in MIN_VERSIONS:
            raise TlsConfigError('tls.min_version: must be "1.2" or "1.3"')
        if self.enabled and (not self.cert_file or not self.key_file):
            raise TlsConfigError("tls: cert_file and key_file are needed when enabled")
        if self.verify_client != "none" and not self.ca_file:
            raise TlsConfigError("tls.ca_file: needed to verify client certificates")
        if not 0 <= self.port <= 65535:
            raise TlsConfigError("tls.port: must be a port number 0-65535")
        if self.handshake_timeout <= 0:
            raise TlsConfigError("tls.handshake_timeout: must be positive")


def _base_context(config: TlsConfig, purpose: ssl.Purpose) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose)
    context.minimum_version = MIN_VERSIONS[config.min_version]
    # compression is off in OpenSSL 3 already; renegotiation by a client is refused
    context.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if config.ciphers:
        try:
            context.set_ciphers(config.ciphers)
        except ssl.SSLError as error:
            raise TlsConfigError(f"tls.ciphers: {error}") from None
    return context


def _readable(name: str, path: str) -> None:
    if not os.access(path, os.R_OK):
        raise TlsConfigError(f"tls.{name}: cannot read {path}")


def _load_chain(context: ssl.SSLContext, config: TlsConfig) -> None:
    if not config.cert_file:
        return
    _readable("cert_file", config.cert_file)
    _readable("key_file", config.key_file or config.cert_file)
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
    except (ssl.SSLError, OSError) as error:
        raise TlsConfigError(
            f"tls.cert_file/key_file: {config.cert_file}, {config.key_file}: {error}"
        ) from None


def _load_ca(context: ssl.SSLContext, config: TlsConfig) -> None:
    if not config.ca_file:
        return
    _readable("ca_file", config.ca_file)
    try:
        context.load_verify_locations(cafile=config.ca_file)
    except (ssl.SSLError, OSError) as error:
        raise TlsConfigError(f"tls.ca_file: {config.ca_file}: {error}") from None


def server_context(config: TlsConfig) -> ssl.SSLContext:
    """The listener's context: our certificate, TLS >= min_version, client checks."""
    config.check()
    context = _base_context(config, ssl.Purpose.CLIENT_AUTH)
    _load_chain(context, config)
    context.verify_mode = VERIFY_CLIENT[config.verify_client]
    _load_ca(context, config)
    return context


def client_context(config: TlsConfig) -> ssl.SSLContext:
    """Outbound connections' context: the peer's certificate checked (unless told not
    to), ours presented when configured (carriers that want mutual TLS)."""
    config.check()
    context = _base_context(config, ssl.Purpose.SERVER_AUTH)
    _load_chain(context, config)
    if config.verify_server:
        if config.ca_file:
            _load_ca(context, config)
        # check_hostname stays on: the name is the SNI name or the IP literal
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class TlsTransport(TcpTransport):
    """TCP's connection table and framing over TLS; ``Address.transport`` is "tls"."""

    name = "tls"

    def __init__(
        self,
        on_message: MessageHandler,
        on_invalid: InvalidHandler,
        limits: TransportLimits,
        loop: asyncio.AbstractEventLoop,
        config: TlsConfig,
    ) -> None:
        super().__init__(on_message, on_invalid, limits, loop)
        self.config = config
        # built now, so a bad certificate fails at start, not on the first peer
        self.server_context = server_context(config)
        self.client_context = client_context(config)

    def _server_options(self) -> dict[str, Any]:
        return {"ssl": self.server_context,
                "ssl_handshake_timeout": self.config.handshake_timeout}

    def _connect_options(self, host: str, name: str | None) -> dict[str, Any]:
        return {"ssl": self.client_context, "server_hostname": self.server_hostname(host, name),
                "ssl_handshake_timeout": self.config.handshake_timeout}

    def server_hostname(self, host: str, name: str | None) -> str:
        """The name sent as SNI and checked against the peer's certificate: the name the
        target was located from (RFC 5922 4: the URI's domain), else ``server_names``'
        entry for an IP literal; else the IP itself, which sends no SNI (RFC 6066 3)
        but is still what the certificate must name."""
        return name or self.config.server_names.get(host, host)

    def _connect_failed(self, host: str, port: int, name: str | None, error: BaseException) -> None:
        if isinstance(error, ssl.SSLError):  # the verify reason (a name mismatch, an unknown CA)
            log.warning("tls.handshake_failed", peer=f"{host}:{port}",
                        server_name=self.server_hostname(host, name),
                        reason=getattr(error, "verify_message", None) or error.reason or str(error))
