"""The channel router (voicegw/flow/router.py) as a pure function: what a new INVITE
says in, the first matching route's channel out; patterns anchored at both ends."""

from __future__ import annotations

import ipaddress

from voicegw.flow.router import DEFAULT_CHANNEL, CallFacts, Channel, Route, Router, compile_pattern
from voicegw.flow.runner import Flow, HangupNode
from voicegw.settings import EngineConfig
from voicegw.sip.message import Request
from voicegw.sip.parser import parse_message


def flow(name: str) -> Flow:
    return Flow(name, "bye", {"bye": HangupNode("bye")})


SALES, SUPPORT, WEB, PARTNER, MAIN = (Channel(n, flow(n)) for n in ("sales", "support", "web", "partner", "main"))
ROUTER = Router(MAIN, (
    Route(SALES, called=compile_pattern(r"\+49305551\d{3}")),
    Route(WEB, headers=(("X-Channel", compile_pattern("web|chat")),)),
    Route(PARTNER, carrier="partner", networks=(ipaddress.ip_network("192.0.2.0/28"),)),
    Route(SUPPORT, called=compile_pattern(r"2000|2001"), to=compile_pattern("help")),
))


def invite(ruri: str, to: str = "sip:x@gw", *headers: str) -> Request:
    lines = [f"INVITE {ruri} SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1", "From: <sip:a@c>;tag=1",
             f"To: <{to}>", "Call-ID: c1", "CSeq: 1 INVITE", "Max-Forwards: 70", *headers, "Content-Length: 0"]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def facts(ruri: str, to: str = "sip:x@gw", *headers: str, source: str = "198.51.100.1") -> CallFacts:
    return CallFacts.of(invite(ruri, to, *headers), source)


def test_the_called_number_picks_the_channel_and_the_pattern_is_anchored() -> None:
    assert ROUTER.route(facts("sip:+49305551234@gw")) is SALES
    assert ROUTER.route(facts("sip:+493055512345@gw")) is MAIN  # one digit too many: no prefix match
    assert ROUTER.route(facts("sip:0049305551234@gw")) is MAIN  # no substring match either
    assert ROUTER.route(facts("tel:+49305551234")) is SALES  # tel: URIs route on their number
    assert ROUTER.route(facts("sip:%2B49305551234@gw")) is SALES  # the user is compared unescaped


def test_a_header_matches_on_any_of_its_lines_and_a_missing_one_never() -> None:
    assert ROUTER.route(facts("sip:9@gw", "sip:x@gw", "X-Channel: chat")) is WEB
    assert ROUTER.route(facts("sip:9@gw", "sip:x@gw", "x-channel: voice", "X-CHANNEL: web")) is WEB
    assert ROUTER.route(facts("sip:9@gw", "sip:x@gw", "X-Channel: webchat")) is MAIN
    assert ROUTER.route(facts("sip:9@gw")) is MAIN


def test_the_carrier_is_the_source_address_in_its_networks() -> None:
    assert ROUTER.route(facts("sip:9@gw", source="192.0.2.3")) is PARTNER
    assert ROUTER.route(facts("sip:9@gw", source="192.0.2.16")) is MAIN
    assert ROUTER.route(facts("sip:9@gw", source="not-an-address")) is MAIN


def test_a_call_to_a_carriers_registered_binding_is_that_carriers_whatever_its_source() -> None:
    lined = CallFacts.of(invite("sip:agent@gw;line=abc"), "198.51.100.1", "partner")
    assert ROUTER.route(lined) is PARTNER
    # another carrier's line: not the partner's, even from the partner's addresses
    other = CallFacts.of(invite("sip:agent@gw;line=def"), "192.0.2.3", "pbx")
    assert ROUTER.route(other) is MAIN


def test_every_condition_of_a_route_must_match_and_the_first_route_wins() -> None:
    assert ROUTER.route(facts("sip:2001@gw", "sip:help@gw")) is SUPPORT
    assert ROUTER.route(facts("sip:2001@gw", "sip:sales@gw")) is MAIN  # To does not match
    # the number is sales' and the header is web's: sales comes first
    assert ROUTER.route(facts("sip:+49305551234@gw", "sip:x@gw", "X-Channel: web")) is SALES
    # from the partner carrier with web's header: web comes first
    assert ROUTER.route(facts("sip:9@gw", "sip:x@gw", "X-Channel: web", source="192.0.2.1")) is WEB


def test_a_route_without_conditions_matches_every_call() -> None:
    catch_all = Route(SUPPORT)
    assert catch_all.is_default and catch_all.matches(CallFacts("", "", "::1"))
    assert not Route(SALES, carrier="partner").is_default


def test_channels_lists_each_once_in_route_order() -> None:
    router = Router(MAIN, (Route(SALES, called=compile_pattern("1")), Route(SALES, to=compile_pattern("2")),
                           Route(WEB, to=compile_pattern("3"))))
    assert [c.name for c in router.channels()] == ["sales", "web", "main"]


def test_without_routes_every_call_is_on_the_default_channel_with_the_engine_flow() -> None:
    config = EngineConfig(flow=flow("only"), bot_uri="sip:bot@127.0.0.1:5070")
    channel = config.channel_for(facts("sip:1@gw"))
    assert (channel.name, channel.flow.name, channel.bot_uri) == (DEFAULT_CHANNEL, "only", "sip:bot@127.0.0.1:5070")
    assert EngineConfig(router=ROUTER).channel_for(facts("sip:+49305551234@gw")) is SALES
