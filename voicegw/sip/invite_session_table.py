"""The INVITE session's state machine (PJSIP's inv layer): states, inputs, the one table.

How to read this module: ``TABLE`` maps ``(state, input)`` to ``(actions, next state,
cause)``; ``cause`` is set on the rows that end the session and says why (the
:class:`~voicegw.sip.invite_session.Terminated` event carries it). Every other pair is
in exactly one of two sets, and a test checks that the three cover every pair:

- ``IGNORED``: the input means nothing any more (a late response, a response to a BYE,
  a CANCEL that lost the race with our final response, a second hang-up). Dropped.
- ``INVALID``: a pair the protocol or the API forbids, with the SIP status it earns.
  A request from the peer is answered with that status by the session itself (491 for
  re-INVITE glare, 500 with Retry-After for a second INVITE before the first is answered,
  RFC 3261 14.2; 481 for a dialog that is not there, 12.2.2); a command from our user
  raises :class:`InviteSessionError`.

The session (:mod:`voicegw.sip.invite_session`) turns each typed input into one
``Input`` member (the few data-dependent choices: a 401/407 we can answer, a 422 we can
meet, an offer we cannot use, are made there, before the table is consulted), looks the
pair up here in one place (:func:`lookup`) and performs the actions in order. Timers are
inputs too; entering a state drops every timer that state has no row for, so a session
that reaches DISCONNECTED has none left.

States, named as PJSIP names them (``PJSIP_INV_STATE_*``), plus the waits the RFC
spells out that PJSIP keeps in flags::

  UAC:  NULL -invite-> CALLING -1xx-> EARLY -2xx/ACK sent-> CONFIRMED
                          |  cancel (9.1: wait for a 1xx)   | cancel
                          v                                 v
                    CANCEL_PENDING ------1xx/CANCEL----> CANCELLING -487/2xx+BYE/64*T1-> DISCONNECTED
  UAS:  NULL -INVITE-> INCOMING -1xx-> EARLY -2xx-> CONNECTING -ACK-> CONFIRMED
        (RFC 3262: a reliable 1xx keeps EARLY until its PRACK; a 2xx waits for it there)
                                                       | bye (15: wait for the ACK)
                                                       v
                                                  DISCONNECTING -ACK or 64*T1, BYE-> DISCONNECTED
  both: CONFIRMED -modify-> REINVITING -2xx/failure-> CONFIRMED
                                | 491 (14.1: back off, then resend)
                                v
                              GLARE -back-off timer-> REINVITING
        CONFIRMED -re-INVITE/UPDATE received-> REINVITED -accept/reject-> CONFIRMED
        any dialog state -BYE sent or received, no ACK in 64*T1, session expired-> DISCONNECTED

EARLY (here as in PJSIP) is shared by both roles; the few inputs valid for one role
only (a CANCEL is the UAC's, an Accept the UAS's) are checked before the table.
On the UAC side a 100 Trying also leads to EARLY: 9.1 lets the CANCEL go after "a
provisional response", whether or not it carries a To tag.
"""

from __future__ import annotations

import enum

from .errors import SipError


class State(enum.Enum):
    NULL = "null"
    CALLING = "calling"  # UAC: INVITE sent, no provisional response yet
    CANCEL_PENDING = "cancel-pending"  # UAC: cancel asked before any 1xx (9.1: wait)
    INCOMING = "incoming"  # UAS: INVITE received, no 1xx sent (the core's 100 aside)
    EARLY = "early"  # a provisional response sent (UAS) or received (UAC)
    CANCELLING = "cancelling"  # UAC: CANCEL sent, the INVITE's final response awaited
    CONNECTING = "connecting"  # UAS: 2xx sent, its ACK awaited (13.3.1.4)
    DISCONNECTING = "disconnecting"  # UAS: BYE wanted, held until the ACK (15)
    CONFIRMED = "confirmed"
    REINVITING = "reinviting"  # our re-INVITE or UPDATE is outstanding (14.1)
    GLARE = "glare"  # it got 491: the back-off timer runs (14.1)
    REINVITED = "reinvited"  # the peer's re-INVITE or UPDATE awaits our answer (14.2)
    DISCONNECTED = "disconnected"


