"""RFC 3263 server location as a pure procedure (voicegw/sip/locate.py): the questions
asked for each kind of URI, in order, and the targets the answers give; the RFC 2782
SRV order with an injected draw. The same procedure against a real DNS server is
tests/transport/test_dns.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicegw.sip.locate import LocateError, Locator, Naptr, Query, QueryType, Srv, Target, order_srv
from voicegw.sip.uri import parse_uri

A, AAAA, SRV, NAPTR = QueryType.A, QueryType.AAAA, QueryType.SRV, QueryType.NAPTR


def run(uri: str, answers: dict[tuple[str, QueryType], list], **kw) -> tuple[list[Query], list[Target]]:
    """Drives a Locator with canned answers; returns the questions asked and the targets."""
    locator = Locator(parse_uri(uri), **kw)
    asked = []
    for _ in range(50):
        query = locator.next_query()
        if query is None:
            return asked, locator.targets
        asked.append(query)
        locator.answer(query, answers.get((query.name, query.type), []))
    raise AssertionError("the locator never finished")


def test_numeric_host_needs_no_dns_udp_by_default_tls_for_sips():
    assert run("sip:agent@127.0.0.5:5071", {}) == ([], [Target("udp", "127.0.0.5", 5071, "127.0.0.5")])
    assert run("sips:agent@127.0.0.5", {})[1] == [Target("tls", "127.0.0.5", 5061, "127.0.0.5")]
    assert run("sip:a@[::1];transport=tcp", {})[1] == [Target("tcp", "::1", 5060, "::1")]


def test_a_port_means_address_records_only():
    asked, targets = run("sip:gw.example:5080", {("gw.example", A): ["192.0.2.1"]})
    assert asked == [Query("gw.example", A), Query("gw.example", AAAA)]
    assert targets == [Target("udp", "gw.example", 5080, "192.0.2.1")]


def test_a_transport_parameter_skips_naptr_and_asks_that_srv():
    answers = {("_sip._tcp.gw.example", SRV): [Srv(10, 0, 5070, "edge.gw.example")],
               ("edge.gw.example", A): ["192.0.2.7"]}
    asked, targets = run("sip:gw.example;transport=tcp", answers)
    assert asked[0] == Query("_sip._tcp.gw.example", SRV)
    assert targets == [Target("tcp", "edge.gw.example", 5070, "192.0.2.7")]


def test_naptr_order_then_preference_picks_the_srv_domain():
    answers = {
        ("carrier.example", NAPTR): [
            Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.carrier.example"),
            Naptr(10, 20, "s", "SIP+D2T", "_sip._tcp.carrier.example"),
            Naptr(10, 10, "s", "SIP+D2X", "_sip._sctp.carrier.example"),  # unsupported
        ],
        ("_sip._tcp.carrier.example", SRV): [Srv(10, 0, 5060, "tcp1.carrier.example")],
        ("tcp1.carrier.example", A): ["192.0.2.10"],
    }
    asked, targets = run("sip:+15551234@carrier.example", answers)
    assert asked[:2] == [Query("carrier.example", NAPTR), Query("_sip._tcp.carrier.example", SRV)]
    assert targets == [Target("tcp", "tcp1.carrier.example", 5060, "192.0.2.10")]


def test_without_naptr_srv_is_tried_per_transport_in_our_order():
    answers = {("_sip._tcp.pbx.example", SRV): [Srv(1, 0, 5062, "pbx1.pbx.example")],
               ("pbx1.pbx.example", AAAA): ["2001:db8::1"]}
    asked, targets = run("sip:1000@pbx.example", answers)
    assert [q.name for q in asked[:3]] == ["pbx.example", "_sip._udp.pbx.example", "_sip._tcp.pbx.example"]
    assert targets == [Target("tcp", "pbx1.pbx.example", 5062, "2001:db8::1")]


def test_without_naptr_or_srv_the_host_at_the_default_port():
    asked, targets = run("sips:desk.example", {("desk.example", A): ["192.0.2.3"]})
    assert [q.name for q in asked] == ["desk.example", "_sips._tcp.desk.example", "desk.example", "desk.example"]
    assert targets == [Target("tls", "desk.example", 5061, "192.0.2.3")]


def test_srv_targets_resolve_in_priority_order_each_to_all_its_addresses():
    answers = {("_sip._udp.c.example", SRV): [Srv(20, 0, 5060, "backup.c.example"),
                                               Srv(10, 0, 5060, "main.c.example")],
               ("main.c.example", A): ["192.0.2.1", "192.0.2.2"],
               ("backup.c.example", A): ["192.0.2.9"]}
    _, targets = run("sip:c.example;transport=udp", answers)
    assert [t.address for t in targets] == ["192.0.2.1", "192.0.2.2", "192.0.2.9"]


def test_a_dot_target_means_not_offered_and_nothing_usable_is_an_error():
    with pytest.raises(LocateError):
        run("sip:none.example;transport=udp", {("_sip._udp.none.example", SRV): [Srv(0, 0, 0, ".")]})
    with pytest.raises(LocateError):
        run("sip:nxdomain.example", {})


def test_bad_transports_are_refused():
    with pytest.raises(LocateError):
        Locator(parse_uri("sips:a@b.example;transport=udp"))
    with pytest.raises(LocateError):
        Locator(parse_uri("sip:a@b.example;transport=carrier-pigeon"))


def test_srv_weight_draw_follows_rfc_2782():
    records = [Srv(10, 0, 1, "zero"), Srv(10, 60, 1, "sixty"), Srv(10, 40, 1, "forty"), Srv(5, 0, 1, "first")]
    # draw 0 picks the zero-weight record (first in the running sum), then 100 picks sixty
    draws = iter([0, 0, 100, 40])
    assert [r.target for r in order_srv(records, lambda n: next(draws))] == ["first", "zero", "sixty", "forty"]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 100)), min_size=1, max_size=8), st.randoms())
def test_srv_order_is_a_permutation_sorted_by_priority(specs, rnd):
    records = [Srv(p, w, 5060 + i, f"t{i}") for i, (p, w) in enumerate(specs)]
    ordered = order_srv(records, lambda n: rnd.randint(0, n))
    assert sorted(ordered, key=lambda r: r.port) == sorted(records, key=lambda r: r.port)
    assert [r.priority for r in ordered] == sorted(r.priority for r in records)
