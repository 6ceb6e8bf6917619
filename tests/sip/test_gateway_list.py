"""A carrier's ``gateways:`` list, pure (voicegw/sip/gateway_list.py): addresses as an
operator types them, and RFC 2782's order (priority first, weighted random inside one)
with a seeded draw, so the weight spread is checked exactly, not statistically."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from voicegw.sip.gateway_list import GatewaySpec, order, parse_gateway


@pytest.mark.parametrize(("typed", "transport", "uri", "via"), [
    ("203.0.113.10", "udp", "sip:203.0.113.10", "udp"),
    ("203.0.113.10:5080", "tcp", "sip:203.0.113.10:5080", "tcp"),
    ("gw1.carrier.example", "udp", "sip:gw1.carrier.example", "udp"),
    ("[2001:db8::1]:5062", "udp", "sip:[2001:db8::1]:5062", "udp"),
    ("sip:gw1.carrier.example;transport=tcp", "udp", "sip:gw1.carrier.example", "tcp"),
    ("sips:gw1.carrier.example", "udp", "sips:gw1.carrier.example", "tls"),
    (" gw2.carrier.example:5061 ", "tls", "sip:gw2.carrier.example:5061", "tls"),
])
def test_addresses_as_typed(typed: str, transport: str, uri: str, via: str) -> None:
    spec = parse_gateway(typed, transport)
    assert (spec.uri, spec.transport) == (uri, via)


@pytest.mark.parametrize(("typed", "message"), [
    ("user@gw.example", "no user"),
    ("gw.example;lr", "no user, parameters"),
    ("sip:gw.example?X=1", "no user"),
    ("sip:gw.example;transport=sctp", "not udp, tcp or tls"),
    ("gw.example:notaport", "not HOST"),
    ("", "not HOST"),
])
def test_bad_addresses_say_why(typed: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_gateway(typed, "udp")


def spec(name: str, priority: int, weight: int) -> GatewaySpec:
    return GatewaySpec(f"sip:{name}", "udp", priority, weight)


def test_lowest_priority_first_whatever_the_weights() -> None:
    listed = (spec("late", 20, 1000), spec("first", 5, 0), spec("mid", 10, 1))
    rnd = random.Random(7)
    for _ in range(50):
        assert [g.uri for g in order(listed, lambda n: rnd.randint(0, n))] == ["sip:first", "sip:mid", "sip:late"]


def test_weights_share_the_first_place_among_equal_priorities() -> None:
    listed = (spec("a", 10, 30), spec("b", 10, 10), spec("c", 10, 0), spec("backup", 20, 50))
    rnd = random.Random(12)  # seeded: the counts below are exact for this seed
    firsts = Counter(order(listed, lambda n: rnd.randint(0, n))[0].uri for _ in range(4000))
    assert firsts["sip:backup"] == 0
    # RFC 2782: shares 30/41, 10/41, 1/41 (a zero weight is picked rarely, not never)
    assert 2800 <= firsts["sip:a"] <= 3050 and 850 <= firsts["sip:b"] <= 1100 and 40 <= firsts["sip:c"] <= 160
    assert sum(firsts.values()) == 4000


def test_every_gateway_is_in_the_order_once() -> None:
    listed = tuple(spec(f"g{i}", i % 3, i) for i in range(8))
    rnd = random.Random(3)
    ordered = order(listed, lambda n: rnd.randint(0, n))
    assert sorted(g.uri for g in ordered) == sorted(g.uri for g in listed)
    assert [g.priority for g in ordered] == sorted(g.priority for g in listed)