class Input(enum.Enum):
    # --- commands from our user -------------------------------------------------------
    INVITE = "send the INVITE"
    PROGRESS = "send a 1xx"
    ACCEPT = "send a 2xx"  # to the INVITE, or to the peer's re-INVITE/UPDATE
    REJECT = "send a 300-699"  # likewise
    CANCEL = "cancel the INVITE"
    BYE = "hang up"
    MODIFY = "send a re-INVITE or UPDATE"
    # --- requests from the peer -------------------------------------------------------
    RECV_INVITE = "INVITE received"
    RECV_UNACCEPTABLE = "request refused before the user sees it"  # 422, 488, 491 by data
    RECV_CANCEL = "CANCEL received"
    RECV_ACK = "ACK received"
    RECV_BYE = "BYE received"
    RECV_REINVITE = "re-INVITE received"
    RECV_UPDATE_OFFER = "UPDATE with an offer received"
    RECV_REFRESH = "UPDATE without an offer received"
    RECV_PRACK = "PRACK for our unacknowledged reliable 1xx"  # RFC 3262 3
    RECV_PRACK_RELEASE = "PRACK for our reliable 1xx, a 2xx held for it"
    RECV_PRACK_UNMATCHED = "PRACK matching no unacknowledged reliable 1xx"  # 481
    ACCEPT_HELD = "send a 2xx while our reliable 1xx is unacknowledged"
    # --- responses to our INVITE ------------------------------------------------------
    RECV_100 = "1xx without To tag"
    RECV_1XX = "1xx with To tag"
    RECV_2XX = "2xx to the INVITE"
    RECV_2XX_BAD_SDP = "2xx whose answer is unusable"
    RECV_2XX_AGAIN = "2xx already ACKed"
    RECV_CHALLENGE = "401/407 with credentials to send"
    RECV_TOO_BRIEF = "422 with a Min-SE we can meet"
    RECV_FAILURE = "300-699 to the INVITE"
    NO_RESPONSE = "the INVITE timed out"
    # --- responses to our re-INVITE / UPDATE ------------------------------------------
    MODIFY_2XX = "2xx to our modify"
    MODIFY_491 = "491 to our modify"
    MODIFY_TOO_BRIEF = "422 to our modify"
    MODIFY_FAILED = "other failure of our modify"
    MODIFY_GONE = "481/408 or no response to our modify"
    MODIFY_CHALLENGE = "401/407 to our modify, with credentials to send"  # 22.2
    # --- responses to our BYE -----------------------------------------------------------
    BYE_ANSWERED = "2xx to our BYE"
    BYE_CHALLENGE = "401/407 to our BYE, with credentials to send"  # 22.2
    BYE_FAILED = "other final response to our BYE, or none"
    PRACK_CHALLENGE = "401/407 to our PRACK, with credentials to send"  # 22.2, RFC 3262
    RECV_OTHER = "any other response"  # to CANCEL, a stale request
    # --- timers -----------------------------------------------------------------------
    TIMER_2XX = "2xx retransmission timer"
    TIMER_NO_ACK = "no ACK in 64*T1"
    TIMER_CANCEL = "no final response 64*T1 after CANCEL"
    TIMER_GLARE = "491 back-off over"
    TIMER_REFRESH = "session refresh due"
    TIMER_EXPIRE = "session about to expire"
    TIMER_1XX = "reliable 1xx retransmission timer"  # RFC 3262 3
    TIMER_NO_PRACK = "no PRACK in 64*T1"


