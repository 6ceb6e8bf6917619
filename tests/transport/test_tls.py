"""SIP over TLS: ``voicegw run`` with a ``tls:`` section, against Python ``ssl`` clients,
sipp ``-t l1`` (when the installed sipp has TLS) and an in-process TLS peer.

Certificates are made per test session with the ``openssl`` CLI in a temporary
folder: a throwaway CA, a server certificate for 127.0.0.1 and sip.voicegw.test, a
client certificate from the same CA, and a self-signed "rogue" client certificate.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import uuid
import warnings
from pathlib import Path

import pytest
from peers.daemon import DaemonProcess
from peers.net import free_port, header, options, status_line
from peers.sipp import SIPP, run_sipp

from voicegw.config.defaults import from_mapping
from voicegw.config.errors import ConfigError
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.events import Address, ResponseReceived
from voicegw.sip.message import Request
from voicegw.transport.endpoint import SipEndpoint
from voicegw.transport.tls import TlsConfig, TlsConfigError, client_context, server_context

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")

SERVER_NAME = "sip.voicegw.test"


# --- certificates ------------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _key_and_csr(name: str, cn: str, cwd: Path) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
             cwd=cwd)


def _sign(name: str, ext: str, cwd: Path) -> None:
    (cwd / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-sha256",
             "-extfile", f"{name}.ext", cwd=cwd)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-sha256",
             "-subj", "/CN=voicegw test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _key_and_csr("server", SERVER_NAME, d)
    _sign("server", f"subjectAltName=IP:127.0.0.1,DNS:{SERVER_NAME}\n"
          "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n", d)
    _key_and_csr("client", "carrier.voicegw.test", d)
    _sign("client", "subjectAltName=DNS:carrier.voicegw.test\nbasicConstraints=CA:FALSE\n"
          "extendedKeyUsage=clientAuth\n", d)
    # signed by nobody we trust
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2",
             "-subj", "/CN=rogue", cwd=d)
    return d


def _config(certs: Path, port: int, **tls: object) -> TlsConfig:
    return TlsConfig(enabled=True, port=port, cert_file=str(certs / "server.pem"),
                     key_file=str(certs / "server.key"), ca_file=str(certs / "ca.pem"), **tls)


def _yaml(path: Path, certs: Path, port: int, verify_client: str = "none") -> Path:
    path.write_text(
        "api:\n  enabled: false\n"  # not under test; its port may be taken
        "tls:\n"
        "  enabled: true\n"
        f"  port: {port}\n"
        f"  cert_file: {certs / 'server.pem'}\n"
        f"  key_file: {certs / 'server.key'}\n"
        f"  ca_file: {certs / 'ca.pem'}\n"
        f"  verify_client: {verify_client}\n"
    )
    return path


# --- a tiny TLS SIP client ---------------------------------------------------------------
def _client_context(certs: Path, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if cert is not None:
        context.load_cert_chain(str(certs / f"{cert}.pem"), str(certs / f"{cert}.key"))
    return context


def _connect(address: tuple[str, int], context: ssl.SSLContext,
             server_hostname: str = SERVER_NAME) -> ssl.SSLSocket:
    raw = socket.create_connection(address, timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def _read_message(sock: ssl.SSLSocket, buffer: bytearray, timeout: float = 3.0) -> bytes | None:
    """One SIP message off a TLS stream (Content-Length framing); None on EOF/timeout."""
    sock.settimeout(timeout)
    while True:
        while buffer[:2] == b"\r\n":
            del buffer[:2]
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            total = end + 4 + int(header(bytes(buffer[: end + 4]), "content-length") or 0)
            if len(buffer) >= total:
                message = bytes(buffer[:total])
                del buffer[:total]
                return message
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        if not chunk:
            return None
        buffer.extend(chunk)


def _options_over(sock: ssl.SSLSocket, target: tuple[str, int], call_id: str | None = None) -> bytes:
    return options(target, sock.getsockname()[:2], transport="TLS", call_id=call_id)


@pytest.fixture(scope="module")
def daemon(certs, tmp_path_factory):
    port = free_port()
    config = _yaml(tmp_path_factory.mktemp("cfg") / "voicegw.yaml", certs, port)
    with DaemonProcess("127.0.0.1", None, "--config", str(config)) as proc:
        proc.tls_address = ("127.0.0.1", port)
        yield proc
        assert proc.running(), "the daemon died:\n" + "\n".join(proc.lines[-20:])


# --- the daemon over TLS -----------------------------------------------------------------
@pytest.mark.wire
def test_daemon_logs_its_tls_listener(daemon):
    listening = [e for e in daemon.events() if e.get("event") == "tls.listening"]
    assert listening and listening[0]["address"] == f"tls:127.0.0.1:{daemon.tls_address[1]}"
    assert listening[0]["min_version"] == "1.2"


@pytest.mark.wire
def test_options_over_tls_answered_on_the_same_connection(daemon, certs):
    target = daemon.tls_address
    with _connect(target, _client_context(certs)) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        buffer = bytearray()
        for cseq in range(1, 4):  # several requests, one connection
            call_id = uuid.uuid4().hex
            sock.sendall(_options_over(sock, target, call_id))
            reply = _read_message(sock, buffer)
            assert reply is not None, "no answer on the TLS connection"
            assert status_line(reply)[0] == 200
            assert header(reply, "call-id") == call_id
            via = header(reply, "via") or ""
            assert via.startswith("SIP/2.0/TLS ")
            assert f"rport={sock.getsockname()[1]}" in via


@pytest.mark.wire
def test_each_tls_connection_gets_its_own_answers(daemon, certs):
    target = daemon.tls_address
    context = _client_context(certs)
    with _connect(target, context) as one, _connect(target, context) as two:
        ids = {}
        for sock in (one, two):
            ids[sock] = uuid.uuid4().hex
            sock.sendall(_options_over(sock, target, ids[sock]))
        for sock in (two, one):
            reply = _read_message(sock, bytearray())
            assert reply is not None and header(reply, "call-id") == ids[sock]


@pytest.mark.wire
def test_ip_literal_without_sni_is_verified_too(daemon, certs):
    # the certificate names 127.0.0.1 (IP SAN): no SNI is sent for an IP literal
    target = daemon.tls_address
    with _connect(target, _client_context(certs), server_hostname="127.0.0.1") as sock:
        sock.sendall(_options_over(sock, target))
        reply = _read_message(sock, bytearray())
        assert reply is not None and status_line(reply)[0] == 200


def _tls11_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.1 at all
    with warnings.catch_warnings():  # deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


@pytest.mark.wire
def test_tls_1_1_client_refused(daemon, certs):
    with pytest.raises(ssl.SSLError) as refused:
        _connect(daemon.tls_address, _tls11_context()).close()
    if "NO_PROTOCOLS_AVAILABLE" in str(refused.value).upper():
        pytest.skip("this OpenSSL cannot offer TLS 1.1 even at SECLEVEL=0")
    # refused by the server (an alert, or the socket closed on the ClientHello), not
    # by our own library
    assert isinstance(refused.value, ssl.SSLEOFError) or "ALERT" in str(refused.value).upper()
    # ... and the listener goes on serving
    with _connect(daemon.tls_address, _client_context(certs)) as sock:
        sock.sendall(_options_over(sock, daemon.tls_address))
        assert status_line(_read_message(sock, bytearray()) or b"x 0 x")[0] == 200


@pytest.mark.wire
@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_1_2_and_1_3_clients_served(daemon, certs, version):
    context = _client_context(certs)
    context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
    with _connect(daemon.tls_address, context) as sock:
        assert sock.version() == version.replace("_", ".")
        sock.sendall(_options_over(sock, daemon.tls_address))
        assert status_line(_read_message(sock, bytearray()) or b"x 0 x")[0] == 200


@pytest.mark.wire
def test_client_refuses_a_server_it_cannot_verify(daemon, certs):
    # the other direction of "verification on": a client trusting another CA
    context = ssl.create_default_context(cafile=str(certs / "rogue.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):
        _connect(daemon.tls_address, context).close()


@pytest.mark.wire
def test_openssl_s_client_tls_1_1_refused(daemon):
    proc = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"{daemon.tls_address[0]}:{daemon.tls_address[1]}",
         "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
        input=b"", capture_output=True, timeout=15, check=False
    )
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    if "no protocols available" in out:
        pytest.skip("this openssl cannot offer TLS 1.1")
    assert proc.returncode != 0
    assert "Cipher is (NONE)" in out, out[-800:]  # no session was set up


@pytest.fixture(scope="module")
def mtls_daemon(certs, tmp_path_factory):
    port = free_port()
    config = _yaml(tmp_path_factory.mktemp("cfg") / "voicegw.yaml", certs, port, "required")
    with DaemonProcess("127.0.0.1", None, "--config", str(config)) as proc:
        proc.tls_address = ("127.0.0.1", port)
        yield proc
        assert proc.running(), "the daemon died:\n" + "\n".join(proc.lines[-20:])


def _try_options(address: tuple[str, int], context: ssl.SSLContext) -> int | None:
    """The status of an OPTIONS over a new connection; None when the connection was
    refused during or right after the handshake (TLS 1.3 reports a client certificate
    the server rejects on the first read)."""
    try:
        with _connect(address, context) as sock:
            sock.sendall(_options_over(sock, address))
            reply = _read_message(sock, bytearray())
    except (ssl.SSLError, ConnectionError):
        return None
    return status_line(reply)[0] if reply else None


@pytest.mark.wire
def test_mutual_tls_accepts_a_client_certificate_from_the_ca(mtls_daemon, certs):
    assert _try_options(mtls_daemon.tls_address, _client_context(certs, "client")) == 200


@pytest.mark.wire
@pytest.mark.parametrize("cert", ["rogue", None], ids=["untrusted-cert", "no-cert"])
def test_mutual_tls_refuses_bad_or_missing_client_certificate(mtls_daemon, certs, cert):
    assert _try_options(mtls_daemon.tls_address, _client_context(certs, cert)) is None


# --- sipp as a TLS client ----------------------------------------------------------------
def _sipp_tls_missing() -> str | None:
    if SIPP is None:
        return "sipp not installed"
    probe = subprocess.run([SIPP, "127.0.0.1:9", "-sn", "uac", "-t", "l1", "-m", "1",
                            "-nostdin", "-timeout", "1s"], capture_output=True, text=True,
                           timeout=15, cwd="/tmp", check=False)
    if "compile SIPp with OpenSSL" in probe.stdout + probe.stderr:
        return "the installed sipp was built without TLS ('-t l1' needs SIPp with OpenSSL)"
    return None


@pytest.mark.wire
def test_sipp_options_over_tls(daemon, certs, tmp_path):
    reason = _sipp_tls_missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path / "sipp"
    work.mkdir()
    # sipp loads cacert.pem / cakey.pem from its working folder for -t l1
    shutil.copy(certs / "client.pem", work / "cacert.pem")
    shutil.copy(certs / "client.key", work / "cakey.pem")
    result = run_sipp(daemon.tls_address, "options_uac.xml", work, calls=20, rate=20,
                      transport="l1")
    assert result.successful == 20, result.output[-2000:]


# --- outbound TLS from the endpoint (in process) -----------------------------------------
class _TlsPeer:
    """A TLS server that records the SNI name and answers every request 200."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.server_names: list[str | None] = []
        self.requests: list[bytes] = []
        context.sni_callback = lambda sslobj, name, ctx: self.server_names.append(name)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()
            return
        self.requests.append(head)
        fields: dict[str, str] = {}
        for line in head.decode().split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields.setdefault(name.strip().lower(), value.strip())
        writer.write((f"SIP/2.0 200 OK\r\nVia: {fields['via']}\r\nFrom: {fields['from']}\r\n"
                      f"To: {fields['to']};tag=peer\r\nCall-ID: {fields['call-id']}\r\n"
                      f"CSeq: {fields['cseq']}\r\nContent-Length: 0\r\n\r\n").encode())
        await writer.drain()


