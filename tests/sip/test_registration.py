"""The trunk registration machine (voicegw/sip/registration.py) on a virtual clock, against
a registrar written here with the project's own digest server: the challenge answered
(and a third one refused with ``auth``), the granted expiry and its refresh, 423
Min-Expires, Retry-After on 503, the back-off, the un-REGISTER at stop, and that the
Call-ID stays while the CSeq grows. Real registrars (Asterisk, sipp) are in
tests/wire/test_register_wire.py."""

from __future__ import annotations

import pytest

from voicegw.sip.digest import Credentials, DigestServer, Verdict
from voicegw.sip.digest_client import Account
from voicegw.sip.message import Headers, Request, Response
from voicegw.sip.registration import TABLE, RegInput, Registration, RegistrationConfig, RegState

NOW = 1000.0
SERVER = DigestServer("pbx.test", b"s" * 32, algorithms=("MD5",))
PASSWORD = "s3cret-pw"
CONTACT = "sip:trunk1@192.0.2.10:5060"


def config(**changes: object) -> RegistrationConfig:
    values: dict[str, object] = {
        "trunk": "pbx", "registrar": "sip:pbx.test", "aor": "sip:trunk1@pbx.test", "contact_user": "trunk1",
        "expires": 120, "refresh_margin": 30.0, "retry_min": 5.0, "retry_max": 40.0,
        "account": Account("trunk1", PASSWORD)}
    values.update(changes)
    return RegistrationConfig(**values)  # type: ignore[arg-type]


def answer(request: Request, status: int, *headers: tuple[str, str], reason: str = "") -> Response:
    copied = [(n, v) for n, v in request.headers if n.lower() in ("via", "from", "to", "call-id", "cseq")]
    return Response(status, reason or "x", Headers([*copied, *headers]), b"", "SIP/2.0")


def registrar(request: Request, now: float, grant: int | None = None) -> Response:
    """Challenges a REGISTER without valid credentials, grants one with them."""
    value = request.headers.get("authorization")
    if value is not None:
        credentials = Credentials.parse(value)
        if SERVER.verify(credentials, method="REGISTER", password=PASSWORD, now=now,
                         uri=request.uri) is Verdict.OK:
            expires = grant if grant is not None else int(request.headers.get("expires") or 0)
            return answer(request, 200, ("Contact", f"<{CONTACT}>;expires={expires}"))
    return answer(request, 401, *(("WWW-Authenticate", str(c)) for c in SERVER.challenges(now=now)))


def register_once(reg: Registration, now: float, grant: int | None = None) -> list[Request]:
    """Start (or fire the timer) and let the registrar answer until it settles."""
    sent = reg.start(now) if reg.state is RegState.UNREGISTERED else reg.handle_timer(now)
    seen = list(sent)
    while sent:
        sent = reg.received(registrar(sent[0], now, grant), now)
        seen += sent
    return seen


def test_a_challenge_is_answered_and_the_grant_is_refreshed_before_it_expires() -> None:
    reg = Registration(config(), CONTACT, "192.0.2.10")
    sent = register_once(reg, NOW, grant=60)
    assert [r.headers.get("cseq") for r in sent] == ["1 REGISTER", "2 REGISTER"]
    assert sent[0].headers.get("authorization") is None
    credentials = Credentials.parse(sent[1].headers.get("authorization") or "")
    assert (credentials.username, credentials.uri, credentials.realm) == ("trunk1", "sip:pbx.test", "pbx.test")
    assert sent[1].headers.get("expires") == "120" and sent[1].headers.get("contact") == f"<{CONTACT}>"
    assert reg.state is RegState.REGISTERED and reg.granted == 60
    assert reg.get_timer() == NOW + 30  # 60 granted, margin 30
    assert reg.handle_timer(NOW + 29) == []  # not yet
    refresh = register_once(reg, NOW + 30, grant=60)
    assert [r.headers.get("cseq") for r in refresh] == ["3 REGISTER", "4 REGISTER"]
    assert {r.headers.get("call-id") for r in sent + refresh} == {reg.call_id}  # 10.2
    assert reg.state is RegState.REGISTERED and reg.status().failures == 0


def test_a_short_grant_is_refreshed_half_way() -> None:
    reg = Registration(config(expires=10), CONTACT, "192.0.2.10")
    register_once(reg, NOW)
    assert reg.granted == 10 and reg.get_timer() == NOW + 5


