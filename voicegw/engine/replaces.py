"""RFC 3891 Replaces: an INVITE that takes the place of a dialog voicegw owns.

A carrier or a phone completing an attended transfer on its side sends an INVITE
with ``Replaces: call-id;to-tag=OURS;from-tag=THEIRS``. voicegw answers it with its
own SDP, moves the media to it and sends BYE on the replaced dialog. Replaces that
names no confirmed dialog of ours is refused with 481 (RFC 3891 3).
"""

from __future__ import annotations

from ..media.plane import PLAYERS
from ..media.ports import PortPoolExhausted
from ..sip.build import make_response, new_tag
from ..sip.dialog_table import DialogId
from ..sip.errors import SipError
from ..sip.events import RequestReceived
from ..sip.invite_session_io import Accept
from ..sip.refusal import Cause, refusal_response
from ..sip.sdp import SessionDescription
from .call import Call, CallState, Leg
from .control_io import FlowStopped
from .events import LegReplaced
from .outbound import apply_media
from .ports import ReplacesHost


def parse_replaces(value: str) -> DialogId | None:
    """``Replaces: callid;to-tag=T;from-tag=F`` (RFC 3891 6.1). The to-tag is the tag of
    the UA that receives the INVITE (ours), the from-tag the other side's."""
    call_id, _, params = value.partition(";")
    tags = {}
    for param in params.split(";"):
        name, _, tag = param.strip().partition("=")
        tags[name.strip().lower()] = tag.strip()
    if not call_id.strip() or "to-tag" not in tags or "from-tag" not in tags:
        return None
    return DialogId(call_id.strip(), tags["to-tag"], tags["from-tag"])


async def replacing_invite(engine: ReplacesHost, event: RequestReceived) -> None:
    invite, source = event.request, event.source
    refusal = engine.admission(invite, source)
    replaced = parse_replaces(invite.headers.get("replaces") or "")
    found = engine.dialog_owner(replaced) if replaced is not None else None
    if refusal is None and found is None:
        refusal = make_response(invite, 481, "Call/Transaction Does Not Exist (Replaces)", to_tag=new_tag())
    if refusal is None and found is not None:
        call, old = found
        if call.state is not CallState.CONNECTED or old.ended or old.dialog is None:
            refusal = make_response(invite, 481, "Call/Transaction Does Not Exist (Replaces: dialog not confirmed)",
                                    to_tag=new_tag())
    if refusal is not None or found is None:
        engine.respond(event.transaction_id, refusal)  # type: ignore[arg-type]
        return
    call, old = found
    leg = Leg(old.role, source, invite=invite, transaction_id=event.transaction_id)
    try:
        leg.endpoint = await engine.media.open_endpoint(call.id, old.role)
        leg.sdp = engine.sdp_builder(source)
        leg.srtp_key = old.srtp_key
        answer = engine.answer(leg, SessionDescription.parse(invite.body))
    except (SipError, PortPoolExhausted) as error:
        if leg.endpoint is not None:
            leg.endpoint.close()
        if isinstance(error, PortPoolExhausted):
            engine.refusals.note(Cause.PORT_POOL, 503, call_id=invite.call_id, source=str(source), replaces=True)
            engine.respond(event.transaction_id, refusal_response(invite, Cause.PORT_POOL, to_tag=new_tag()))
        else:
            engine.respond(event.transaction_id, make_response(invite, error.status, to_tag=new_tag()))
        return
    session = engine.outbound.take(call, leg, event.transaction_id, new_tag())
    if session.terminated:  # refused by the session (a too brief Session-Expires: 422)
        leg.endpoint.close()
        return
    apply_media(leg.endpoint, answer.negotiated)
    session.handle(Accept(leg.sdp.stamp(answer.sdp)))
    swap_leg(engine, call, old, leg)
    engine.outbound.hang_up(old)
    call.record(engine.now(), LegReplaced(leg.role, str(source)))


def swap_leg(engine: ReplacesHost, call: Call, old: Leg, new: Leg) -> None:
    """Put ``new`` where ``old`` was: in the call and in the media path."""
    assert new.endpoint is not None
    bridge = engine.bridge(call)
    if old is call.caller:
        call.caller = new
        if bridge is not None:
            far = bridge.b
            bridge.close()
            call.resources.append(engine.media.bridge(new.endpoint, far))
        elif call.flow_task is not None:  # voicegw is the bot: the flow starts over
            engine.control(call, FlowStopped())
            call.flow_task.cancel()
            new.endpoint.on_dtmf = call.hold_digit  # until the flow listens again
            call.flow_task = engine.spawn(engine.run_flow(call), call)
    else:
        setattr(call, old.role, new)
        if bridge is not None and bridge.b is old.endpoint:
            bridge.replace_b(new.endpoint)
    if old.endpoint is not None:
        for resource in call.resources:  # a prompt still playing to the replaced leg
            if isinstance(resource, PLAYERS) and resource.endpoint is old.endpoint:
                resource.stop()
        old.endpoint.close()
