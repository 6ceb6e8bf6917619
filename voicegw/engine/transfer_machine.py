"""One transfer attempt as a state machine: what each outcome of the far side means.

How to read it: ``State`` and ``Input`` enums and one ``TABLE`` of
``(state, input) -> (actions, next state)``, as in engine/consult.py. A pair in
``IGNORED`` is a stale input that means nothing any more (a 1xx after the agent
answered, the caller hanging up after the transfer succeeded); any other pair not in
the table is a bug in the caller and raises :class:`TransferMachineError`. Pure: the
transfer executor (engine/transfer.py) feeds inputs with their status and carries
the actions out; nothing here reads a clock or touches a leg.

::

    PENDING --dialled--> RINGING --connected--> SUCCEEDED --bot told--> (release the bot)
       |  \\--referred--> REFERRING --connected--^
       |   \\-consulting-> CONSULTING --connected--^
       +--connected (handed back by BYE)----------^
       +--failed / caller gone (from any live state)--> FAILED

What happens to the bot once the agent (or the carrier) has the caller is decided in
one place, :data:`BOT_TABLE`: BYE now, keep it listening (muted, hearing both), or,
when the bot asked for the transfer by REFER, BYE it only once it has heard the
outcome (its final NOTIFY answered, RFC 5589 6: a BYE first would have it answer
that NOTIFY with 481).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    PENDING = "pending"
    """Recorded; nothing has left yet (the record goes to disk first)."""
    RINGING = "ringing"
    """INVITE bridge: the agent's leg is being dialled."""
    REFERRING = "referring"
    """REFER: the carrier has our REFER; its NOTIFYs report progress."""
    CONSULTING = "consulting"
    """Warm: the consult machine (engine/consult.py) runs the attempt."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Input(enum.Enum):
    DIALLED = "the agent's INVITE left"
    REFERRED = "the REFER left"
    CONSULTING = "the consult call started"
    PROGRESS = "a provisional status (1xx, or a NOTIFY's 1xx sipfrag)"
    ACCEPTED = "REFER accepted (202)"
    CONNECTED = "the far side has the caller"
    FAILED = "failed with a status"
    CALLER_GONE = "the call ended first"
    BOT_TOLD = "the bot's final NOTIFY was answered"


class Action(enum.Enum):
    RECORD_PROGRESS = "record the provisional status"
    RECORD_ACCEPTED = "record the 202"
    TELL_BOT = "NOTIFY the bot that asked by REFER"
    STOP_WAITING_AUDIO = "stop the caller's ringback or hold audio"
    SWAP_TO_AGENT = "switch the caller's media to the agent's leg; the bot's fate from BOT_TABLE"
    DROP_AGENT = "close the failed agent leg"
    HAND_BACK = "BYE the caller naming the destination"
    LEAVE = "leave the call: the carrier has the caller"
    RELEASE_BOT = "the bot heard the outcome: its fate from BOT_TABLE"
    SUCCEEDED = "report success"
    FAILED = "report failure"


S, I, A = State, Input, Action
LIVE = (S.RINGING, S.REFERRING, S.CONSULTING)

Row = tuple[tuple[Action, ...], State]
TABLE: dict[tuple[State, Input], Row] = {
    (S.PENDING, I.DIALLED): ((), S.RINGING),
    (S.PENDING, I.REFERRED): ((), S.REFERRING),
    (S.PENDING, I.CONSULTING): ((), S.CONSULTING),
    # BYE hand-back: voicegw is out at once, no feedback is possible (TRANSFERS.md)
    (S.PENDING, I.CONNECTED): ((A.SUCCEEDED, A.HAND_BACK), S.SUCCEEDED),
    (S.PENDING, I.FAILED): ((A.FAILED,), S.FAILED),
    (S.PENDING, I.CALLER_GONE): ((A.FAILED, A.TELL_BOT), S.FAILED),
    (S.RINGING, I.PROGRESS): ((A.RECORD_PROGRESS, A.TELL_BOT), S.RINGING),
    (S.RINGING, I.CONNECTED): ((A.STOP_WAITING_AUDIO, A.SWAP_TO_AGENT, A.SUCCEEDED), S.SUCCEEDED),
    (S.RINGING, I.FAILED): ((A.STOP_WAITING_AUDIO, A.DROP_AGENT, A.FAILED), S.FAILED),
    (S.RINGING, I.CALLER_GONE): ((A.STOP_WAITING_AUDIO, A.FAILED, A.TELL_BOT), S.FAILED),
    (S.REFERRING, I.ACCEPTED): ((A.RECORD_ACCEPTED,), S.REFERRING),
    (S.REFERRING, I.PROGRESS): ((A.RECORD_PROGRESS, A.TELL_BOT), S.REFERRING),
    (S.REFERRING, I.CONNECTED): ((A.SUCCEEDED, A.LEAVE), S.SUCCEEDED),
    (S.REFERRING, I.FAILED): ((A.FAILED,), S.FAILED),
    (S.REFERRING, I.CALLER_GONE): ((A.FAILED, A.TELL_BOT), S.FAILED),
    (S.CONSULTING, I.PROGRESS): ((A.RECORD_PROGRESS, A.TELL_BOT), S.CONSULTING),
    (S.CONSULTING, I.CONNECTED): ((A.SUCCEEDED,), S.SUCCEEDED),
    (S.CONSULTING, I.FAILED): ((A.FAILED,), S.FAILED),
    (S.CONSULTING, I.CALLER_GONE): ((A.FAILED, A.TELL_BOT), S.FAILED),
    (S.SUCCEEDED, I.BOT_TOLD): ((A.RELEASE_BOT,), S.SUCCEEDED),
}

#: Inputs that may arrive late and mean nothing any more.
IGNORED: frozenset[tuple[State, Input]] = frozenset(
    {(S.FAILED, i) for i in Input}
    | {(S.SUCCEEDED, i) for i in Input if i is not I.BOT_TOLD}
    # a NOTIFY answered while the attempt is still under way reported progress only
    | {(s, I.BOT_TOLD) for s in (S.PENDING, *LIVE)}
)

FINAL = frozenset({S.SUCCEEDED, S.FAILED})

#: The status a row reports when its input carries none.
DEFAULT_STATUS: dict[Input, int | str] = {I.CONNECTED: 200, I.FAILED: 500, I.CALLER_GONE: "call_ended"}


class TransferMachineError(Exception):
    """An input the attempt's state cannot take (the executor fed it out of order)."""