def _request(port: int) -> Request:
    raw = (f"OPTIONS sip:peer@127.0.0.1:{port};transport=tls SIP/2.0\r\n"
           "From: <sip:voicegw@127.0.0.1>;tag=abc\r\n"
           f"To: <sip:peer@127.0.0.1:{port}>\r\n"
           f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\n\r\n").encode()
    from voicegw.sip.parser import parse_message

    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


async def _outbound(certs: Path, peer_cert: str, server_names: dict[str, str]):
    peer_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    peer_context.load_cert_chain(str(certs / f"{peer_cert}.pem"), str(certs / f"{peer_cert}.key"))
    peer = _TlsPeer(peer_context)
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0, ssl=peer_context)
    port = server.sockets[0].getsockname()[1]
    events = []
    endpoint = SipEndpoint(core=UserAgentCore(CoreConfig(tls_port=5999)), on_event=events.append)
    await endpoint.start("127.0.0.1", None, None)
    await endpoint.start_tls("127.0.0.1", _config(certs, 0, server_names=server_names))
    try:
        endpoint.send_request(_request(port), Address("tls", "127.0.0.1", port))
        for _ in range(100):
            if any(isinstance(e, ResponseReceived) for e in events):
                break
            await asyncio.sleep(0.02)
        return peer, events, endpoint.statistics()
    finally:
        await endpoint.close()
        server.close()
        await server.wait_closed()


