"""The parts of a transfer scenario and the peers that can play them (issue 11 item 3).

tests/wire/test_scenarios_wire.py writes each transfer scenario once, in terms of three
roles, and runs it with every peer that can play each part:

- :class:`Caller`: calls voicegw (directly, or through a PBX upstream of it), sends a
  tone, tells whether it hears one, hangs up, and reports what it saw;
- :class:`Agent`: a SIP URI voicegw's INVITE transfer dials; it answers, refuses with
  486 or never answers; sends and detects a tone; shows the INVITE it got;
- :class:`Bot`: answers voicegw's bot leg and REFERs it to the agent; reports the
  NOTIFY sipfrags it got and whether voicegw sent it a BYE.

The roles are ``typing.Protocol`` classes: an adapter is any class with those members.
The adapters wrap the peers of this package without changing them, one module per kind
of peer: ``roles_sipp.py`` (sipp), ``roles_pjsua.py`` (PJSIP), ``roles_baresip.py``
(baresip), ``roles_pbx.py`` (a phone through Asterisk or FreeSWITCH; an agent behind
either).

Audio. A peer either *detects* tones (``detects = True``: it records what it receives
and tells a frequency apart with Goertzel, :func:`peers.pjsua.hears` or
:func:`peers.pbx.tone_packets`) or *echoes* what it receives (sipp's ``-rtp_echo``).
Between a detecting and an echoing peer, one tone that comes back proves both
directions; two echoing peers cannot check audio, and the table never pairs them where
audio is asserted.

Ports. A PBX upstream of voicegw or in front of the agent expects voicegw at the port
its config names (Asterisk identifies the ``voicegw`` endpoint by address):
:meth:`Caller.voicegw_port` / :meth:`Agent.voicegw_port` say so, None where any port
does.
"""

from __future__ import annotations

from typing import Protocol

from peers.calls import SipMessage
from peers.daemon import DaemonProcess

MODES = ("answer", "busy", "never")
"""What an agent does with voicegw's INVITE: 200, 486, ring until CANCEL."""


class Caller(Protocol):
    name: str
    detects: bool
    """True: :meth:`hears` tells a tone apart; False: it echoes what it receives."""
    user: str
    """The user of its From URI: what voicegw hands the agent as X-VG-Caller (a PBX
    upstream keeps it as the caller id)."""

    def voicegw_port(self) -> int | None:
        """The port voicegw must listen on for this caller to reach it (None: any)."""

    def call(self, voicegw: DaemonProcess) -> None:
        """Call voicegw and return once the call is up (AssertionError if it is not)."""

    def talk(self, hz: float) -> None:
        """Send a continuous ``hz`` tone from now on (an echoing caller does nothing)."""

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        """``hz`` arrives within ``timeout``."""

    def kept(self) -> bool:
        """The call is still up: nobody hung it up on the caller."""

    def hang_up(self) -> None:
        """End the call from the caller's side (and check it ended cleanly)."""

    def report(self) -> str: ...

    def close(self) -> None: ...


class Agent(Protocol):
    name: str
    detects: bool
    uri: str
    """What voicegw dials (the bot REFERs to it)."""
    allow: str
    """The transfer_allow pattern that lets voicegw dial :attr:`uri`."""

    def voicegw_port(self) -> int | None: ...

    def start(self, mode: str) -> None:
        """Be ready to be dialled: ``answer``, ``busy`` (486) or ``never`` (rings)."""

    def wait_answered(self, timeout: float = 10.0) -> bool: ...

    def talk(self, hz: float) -> None: ...

    def hears(self, hz: float, timeout: float = 8.0) -> bool: ...

    def invite(self, timeout: float = 5.0) -> SipMessage | None:
        """The INVITE the agent's UA got (from voicegw, or from the PBX voicegw dialled)."""

    def caller_context(self) -> str | None:
        """voicegw's X-VG-Caller as the agent can read it (a header, or what the PBX
        made of it)."""

    def wait_cancelled(self, timeout: float = 10.0) -> bool:
        """The ringing agent got a CANCEL."""

    def wait_bye(self, timeout: float = 10.0) -> bool:
        """The answered agent got a BYE (the caller hung up through voicegw)."""

    def report(self) -> str: ...

    def close(self) -> None: ...


class Bot(Protocol):
    name: str
    detects: bool
    uri: str
    """voicegw's --bot-uri."""

    def start(self, refer_to: str, succeeds: bool) -> None:
        """Listen for voicegw's bot leg; REFER it to ``refer_to`` once answered;
        ``succeeds`` says whether the transfer is expected to (the sipp bot's script
        differs: it leaves, or stays and probes its leg)."""

    def refer(self) -> None:
        """REFER now (the caller is connected); a scripted bot REFERs by itself."""

    def sound(self, caller_hz: float) -> float:
        """What a caller sending ``caller_hz`` hears while it talks to this bot."""

    def hears(self, hz: float, timeout: float = 8.0) -> bool: ...

    def wait_final(self, timeout: float = 15.0) -> tuple[int, bool]:
        """The status of the final NOTIFY sipfrag about its REFER (and that it was final)."""

    def notified(self) -> list[int]:
        """Every sipfrag status NOTIFYed to the bot so far, in order."""

    def wait_bye(self, timeout: float = 10.0) -> bool:
        """voicegw hung up the bot's leg."""

    def wait_kept(self, timeout: float = 10.0) -> bool:
        """After a failed transfer: the bot's leg is still up (an in-dialog request of
        the bot answered, or no BYE)."""

    def finish(self) -> None:
        """After the call: the bot's side ended cleanly (sipp exited 0, ...)."""

    def report(self) -> str: ...

    def close(self) -> None: ...
