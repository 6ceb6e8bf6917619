"""sip/keepalive.py: what a keep-alive is on each transport, and that a run of failures
is reported once and its end once."""

from __future__ import annotations

from voicegw.sip.keepalive import CRLF_PING, KeepaliveState, Kind, Report, kind_for


def test_crlf_on_connections_options_on_udp() -> None:
    assert kind_for("tcp") is Kind.CRLF and kind_for("tls") is Kind.CRLF and kind_for("udp") is Kind.OPTIONS
    assert CRLF_PING == b"\r\n\r\n"  # RFC 5626 3.5.1


def test_a_run_of_failures_is_reported_once_and_its_end_once() -> None:
    state = KeepaliveState()
    assert state.answered() is Report.NONE
    assert [state.failed() for _ in range(3)] == [Report.FAILING, Report.NONE, Report.NONE]
    assert state.failures == 3
    assert state.answered() is Report.RECOVERED and state.answered() is Report.NONE
    assert state.failed() is Report.FAILING
