"""RFC 3263 lookups against a real DNS server (voicegw/transport/dns.py over dnsmasq on a
loopback port, tests/peers/dnsmasq.py): NAPTR -> SRV -> A chains, SRV priority order for
failover, fallbacks when records are missing, NXDOMAIN, a server that never answers, a
CNAME loop, and the cache (a warm lookup sends no query). What the server was asked is
read from its own query log."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import dns.message
import dns.rrset
import pytest
from peers.dnsmasq import DNSMASQ, Dnsmasq

from voicegw.sip.locate import Target
from voicegw.sip.uri import parse_uri
from voicegw.transport.dns import DnsError, DnsSettings, Resolver

pytestmark = pytest.mark.skipif(DNSMASQ is None, reason="dnsmasq not installed: run scripts/bootstrap")

RECORDS = [
    # carrier.voicegw.test: NAPTR prefers TCP, whose SRV has a primary and a backup
    "naptr-record=carrier.voicegw.test,10,10,S,SIP+D2T,,_sip._tcp.carrier.voicegw.test",
    "naptr-record=carrier.voicegw.test,20,10,S,SIP+D2U,,_sip._udp.carrier.voicegw.test",
    "srv-host=_sip._tcp.carrier.voicegw.test,gw2.voicegw.test,5072,20,10",
    "srv-host=_sip._tcp.carrier.voicegw.test,gw1.voicegw.test,5071,10,10",
    "host-record=gw1.voicegw.test,127.0.0.21",
    "host-record=gw2.voicegw.test,127.0.0.22",
    # pbx.voicegw.test: no NAPTR, SRV over UDP only
    "srv-host=_sip._udp.pbx.voicegw.test,pbx1.voicegw.test,5090,0,0",
    "host-record=pbx1.voicegw.test,127.0.0.30",
    # plain.voicegw.test: only an A record
    "host-record=plain.voicegw.test,127.0.0.40",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    dns = Dnsmasq(tmp_path_factory.mktemp("dns"), RECORDS).start()
    yield dns
    dns.stop()


def resolver(port: int, timeout: float = 2.0) -> Resolver:
    return Resolver(DnsSettings(servers=("127.0.0.1",), port=port, timeout=timeout), time.monotonic)


def locate(res: Resolver, uri: str) -> list[Target]:
    return asyncio.run(res.locate(parse_uri(uri)))


def test_naptr_srv_a_chain_gives_the_targets_in_failover_order(server):
    targets = locate(resolver(server.port), "sip:+15551234@carrier.voicegw.test")
    assert targets == [Target("tcp", "gw1.voicegw.test", 5071, "127.0.0.21"),
                       Target("tcp", "gw2.voicegw.test", 5072, "127.0.0.22")]
    asked = server.queries()
    assert any("NAPTR] carrier.voicegw.test" in q for q in asked)
    assert any("SRV] _sip._tcp.carrier.voicegw.test" in q for q in asked)


def test_srv_without_naptr_and_a_record_without_srv(server):
    res = resolver(server.port)
    assert locate(res, "sip:1000@pbx.voicegw.test") == [Target("udp", "pbx1.voicegw.test", 5090, "127.0.0.30")]
    assert locate(res, "sip:agent@plain.voicegw.test") == [Target("udp", "plain.voicegw.test", 5060, "127.0.0.40")]
    assert locate(res, "sip:agent@plain.voicegw.test:5099;transport=tcp") == [
        Target("tcp", "plain.voicegw.test", 5099, "127.0.0.40")]


def test_nxdomain_is_a_dns_error(server):
    with pytest.raises(DnsError, match="no usable DNS records"):
        locate(resolver(server.port), "sip:agent@missing.voicegw.test")


def test_a_cname_loop_is_a_dns_error_not_a_hang():
    """dnsmasq refuses to serve a CNAME loop, so a one-answer server built with dnspython's
    message API sends one: loop1 -> loop2 -> loop1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)

        def answer_once() -> None:
            data, peer = sock.recvfrom(512)
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            for name, target in (("loop1", "loop2"), ("loop2", "loop1")):
                reply.answer.append(dns.rrset.from_text(f"{name}.voicegw.test.", 60, "IN", "CNAME",
                                                        f"{target}.voicegw.test."))
            sock.sendto(reply.to_wire(), peer)

        server = threading.Thread(target=answer_once, daemon=True)
        server.start()
        with pytest.raises(DnsError):
            locate(resolver(sock.getsockname()[1], timeout=2.0), "sip:agent@loop1.voicegw.test:5060")
        server.join(5.0)


def test_a_server_that_never_answers_fails_within_the_timeout():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        started = time.monotonic()
        with pytest.raises(DnsError, match="timed out"):
            locate(resolver(silent.getsockname()[1], timeout=0.5), "sip:agent@slow.voicegw.test:5060")
        assert time.monotonic() - started < 5.0  # bounded: the lookup gave up on its own


def test_the_cache_answers_a_warm_lookup_without_a_query(server):
    res = resolver(server.port)

    async def twice() -> tuple[int, int]:
        await res.locate(parse_uri("sip:a@carrier.voicegw.test"))
        cold = res.queries
        await res.locate(parse_uri("sip:b@carrier.voicegw.test"))
        return cold, res.queries - cold

    cold, warm = asyncio.run(twice())
    assert cold >= 4 and warm == 0
