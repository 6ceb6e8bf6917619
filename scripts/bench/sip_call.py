"""CPU of the SIP core's side of one call, in-process, no sockets: what voicegw/sip/ costs
per call on the caller's leg (issue 14 item 1), to compare checkouts.

Per call, through one ``UserAgentCore``: a sipp-like INVITE with SDP in (the core sends
100 Trying), the offer read three times (the admission check, the engine and the INVITE
session each read it), 180 and 200 with SDP out, the ACK in, a BYE in and its 200 out.
CPU time (``time.process_time``) per call, best of ``--repeat`` runs of ``--calls`` calls;
``--sdp-reads 0`` leaves the offer unread (the core alone).

    .venv/bin/python scripts/bench/sip_call.py                  # this checkout
    cd ../other-checkout && python /path/to/sip_call.py         # the checkout in the cwd

The checkout measured is the one in the current directory (so one copy of this script
compares two worktrees: run it from each, interleaved). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())

from voicegw.sip.build import make_response, new_tag
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.events import Address, RequestReceived
from voicegw.sip.sdp import SessionDescription


def sdp(i: int) -> str:
    """Each call's own offer (its session id and port), as each caller's is."""
    return (f"v=0\r\no=caller {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {6000 + 2 * (i % 20000)} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


SOURCE = Address("udp", "127.0.0.1", 5061)


def invite(i: int) -> bytes:
    body = sdp(i)
    return (f"INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{i}-0;rport\r\n"
            f"From: sipp <sip:caller@127.0.0.1:5061>;tag={i}SIPpTag00\r\n"
            f"To: <sip:service@127.0.0.1:5060>\r\nCall-ID: {i}-4007@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:caller@127.0.0.1:5061;transport=UDP>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


def in_dialog(method: str, i: int, to_tag: str, cseq: int) -> bytes:
    return (f"{method} sip:service@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{i}-{cseq}{method};rport\r\n"
            f"From: sipp <sip:caller@127.0.0.1:5061>;tag={i}SIPpTag00\r\n"
            f"To: <sip:service@127.0.0.1:5060>;tag={to_tag}\r\nCall-ID: {i}-4007@127.0.0.1\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:caller@127.0.0.1:5061;transport=UDP>\r\n"
            f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def run(calls: int, sdp_reads: int = 3) -> float:
    """CPU microseconds per call over ``calls`` calls on a fresh core."""
    core = UserAgentCore(CoreConfig())
    started = time.process_time()
    for i in range(calls):
        now = i * 0.001
        core.receive_datagram(invite(i), SOURCE, now)
        event = core.next_event()
        assert isinstance(event, RequestReceived), event
        request = event.request
        for _ in range(sdp_reads):
            SessionDescription.parse(request.body)
        tag = new_tag()
        core.send_response(event.transaction_id, make_response(request, 180, to_tag=tag), now)
        ok = make_response(request, 200, to_tag=tag)
        ok.set_body(sdp(i + 1).encode(), "application/sdp")
        core.send_response(event.transaction_id, ok, now)
        core.register_dialog(request.call_id, tag, request.from_.tag or "")
        core.receive_datagram(in_dialog("ACK", i, tag, 1), SOURCE, now)
        core.next_event()
        core.receive_datagram(in_dialog("BYE", i, tag, 2), SOURCE, now)
        bye = core.next_event()
        assert isinstance(bye, RequestReceived), bye
        core.send_response(bye.transaction_id, make_response(bye.request, 200), now)
        core.datagrams_to_send(now)
        while core.next_event() is not None:
            pass
    return (time.process_time() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sdp-reads", type=int, default=3, help="reads of the offer per call (0: the core alone)")
    args = parser.parse_args()
    runs = [round(run(args.calls, args.sdp_reads), 1) for _ in range(args.repeat)]
    print(json.dumps({"checkout": os.getcwd(), "sdp_reads": args.sdp_reads, "us_per_call_best": min(runs), "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