class Action(enum.Enum):
    SEND_INVITE = enum.auto()  # with Supported/Session-Expires/Min-SE (RFC 4028 7.1)
    RETRY_AUTHORIZED = enum.auto()  # the INVITE again, CSeq+1, with credentials (22.2)
    RETRY_LONGER = enum.auto()  # the INVITE again with the 422's Min-SE (RFC 4028 7.4)
    PROGRESS_RECEIVED = enum.auto()  # early dialog, early media, event
    ACK_2XX = enum.auto()  # dialog, ACK (13.2.2.4), answer, session timers, event
    ACK_AND_BYE = enum.auto()  # a 2xx we no longer want: ACK it, then BYE (15, 13.2.2.4)
    RESEND_ACK = enum.auto()  # a retransmitted 2xx gets the same ACK again (13.2.2.4)
    SEND_CANCEL = enum.auto()  # 9.1, and the 64*T1 give-up timer
    TAKE_INVITE = enum.auto()  # remote offer, session-timer negotiation (RFC 4028 9)
    SEND_PROVISIONAL = enum.auto()
    SEND_2XX = enum.auto()  # with the 2xx retransmission and no-ACK timers (13.3.1.4)
    SEND_FINAL = enum.auto()  # a 300-699 to the INVITE
    SEND_487 = enum.auto()  # CANCEL received (9.2)
    REFUSE = enum.auto()  # the status the input was classified with (422 + Min-SE, 488...)
    RESEND_2XX = enum.auto()  # T1 doubling to T2 (13.3.1.4)
    ACK_RECEIVED = enum.auto()  # stop the 2xx timers, take an answer in the ACK
    SEND_BYE = enum.auto()
    ANSWER_BYE = enum.auto()  # 200, and 487 to anything pending (15.1.2)
    SEND_MODIFY = enum.auto()
    RESEND_MODIFY = enum.auto()  # after the glare back-off
    RETRY_MODIFY_LONGER = enum.auto()  # 422 to our refresh (RFC 4028 7.4)
    RETRY_MODIFY_AUTHORIZED = enum.auto()  # the same offer again, a new CSeq, with credentials (22.2)
    RETRY_BYE = enum.auto()  # the BYE again, a new CSeq, with credentials (22.2)
    BYE_DONE = enum.auto()  # our BYE got its 2xx: nothing of the session waits any more
    BYE_FAILED = enum.auto()  # our BYE failed: say why (the session is over anyway, 15)
    RETRY_PRACK = enum.auto()  # our PRACK again with credentials, CSeq+1 (22.2)
    MODIFY_DONE = enum.auto()  # ACK a re-INVITE's 2xx, take the answer, refresh timers
    MODIFY_ROLLBACK = enum.auto()  # 14.1: a failed re-INVITE leaves the session as it was
    START_GLARE = enum.auto()  # draw the 14.1 back-off, start its timer
    DROP_GLARE = enum.auto()  # the peer's request won: ours is dropped and reported
    END_DIALOG = enum.auto()  # 12.2.1.2: 481/408 (or none) to a mid-dialog request ends it; no BYE
    TAKE_MODIFY = enum.auto()  # remote offer, event for the user
    ANSWER_MODIFY = enum.auto()  # 2xx with answer and Session-Expires
    REFUSE_MODIFY = enum.auto()  # our 300-699 to it
    CANCEL_MODIFY = enum.auto()  # the peer cancelled its re-INVITE: 487 (9.2)
    ANSWER_REFRESH = enum.auto()  # 200 to an UPDATE without offer (RFC 4028 9)
    REFRESH = enum.auto()  # we are the refresher: UPDATE or re-INVITE (RFC 4028 7.4)
    OWE_REFRESH = enum.auto()  # refresh due while busy: do it once idle again
    RESEND_1XX = enum.auto()  # the reliable 1xx again, T1 doubling (RFC 3262 3)
    ANSWER_PRACK = enum.auto()  # 200, stop the 1xx timers, send a queued 1xx (RFC 3262 3)
    HOLD_2XX = enum.auto()  # "MUST NOT send a final response" before the PRACK (RFC 3262 3)
    SEND_NO_PRACK = enum.auto()  # 64*T1 without PRACK: "reject ... with a 5xx" (RFC 3262 3)


class Cause(enum.Enum):
    """Why a session ended (the ``Terminated`` event's ``cause``)."""

    LOCAL_BYE = "local_bye"
    REMOTE_BYE = "remote_bye"
    CANCELLED = "cancelled"  # our CANCEL, or the peer's (9.1, 9.2)
    REJECTED = "rejected"  # we answered the INVITE 300-699
    FAILED = "failed"  # the peer answered our INVITE 300-699, or with an unusable answer
    TIMEOUT = "timeout"  # no final response to our INVITE (Timer B)
    NO_ACK = "no_ack"  # our 2xx was never ACKed (13.3.1.4)
    SESSION_EXPIRED = "session_expired"  # RFC 4028 10
    DIALOG_GONE = "dialog_gone"  # 481/408 to a mid-dialog request (12.2.1.2)
    NO_PRACK = "no_prack"  # our reliable 1xx was never PRACKed (RFC 3262 3): we sent 5xx


