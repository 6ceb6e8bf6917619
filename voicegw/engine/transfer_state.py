"""One transfer attempt as data: its method, state and options (TRANSFERS.md).

A :class:`Transfer` is one attempt by one method to one target. It fails with a
status (the SIP code, ``"timeout"``, ``"policy"``...) that the fallback machine maps
to what happens next. Kept apart from transfer.py (which carries attempts out) so that
the fallback runner and warm transfers can read attempts without importing it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..media.player import Player
from ..settings import LegPolicy
from ..sip.caller_id import CallerIdPolicy
from .outbound import FailureStatus
from .transfer_machine import State, TransferMachine


class TransferMethod(str, enum.Enum):
    INVITE = "invite"
    REFER = "refer"
    BYE = "bye"
    WARM = "warm"
    """Attended: consult and brief the agent first (engine/warm.py)."""


class TransferState(str, enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class TransferOptions:
    """A flow node's own transfer settings, over the engine's TransferConfig."""

    headers: tuple[tuple[str, str], ...] = ()
    """Fixed headers for the transfer request, besides the context headers."""
    destination: str | None = None
    """BYE hand-back: the destination header's value (default: <target URI>)."""
    ring_timeout: float | None = None
    context_headers: tuple[tuple[str, str], ...] | None = None
    """Header name -> context key; None: TransferConfig.context_headers."""
    caller_id: CallerIdPolicy | None = None
    """The target profile's caller ID; None: TransferConfig.caller_id."""


@dataclass(eq=False)
class Transfer:
    id: str
    call_key: str
    method: TransferMethod
    target: str
    uri: str = ""
    trigger: str = "api"
    legs: LegPolicy = field(default_factory=LegPolicy)
    """How a leg to ``uri`` is placed: its profile's (or, for a number, the trunk's)
    transport and SRTP policy."""
    machine: TransferMachine = field(default_factory=TransferMachine)
    """Where the attempt stands (engine/transfer_machine.py); the one source of its state."""
    status: FailureStatus | None = None
    reason: str = ""
    started: float = 0.0
    ended: float | None = None
    player: Player | None = None
    early: Any = None
    """The agent leg's early media relayed to the caller (media/relay.py EarlyMedia)
    in place of ``player``'s ringback, while it rings."""
    early_address: tuple[str, int] | None = None
    """Where that early media was said to come from (the last 183's SDP): a 2xx
    naming another address re-points the leg (MediaEndpoint.repoint)."""
    settled: Any = None
    """The executor's future, resolved once the attempt succeeded or failed (the
    fallback runner awaits it); None until someone waits."""
    progress: list[int] = field(default_factory=list)
    """Provisional statuses seen (for the bot's NOTIFYs and the records)."""
    refer_id: int | None = None
    """REFER transfers: the REFER's CSeq, which its NOTIFYs name (RFC 3515 2.4.6)."""
    options: TransferOptions = field(default_factory=TransferOptions)

    @property
    def state(self) -> TransferState:
        """As the API and the records show it: pending until the machine is final."""
        if self.machine.state is State.SUCCEEDED:
            return TransferState.SUCCEEDED
        if self.machine.state is State.FAILED:
            return TransferState.FAILED
        return TransferState.PENDING

    @property
    def done(self) -> bool:
        return self.machine.finished


__all__ = ["Transfer", "TransferMethod", "TransferOptions", "TransferState"]
