"""The guard (voicegw/transport/guard.py) on a virtual clock: no sockets, no sleeps.

Rate limit and bans per source, the whitelist, scanner user agents, bounded memory,
and the new-call admission (overload, calls in flight, calls per source). The last
tests run the guard inside the real driver and core over loopback.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from peers.net import options, status_line
from structlog.testing import capture_logs

from voicegw.engine.events import CallConnected, CallEnded, CallStarted
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.events import Address
from voicegw.sip.parser import parse_message
from voicegw.sip.refusal import Cause
from voicegw.transport.endpoint import SipEndpoint
from voicegw.transport.guard import Guard, GuardConfig, LoopLagProbe, uri_hosts

STARTED = CallStarted("udp:203.0.113.9:5060", "sip:demo@voicegw", "alice")
ENDED = CallEnded("hung up", "caller hung up")

EVIL, GOOD, CARRIER = "192.0.2.66", "192.0.2.7", "198.51.100.1"


def request(ua: str | None = None, method: str = "OPTIONS", header: str = "User-Agent") -> bytes:
    extra = f"{header}: {ua}\r\n" if ua is not None else ""
    return options(("192.0.2.1", 5060), ("192.0.2.66", 5060), method=method, extra=extra)


def guard(**changes) -> Guard:
    defaults = {"rate_requests": 10, "rate_window": 2.0, "ban_seconds": 30.0}
    defaults.update(changes)
    return Guard(GuardConfig(**defaults), whitelist=[f"{CARRIER}/32"])


# --- rate limit and ban ---------------------------------------------------------------
def test_a_burst_up_to_the_bucket_passes_and_the_next_message_bans_the_source():
    g, msg = guard(), request()
    assert all(g.check(msg, EVIL, 100.0) for _ in range(10))
    with capture_logs() as logs:
        assert not g.check(msg, EVIL, 100.0)
    assert [e["event"] for e in logs] == ["guard.banned"]
    assert logs[0]["source"] == EVIL and logs[0]["reason"] == "rate"
    assert g.banned(EVIL, 100.0)
    stats = g.statistics(100.0)
    assert (stats.passed, stats.dropped_rate, stats.bans, stats.banned_now) == (10, 1, 1, 1)


def test_a_banned_source_is_dropped_until_the_ban_ends_and_then_starts_afresh():
    g, msg = guard(), request()
    for _ in range(11):
        g.check(msg, EVIL, 0.0)
    with capture_logs() as logs:  # dropping while banned logs nothing
        assert not any(g.check(msg, EVIL, t) for t in (1.0, 10.0, 29.9))
    assert logs == []
    assert g.stats.dropped_banned == 3
    assert g.check(msg, EVIL, 30.0)  # ban over: a full bucket
    assert all(g.check(msg, EVIL, 30.0) for _ in range(9))
    assert not g.check(msg, EVIL, 30.0)  # and the same rule again
    assert g.stats.bans == 2


def test_other_sources_are_not_affected_by_a_banned_one():
    g = guard()
    for _ in range(50):
        g.check(request(), EVIL, 0.0)
    assert g.check(request(), GOOD, 0.0)
    assert not g.banned(GOOD, 0.0)


def test_the_bucket_refills_at_n_per_window():
    g, msg = guard(), request()  # 10 per 2 s: 5 tokens per second
    assert all(g.check(msg, GOOD, 0.0) for _ in range(10))
    # a steady 4/s, after the burst, never empties it
    t = 0.0
    for _ in range(100):
        t += 0.25
        assert g.check(msg, GOOD, t)
    assert not g.banned(GOOD, t)


def test_a_steady_rate_above_the_limit_bans():
    g, msg = guard(), request()  # 5/s allowed; send 10/s
    t, results = 0.0, []
    for _ in range(40):
        t += 0.1
        results.append(g.check(msg, EVIL, t))
    assert not all(results)
    assert g.banned(EVIL, t)
    assert results.index(False) > 10  # the burst allowance came first


def test_whitelisted_sources_are_never_rate_limited():
    g, msg = guard(), request()
    assert all(g.check(msg, CARRIER, 0.0) for _ in range(10_000))
    assert g.stats.bans == 0


def test_an_explicit_whitelist_replaces_the_default_one():
    g = Guard(GuardConfig(rate_requests=2, whitelist=("10.0.0.0/8",)), whitelist=[f"{CARRIER}/32"])
    assert g.is_whitelisted("10.1.2.3") and not g.is_whitelisted(CARRIER)
    assert all(g.check(request(), "10.1.2.3", 0.0) for _ in range(100))
    assert not all(g.check(request(), CARRIER, 0.0) for _ in range(3))


def test_ipv6_sources_and_whitelist():
    g = Guard(GuardConfig(rate_requests=2, whitelist=("2001:db8::/32",)))
    assert all(g.check(request(), "2001:db8::5", 0.0) for _ in range(10))
    assert not all(g.check(request(), "2001:db9::5", 0.0) for _ in range(3))


def test_disabled_guard_passes_everything():
    g = Guard(GuardConfig(enabled=False, rate_requests=1))
    assert all(g.check(request("friendly-scanner"), EVIL, 0.0) for _ in range(100))
    assert g.admit_call(None, Address("udp", EVIL, 5060), 0.0) is None  # type: ignore[arg-type]


# --- scanners ----------------------------------------------------------------------------
@pytest.mark.parametrize("ua", [
    "friendly-scanner", "Friendly-Scanner", "sipcli/v1.8", "sipvicious", "VaxSIPUserAgent/3.1",
    "sip-scan", "pplsip", "iWar", "Some Phone (friendly-scanner)",
])
def test_scanner_user_agents_are_dropped_silently_and_banned(ua):
    g = guard()
    with capture_logs() as logs:
        assert not g.check(request(ua), EVIL, 0.0)
    assert g.stats.dropped_scanner == 1
    assert [(e["event"], e["reason"]) for e in logs] == [("guard.banned", "scanner")]
    # the scanner changes its User-Agent: still banned
    assert not g.check(request("Polycom/5.0"), EVIL, 1.0)


@pytest.mark.parametrize("raw", [
    b"User-Agent : friendly-scanner\r\n",   # whitespace before the colon (HCOLON)
    b"user-agent:friendly-scanner\r\n",
    b"USER-AGENT:\tsipcli\r\n",
])
def test_scanner_header_spelling_variants(raw):
    msg = request().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + raw)
    assert not guard().check(msg, EVIL, 0.0)


def test_scanner_names_elsewhere_than_user_agent_do_not_count():
    msg = request(None).replace(b"From: <sip:test", b'From: "friendly-scanner" <sip:test')
    msg = msg.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nServer: sipcli\r\n")
    assert guard().check(msg, GOOD, 0.0)
    # nor in the body
    body = b"v=0\r\na=tool:friendly-scanner\r\n"
    msg = request("Yealink").replace(b"Content-Length: 0\r\n\r\n",
                                     b"Content-Length: %d\r\n\r\n" % len(body)) + body
    assert guard().check(msg, GOOD, 0.0)


def test_legitimate_user_agents_pass():
    g = guard()
    for ua in ("Asterisk PBX 20.1", "FreeSWITCH-mod_sofia/1.10", "Linphone/5.2", "baresip v3",
               "sipp", "Kamailio (5.7)", "voicegw/0.1.0"):
        assert g.check(request(ua), GOOD, 0.0), ua


def test_scanners_from_a_whitelisted_source_are_dropped_but_not_banned():
    g = guard()
    assert not g.check(request("friendly-scanner"), CARRIER, 0.0)
    assert g.check(request("Asterisk"), CARRIER, 0.0)
    assert g.stats.bans == 0


def test_scanner_check_can_be_disabled_or_replaced():
    g = guard(scanner_user_agents=())
    assert g.check(request("friendly-scanner"), EVIL, 0.0)
    g = guard(scanner_user_agents=("evilbot",))
    assert g.check(request("friendly-scanner"), EVIL, 0.0)
    assert not g.check(request("EvilBot 1.0"), EVIL, 0.0)


def test_scanners_not_banned_when_ban_scanners_is_off():
    g = guard(ban_scanners=False)
    assert not g.check(request("friendly-scanner"), EVIL, 0.0)
    assert g.check(request("Polycom"), EVIL, 0.0)


def test_the_user_agent_is_only_looked_for_in_the_header_section():
    # a message without an empty line (truncated): the search is bounded
    g = guard()
    head = request("Yealink").split(b"\r\n\r\n")[0] + b"\r\n" + b"X-Pad: " + b"a" * 60_000
    assert g.check(head + b"\r\nUser-Agent: sipcli\r\n", GOOD, 0.0)


# --- memory -------------------------------------------------------------------------------
def test_the_source_table_is_bounded_idle_entries_swept_first():
    g = guard(max_sources=100)
    for i in range(100):
        g.check(request(), f"10.0.{i // 250}.{i % 250}", 0.0)
    assert len(g._sources) == 100
    # 3 s later everyone is idle (their buckets are full again): swept, not evicted
    g.check(request(), "10.9.9.9", 3.0)
    assert len(g._sources) == 1 and g.stats.evicted == 0


def test_when_nothing_is_idle_the_oldest_entries_are_evicted():
    g = guard(max_sources=100)
    for i in range(1000):
        g.check(request(), f"10.{i // 250}.{i % 250}.1", 0.0)
    assert len(g._sources) <= 100
    assert g.stats.evicted > 0
    assert "10.3.249.1" in g._sources  # the newest stays


def test_a_ban_survives_a_sweep_of_idle_sources():
    g = guard(max_sources=50)
    for _ in range(20):
        g.check(request(), EVIL, 0.0)
    for i in range(60):
        g.check(request(), f"10.0.0.{i}", 5.0)
    assert g.banned(EVIL, 5.0)


# --- new calls ----------------------------------------------------------------------------
def invite() -> object:
    return parse_message(request(method="INVITE"))


def call(key: str, host: str) -> SimpleNamespace:
    return SimpleNamespace(key=key, caller=SimpleNamespace(peer=Address("udp", host, 5060)))


def test_loop_lag_makes_new_invites_503_for_the_hold_time():
    g = guard(max_loop_lag=0.25, overload_hold=2.0)
    source = Address("udp", CARRIER, 5060)
    g.note_loop_lag(0.1, 10.0)
    assert g.admit_call(invite(), source, 10.0) is None
    with capture_logs() as logs:
        g.note_loop_lag(0.4, 10.0)
        g.note_loop_lag(0.5, 10.1)  # still overloaded: one log line
    assert [e["event"] for e in logs] == ["guard.overloaded"]
    error = g.admit_call(invite(), source, 11.0)
    assert error is not None and error.status == 503 and error.cause is Cause.OVERLOAD
    assert g.overloaded(12.0) and not g.overloaded(12.1)
    assert g.admit_call(invite(), source, 12.2) is None
    assert g.stats.rejected_overload == 1 and g.stats.max_loop_lag_seen == 0.5


def test_max_calls_counts_calls_from_the_engine_timeline():
    g = guard(max_calls=2)
    source = Address("udp", CARRIER, 5060)
    g.on_call_event(call("a", CARRIER), 0.0, STARTED)
    g.on_call_event(call("a", CARRIER), 0.0, STARTED)  # counted once
    assert g.admit_call(invite(), source, 0.0) is None
    g.on_call_event(call("b", CARRIER), 0.0, STARTED)
    error = g.admit_call(invite(), source, 0.0)
    assert error is not None and error.status == 503 and error.cause is Cause.CALL_LIMIT
    g.on_call_event(call("a", CARRIER), 1.0, CallConnected("answered"))
    g.on_call_event(call("a", CARRIER), 2.0, ENDED)
    g.on_call_event(call("a", CARRIER), 2.0, ENDED)  # ended once
    assert g.admit_call(invite(), source, 2.0) is None
    assert g.statistics().calls == 1


def test_calls_per_source_apply_to_non_whitelisted_sources_only():
    g = guard(max_calls_per_source=2, max_calls=0)
    for i in range(2):
        g.on_call_event(call(f"e{i}", GOOD), 0.0, STARTED)
    for i in range(5):
        g.on_call_event(call(f"c{i}", CARRIER), 0.0, STARTED)
    refused = g.admit_call(invite(), Address("udp", GOOD, 5060), 0.0)
    assert refused is not None and refused.status == 503 and refused.cause is Cause.SOURCE_LIMIT
    assert g.admit_call(invite(), Address("udp", "192.0.2.8", 5060), 0.0) is None
    assert g.admit_call(invite(), Address("udp", CARRIER, 5060), 0.0) is None
    g.on_call_event(call("e0", GOOD), 1.0, ENDED)
    assert g.admit_call(invite(), Address("udp", GOOD, 5060), 1.0) is None
    assert g.stats.rejected_source_calls == 1


def test_uri_hosts_keeps_ip_literals_only():
    assert uri_hosts(["sip:bot@10.0.0.5:5070", "sip:agent@[2001:db8::1]:5060;transport=tcp",
                      "sip:pbx.example.com", None, "sip:10.1.1.1"]) == ("10.0.0.5", "2001:db8::1", "10.1.1.1")


# --- in the driver, with the real core ------------------------------------------------------
def run(coro) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(10):
            await coro

    asyncio.run(bounded())


async def _endpoint(g: Guard) -> SipEndpoint:
    endpoint = SipEndpoint(guard=g)
    await endpoint.start("127.0.0.1", 0, None)
    address = endpoint.udp_address
    endpoint.core = UserAgentCore(CoreConfig(host="127.0.0.1", udp_port=address.port))
    return endpoint


async def _ask(target: tuple[str, int], data: bytes, timeout: float = 0.3) -> bytes | None:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr) -> None:
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    try:
        transport.sendto(data, target)
        return await asyncio.wait_for(got, timeout)
    except TimeoutError:
        return None
    finally:
        transport.close()


def test_the_driver_drops_what_the_guard_refuses_before_the_core():
    async def main() -> None:
        g = Guard(GuardConfig(rate_requests=3, ban_seconds=60))
        endpoint = await _endpoint(g)
        try:
            target = ("127.0.0.1", endpoint.udp_address.port)
            answers = [await _ask(target, options(target, ("127.0.0.1", 5999))) for _ in range(5)]
            assert [status_line(a)[0] if a else None for a in answers] == [200, 200, 200, None, None]
            silent = await _ask(target, options(target, ("127.0.0.1", 5999), extra="User-Agent: sipcli\r\n"))
            assert silent is None
            stats = endpoint.statistics()
            assert stats.guard.dropped_rate == 1 and stats.guard.dropped_banned == 2
            assert stats.core.requests_received == 3  # the core never saw the rest
        finally:
            await endpoint.close()

    run(main())


def test_the_core_answers_503_with_retry_after_when_the_guard_refuses_a_call():
    async def main() -> None:
        g = Guard(GuardConfig(max_loop_lag=0.25))
        endpoint = await _endpoint(g)
        endpoint.core.admission = g.admit_call
        try:
            target = ("127.0.0.1", endpoint.udp_address.port)
            g.note_loop_lag(1.0, asyncio.get_running_loop().time())
            data = options(target, ("127.0.0.1", 5999), method="INVITE")
            answer = await _ask(target, data)
            assert answer is not None and status_line(answer)[0] == 503
            assert b"\r\nRetry-After: " in answer
            assert b'\r\nReason: SIP;cause=503;text="overload"\r\n' in answer  # RFC 3326: why
            # OPTIONS are still answered while overloaded
            answer = await _ask(target, options(target, ("127.0.0.1", 5999)))
            assert answer is not None and status_line(answer)[0] == 200
        finally:
            await endpoint.close()

    run(main())


def test_the_lag_probe_reports_a_stalled_loop():
    async def main() -> None:
        g = Guard(GuardConfig(max_loop_lag=0.05))
        probe = LoopLagProbe(asyncio.get_running_loop(), g, interval=0.01)
        probe.start()
        try:
            await asyncio.sleep(0.03)
            import time
            time.sleep(0.12)  # noqa: ASYNC251 - a synchronous stall, as a CPU-bound burst would cause
            await asyncio.sleep(0.03)
        finally:
            probe.stop()
        assert g.stats.max_loop_lag_seen >= 0.08
        assert g.overloaded(asyncio.get_running_loop().time())

    run(main())


# --- config ---------------------------------------------------------------------------------
def test_the_guard_section_of_the_config_file():
    from voicegw.config.defaults import from_mapping
    from voicegw.config.errors import ConfigError

    config = from_mapping({"guard": {"rate_requests": 50, "ban_seconds": 5, "whitelist": ["10.0.0.0/8"],
                                     "scanner_user_agents": ["EvilBot"], "ban_scanners": False}})
    assert config.guard.rate_requests == 50 and config.guard.ban_seconds == 5
    assert config.guard.whitelist == ("10.0.0.0/8",)
    assert config.guard.scanner_user_agents == ("evilbot",)
    assert from_mapping({}).guard == GuardConfig()
    for bad, field in [({"rate_requests": 0}, "guard.rate_requests"), ({"whitelist": ["nope"]}, "guard.whitelist"),
                       ({"ban_scanners": 1}, "guard.ban_scanners"), ({"bogus": 1}, "guard: unknown"),
                       ({"max_calls": -1}, "guard.max_calls")]:
        with pytest.raises(ConfigError, match=field):
            from_mapping({"guard": bad})
