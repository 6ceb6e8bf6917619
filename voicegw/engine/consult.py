"""The warm (attended) transfer machine: consult the agent, brief them, then connect.

How to read it: ``State`` and ``Input`` enums and one ``TABLE`` of
``(state, input) -> (actions, next state)``; a pair that is not in the table is
refused (:class:`ConsultError`), except the stale inputs listed in ``IGNORED``
(a late digit, a briefing that ends after the agent accepted). Pure: the engine
feeds inputs and carries out the actions.

::

    DIALING --answered--> BRIEFING --briefed--> READY --complete--> COMPLETING --ok--> COMPLETED
       |                     |  \\--briefed_confirm--> CONFIRMING --accepted--^          |
       |                     |                            |                          failed
       +--failed(status)-----+--declined / hung up--------+--timeout--> FAILED <---------+
       +--cancel / caller gone (any live state)--> CANCELLED

While the agent is consulted the caller stays with the bot (or hears the configured
hold audio) and never hears the briefing: it plays on the agent's leg only.
Failures carry a status the fallback rules match: the SIP code of a failed consult
call, ``no_answer`` (ring or confirmation timeout), ``declined`` (the agent pressed
the decline key or hung up during the briefing), or the completion's own status.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    DIALING = "dialing"
    BRIEFING = "briefing"
    CONFIRMING = "confirming"
    READY = "ready"
    COMPLETING = "completing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Input(enum.Enum):
    ANSWERED = "agent answered"
    DIAL_FAILED = "consult call failed"
    BRIEFED = "briefing played"
    BRIEFED_CONFIRM = "briefing played, confirmation wanted"
    ACCEPTED = "agent pressed accept"
    DECLINED = "agent pressed decline"
    CONFIRM_TIMEOUT = "no confirmation in time"
    AGENT_HUNG_UP = "agent hung up"
    COMPLETE = "complete now"
    CANCEL = "cancel"
    CALLER_GONE = "caller hung up"
    COMPLETED_OK = "connected"
    COMPLETION_FAILED = "connection failed"


class Action(enum.Enum):
    PLAY_BRIEFING = "play the briefing to the agent"
    START_CONFIRM_TIMER = "start the confirmation timer"
    CONNECT = "connect caller and agent"
    HANG_UP_AGENT = "BYE or CANCEL the consult leg"
    STOP_HOLD = "give the caller back to the bot"
    SUCCEEDED = "report success"
    FAILED = "report failure"
    CANCELLED = "report cancellation"


S, I, A = State, Input, Action

#: Failure statuses fixed by the row; ``None`` means "the status the input carries".
DECLINED, NO_ANSWER = "declined", "no_answer"

Row = tuple[tuple[Action, ...], State, str | None]
TABLE: dict[tuple[State, Input], Row] = {
    (S.DIALING, I.ANSWERED): ((A.PLAY_BRIEFING,), S.BRIEFING, None),
    (S.DIALING, I.DIAL_FAILED): ((A.STOP_HOLD, A.FAILED), S.FAILED, None),
    (S.DIALING, I.CANCEL): ((A.HANG_UP_AGENT, A.STOP_HOLD, A.CANCELLED), S.CANCELLED, None),
    (S.DIALING, I.CALLER_GONE): ((A.HANG_UP_AGENT, A.CANCELLED), S.CANCELLED, None),
    (S.BRIEFING, I.BRIEFED): ((), S.READY, None),
    (S.BRIEFING, I.BRIEFED_CONFIRM): ((A.START_CONFIRM_TIMER,), S.CONFIRMING, None),
    (S.BRIEFING, I.ACCEPTED): ((A.CONNECT,), S.COMPLETING, None),
    (S.BRIEFING, I.DECLINED): ((A.HANG_UP_AGENT, A.STOP_HOLD, A.FAILED), S.FAILED, DECLINED),
    (S.BRIEFING, I.AGENT_HUNG_UP): ((A.STOP_HOLD, A.FAILED), S.FAILED, DECLINED),
    (S.BRIEFING, I.COMPLETE): ((A.CONNECT,), S.COMPLETING, None),
    (S.BRIEFING, I.CANCEL): ((A.HANG_UP_AGENT, A.STOP_HOLD, A.CANCELLED), S.CANCELLED, None),
    (S.BRIEFING, I.CALLER_GONE): ((A.HANG_UP_AGENT, A.CANCELLED), S.CANCELLED, None),
    (S.CONFIRMING, I.ACCEPTED): ((A.CONNECT,), S.COMPLETING, None),
    (S.CONFIRMING, I.DECLINED): ((A.HANG_UP_AGENT, A.STOP_HOLD, A.FAILED), S.FAILED, DECLINED),
    (S.CONFIRMING, I.CONFIRM_TIMEOUT): ((A.HANG_UP_AGENT, A.STOP_HOLD, A.FAILED), S.FAILED, NO_ANSWER),
    (S.CONFIRMING, I.AGENT_HUNG_UP): ((A.STOP_HOLD, A.FAILED), S.FAILED, DECLINED),
    (S.CONFIRMING, I.COMPLETE): ((A.CONNECT,), S.COMPLETING, None),
    (S.CONFIRMING, I.CANCEL): ((A.HANG_UP_AGENT, A.STOP_HOLD, A.CANCELLED), S.CANCELLED, None),
    (S.CONFIRMING, I.CALLER_GONE): ((A.HANG_UP_AGENT, A.CANCELLED), S.CANCELLED, None),
    (S.READY, I.COMPLETE): ((A.CONNECT,), S.COMPLETING, None),
    (S.READY, I.ACCEPTED): ((A.CONNECT,), S.COMPLETING, None),
    (S.READY, I.DECLINED): ((A.HANG_UP_AGENT, A.STOP_HOLD, A.FAILED), S.FAILED, DECLINED),
    (S.READY, I.AGENT_HUNG_UP): ((A.STOP_HOLD, A.FAILED), S.FAILED, DECLINED),
    (S.READY, I.CANCEL): ((A.HANG_UP_AGENT, A.STOP_HOLD, A.CANCELLED), S.CANCELLED, None),
    (S.READY, I.CALLER_GONE): ((A.HANG_UP_AGENT, A.CANCELLED), S.CANCELLED, None),
    (S.COMPLETING, I.COMPLETED_OK): ((A.SUCCEEDED,), S.COMPLETED, None),
    (S.COMPLETING, I.COMPLETION_FAILED): ((A.HANG_UP_AGENT, A.STOP_HOLD, A.FAILED), S.FAILED, None),
    (S.COMPLETING, I.CALLER_GONE): ((A.HANG_UP_AGENT, A.CANCELLED), S.CANCELLED, None),
}

#: Inputs that may arrive late and mean nothing any more.
IGNORED: frozenset[tuple[State, Input]] = frozenset(
    {(s, i) for s in (S.COMPLETED, S.FAILED, S.CANCELLED) for i in Input}
    | {(S.COMPLETING, i) for i in (I.ACCEPTED, I.DECLINED, I.BRIEFED, I.BRIEFED_CONFIRM,
                                   I.CONFIRM_TIMEOUT, I.COMPLETE, I.AGENT_HUNG_UP)}
    | {(S.READY, I.BRIEFED), (S.READY, I.CONFIRM_TIMEOUT), (S.BRIEFING, I.CONFIRM_TIMEOUT)}
)

FINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})


class ConsultError(Exception):
    """An input the machine's state does not allow (e.g. "complete" before the agent
    answered): the API answers 409."""


@dataclass
class ConsultMachine:
    state: State = S.DIALING
    status: int | str | None = None
    """The failure status, once FAILED."""
    history: list[tuple[State, Input, State]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    def feed(self, event: Input, status: int | str | None = None) -> tuple[Action, ...]:
        row = TABLE.get((self.state, event))
        if row is None:
            if (self.state, event) in IGNORED:
                return ()
            raise ConsultError(f"cannot {event.value} while {self.state.value}")
        actions, target, fixed = row
        if A.FAILED in actions:
            self.status = fixed if fixed is not None else status
        self.history.append((self.state, event, target))
        self.state = target
        return actions