class InviteSessionError(SipError):
    """A command the session's state does not allow (our user's mistake)."""

    status = 500


S, I, A, C = State, Input, Action, Cause
Row = tuple[tuple[Action, ...], State, Cause | None]
D = S.DISCONNECTED

#: States where a dialog is confirmed (or about to be, CONNECTING): 2xx/ACK timers,
#: session timers and mid-dialog requests live here.
_DIALOG_UP = (S.CONNECTING, S.DISCONNECTING, S.CONFIRMED, S.REINVITING, S.GLARE, S.REINVITED)
_CONFIRMED_LIKE = (S.CONFIRMED, S.REINVITING, S.GLARE, S.REINVITED)
_UAC_EARLY = (S.CALLING, S.EARLY)


def _rows() -> dict[tuple[State, Input], Row]:
    t: dict[tuple[State, Input], Row] = {
        # ---- UAC: the INVITE and its responses ---------------------------------------
        (S.NULL, I.INVITE): ((A.SEND_INVITE,), S.CALLING, None),
        (S.CALLING, I.CANCEL): ((), S.CANCEL_PENDING, None),  # 9.1: no 1xx yet, wait
        (S.EARLY, I.CANCEL): ((A.SEND_CANCEL,), S.CANCELLING, None),
        (S.CANCEL_PENDING, I.RECV_100): ((A.SEND_CANCEL,), S.CANCELLING, None),
        (S.CANCEL_PENDING, I.RECV_1XX): ((A.SEND_CANCEL,), S.CANCELLING, None),
        # 9.1: "the CANCEL ... may not have any effect ... a 2xx may arrive": we still
        # wanted out, so ACK it and BYE (15); the same for a 2xx nobody waits for.
        (S.CANCEL_PENDING, I.RECV_2XX): ((A.ACK_AND_BYE,), D, C.CANCELLED),
        (S.CANCEL_PENDING, I.RECV_2XX_BAD_SDP): ((A.ACK_AND_BYE,), D, C.CANCELLED),
        (S.CANCELLING, I.RECV_2XX): ((A.ACK_AND_BYE,), D, C.CANCELLED),
        (S.CANCELLING, I.RECV_2XX_BAD_SDP): ((A.ACK_AND_BYE,), D, C.CANCELLED),
        # 9.1: no final response 64*T1 after the CANCEL: consider the INVITE cancelled
        (S.CANCELLING, I.TIMER_CANCEL): ((), D, C.CANCELLED),
        (D, I.RECV_2XX): ((A.ACK_AND_BYE,), D, None),
        (D, I.RECV_2XX_BAD_SDP): ((A.ACK_AND_BYE,), D, None),
    }
    for state in (S.CANCEL_PENDING, S.CANCELLING):
        for kind in (I.RECV_CHALLENGE, I.RECV_TOO_BRIEF, I.RECV_FAILURE, I.NO_RESPONSE):
            t[(state, kind)] = ((), D, C.CANCELLED)  # the 487 (or whatever ends it)
    for state in _UAC_EARLY:
        t[(state, I.RECV_100)] = ((A.PROGRESS_RECEIVED,), S.EARLY, None)
        t[(state, I.RECV_1XX)] = ((A.PROGRESS_RECEIVED,), S.EARLY, None)
        t[(state, I.RECV_2XX)] = ((A.ACK_2XX,), S.CONFIRMED, None)
        # 13.2.2.4 gives no way to refuse an answer: ACK it, then BYE (engine: 488)
        t[(state, I.RECV_2XX_BAD_SDP)] = ((A.ACK_AND_BYE,), D, C.FAILED)
        # 22.2 and RFC 4028 7.4: a new INVITE (CSeq+1) on the same call; any early
        # dialog of the first one is over (12.3), so back to CALLING
        t[(state, I.RECV_CHALLENGE)] = ((A.RETRY_AUTHORIZED,), S.CALLING, None)
        t[(state, I.RECV_TOO_BRIEF)] = ((A.RETRY_LONGER,), S.CALLING, None)
        t[(state, I.RECV_FAILURE)] = ((), D, C.FAILED)
        t[(state, I.NO_RESPONSE)] = ((), D, C.TIMEOUT)
    # ---- UAS: the INVITE and our responses --------------------------------------------
    t[(S.NULL, I.RECV_INVITE)] = ((A.TAKE_INVITE,), S.INCOMING, None)
    t[(S.NULL, I.RECV_UNACCEPTABLE)] = ((A.REFUSE,), D, C.REJECTED)  # 422 (RFC 4028 8.1), 488
    for state in (S.INCOMING, S.EARLY):
        t[(state, I.PROGRESS)] = ((A.SEND_PROVISIONAL,), S.EARLY, None)
        t[(state, I.ACCEPT)] = ((A.SEND_2XX,), S.CONNECTING, None)
        t[(state, I.REJECT)] = ((A.SEND_FINAL,), D, C.REJECTED)
        t[(state, I.RECV_CANCEL)] = ((A.SEND_487,), D, C.CANCELLED)  # 9.2
    # RFC 3262 3: a reliable 1xx is retransmitted until its PRACK (T1 doubling), the
    # 2xx waits for that PRACK, and 64*T1 without it fails the INVITE with a 5xx
    t[(S.EARLY, I.TIMER_1XX)] = ((A.RESEND_1XX,), S.EARLY, None)
    t[(S.EARLY, I.TIMER_NO_PRACK)] = ((A.SEND_NO_PRACK,), D, C.NO_PRACK)
    t[(S.EARLY, I.RECV_PRACK)] = ((A.ANSWER_PRACK,), S.EARLY, None)
    t[(S.EARLY, I.ACCEPT_HELD)] = ((A.HOLD_2XX,), S.EARLY, None)
    t[(S.EARLY, I.RECV_PRACK_RELEASE)] = ((A.ANSWER_PRACK, A.SEND_2XX), S.CONNECTING, None)
    # UAC: a proxy (or the UAS) challenges our PRACK: sent again with credentials (22.2);
    # the UAS holds its 2xx for it (3), but a 2xx that did not wait may be in already
    for state in (S.EARLY, *_CONFIRMED_LIKE):
        t[(state, I.PRACK_CHALLENGE)] = ((A.RETRY_PRACK,), state, None)
    for state in (S.EARLY, *_DIALOG_UP):
        t[(state, I.RECV_PRACK_UNMATCHED)] = ((A.REFUSE,), state, None)  # 481 (RFC 3262 3)
    # 15: "the caller's UA MAY send a BYE for either confirmed or early dialogs"; the
    # UAS answers it and 487s the INVITE (15.1.2). A UAC in EARLY or CANCELLING with
    # an early dialog answers a BYE too (a callee must not send it, but did).
    t[(S.EARLY, I.RECV_BYE)] = ((A.ANSWER_BYE,), D, C.REMOTE_BYE)
    t[(S.CANCELLING, I.RECV_BYE)] = ((A.ANSWER_BYE,), D, C.CANCELLED)
    # 13.3.1.4: the ACK stops the 2xx; without one in 64*T1, "the dialog is confirmed,
    # but the session SHOULD be terminated ... with a BYE"
    t[(S.CONNECTING, I.RECV_ACK)] = ((A.ACK_RECEIVED,), S.CONFIRMED, None)
    t[(S.CONNECTING, I.TIMER_NO_ACK)] = ((A.SEND_BYE,), D, C.NO_ACK)
    # 15: the callee "MUST NOT send a BYE on a confirmed dialog until it has received
    # an ACK for its 2xx response or until the server transaction times out"
    t[(S.CONNECTING, I.BYE)] = ((), S.DISCONNECTING, None)
    t[(S.DISCONNECTING, I.RECV_ACK)] = ((A.ACK_RECEIVED, A.SEND_BYE), D, C.LOCAL_BYE)
    t[(S.DISCONNECTING, I.TIMER_NO_ACK)] = ((A.SEND_BYE,), D, C.LOCAL_BYE)
    # ---- in every state with a dialog up ----------------------------------------------
    for state in _DIALOG_UP:
        t[(state, I.TIMER_2XX)] = ((A.RESEND_2XX,), state, None)
        t[(state, I.RECV_BYE)] = ((A.ANSWER_BYE,), D, C.REMOTE_BYE)
        t[(state, I.RECV_REFRESH)] = ((A.ANSWER_REFRESH,), state, None)
        t[(state, I.TIMER_REFRESH)] = ((A.OWE_REFRESH,), state, None)
        # RFC 4028 10: BYE "the minimum of 32 seconds and one third of the session
        # interval" before the session expires
        t[(state, I.TIMER_EXPIRE)] = ((A.SEND_BYE,), D, C.SESSION_EXPIRED)
    for state in _CONFIRMED_LIKE:
        # the ACK for the 2xx to a re-INVITE of the peer's (13.3.1.4 applies to it too)
        t[(state, I.RECV_ACK)] = ((A.ACK_RECEIVED,), state, None)
        t[(state, I.TIMER_NO_ACK)] = ((A.SEND_BYE,), D, C.NO_ACK)
        t[(state, I.BYE)] = ((A.SEND_BYE,), D, C.LOCAL_BYE)
        # 13.2.2.4: a 2xx from another fork: ACK it and BYE that dialog; ours goes on
        t[(state, I.RECV_2XX)] = ((A.ACK_AND_BYE,), state, None)
        t[(state, I.RECV_2XX_BAD_SDP)] = ((A.ACK_AND_BYE,), state, None)
    # ---- re-INVITE / UPDATE, ours ------------------------------------------------------
    t[(S.CONFIRMED, I.MODIFY)] = ((A.SEND_MODIFY,), S.REINVITING, None)
    t[(S.CONFIRMED, I.TIMER_REFRESH)] = ((A.REFRESH,), S.REINVITING, None)
    t[(S.REINVITING, I.MODIFY_2XX)] = ((A.MODIFY_DONE,), S.CONFIRMED, None)
    t[(S.REINVITING, I.MODIFY_FAILED)] = ((A.MODIFY_ROLLBACK,), S.CONFIRMED, None)
    t[(S.REINVITING, I.MODIFY_TOO_BRIEF)] = ((A.RETRY_MODIFY_LONGER,), S.REINVITING, None)
    t[(S.REINVITING, I.MODIFY_CHALLENGE)] = ((A.RETRY_MODIFY_AUTHORIZED,), S.REINVITING, None)
    t[(S.REINVITING, I.MODIFY_491)] = ((A.START_GLARE,), S.GLARE, None)
    t[(S.REINVITING, I.MODIFY_GONE)] = ((A.END_DIALOG,), D, C.DIALOG_GONE)
    t[(S.GLARE, I.TIMER_GLARE)] = ((A.RESEND_MODIFY,), S.REINVITING, None)
    # ---- re-INVITE / UPDATE, the peer's ------------------------------------------------
    for kind in (I.RECV_REINVITE, I.RECV_UPDATE_OFFER):
        t[(S.CONFIRMED, kind)] = ((A.TAKE_MODIFY,), S.REINVITED, None)
        # our back-off is still running: the peer retried first, its request wins
        t[(S.GLARE, kind)] = ((A.DROP_GLARE, A.TAKE_MODIFY), S.REINVITED, None)
    t[(S.CONFIRMED, I.RECV_UNACCEPTABLE)] = ((A.REFUSE,), S.CONFIRMED, None)
    t[(S.GLARE, I.RECV_UNACCEPTABLE)] = ((A.REFUSE,), S.GLARE, None)
    t[(S.REINVITED, I.ACCEPT)] = ((A.ANSWER_MODIFY,), S.CONFIRMED, None)
    t[(S.REINVITED, I.REJECT)] = ((A.REFUSE_MODIFY,), S.CONFIRMED, None)
    t[(S.REINVITED, I.RECV_CANCEL)] = ((A.CANCEL_MODIFY,), S.CONFIRMED, None)
    # ---- a retransmitted 2xx is ACKed again wherever it lands (13.2.2.4) --------------
    for state in State:
        t[(state, I.RECV_2XX_AGAIN)] = ((A.RESEND_ACK,), state, None)
    # 12.2.1.2: a 2xx to our re-INVITE after we hung up still gets its ACK
    t[(D, I.MODIFY_2XX)] = ((A.RESEND_ACK,), D, None)
    # our BYE's outcome: the session ended when it left (15), but a challenge to it is
    # answered (22.2) and a failure is reported, so the peer's side is known
    t[(D, I.BYE_ANSWERED)] = ((A.BYE_DONE,), D, None)
    t[(D, I.BYE_CHALLENGE)] = ((A.RETRY_BYE,), D, None)
    t[(D, I.BYE_FAILED)] = ((A.BYE_FAILED,), D, None)
    # the peer's BYE crossing ours (RFC 5407's crossing BYEs): 200, as the dialog is
    # there until our BYE's final response (15.1.1, 15.1.2); the session is over already
    t[(D, I.RECV_BYE)] = ((A.ANSWER_BYE,), D, None)
    return t


