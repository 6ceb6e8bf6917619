"""The control API's pieces without a daemon: the SIP trace's bounds and counts,
transcript links, the token file, the ladder drawing, the CLI's time parsing."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

from voicegw.api import token as tokens
from voicegw.api.trace import SipTrace
from voicegw.api.transcripts import LinkGone, TranscriptLinks
from voicegw.cli import ladder
from voicegw.cli.commands import parse_when
from voicegw.sip.events import Address

CALLER = Address("udp", "127.0.0.1", 5062)
BOT = Address("udp", "127.0.0.1", 5070)


def message(first_line: str, call_id: str, cseq: str = "1 INVITE", size: int = 0) -> bytes:
    return (f"{first_line}\r\nVia: SIP/2.0/UDP x\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n"
            f"Content-Length: 0\r\n\r\n").encode() + b"x" * size


def test_trace_keeps_the_last_messages_per_call_id_and_counts_responses() -> None:
    trace = SipTrace(per_call=3)
    trace("in", message("INVITE sip:a@b SIP/2.0", "c1"), CALLER, 1.0)
    trace("out", message("SIP/2.0 100 Trying", "c1"), CALLER, 1.1)
    trace("out", message("SIP/2.0 200 OK", "c1"), CALLER, 1.2)
    trace("in", message("ACK sip:a@b SIP/2.0", "c1", "1 ACK"), CALLER, 1.3)
    trace("out", message("SIP/2.0 486 Busy Here", "c2"), CALLER, 1.4)
    trace("out", message("SIP/2.0 200 OK", "c3", "2 BYE"), CALLER, 1.5)
    trace("in", b"SIP/2.0 180 Ringing\r\ni: compact-id\r\n\r\n", BOT, 1.6)
    kept = trace.messages_for(["c1"])
    assert [e.first_line for _, e in kept] == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK", "ACK sip:a@b SIP/2.0"]
    assert [cid for cid, _ in trace.messages_for(["compact-id"])] == ["compact-id"]  # compact form i:
    assert trace.responses[("out", 200)] == 2 and trace.responses[("in", 180)] == 1
    assert dict(trace.invite_finals_sent) == {200: 1, 486: 1}  # the BYE's 200 is not a call's answer
    assert trace.messages == {"in": 3, "out": 4}


def test_trace_memory_is_bounded_by_call_ids_and_bytes() -> None:
    trace = SipTrace(per_call=10, max_call_ids=5, max_bytes=20_000, max_message=1000)
    for i in range(50):
        trace("in", message("OPTIONS sip:a@b SIP/2.0", f"c{i}", size=5000), CALLER, float(i))
    call_ids, size = trace.size
    assert call_ids <= 5 and size <= 20_000
    assert trace.messages_for(["c0"]) == [] and trace.messages_for(["c49"])
    assert all(len(e.data) <= 1000 for _, e in trace.messages_for(["c49"]))


def test_transcript_link_counts_uses_and_expires() -> None:
    now = [1000.0]
    links = TranscriptLinks(max_uses=2, ttl=60, clock=lambda: now[0])
    link = links.attach("k", "c", "text", "sum")
    assert len(link.token) >= 32
    assert links.for_call("k") is link
    links.open(link.token)
    links.open(link.token)
    with pytest.raises(LinkGone):
        links.open(link.token)
    assert links.for_call("k") is None  # used up: not put into a transfer any more
    with pytest.raises(KeyError):
        links.open("nope")
    other = links.attach("k2", "c2", "t")
    now[0] += 61
    with pytest.raises(LinkGone):
        links.open(other.token)
    assert links.attach("a", "a", "x").token != links.attach("a", "a", "x").token


def test_token_file_is_created_0600_once_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "var" / "api.token"
    first = tokens.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert tokens.load_or_create(path) == first == tokens.read(path)
    (tmp_path / "empty").write_text("")
    with pytest.raises(tokens.TokenError, match="empty"):
        tokens.read(tmp_path / "empty")


def test_token_file_started_at_once_by_many_is_never_read_empty(tmp_path: Path) -> None:
    # Workers of one farm create the token file together: the file must appear with
    # its token in it (a worker once read it between its creation and its write).
    path = tmp_path / "api.token"
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda _: tokens.load_or_create(path), range(64)))
    assert len(set(got)) == 1 and got[0] == tokens.read(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["api.token"], "no draft left behind"


def test_ladder_draws_legs_as_columns_and_messages_as_arrows() -> None:
    detail = {
        "legs_detail": [{"role": "caller", "sip_call_id": "A"}, {"role": "bot", "sip_call_id": "B"}],
        "trace": [
            {"peer": "udp:127.0.0.1:5062", "sip_call_id": "A", "direction": "in", "offset_seconds": 0.0,
             "first_line": "INVITE sip:demo@127.0.0.1 SIP/2.0"},
            {"peer": "udp:127.0.0.1:5070", "sip_call_id": "B", "direction": "out", "offset_seconds": 0.002,
             "first_line": "INVITE sip:bot@127.0.0.1:5070 SIP/2.0"},
            {"peer": "udp:127.0.0.1:5070", "sip_call_id": "B", "direction": "in", "offset_seconds": 0.01,
             "first_line": "SIP/2.0 200 OK"},
            {"peer": "udp:127.0.0.1:5062", "sip_call_id": "A", "direction": "out", "offset_seconds": 0.011,
             "first_line": "SIP/2.0 200 OK"},
        ],
    }
    lines = [line.plain for line in ladder.render(detail)]
    assert lines[0].split() == ["caller", "voicegw", "bot"]
    assert "127.0.0.1:5062" in lines[1] and "127.0.0.1:5070" in lines[1]
    arrows = lines[3:-1]
    assert "INVITE" in arrows[0] and arrows[0].index("INVITE") < arrows[0].index(">")
    assert arrows[1].rstrip().endswith(">|")  # voicegw -> bot
    assert "<" in arrows[2] and "200 OK" in arrows[2]
    assert arrows[3].strip().startswith("0.011") and "<" in arrows[3]
    # the caller's arrows sit left of voicegw's column, the bot's right of it
    assert arrows[0].index(">") < arrows[1].index(">")


def test_cli_times_relative_and_absolute() -> None:
    before = datetime.now(UTC)
    assert abs((before - datetime.fromisoformat(parse_when("2h", "--since"))).total_seconds() - 7200) < 5
    assert parse_when("2030-01-02T03:04:05+00:00", "--since").startswith("2030-01-02T03:04:05")
    with pytest.raises(click.BadParameter):
        parse_when("yesterday-ish", "--since")