async def test_outbound_tls_sends_sni_and_verifies_the_peer(certs):
    peer, events, stats = await _outbound(certs, "server", {"127.0.0.1": SERVER_NAME})
    assert peer.server_names == [SERVER_NAME]
    assert peer.requests and b"Via: SIP/2.0/TLS 127.0.0.1:5999;" in peer.requests[0]
    assert [e.response.status for e in events if isinstance(e, ResponseReceived)] == [200]
    assert stats.tls is not None and stats.tls.connected == 1


async def test_outbound_tls_refuses_a_peer_certificate_not_from_the_ca(certs):
    peer, events, stats = await _outbound(certs, "rogue", {"127.0.0.1": "rogue"})
    assert peer.requests == []  # nothing was sent to it
    assert not any(isinstance(e, ResponseReceived) for e in events)
    assert stats.tls is not None and stats.tls.connect_failures == 1


async def test_outbound_tls_refuses_a_name_mismatch(certs):
    peer, _events, stats = await _outbound(certs, "server", {"127.0.0.1": "other.example"})
    assert peer.requests == [] and stats.tls.connect_failures == 1


# --- config ------------------------------------------------------------------------------
def test_contexts_are_tls_1_2_or_later(certs):
    for context in (server_context(_config(certs, 0)), client_context(_config(certs, 0))):
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert server_context(_config(certs, 0, min_version="1.3")).minimum_version == ssl.TLSVersion.TLSv1_3
    assert server_context(_config(certs, 0, verify_client="required")).verify_mode == ssl.CERT_REQUIRED


