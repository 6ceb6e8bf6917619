"""RFC 4475 and RFC 5118 torture messages, at the parser level.

What a unit test can say about each case (the over-the-wire test checks the
actual answers):

- a ``must_parse`` message parses; a request also passes ``check_request``, unless
  the semantic check itself gives the expected non-400 answer (416 for an unknown
  Request-URI scheme);
- an invalid request either raises a :class:`SipError` whose status the manifest
  allows, or is tolerated, which the manifest must allow too (``final`` or
  ``provisional`` among its outcomes: the layers above will answer it);
- a response is parsed or rejected with a ``SipError``, never anything else,
  and never answered (there is nothing to check beyond not crashing).
"""

from __future__ import annotations

import pytest
from peers.conformance import Case, load_cases, sha256_ok, status_matches

from voicegw.sip.errors import SipError
from voicegw.sip.message import Request, Response
from voicegw.sip.parser import parse_message
from voicegw.sip.validate import check_request

CASES = load_cases()

pytestmark = pytest.mark.skipif(
    not CASES,
    reason="conformance corpora not found: set VOICEGW_CONFORMANCE_DIR or put them in "
    "../shared/conformance/{rfc4475,rfc5118} next to the repository",
)


def _ids(cases: list[Case]) -> list[str]:
    return [f"{c.corpus}-{c.name}" for c in cases]


REQUESTS = [c for c in CASES if c.kind == "request"]
RESPONSES = [c for c in CASES if c.kind == "response"]
VALID_REQUESTS = [c for c in REQUESTS if c.must_parse]
INVALID_REQUESTS = [c for c in REQUESTS if not c.must_parse]

#: Outcomes that mean "the parser let it through and a higher layer answered".
_TOLERATED = ("final", "provisional")


def _receive(case: Case) -> int | None:
    """What the parser and the request check say: None if the request is accepted,
    else the status of the SipError raised. Any other exception propagates (a bug)."""
    try:
        message = parse_message(case.data)
        assert isinstance(message, Request)
        check_request(message)
    except SipError as exc:
        return exc.status
    return None


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_file_matches_manifest_digest(case: Case) -> None:
    assert sha256_ok(case), f"{case.path} does not match the sha256 in its manifest"


@pytest.mark.parametrize("case", VALID_REQUESTS, ids=_ids(VALID_REQUESTS))
def test_valid_request_parses(case: Case) -> None:
    message = parse_message(case.data)
    assert isinstance(message, Request), case.note
    try:
        check_request(message)
    except SipError as exc:
        # Only a semantic answer the manifest expects (416 unknown scheme), never 400.
        assert exc.status != 400 and case.passes(exc.status), (
            f"{case.name}: check_request answered {exc.status} ({exc.reason}); {case.note}"
        )
        return
    # The accessors the transaction and dialog layers read all work.
    message.top_via  # noqa: B018
    message.cseq  # noqa: B018
    message.from_  # noqa: B018
    message.to  # noqa: B018
    message.contacts  # noqa: B018
    message.request_uri()
    # A relayed message keeps its meaning: parse(bytes(m)) == m.
    assert parse_message(bytes(message)) == message


@pytest.mark.parametrize("case", INVALID_REQUESTS, ids=_ids(INVALID_REQUESTS))
def test_invalid_request_rejected_or_tolerated(case: Case) -> None:
    status = _receive(case)
    if status is None:
        assert any(t in case.pass_if for t in _TOLERATED), (
            f"{case.name} was accepted but must be rejected: {case.note}"
        )
    else:
        assert case.passes(status), f"{case.name}: answered {status}; {case.note}"
        assert status != 500


@pytest.mark.parametrize("case", RESPONSES, ids=_ids(RESPONSES))
def test_response_parsed_or_rejected(case: Case) -> None:
    try:
        message = parse_message(case.data)
    except SipError:
        assert not case.must_parse, f"{case.name} must parse: {case.note}"
        return
    assert isinstance(message, Response)
    for accessor in ("vias", "cseq", "from_", "to", "call_id"):
        try:
            getattr(message, accessor)
        except SipError:
            assert not case.must_parse, f"{case.name}: {accessor} failed"
    # Responses are never answered: nothing else to check at this level.
    assert case.passes(None)


# --- specific cases whose meaning is easy to get wrong -----------------------------


def _case(name: str) -> Case:
    for case in CASES:
        if case.name == name:
            return case
    pytest.skip(f"case {name} not in the corpus")


def test_dblreq_trailing_invite_ignored() -> None:
    message = parse_message(_case("dblreq").data)
    assert isinstance(message, Request)
    assert message.method == "REGISTER" and message.body == b""


def test_esc02_method_is_not_unescaped() -> None:
    message = parse_message(_case("esc02").data)
    assert isinstance(message, Request)
    assert message.method == "RE%47IST%45R"


def test_semiuri_user_part() -> None:
    message = parse_message(_case("semiuri").data)
    assert isinstance(message, Request)
    uri = message.request_uri()
    assert uri.user_unescaped == "user;par=u@example.net"  # type: ignore[union-attr]
    assert uri.host == "example.com"  # type: ignore[union-attr]


def test_escnull_keeps_nul_in_user() -> None:
    message = parse_message(_case("escnull").data)
    assert isinstance(message, Request)
    assert "\x00" in (message.to.uri.user_unescaped or "")  # type: ignore[union-attr]


def test_mpart01_body_framed_by_content_length() -> None:
    message = parse_message(_case("mpart01").data)
    assert len(message.body) == int(message.headers.get("content-length") or -1)
    assert b"\x00" in message.body


def test_port_ambiguous_has_no_port() -> None:
    message = parse_message(_case("port-ambiguous").data)
    assert isinstance(message, Request)
    uri = message.request_uri()
    assert uri.host == "[2001:db8::10:5070]" and uri.port is None  # type: ignore[union-attr]
    message = parse_message(_case("port-unambiguous").data)
    assert isinstance(message, Request)
    uri = message.request_uri()
    assert uri.host == "[2001:db8::10]" and uri.port == 5070  # type: ignore[union-attr]


def test_wsinv_folding_and_compact_forms() -> None:
    message = parse_message(_case("wsinv").data)
    assert isinstance(message, Request)
    assert message.cseq.seq == 9
    assert len(message.vias) == 3
    assert message.to.tag == "1918181833n" and message.to.display_name is None
    assert message.from_.display_name == 'J Rosenberg \\"'
    assert message.from_.tag == "98asjd8"
    assert message.max_forwards == 68
    assert message.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert [c.params for c in message.contacts] == [{"newparam": "newvalue", "secondparam": None, "q": "0.33"}]


def test_vocabulary() -> None:
    assert status_matches("none", None) and not status_matches("none", 200)
    assert status_matches("any", 100) and not status_matches("any", None)
    assert status_matches("provisional", 183) and not status_matches("provisional", 200)
    assert status_matches("final", 200) and status_matches("final", 699)
    assert not status_matches("final", 180) and not status_matches("final", None)
    assert status_matches("4xx", 416) and not status_matches("4xx", 500)
    assert status_matches("416", 416) and not status_matches("416", 415)
    with pytest.raises(ValueError):
        status_matches("weird", 200)
