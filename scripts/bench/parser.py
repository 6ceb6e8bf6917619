"""SIP parser throughput on one core: a typical carrier INVITE with SDP (~900 bytes).

Three paths, in messages per second (best of 3 runs of ~2.5 s each):

  parse+bytes        parse_message() then bytes(): what relaying costs
  receive            parse_message() + check_request() + bytes(): the full receive path
  match              parse_message() + top_via, cseq, call_id, from_/to tags: what a
                     transaction/dialog match reads

Usage: .venv/bin/python scripts/bench/parser.py [--seconds 2.5] [--json-only]
Prints a table, then one JSON line (the figure docs/performance.md quotes).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from voicegw.sip.message import Request  # noqa: E402
from voicegw.sip.parser import parse_message  # noqa: E402
from voicegw.sip.validate import check_request  # noqa: E402

SDP = (
    b"v=0\r\n"
    b"o=- 3912736512 3912736512 IN IP4 203.0.113.45\r\n"
    b"s=SIP Call\r\n"
    b"c=IN IP4 203.0.113.45\r\n"
    b"t=0 0\r\n"
    b"m=audio 31874 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:+14155550123@198.51.100.7:5060;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;received=203.0.113.10;rport=5060;"
    b"branch=z9hG4bK5f2c9e1a77ab\r\n"
    b"Record-Route: <sip:203.0.113.10;lr;ftag=as5f2c9e1a>\r\n"
    b"Record-Route: <sip:10.20.0.5;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "ACME Corp" <sip:+16505550199@203.0.113.10;user=phone>;tag=as5f2c9e1a\r\n'
    b'To: "Support" <sip:+14155550123@198.51.100.7;user=phone>\r\n'
    b"Contact: <sip:+16505550199@203.0.113.10:5060>\r\n"
    b"Call-ID: 5f2c9e1a0b7d4c3e@203.0.113.10\r\n"
    b"CSeq: 102 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: SBC/4.2\r\n"
    b"P-Asserted-Identity: <sip:+16505550199@203.0.113.10>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


def path_parse_bytes(data: bytes) -> None:
    bytes(parse_message(data))


def path_receive(data: bytes) -> None:
    message = parse_message(data)
    check_request(message)  # type: ignore[arg-type]
    bytes(message)


def path_match(data: bytes) -> None:
    message = parse_message(data)
    message.top_via.branch  # noqa: B018
    message.cseq  # noqa: B018
    message.call_id  # noqa: B018
    message.from_.tag  # noqa: B018
    message.to.tag  # noqa: B018


PATHS: dict[str, Callable[[bytes], None]] = {
    "parse+bytes": path_parse_bytes,
    "receive": path_receive,
    "match": path_match,
}


def measure(fn: Callable[[bytes], None], seconds: float) -> float:
    """Messages per second: calibrate a batch size, then time batches for ``seconds``."""
    data = INVITE
    batch = 100
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            fn(data)
        elapsed = time.perf_counter() - start
        if elapsed > 0.05:
            break
        batch *= 2
    iterations = max(batch, int(batch * seconds / elapsed))
    start = time.perf_counter()
    for _ in range(iterations):
        fn(data)
    return iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.5, help="per run (best of 3)")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()

    message = parse_message(INVITE)
    assert isinstance(message, Request)
    check_request(message)
    assert bytes(message) == INVITE

    results = {name: max(measure(fn, args.seconds) for _ in range(3)) for name, fn in PATHS.items()}
    if not args.json_only:
        print(f"message: {len(INVITE)} bytes INVITE with {len(SDP)}-byte SDP; "
              f"python {platform.python_version()} on {platform.machine()}")
        print(f"{'path':<14}{'msgs/s':>12}{'us/msg':>10}")
        for name, rate in results.items():
            print(f"{name:<14}{rate:>12,.0f}{1e6 / rate:>10.1f}")
    print(json.dumps({
        "bench": "sip_parser",
        "message_bytes": len(INVITE),
        "python": platform.python_version(),
        **{name.replace("+", "_"): round(rate) for name, rate in results.items()},
    }))


if __name__ == "__main__":
    main()
