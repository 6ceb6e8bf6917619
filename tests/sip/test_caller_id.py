"""sip/caller_id.py: From, P-Asserted/Preferred-Identity, Diversion and Privacy of an
outgoing leg, from the caller's INVITE and a profile's policy."""

from __future__ import annotations

from voicegw.sip.caller_id import CallerIdPolicy, outgoing_identity
from voicegw.sip.message import Headers, Request


def invite(from_: str, *extra: tuple[str, str], uri: str = "sip:+4930555@198.51.100.1") -> Request:
    return Request("INVITE", uri, Headers([("From", f"{from_};tag=1"), ("To", f"<{uri}>"), *extra]))


def headers(identity) -> dict[str, str]:
    return dict(identity.headers)


def test_default_presents_the_caller_with_pai_and_the_dialled_number_in_diversion() -> None:
    got = outgoing_identity(CallerIdPolicy(), invite('"Alice" <sip:+4917012345@carrier>'), host="203.0.113.10")
    assert got.from_ == '"Alice" <sip:+4917012345@203.0.113.10>'
    assert headers(got) == {
        "P-Asserted-Identity": '"Alice" <sip:+4917012345@203.0.113.10>',
        "Diversion": "<sip:+4930555@203.0.113.10>;reason=unconditional;counter=1",
    }


def test_the_callers_own_pai_wins_over_its_from() -> None:
    caller = invite("<sip:0301234@pbx>", ("P-Asserted-Identity", '"Bob" <tel:+49301234>'))
    got = outgoing_identity(CallerIdPolicy(identity="ppi", diversion=False), caller, host="h")
    assert got.from_ == '"Bob" <sip:+49301234@h>'
    assert headers(got) == {"P-Preferred-Identity": '"Bob" <sip:+49301234@h>'}


def test_fixed_number_without_plus_and_a_tech_prefix() -> None:
    policy = CallerIdPolicy(number="+4930999", display="ACME", plus=False, tech_prefix="77#", identity="none",
                            diversion=False)
    got = outgoing_identity(policy, invite("<sip:+4917012345@carrier>"), host="h")
    assert got.from_ == '"ACME" <sip:77%234930999@h>'  # '#' escaped in a user part (25.1)
    assert got.headers == ()
    caller_number = CallerIdPolicy(plus=False, display=None, identity="pai", diversion=False)
    got = outgoing_identity(caller_number, invite('"A" <sip:+49-170-12345@c>'), host="h")
    assert got.from_ == "<sip:4917012345@h>" and headers(got)["P-Asserted-Identity"] == '"A" <sip:4917012345@h>'


def test_anonymous_callers_stay_anonymous_and_ask_for_privacy() -> None:
    caller = invite('"Anonymous" <sip:anonymous@anonymous.invalid>', ("P-Asserted-Identity", "<sip:+4917012345@c>"))
    got = outgoing_identity(CallerIdPolicy(diversion=False), caller, host="h")
    assert got.from_ == '"Anonymous" <sip:anonymous@anonymous.invalid>'
    assert headers(got) == {"P-Asserted-Identity": "<sip:+4917012345@h>", "Privacy": "id"}
    hidden = invite("<sip:+4917012345@c>", ("Privacy", "id"))
    got = outgoing_identity(CallerIdPolicy(diversion=False), hidden, host="h")
    assert got.from_.startswith('"Anonymous"') and headers(got)["Privacy"] == "id"
    # privacy: false shows the number all the same
    got = outgoing_identity(CallerIdPolicy(diversion=False, privacy=False), hidden, host="h")
    assert got.from_ == "<sip:+4917012345@h>" and "Privacy" not in headers(got)


def test_auth_number_is_the_auth_username_as_it_is() -> None:
    """``number: auth``: the From user is the account the carrier authenticates, with no
    tech prefix and no '+' rule; the caller still goes in P-Asserted-Identity."""
    policy = CallerIdPolicy(number="auth", display=None, plus=False, tech_prefix="77", diversion=False,
                            auth_user="acct+4930_1")
    got = outgoing_identity(policy, invite('"Alice" <sip:+4917012345@carrier>'), host="h")
    assert got.from_ == "<sip:acct+4930_1@h>"
    assert headers(got) == {"P-Asserted-Identity": '"Alice" <sip:4917012345@h>'}
    fixed_display = CallerIdPolicy(number="auth", display="ACME", identity="none", diversion=False, auth_user="u1")
    assert outgoing_identity(fixed_display, invite("<sip:+1@c>"), host="h").from_ == '"ACME" <sip:u1@h>'