def test_a_third_challenge_for_one_request_is_an_auth_failure_with_back_off() -> None:
    reg = Registration(config(), CONTACT, "192.0.2.10")
    sent = reg.start(NOW)
    for _ in range(2):  # a server that challenges forever, each time with a fresh nonce
        sent = reg.received(answer(sent[0], 401, *(("WWW-Authenticate", str(c)) for c in
                                                   SERVER.challenges(nonce=f"n{reg.cseq}", stale=True))), NOW)
        assert len(sent) == 1
    stale = str(SERVER.challenges(nonce="n9", stale=True)[0])
    assert reg.received(answer(sent[0], 401, ("WWW-Authenticate", stale)), NOW) == []
    status = reg.status()
    assert (status.state, status.last_status, status.failures) == ("failed", "auth", 1)
    assert "challenged 3 times" in status.reason and PASSWORD not in repr(reg.config)
    assert reg.get_timer() == NOW + 5


def test_wrong_password_fails_with_auth_and_backs_off_doubling_to_the_cap() -> None:
    reg = Registration(config(account=Account("trunk1", "wrong")), CONTACT, "192.0.2.10")
    now = NOW
    waits = []
    for _ in range(5):
        register_once(reg, now)
        assert reg.state is RegState.FAILED and reg.last_status == "auth"
        timer = reg.get_timer()
        assert timer is not None
        waits.append(timer - now)
        now = timer
    assert waits == [5, 10, 20, 40, 40]
    assert "credentials refused" in reg.reason


def test_423_asks_again_with_min_expires() -> None:
    reg = Registration(config(account=None, expires=30), CONTACT, "192.0.2.10")
    first = reg.start(NOW)
    again = reg.received(answer(first[0], 423, ("Min-Expires", "90")), NOW)
    assert again[0].headers.get("expires") == "90" and again[0].headers.get("cseq") == "2 REGISTER"
    reg.received(answer(again[0], 200, ("Expires", "90")), NOW)
    assert (reg.state, reg.granted, reg.get_timer()) == (RegState.REGISTERED, 90, NOW + 60)


def test_503_with_retry_after_waits_what_the_registrar_asked() -> None:
    reg = Registration(config(), CONTACT, "192.0.2.10")
    first = reg.start(NOW)
    reg.received(answer(first[0], 503, ("Retry-After", "17 (maintenance)")), NOW)
    assert reg.state is RegState.FAILED and reg.get_timer() == NOW + 17
    assert reg.status().reason.startswith("503")


def test_403_and_no_answer_back_off_then_register_again() -> None:
    reg = Registration(config(), CONTACT, "192.0.2.10")
    first = reg.start(NOW)
    reg.received(answer(first[0], 403, reason="Forbidden"), NOW)
    assert (reg.state, reg.last_status, reg.reason) == (RegState.FAILED, 403, "403 Forbidden")
    retry = reg.handle_timer(NOW + 5)
    assert reg.state is RegState.REGISTERING and retry[0].headers.get("cseq") == "2 REGISTER"
    assert reg.timed_out(NOW + 37) == []
    assert (reg.state, reg.last_status, reg.get_timer()) == (RegState.FAILED, "timeout", NOW + 37 + 10)
    assert reg.received(answer(retry[0], 200), NOW + 38) == []  # too late: ignored
    assert reg.state is RegState.FAILED


def test_stop_removes_the_binding_with_expires_zero() -> None:
    reg = Registration(config(), CONTACT, "192.0.2.10")
    register_once(reg, NOW)
    bye = reg.stop(NOW + 1)
    assert bye[0].headers.get("expires") == "0" and reg.state is RegState.UNREGISTERING
    challenged = reg.received(registrar(bye[0], NOW + 1), NOW + 1)
    assert challenged[0].headers.get("expires") == "0" and challenged[0].headers.get("authorization")
    reg.received(registrar(challenged[0], NOW + 1), NOW + 1)
    assert reg.state is RegState.UNREGISTERED and reg.get_timer() is None


def test_stop_while_failed_sends_nothing() -> None:
    reg = Registration(config(), CONTACT, "192.0.2.10")
    reg.timed_out(NOW)  # nothing pending: ignored
    first = reg.start(NOW)
    reg.received(answer(first[0], 403), NOW)
    assert reg.stop(NOW) == [] and reg.state is RegState.UNREGISTERED


def test_no_credentials_and_a_challenge_is_an_auth_failure() -> None:
    reg = Registration(config(account=None), CONTACT, "192.0.2.10")
    first = reg.start(NOW)
    reg.received(registrar(first[0], NOW), NOW)
    assert (reg.state, reg.last_status) == (RegState.FAILED, "auth")


@pytest.mark.parametrize("state", list(RegState))
def test_stop_is_defined_in_every_state_but_unregistering(state: RegState) -> None:
    assert ((state, RegInput.STOP) in TABLE) == (state is not RegState.UNREGISTERING)
