"""One call that the flow transfers at once, by INVITE, to an agent profile with
``auth`` (outbound digest auth, RFC 3261 22.2): the harness of the tests where the
agent (a sipp UAS: tests/wire/test_outbound_auth_wire.py, test_dialog_auth_wire.py)
or a proxy in front of it (Kamailio, tests/wire/test_kamailio_auth_wire.py)
challenges voicegw.

The flow (peers/flow_transfer.py): ``to_agent`` (agent_transfer to ``agent-x``; the
fallback's ``auth`` rule goes to ``wait``, a collect that keeps the caller) and ``bye``.
The caller is :class:`peers.caller.Caller`; the daemon runs with its control API (the fallbacks are
read from the call's timeline) and is stopped before this returns; the password must
not appear in its log. The agent is started only once the daemon is up: its sipp
``-timeout`` bounds the call, not a loaded machine's daemon start (which took 34 s
once, and the agent timed out before the INVITE came).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .caller import Caller
from .calls import SipMessage, SippPeer
from .daemon import DaemonProcess, wait_until
from .flow_transfer import events, fallbacks, timeline
from .flow_transfer import write_config as write_flow_config


def received(peer: SippPeer, method: str) -> list[SipMessage]:
    """The ``method`` requests ``peer`` got, one per transaction: a copy (the same Via
    branch, 17.2.3), which a loaded peer's late answer draws by Timer A or E, is not a
    new request."""
    seen: set[str | None] = set()
    first: list[SipMessage] = []
    for message in peer.messages():
        if (message.direction == "in" and message.status is None and message.method == method
                and message.branch not in seen):
            seen.add(message.branch)
            first.append(message)
    return first


CARRIER_NUMBER = "+4930555"
"""The number the flow dials through a carrier's ``trunk`` (``write_config(trunk=...)``)."""


def write_config(workdir: Path, agent_uri: str, password: str, *, trunk: str | None = None,
                 **profile: Any) -> Path:
    """The agent profile (``auth: {agent7, password}`` and any other ``profile`` field),
    the flow and voicegw.yaml; the latter's path. ``trunk`` (``sip:{number}@host:port``;
    ``agent_uri`` unused): the profile is a carrier with that trunk instead, and the
    flow dials :data:`CARRIER_NUMBER` through it."""
    if trunk is None:
        peer, target = {"kind": "agent", "uri": agent_uri}, "agent-x"
    else:  # callers come from 127.0.0.1: the carrier's addresses are elsewhere (TEST-NET-1)
        peer = {"kind": "carrier", "addresses": ["192.0.2.0/24"], "trunk": trunk,
                "transfer_allow": [f"{CARRIER_NUMBER}*"]}
        target = CARRIER_NUMBER
    return write_flow_config(workdir, {**peer, "auth": {"username": "agent7", "password": password}, **profile},
                             "auth", target=target)


def transfer_with_auth(workdir: Path, agent: SippPeer, password: str, finish_agent: Callable[[dict], None],
                       during: Callable[[Caller, dict], None] | None = None,
                       **profile: Any) -> tuple[DaemonProcess, dict]:
    """The call to ``agent`` (a sipp peer not started yet; stopped here) with
    ``auth: {agent7, password}`` (and any other ``profile`` field, e.g.
    ``outbound_proxy``); the daemon (stopped) and the transfer's final event, with
    ``fallbacks`` (the timeline's) when it failed. ``during(caller, final)`` runs once
    the transfer is over (an in-dialog step: a hold, a BYE's challenge), before the
    caller hangs up; ``finish_agent(final)`` after that, while the daemon still runs."""
    config = write_config(workdir, f"sip:agent@127.0.0.1:{agent.port}", password, **profile)
    daemon = DaemonProcess("127.0.0.1", None, "--config", str(config))
    caller = None
    try:
        daemon.start()
        agent.start()
        caller = Caller(daemon.address)
        answer = caller.invite()
        assert answer.status == 200, (answer.status, answer.reason, "\n".join(daemon.lines[-30:]))
        assert wait_until(lambda: events(daemon, "transfer.succeeded") or events(daemon, "transfer.failed"), 20), \
            "\n".join(daemon.lines[-30:])
        finals = events(daemon, "transfer.succeeded") or events(daemon, "transfer.failed")
        assert len(finals) == 1, finals
        done = finals[0]
        if done["event"] == "transfer.failed":
            call_id = caller.call_id
            assert wait_until(lambda: fallbacks(daemon, call_id), 10), timeline(daemon, call_id)
            assert not caller.got_request("BYE"), "a failed transfer keeps the caller"
            done["fallbacks"] = fallbacks(daemon, call_id)
        if during is not None:
            during(caller, done)
        assert caller.bye().status == 200
        finish_agent(done)
    finally:
        if caller is not None:
            caller.close()
        agent.stop()
        daemon.terminate()
    assert password not in "\n".join(daemon.lines), "the password is never logged"
    return daemon, done
