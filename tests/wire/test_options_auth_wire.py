"""OPTIONS toward a peer that demands digest auth, over the wire (issue 12 item 1; RFC
3261 22.2, 22.3): a sipp gateway challenges a ping without credentials (401, qop=auth)
and checks the answer (verifyauth). For an agent's keep-alive (``keepalive:``) and a
carrier's gateway health (``health:``), each with ``auth``: the first ping is
challenged and goes again with the same Call-ID, CSeq+1 and a right answer (``uri`` the
Request-URI, nc 1); the next ping carries the credentials ahead (the same nonce, nc 2)
and is answered at once. The challenge counts as an answer (the gateway is up after
two pings). The pings are 2 s apart so that the challenge is answered before the next
ping leaves even on a loaded machine. The password never appears in the daemon's log."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from peers.calls import HOST, SCENARIOS, SipMessage, SippPeer
from peers.daemon import DaemonProcess, wait_until
from peers.digest import checked_credentials
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]

PASSWORD = "opt-s3cret"  # what the scenario checks (verifyauth)
AUTH = {"username": "trunk9", "password": PASSWORD}


def answer(message: SipMessage) -> dict[str, str]:
    """The Authorization an OPTIONS carried, checked (RFC 7616 3.4.1, MD5, qop=auth)."""
    return checked_credentials(message, "trunk9", PASSWORD)


def ping_twice(tmp_path: Path, profile: dict, done_event: str | None) -> tuple[list[SipMessage], list[dict]]:
    """A daemon with ``profile`` (``@PORT@`` in it: the gateway's port) pings the sipp
    gateway until it has taken two pings; the OPTIONS it got and the daemon's events."""
    gateway = SippPeer("gateway", SCENARIOS / "gateway_options_auth.xml", tmp_path / "gateway", calls=2,
                       timeout=30)
    (tmp_path / "profiles").mkdir()
    text = yaml.safe_dump(profile).replace("@PORT@", str(gateway.port))
    (tmp_path / "profiles" / "peer.yaml").write_text(text)
    config = tmp_path / "voicegw.yaml"
    config.write_text(yaml.safe_dump({"profiles_dir": str(tmp_path / "profiles"), "api": {"enabled": False}}))
    daemon = DaemonProcess(HOST, None, "--config", str(config))
    try:
        gateway.start()
        daemon.start()
        assert gateway.wait() == 0, gateway.report()
        if done_event is not None:
            assert wait_until(lambda: any(e.get("event") == done_event for e in daemon.events()), 10), \
                daemon.lines[-20:]
        events = daemon.events()
    finally:
        gateway.stop()
        daemon.terminate()
    assert PASSWORD not in "\n".join(daemon.lines), "the password is never logged"
    return [m for m in gateway.messages() if m.direction == "in" and m.method == "OPTIONS"], events


def check_pings(pings: list[SipMessage]) -> None:
    first, again, ahead = pings[:3]
    assert first.header("authorization") is None
    # 22.2: the challenged OPTIONS again, a new transaction of the same request
    assert again.header("call-id") == first.header("call-id") and again.tag("from") == first.tag("from")
    assert (first.header("cseq"), again.header("cseq")) == ("1 OPTIONS", "2 OPTIONS")
    assert again.branch != first.branch and again.first_line == first.first_line
    fields = answer(again)
    assert fields["nonce"].startswith("o1-") and fields["nc"] == "00000001"
    # 22.3: the next ping answers that challenge ahead, with the nonce's next count
    assert ahead.header("call-id") != first.header("call-id") and ahead.header("cseq") == "1 OPTIONS"
    ahead_fields = answer(ahead)
    assert (ahead_fields["nonce"], ahead_fields["nc"]) == (fields["nonce"], "00000002")


def test_a_keepalive_options_is_answered_with_credentials(tmp_path: Path) -> None:
    pings, events = ping_twice(tmp_path, {"kind": "agent", "uri": f"sip:agent@{HOST}:@PORT@", "auth": AUTH,
                                          "keepalive": {"interval": 2.0}}, None)
    check_pings(pings)
    assert not [e for e in events if e.get("event") == "options.auth_refused"], events


def test_a_gateway_health_ping_is_answered_with_credentials_and_the_gateway_comes_up(tmp_path: Path) -> None:
    pings, events = ping_twice(tmp_path, {
        "kind": "carrier", "addresses": ["127.0.0.0/8"], "trunk": f"sip:{{number}}@{HOST}:@PORT@", "auth": AUTH,
        "health": {"interval": 2.0, "up_after": 2}}, "gateway.up")
    check_pings(pings)
    assert not [e for e in events if e.get("event") == "options.auth_refused"], events