def test_unusable_certificate_files_are_named(certs, tmp_path):
    with pytest.raises(TlsConfigError, match="missing.pem"):
        server_context(TlsConfig(enabled=True, cert_file=str(tmp_path / "missing.pem"),
                                 key_file=str(certs / "server.key")))
    with pytest.raises(TlsConfigError, match="cert_file/key_file"):  # key of another cert
        server_context(TlsConfig(enabled=True, cert_file=str(certs / "server.pem"),
                                 key_file=str(certs / "client.key")))


@pytest.mark.parametrize("tls, message", [
    ({"enabled": True}, "cert_file and key_file"),
    ({"min_version": 1.2}, "quoted"),
    ({"min_version": "1.1"}, "min_version"),
    ({"verify_client": "required"}, "ca_file"),
    ({"verify_client": "sometimes", "ca_file": "x"}, "verify_client"),
    ({"port": 70000}, "tls.port"),
    ({"colour": "blue"}, "unknown"),
    ({"server_names": {"192.0.2.1": 5}}, "server_names"),
])
def test_config_errors_name_the_field(tls, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping({"tls": tls})


def test_config_defaults_leave_tls_off():
    config = from_mapping({})
    assert config.tls.enabled is False and config.tls.port == 5061
    assert from_mapping({"tls": {"verify_server": False}}).tls.verify_server is False


@pytest.mark.wire
def test_daemon_refuses_to_start_with_a_missing_certificate(tmp_path, certs):
    config = tmp_path / "voicegw.yaml"
    config.write_text(f"api:\n  enabled: false\ntls:\n  enabled: true\n  port: {free_port()}\n"
                      f"  cert_file: {tmp_path / 'nope.pem'}\n  key_file: {certs / 'server.key'}\n")
    proc = DaemonProcess("127.0.0.1", None, "--config", str(config))
    with pytest.raises(RuntimeError, match="nope.pem"):
        proc.start()  # returns as soon as the daemon exits; 10 s was short on a loaded box