TABLE: dict[tuple[State, Input], Row] = _rows()

_COMMANDS = (I.INVITE, I.PROGRESS, I.ACCEPT, I.ACCEPT_HELD, I.REJECT, I.CANCEL, I.BYE, I.MODIFY)
_REQUESTS = (I.RECV_INVITE, I.RECV_UNACCEPTABLE, I.RECV_BYE, I.RECV_REINVITE,
             I.RECV_UPDATE_OFFER, I.RECV_REFRESH, I.RECV_PRACK, I.RECV_PRACK_RELEASE,
             I.RECV_PRACK_UNMATCHED)


def _request_status(state: State) -> int:
    """The answer to a request the state cannot take."""
    if state in (S.EARLY, S.REINVITED):
        # 14.2: "a UAS that receives a second INVITE before it sends the final response
        # to a first INVITE ... MUST return a 500 ... with Retry-After"; RFC 3311 5.2
        # for an offer in UPDATE while we owe an answer to one
        return 500
    if state in (S.CONNECTING, S.DISCONNECTING, S.REINVITING):
        # 14.2: "a UAS that receives an INVITE on a dialog while an INVITE it had sent
        # on that dialog is in progress MUST return a 491"; RFC 3311 5.2 for UPDATE
        # (CONNECTING: our 2xx is not ACKed, the INVITE transaction is not over)
        return 491
    return 481  # 12.2.2: no dialog (yet, or any more) for it


