"""TLS toward a target dialled by name (issue 12 item 2): the name located through DNS
reaches the TLS transport, which sends it as SNI (RFC 6066 3) and checks the peer's
certificate against it (RFC 5922 4), not against the IP address it resolved to.

The peer is ``openssl s_server`` with a certificate from peers.pki (it names
``sip.voicegw.test`` and 127.0.0.1); dnsmasq (peers.dnsmasq) serves
``sip.voicegw.test`` and ``wrong.voicegw.test``, both 127.0.0.1; a flow transfers each
call by INVITE to an agent profile whose URI is one of the names, ``;transport=tls``.

- the right name: s_server reports the SNI it got and prints the INVITE voicegw sent
  over the verified connection;
- a name the certificate does not carry: the handshake fails on voicegw's side (the
  certificate names the IP it resolved to, which must not be enough), logged
  ``tls.handshake_failed`` with the name and the reason; the transfer fails as a
  transport error (503) and nothing reaches the peer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from peers.caller import Caller
from peers.calls import free_block
from peers.daemon import DaemonProcess, wait_until
from peers.dnsmasq import DNSMASQ, Dnsmasq
from peers.net import free_port
from peers.pki import OPENSSL, SERVER_NAME, Pki, make_pki

pytestmark = [pytest.mark.wire, pytest.mark.timeout(90),
              pytest.mark.skipif(DNSMASQ is None or OPENSSL is None,
                                 reason="dnsmasq or openssl missing: run scripts/bootstrap")]


class SServer:
    """``openssl s_server`` on a free loopback port; what it prints goes to a file."""

    def __init__(self, workdir: Path, pki: Pki) -> None:
        self.port = free_port()
        self.out = workdir / "s_server.out"
        self.proc = subprocess.Popen(
            [OPENSSL or "openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", str(pki.cert),
             "-key", str(pki.key), "-servername", SERVER_NAME, "-cert2", str(pki.cert), "-key2", str(pki.key)],
            stdin=subprocess.PIPE, stdout=self.out.open("wb"), stderr=subprocess.STDOUT)  # stdin open: EOF ends it
        assert wait_until(lambda: "ACCEPT" in self.output(), 10), self.output()

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def daemon_for(tmp_path: Path, pki: Pki, agent_uri: str, dns_port: int) -> DaemonProcess:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "flows").mkdir()
    (tmp_path / "profiles" / "agent-x.yaml").write_text(yaml.safe_dump({"kind": "agent", "uri": agent_uri}))
    (tmp_path / "flows" / "main.yaml").write_text(yaml.safe_dump({"start": "to_agent", "nodes": {
        "to_agent": {"type": "agent_transfer", "target": "agent-x", "fallback": {
            "rules": [{"match": "503", "action": "goto", "node": "wait"}], "default": {"action": "end"}}},
        "wait": {"type": "collect", "routes": {"9": "bye"}, "timeout": 30, "on_timeout": "bye"},
        "bye": {"type": "hangup"}}}))
    config = tmp_path / "voicegw.yaml"
    config.write_text(yaml.safe_dump({
        "profiles_dir": str(tmp_path / "profiles"), "flows_dir": str(tmp_path / "flows"),
        "default_flow": "main", "dns": {"servers": ["127.0.0.1"], "port": dns_port, "timeout": 2.0},
        "tls": {"enabled": True, "port": free_port(), "cert_file": str(pki.cert), "key_file": str(pki.key),
                "ca_file": str(pki.ca), "verify_client": "none"}}))
    low = free_block(40)
    return DaemonProcess("127.0.0.1", None, "--config", str(config), "--rtp-ports", f"{low}-{low + 39}")


def events(daemon: DaemonProcess, name: str) -> list[dict]:
    return [e for e in daemon.events() if e.get("event") == name]


@pytest.fixture
def lab(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    dns = Dnsmasq(tmp_path, [f"host-record={SERVER_NAME},127.0.0.1",
                             "host-record=wrong.voicegw.test,127.0.0.1"]).start()
    peer = SServer(tmp_path, pki)
    try:
        yield pki, dns, peer
    finally:
        peer.stop()
        dns.stop()


def test_the_located_name_is_sent_as_sni_and_the_certificate_is_checked_against_it(tmp_path, lab) -> None:
    pki, dns, peer = lab
    daemon = daemon_for(tmp_path, pki, f"sip:agent@{SERVER_NAME}:{peer.port};transport=tls", dns.port)
    caller = None
    try:
        daemon.start()
        caller = Caller(daemon.address)
        assert caller.invite().status == 200
        assert wait_until(lambda: "INVITE sip:agent@" in peer.output(), 20), \
            peer.output()[-2000:] + "\n".join(daemon.lines[-20:])
    finally:
        if caller is not None:
            caller.close()
        daemon.kill()  # a call is up with an INVITE the peer never answers: no graceful drain
    out = peer.output()
    assert f'Hostname in TLS extension: "{SERVER_NAME}"' in out, out[:2000]
    assert f"INVITE sip:agent@{SERVER_NAME}:{peer.port};transport=tls SIP/2.0" in out
    assert not events(daemon, "tls.handshake_failed")
    assert any(q.startswith(f"A] {SERVER_NAME}") for q in dns.queries()), dns.queries()


def test_a_name_the_certificate_does_not_carry_fails_the_handshake_with_a_clear_reason(tmp_path, lab) -> None:
    pki, dns, peer = lab
    daemon = daemon_for(tmp_path, pki, f"sip:agent@wrong.voicegw.test:{peer.port};transport=tls", dns.port)
    caller = None
    try:
        daemon.start()
        caller = Caller(daemon.address)
        assert caller.invite().status == 200
        assert wait_until(lambda: events(daemon, "transfer.failed"), 30), "\n".join(daemon.lines[-20:])
        (failed,) = events(daemon, "tls.handshake_failed")
        (transfer,) = events(daemon, "transfer.failed")
        assert not caller.got_request("BYE"), "the fallback keeps the caller"
    finally:
        if caller is not None:
            caller.close()
        daemon.kill()  # a call is up with an INVITE the peer never answers: no graceful drain
    assert failed["server_name"] == "wrong.voicegw.test", failed
    assert failed["peer"] == f"127.0.0.1:{peer.port}"
    assert "Hostname mismatch" in failed["reason"], failed
    assert transfer["status"] == 503, transfer
    # voicegw dropped the handshake: the peer saw it end before any SIP
    assert "INVITE" not in peer.output() and "ERROR" in peer.output(), peer.output()[:2000]
