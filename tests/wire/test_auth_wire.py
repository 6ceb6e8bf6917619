"""Inbound digest authentication (RFC 3261 22, RFC 8760) for sources outside the
trusted ranges: challenged, admitted with the right credentials, and answered the
same way for an unknown user as for a wrong password (no enumeration)."""

from __future__ import annotations

import random
import re

import pytest
from peers.caller import Caller, bound_udp
from peers.daemon import DaemonProcess

from voicegw.sip.digest import Challenge, authorize
from voicegw.sip.message import Response


class AuthCaller(Caller):
    """The scripted caller, able to resend its INVITE with credentials."""

    def invite_with(self, extra: str) -> Response:
        self.call_id = f"auth-{random.getrandbits(40):x}@127.0.0.3"
        return self.invite(extra=extra)


def credentials(challenge: Response, user: str, password: str, uri: str) -> str:
    offered = [Challenge.parse(v) for v in challenge.headers.get_all("www-authenticate")]
    sha256 = next(c for c in offered if (c.algorithm or "MD5").upper() == "SHA-256")
    cnonce = f"{random.getrandbits(64):016x}"
    return str(authorize(sha256, method="INVITE", uri=uri, username=user, password=password, cnonce=cnonce))


@pytest.fixture()
def daemon(tmp_path):
    config = tmp_path / "voicegw.yaml"
    config.write_text('calls: {trusted_sources: ["127.0.0.1/32"], auth_users: {alice: s3cret}}\n')
    with DaemonProcess("127.0.0.1", None, "--config", str(config)) as process:
        yield process


@pytest.mark.wire
def test_untrusted_source_is_challenged_then_admitted(daemon) -> None:
    caller = AuthCaller(daemon.address, sip=bound_udp("127.0.0.3"))
    try:
        uri = f"sip:demo@{daemon.address[0]}:{daemon.address[1]}"
        challenge = caller.invite()
        assert challenge.status == 401
        algorithms = [re.search(r"algorithm=([\w-]+)", v).group(1) for v in challenge.headers.get_all("www-authenticate")]
        assert algorithms == ["SHA-256", "MD5"], "RFC 8760: the stronger algorithm first"
        ok = caller.invite_with(f"Authorization: {credentials(challenge, 'alice', 's3cret', uri)}\r\n")
        assert ok.status == 200, ok
        assert caller.bye().status == 200
    finally:
        caller.close()


@pytest.mark.wire
def test_wrong_password_and_unknown_user_get_the_same_answer(daemon) -> None:
    caller = AuthCaller(daemon.address, sip=bound_udp("127.0.0.3"))
    try:
        uri = f"sip:demo@{daemon.address[0]}:{daemon.address[1]}"
        first = caller.invite()
        wrong = caller.invite_with(f"Authorization: {credentials(first, 'alice', 'guess', uri)}\r\n")
        unknown = caller.invite_with(f"Authorization: {credentials(first, 'mallory', 'guess', uri)}\r\n")
        assert wrong.status == unknown.status == 401
        assert wrong.reason == unknown.reason
        shape = [re.sub(r'(nonce|opaque)="[^"]*"', r'\1=""', v) for v in wrong.headers.get_all("www-authenticate")]
        assert shape == [re.sub(r'(nonce|opaque)="[^"]*"', r'\1=""', v) for v in unknown.headers.get_all("www-authenticate")]
        assert "stale" not in " ".join(wrong.headers.get_all("www-authenticate")).lower() or \
            "stale=false" in " ".join(wrong.headers.get_all("www-authenticate")).lower()
    finally:
        caller.close()