def _classify_rest() -> tuple[frozenset[tuple[State, Input]], dict[tuple[State, Input], int]]:
    ignored: set[tuple[State, Input]] = set()
    invalid: dict[tuple[State, Input], int] = {}
    for state in State:
        for kind in Input:
            if (state, kind) in TABLE:
                continue
            if kind in _COMMANDS:
                # Hanging up twice, or cancelling what is already being ended, is a no-op.
                idempotent = (kind is I.BYE and state in (S.DISCONNECTING, D)) or (
                    kind is I.CANCEL and state in (S.CANCEL_PENDING, S.CANCELLING, D)
                )
                if idempotent:
                    ignored.add((state, kind))
                else:
                    invalid[(state, kind)] = 500
            elif kind in _REQUESTS:
                if kind is I.RECV_INVITE and state is not S.NULL:
                    ignored.add((state, kind))  # the INVITE the session was made from
                else:
                    invalid[(state, kind)] = _request_status(state)
            else:
                # responses, ACKs, CANCELs and timers with no row: late or stray. An ACK
                # is never answered (17.2.3); the core already answered the CANCEL 200.
                ignored.add((state, kind))
    return frozenset(ignored), invalid


IGNORED, INVALID = _classify_rest()


def lookup(state: State, kind: Input) -> Row | int | None:
    """The row for ``(state, kind)``; the status if it is invalid; None if ignored."""
    row = TABLE.get((state, kind))
    if row is not None:
        return row
    return INVALID.get((state, kind))


__all__ = [
    "IGNORED",
    "INVALID",
    "TABLE",
    "Action",
    "Cause",
    "Input",
    "InviteSessionError",
    "Row",
    "State",
    "lookup",
]
