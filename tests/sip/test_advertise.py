"""sip/advertise.py: which of our addresses (SIP, media) a peer is told behind a NAT."""

from __future__ import annotations

from voicegw.sip.advertise import AddressPolicy, Advertised


def test_without_an_external_address_everyone_gets_the_bind_addresses() -> None:
    policy = AddressPolicy("10.0.0.5", media_host="10.0.0.6")
    assert policy.advertised("198.51.100.7") == Advertised("10.0.0.5", "10.0.0.6")
    assert policy.rtp_host == "10.0.0.6"
    assert AddressPolicy("10.0.0.5").rtp_host == "10.0.0.5"


def test_peers_outside_local_nets_get_the_external_addresses() -> None:
    policy = AddressPolicy("10.0.0.5", sip_external_host="203.0.113.10",
                           media_external_host="203.0.113.11", local_nets=("10.0.0.0/8", "::1/128"))
    assert policy.advertised("198.51.100.7") == Advertised("203.0.113.10", "203.0.113.11")
    assert policy.advertised("10.1.2.3") == Advertised("10.0.0.5", "10.0.0.5")
    assert policy.advertised("[::1]") == policy.private
    # a name is not resolved here: it counts as outside
    assert policy.advertised("carrier.example.com").sip_host == "203.0.113.10"


def test_media_external_defaults_to_the_sip_one_and_each_may_stand_alone() -> None:
    both = AddressPolicy("10.0.0.5", sip_external_host="203.0.113.10")
    assert both.advertised("198.51.100.7") == Advertised("203.0.113.10", "203.0.113.10")
    media_only = AddressPolicy("10.0.0.5", media_external_host="203.0.113.11")
    assert media_only.advertised("198.51.100.7") == Advertised("10.0.0.5", "203.0.113.11")