@dataclass
class TransferMachine:
    """One attempt. ``asked_by_bot``: a bot's REFER started it, so the bot hears its
    progress by NOTIFY (RFC 3515 2.4.5) and is released only after the outcome."""

    asked_by_bot: bool = False
    state: State = S.PENDING
    status: int | str | None = None
    """The final status, once SUCCEEDED or FAILED."""
    history: list[tuple[State, Input, State]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    def feed(self, event: Input, status: int | str | None = None) -> tuple[Action, ...]:
        row = TABLE.get((self.state, event))
        if row is None:
            if (self.state, event) in IGNORED:
                return ()
            raise TransferMachineError(f"a transfer {self.state.value} cannot take: {event.value}")
        actions, target = row
        if target in FINAL and self.state not in FINAL:
            self.status = status if status is not None else DEFAULT_STATUS.get(event)
        self.history.append((self.state, event, target))
        self.state = target
        if not self.asked_by_bot:
            actions = tuple(a for a in actions if a is not A.TELL_BOT)
        return actions


# ---------------------------------------------------------------------- the bot's fate
class How(enum.Enum):
    BRIDGED = "voicegw bridges caller and agent (INVITE, warm)"
    LEFT = "the carrier connected the caller (REFER): voicegw leaves"


class Moment(enum.Enum):
    CONNECTED = "the agent (or the carrier) has the caller"
    BOT_TOLD = "the bot heard the outcome (its final NOTIFY was answered)"


class Step(enum.Enum):
    BYE_BOT = "BYE the bot"
    BOT_LISTENS = "keep the bot, muted, hearing caller and agent"
    BYE_CALLER = "BYE the caller's leg only (the bot still waits for its NOTIFY)"
    END_CALL = "end the call: every leg still up gets BYE"


#: (how, moment, the bot hears the outcome first, the bot listens) -> steps. The one
#: place that says whether and when the bot gets its BYE.
BOT_TABLE: dict[tuple[How, Moment, bool, bool], tuple[Step, ...]] = {
    (How.BRIDGED, Moment.CONNECTED, False, False): (Step.BYE_BOT,),
    (How.BRIDGED, Moment.CONNECTED, False, True): (Step.BOT_LISTENS,),
    (How.BRIDGED, Moment.CONNECTED, True, False): (),  # BYE once it heard the outcome
    (How.BRIDGED, Moment.CONNECTED, True, True): (Step.BOT_LISTENS,),
    (How.BRIDGED, Moment.BOT_TOLD, True, False): (Step.BYE_BOT,),
    (How.BRIDGED, Moment.BOT_TOLD, True, True): (),  # it stays, listening
    (How.LEFT, Moment.CONNECTED, False, False): (Step.END_CALL,),
    (How.LEFT, Moment.CONNECTED, True, False): (Step.BYE_CALLER,),
    (How.LEFT, Moment.BOT_TOLD, True, False): (Step.BYE_BOT, Step.END_CALL),
}


def bot_steps(how: How, moment: Moment, hears_first: bool, listens: bool) -> tuple[Step, ...]:
    """What to do with the bot (and, after a REFER, the call) at ``moment``. A bot
    cannot listen to a call voicegw left; a bot that was not waiting for a NOTIFY is
    never told."""
    if how is How.LEFT:
        listens = False
    if moment is Moment.BOT_TOLD:
        hears_first = True
    return BOT_TABLE[(how, moment, hears_first, listens)]


__all__ = [
    "BOT_TABLE",
    "IGNORED",
    "TABLE",
    "Action",
    "How",
    "Input",
    "Moment",
    "State",
    "Step",
    "TransferMachine",
    "TransferMachineError",
    "bot_steps",
]
