"""A carrier profile's ``auth:`` and ``register:`` (issue 12): what loads, what is
refused with the file and the field, the defaults the daemon gets (config/convert.py),
and that the password is read from ``password_file`` and never shown by a repr."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from voicegw.config.convert import peer_policies
from voicegw.config.errors import ConfigError
from voicegw.config.load import load_config, load_runtime
from voicegw.sip.uri import parse_uri


def write(tmp_path: Path, profile: dict) -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "pbx.yaml").write_text(yaml.safe_dump(
        {"kind": "carrier", "addresses": ["192.0.2.0/24"], **profile}))
    config = tmp_path / "voicegw.yaml"
    config.write_text(yaml.safe_dump({"profiles_dir": "profiles"}))
    return config


def test_register_with_a_password_file_and_the_defaults(tmp_path: Path) -> None:
    config = write(tmp_path, {"auth": {"username": "trunk1", "password_file": "pw.txt", "realm": "pbx"},
                              "register": {"registrar": "sip:sip.carrier.example"}})
    (tmp_path / "profiles" / "pw.txt").write_text("hunter2-long\nignored\n")
    (registration,) = load_runtime(config).registrations
    assert (registration.trunk, registration.registrar, registration.aor, registration.contact_user) == (
        "pbx", "sip:sip.carrier.example", "sip:trunk1@sip.carrier.example", "trunk1")
    assert (registration.expires, registration.refresh_margin, registration.retry_min,
            registration.retry_max, registration.timeout, registration.transport) == (3600, 30.0, 5.0, 300.0, 32.0, "udp")
    assert registration.account is not None and registration.account.password == "hunter2-long"
    assert registration.account.realm == "pbx"
    assert "hunter2" not in repr(registration) and "hunter2" not in repr(load_config(config).profiles)


def test_no_register_no_registration(tmp_path: Path) -> None:
    config = write(tmp_path, {"auth": {"username": "u", "password": "p"}})
    assert load_runtime(config).registrations == ()


@pytest.mark.parametrize(("profile", "field", "message"), [
    ({"auth": {"username": "u"}}, "auth", "exactly one of password or password_file"),
    ({"auth": {"username": "u", "password": "p", "password_file": "f"}}, "auth", "exactly one"),
    ({"register": {"registrar": "http://x"}}, "register.registrar", "expected a sip: or sips: URI"),
    ({"register": {"registrar": "sip:x", "expires": 0}}, "register.expires", ""),
    ({"register": {"registrar": "sip:x", "bogus": 1}}, "register.bogus", ""),
])
def test_bad_fields_are_located(tmp_path: Path, profile: dict, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, profile))
    (problem,) = caught.value.problems
    assert problem.file.endswith("pbx.yaml") and problem.field == field, problem
    assert message in problem.message


def test_a_missing_password_file_is_named(tmp_path: Path) -> None:
    config = write(tmp_path, {"auth": {"username": "u", "password_file": "nope"},
                              "register": {"registrar": "sip:192.0.2.1"}})
    with pytest.raises(ConfigError) as caught:
        load_runtime(config)
    assert "auth.password_file" in str(caught.value) and "nope" in str(caught.value)


def test_health_checks_default_to_the_trunks_host_and_port(tmp_path: Path) -> None:
    config = write(tmp_path, {"trunk": "sip:{number}@192.0.2.7:5070", "health": {"interval": 10}})
    (check,) = load_runtime(config).health_checks
    assert (check.trunk, check.target, check.transport) == ("pbx", "sip:192.0.2.7:5070", "udp")
    assert (check.settings.interval, check.settings.timeout, check.settings.down_after,
            check.settings.up_after) == (10.0, 5.0, 3, 2)


def test_health_checks_need_a_target_without_a_trunk(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_runtime(write(tmp_path, {"health": {}}))
    assert "health.target" in str(caught.value)
    config = write(tmp_path, {"health": {"target": "sip:gw.carrier.example", "down_after": 1}})
    assert load_runtime(config).health_checks[0].target == "sip:gw.carrier.example"


def test_gateways_load_in_place_of_locating_the_trunk(tmp_path: Path) -> None:
    config = write(tmp_path, {
        "trunk": "sip:{number}@carrier.example", "transport": "tcp", "health": {"interval": 5},
        "gateways": ["203.0.113.10:5080",
                     {"address": "gw2.carrier.example", "priority": 20, "weight": 5, "transport": "udp"},
                     {"address": "sips:gw3.carrier.example", "priority": 20, "weight": 0}]})
    runtime = load_runtime(config)
    policy = peer_policies(load_config(config)).for_uri(parse_uri("sip:+4930555@carrier.example"))
    assert policy is not None and policy.gateways == "pbx"
    assert [(g.uri, g.transport, g.priority, g.weight) for g in policy.gateway_list] == [
        ("sip:203.0.113.10:5080", "tcp", 10, 10), ("sip:gw2.carrier.example", "udp", 20, 5),
        ("sips:gw3.carrier.example", "tls", 20, 0)]
    (check,) = runtime.health_checks
    assert check.gateways == policy.gateway_list


@pytest.mark.parametrize(("profile", "field", "message"), [
    ({"gateways": ["192.0.2.1"]}, "gateways", "gateways need a trunk"),
    ({"trunk": "sip:{number}@c.example", "gateways": ["192.0.2.1"], "outbound_proxy": "sip:p.example"},
     "outbound_proxy", "drop outbound_proxy"),
    ({"trunk": "sip:{number}@c.example", "gateways": ["192.0.2.1"], "health": {"target": "sip:c.example"}},
     "health.target", "drop health.target"),
    ({"trunk": "sip:{number}@c.example", "gateways": ["192.0.2.1:5060", "sip:192.0.2.1:5060"]},
     "gateways.1.address", "the same gateway as gateways[0]"),
    ({"trunk": "sip:{number}@c.example", "gateways": [{"address": "sips:gw.c.example", "transport": "udp"}]},
     "gateways.0", "reached over tls, the entry says udp"),
    ({"trunk": "sip:{number}@c.example", "gateways": [{"address": "gw;maddr=x"}]},
     "gateways.0.address", "no user, parameters or headers"),
    ({"trunk": "sip:{number}@c.example", "gateways": [{"address": "gw", "priority": 70000}]},
     "gateways.0.priority", ""),
    ({"trunk": "sip:{number}@c.example", "gateways": [{"address": "gw", "wieght": 1}]},
     "gateways.0.wieght", ""),
])
def test_bad_gateways_are_located(tmp_path: Path, profile: dict, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_runtime(write(tmp_path, profile))
    (problem,) = caught.value.problems
    assert problem.file.endswith("pbx.yaml") and problem.field == field and problem.line, problem
    assert message in problem.message


def test_a_registration_has_a_line_and_calls_carrying_it_are_the_trunks(tmp_path: Path) -> None:
    config = write(tmp_path, {"auth": {"username": "u", "password": "secret-1"},
                              "register": {"registrar": "sip:192.0.2.1"}})
    (registration,) = load_runtime(config).registrations
    assert len(registration.line) == 20 and registration.line == load_runtime(config).registrations[0].line
    peers = peer_policies(load_config(config))
    assert peers.line_of(parse_uri(f"sip:u@198.51.100.7:5060;line={registration.line}")) == "pbx"
    assert peers.line_of(parse_uri("sip:u@198.51.100.7:5060;line=0000")) is None
    assert peers.line_of(parse_uri("sip:u@198.51.100.7:5060")) is None
    assert peers.carrier_of(parse_uri(f"sip:u@h;line={registration.line}"), "198.51.100.7") == "pbx"
    assert peers.carrier_of(parse_uri("sip:u@h"), "192.0.2.9") == "pbx"  # by its addresses
    assert peers.carrier_of(parse_uri("sip:u@h"), "198.51.100.7") is None
    assert peers.accounts["pbx"].username == "u"
    other = write(tmp_path, {"auth": {"username": "u", "password": "secret-2"},
                             "register": {"registrar": "sip:192.0.2.1"}})
    assert load_runtime(other).registrations[0].line != registration.line  # not guessable without it


def test_keepalives_of_a_carrier_with_gateways_go_to_the_first_listed(tmp_path: Path) -> None:
    config = write(tmp_path, {"trunk": "sip:{number}@carrier.example", "keepalive": {"interval": 20},
                              "gateways": [{"address": "gw1.carrier.example:5080", "transport": "tcp"},
                                           "203.0.113.11"]})
    (keepalive,) = load_runtime(config).keepalives
    assert (keepalive.target, keepalive.transport) == ("sip:gw1.carrier.example:5080;transport=tcp", "tcp")
