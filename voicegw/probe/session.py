"""The SIP of one carrier probe: OPTIONS to the trunk, then the test call that REFERs.

It uses the pure pieces the engine uses: sip/dialog.py for the call, sip/refer.py's
referrer machine for the REFER and its NOTIFYs (so "accepted", "succeeded", "failed"
and the timeouts mean here what they mean on a real transfer).

The test call: INVITE to the carrier's trunk for ``dial`` with a G.711 offer on a UDP
port that drops what it gets; ACK every 2xx (RFC 3261 13.2.2.4); REFER to the trunk URI
of ``call`` (the Refer-To the engine would send for that number) with ``refer_sub``;
wait for the outcome (the machine's timers: ``refer_response``, ``notify_final``).
Once the outcome is known we BYE the call, as the transferor does after the final
NOTIFY (RFC 5589 6.1; the NOTIFY is answered first, sip/refer.py), unless the carrier
BYEd first. No answer in ``ring`` seconds: CANCEL (9.1), and a 2xx that
crosses it is ACKed and BYEd (15). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
from collections.abc import Callable
from typing import Any

from ..config.models import CarrierProfile
from ..sip.build import new_call_id, new_tag
from ..sip.dialog import Dialog
from ..sip.dialog_table import DialogId
from ..sip.digest_client import DigestClient, Refused
from ..sip.errors import SipError
from ..sip.events import Address, Event, RequestReceived, ResponseReceived, TransactionTimedOut
from ..sip.locate import literal_hop
from ..sip.message import Headers, Request, Response
from ..sip.refer import ReferFailed, ReferSubscriptions, ReferSucceeded, ReferUnconfirmed
from ..sip.sdp import SdpBuilder
from ..sip.sipfrag import SipFrag
from ..sip.uri import SipUri
from ..transport.dns import DnsError, DnsSettings, Resolver
from .plan import SETTLE, CallPlan, Plan
from .report import CallSeen, NotifySeen, OptionsSeen


class Tap:
    """The probe's share of the daemon's SIP events: the responses to its transactions
    and the requests on its dialogs. Called before the engine; True: taken."""

    def __init__(self) -> None:
        self.transactions: dict[str, Callable[[Event], None]] = {}
        self.dialogs: dict[DialogId, Callable[[RequestReceived], None]] = {}

    def __call__(self, event: Event) -> bool:
        if isinstance(event, (ResponseReceived, TransactionTimedOut)):
            handler = self.transactions.get(event.transaction_id)
            if handler is None:
                return False
            handler(event)
            return True
        if isinstance(event, RequestReceived) and self.dialogs:
            dialog_id = DialogId.from_request(event.request)
            found = self.dialogs.get(dialog_id) if dialog_id is not None else None
            if found is None:
                return False
            found(event)
            return True
        return False


class Session:
    """One probe's SIP: its transactions, its dialog, its media sink."""

    def __init__(self, daemon: Any, tap: Tap, profile: CarrierProfile, plan: Plan) -> None:
        self.endpoint = daemon.endpoint
        self.sip = daemon.config.sip
        self.tap = tap
        self.profile = profile
        self.plan = plan
        self.loop = asyncio.get_running_loop()
        self.peer: Address | None = None
        self.dialog: Dialog | None = None
        self.transactions: list[str] = []
        self.media: asyncio.DatagramTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.sdp = b""
        """Our SDP on the test call (the answer to a re-INVITE too)."""
        self.digest = DigestClient(plan.account, lambda: secrets.token_hex(8)) if plan.account else None
        """Answers the carrier's 401/407 to OPTIONS and INVITE with the profile's ``auth``."""
        self.notes: list[str] = []
        """What the report's notes say (challenges and how they were answered)."""
        # the REFER's state, once sent (_refer)
        self.refers: ReferSubscriptions | None = None
        self.seen = CallSeen("", "", True)
        self.outcome: asyncio.Future[None] = self.loop.create_future()
        self.refer_sent = 0.0

    # --- plumbing ------------------------------------------------------------------------
    async def locate(self) -> Address:
        if self.peer is not None:
            return self.peer
        uri, transport = self.plan.options_uri, self.plan.transport
        host = uri.host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:  # a name: RFC 3263, as the rest of voicegw resolves one
            targets = await Resolver(DnsSettings(), self.loop.time).locate(uri, (transport,))
            first = targets[0]
            self.peer = Address(first.transport, first.address, first.port)
        else:
            self.peer = Address(transport, host, uri.port or 5060)
        return self.peer

    def ours(self) -> tuple[str, int]:
        """Our SIP host as the carrier should see it, and the port of its transport."""
        assert self.peer is not None
        host = self.sip.addresses().advertised(self.peer.host).sip_host
        bound = self.endpoint.tcp_address if self.peer.transport == "tcp" else self.endpoint.udp_address
        return host, bound.port if bound is not None else 5060

    def send(self, request: Request, on_event: Callable[[Event], None] | None = None,
             to: Address | None = None) -> str:
        destination = to or self.peer
        assert destination is not None
        transaction_id = self.endpoint.send_request(request, destination)
        if transaction_id and on_event is not None:
            self.tap.transactions[transaction_id] = on_event
            self.transactions.append(transaction_id)
        return transaction_id

    async def request(self, request: Request, timeout: float,
                      on_provisional: Callable[[Response], None] | None = None,
                      ) -> tuple[Response | str, float]:
        """Send and wait for the final answer: (the response, or "timeout"/"transport";
        the round trip in ms)."""
        done: asyncio.Future[Response | str] = self.loop.create_future()
        sent = self.loop.time()

        def on_event(event: Event) -> None:
            if isinstance(event, TransactionTimedOut):
                if not done.done():
                    done.set_result("transport" if event.timer == "transport" else "timeout")
            elif isinstance(event, ResponseReceived):
                if event.response.status < 200:
                    if on_provisional is not None:
                        on_provisional(event.response)
                elif not done.done():
                    done.set_result(event.response)

        self.send(request, on_event)
        try:
            result = await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            result = "timeout"
        return result, (self.loop.time() - sent) * 1000

    def close(self) -> None:
        for transaction_id in self.transactions:
            self.tap.transactions.pop(transaction_id, None)
        if self.dialog is not None:
            dialog_id = self.dialog.id
            self.tap.dialogs.pop(dialog_id, None)
            core = self.endpoint.core
            if core is not None:
                core.forget_dialog(dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag)
        if self.timer is not None:
            self.timer.cancel()
        if self.media is not None:
            self.media.close()

    def _out_of_dialog(self, method: str, uri: SipUri, from_user: str,
                       extra: list[tuple[str, str]] = ()) -> Request:  # type: ignore[assignment]
        host, port = self.ours()
        return Request(method, str(uri), Headers([
            ("From", f"<sip:{from_user}@{host}>;tag={new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", new_call_id(host)),
            ("CSeq", f"1 {method}"),
            ("Contact", f"<sip:voicegw@{host}:{port}>"),
            ("Max-Forwards", "70"),
            *extra,
        ]))

    # --- OPTIONS ------------------------------------------------------------------------
    async def options(self) -> OptionsSeen:
        uri = self.plan.options_uri
        seen = OptionsSeen(str(uri), "")
        try:
            peer = await self.locate()
        except DnsError as error:
            seen.status, seen.reason = "transport", f"DNS: {error.reason}"
            return seen
        seen.destination = str(peer)
        request = self._out_of_dialog("OPTIONS", uri, "voicegw", [("Accept", "application/sdp")])
        answer, rtt = await self.request(request, self.plan.options_timeout)
        if isinstance(answer, Response) and answer.status in (401, 407):
            retry = self._with_credentials(request, answer)
            if retry is not None:
                answer, rtt = await self.request(retry, self.plan.options_timeout)
        if isinstance(answer, str):
            seen.status = answer
            seen.reason = "no answer" if answer == "timeout" else "could not reach the carrier"
            return seen
        seen.status, seen.reason, seen.round_trip_ms = answer.status, answer.reason, round(rtt, 1)
        seen.allow_present = "allow" in answer.headers
        seen.allow = [m.strip().upper() for m in answer.headers.values("allow") if m.strip()]
        seen.supported = [t.strip().lower() for t in answer.headers.values("supported") if t.strip()]
        seen.server = answer.headers.get("server") or answer.headers.get("user-agent") or ""
        return seen

    # --- the test call ------------------------------------------------------------------
    async def call(self) -> CallSeen:
        plan = self.plan.call
        assert plan is not None
        seen = CallSeen(str(plan.dial), str(plan.refer_to), plan.refer_sub)
        if self.peer is None:
            seen.invite_status, seen.invite_reason = "transport", "the carrier could not be located"
            return seen
        self.seen = seen
        await self._invite(plan, seen)
        if isinstance(seen.invite_status, int) and 200 <= seen.invite_status < 300:
            await self._refer(plan, seen)
        await self._hang_up(seen)  # also a 2xx that crossed our CANCEL (15)
        return seen

    async def _invite(self, plan: CallPlan, seen: CallSeen) -> None:
        assert self.peer is not None
        media_host = self.sip.addresses().advertised(self.peer.host).media_host
        self.media, _ = await self.loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(self.sip.media_host or self.sip.host, 0))
        port = self.media.get_extra_info("sockname")[1]
        offer = SdpBuilder(session_id=random.getrandbits(48), address=media_host).offer(port=port)
        invite = self._out_of_dialog("INVITE", plan.dial, plan.from_user, [("Supported", "replaces")])
        self.sdp = bytes(offer)
        invite.set_body(self.sdp, "application/sdp")
        result = await self._attempt(invite, plan, seen)
        if isinstance(result, Response) and result.status in (401, 407):
            retry = self._with_credentials(invite, result)
            if retry is not None:
                seen.provisional.clear()
                result = await self._attempt(retry, plan, seen)
        if result is None:
            return
        if isinstance(result, str):
            seen.invite_status = result
            seen.invite_reason = "no answer" if result == "timeout" else "could not reach the carrier"
        else:
            seen.invite_status, seen.invite_reason = result.status, result.reason

    async def _attempt(self, invite: Request, plan: CallPlan, seen: CallSeen) -> Response | str | None:
        """One INVITE: its final answer, "timeout"/"transport", or None when it rang out
        (then it is CANCELled and ``seen`` says so)."""
        assert self.peer is not None
        answered: asyncio.Future[Response | str] = self.loop.create_future()
        host, our_port = self.ours()
        via = f"SIP/2.0/{self.peer.transport.upper()} {host}:{our_port};rport"

        def on_event(event: Event) -> None:
            if isinstance(event, TransactionTimedOut):
                if not answered.done():
                    answered.set_result("transport" if event.timer == "transport" else "timeout")
                return
            assert isinstance(event, ResponseReceived)
            assert self.peer is not None
            response = event.response
            if response.status < 200:
                seen.provisional.append(response.status)
                return
            if response.status < 300:  # every 2xx is ACKed, retransmissions too (13.2.2.4)
                if self.dialog is None:
                    self.dialog = Dialog.from_uac_response(invite, response, local_via=via,
                                                           contact=f"<sip:voicegw@{host}:{our_port}>",
                                                           over_tls=False)
                    dialog_id = self.dialog.id
                    self.tap.dialogs[dialog_id] = self._in_dialog
                    self.endpoint.core.register_dialog(dialog_id.call_id, dialog_id.local_tag,
                                                       dialog_id.remote_tag)
                ack, hop = self.dialog.create_ack(invite.cseq.seq)
                self.send(ack, to=literal_hop(hop, self.peer))  # the route set's first hop (12.2.1.1)
            if not answered.done():
                answered.set_result(response)

        self.send(invite, on_event)
        try:
            return await asyncio.wait_for(asyncio.shield(answered), plan.ring_timeout)
        except TimeoutError:
            self.send(_cancel(invite))  # 9.1; a 2xx crossing it is ACKed here and BYEd by call()
            seen.invite_status, seen.invite_reason = "timeout", f"no answer in {plan.ring_timeout:g} s"
            answered.set_result("timeout")
            await asyncio.sleep(SETTLE)
            return None

    def _with_credentials(self, request: Request, challenge: Response) -> Request | None:
        """``request`` again with the profile's ``auth`` answering ``challenge`` (RFC 3261
        22.2: the same Call-ID, From tag and To, the CSeq one up, a new branch), or None
        (no auth in the profile, or the challenge is not one it can answer)."""
        what = f"{request.method} challenged with {challenge.status}"
        if self.digest is None:
            self.notes.append(f"{what}: the profile has no auth")
            return None
        answer = self.digest.answer(request, challenge)
        if isinstance(answer, Refused):
            self.notes.append(f"{what}: not answered ({answer.reason})")
            return None
        dropped = {"via", "cseq", "authorization", "proxy-authorization", "content-length", "content-type"}
        headers = Headers([(name, value) for name, value in request.headers if name.lower() not in dropped])
        headers.add("CSeq", f"{request.cseq.seq + 1} {request.method}")
        for name, value in answer.headers:
            headers.add(name, value)
        retry = Request(request.method, request.uri, headers)
        retry.set_body(request.body, request.content_type if request.body else None)
        self.notes.append(f"{what}: answered as {self.digest.account.username}")
        return retry

    async def _refer(self, plan: CallPlan, seen: CallSeen) -> None:
        assert self.dialog is not None and self.peer is not None
        refers = ReferSubscriptions(self.dialog, response_timeout=plan.refer_timeout,
                                    notify_timeout=plan.notify_timeout)
        self.refers = refers
        request, hop, refer = refers.refer(plan.refer_to, self.loop.time(), refer_sub=plan.refer_sub)
        self.refer_sent = self.loop.time()

        def on_event(event: Event) -> None:
            now = self.loop.time()
            if isinstance(event, TransactionTimedOut):
                seen.refer_status = seen.refer_status or "timeout"
                refer.transaction_timed_out(now)
            elif isinstance(event, ResponseReceived):
                response = event.response
                if response.status >= 200 and seen.refer_status is None:
                    seen.refer_status, seen.refer_reason = response.status, response.reason
                    seen.refer_round_trip_ms = round((now - self.refer_sent) * 1000, 1)
                    seen.refer_sub_answer = response.headers.get("refer-sub")
                refers.receive_response(response, now)
            self._pump()

        self.send(request, on_event, to=literal_hop(hop, self.peer))
        self._pump()
        bound = plan.refer_timeout + plan.notify_timeout + SETTLE
        try:
            await asyncio.wait_for(asyncio.shield(self.outcome), bound)
        except TimeoutError:
            seen.outcome, seen.outcome_status, seen.outcome_reason = "failed", "timeout", "no outcome in time"
        if seen.refer_status is None and seen.outcome_status == "timeout":
            seen.refer_status = "timeout"

    def _pump(self) -> None:
        refers, seen = self.refers, self.seen
        assert refers is not None
        while (event := refers.next_event()) is not None:
            if isinstance(event, ReferSucceeded):
                seen.outcome, seen.outcome_status, seen.outcome_reason = "succeeded", event.status, event.reason
            elif isinstance(event, ReferFailed):
                seen.outcome, seen.outcome_status, seen.outcome_reason = "failed", event.status, event.reason
            elif isinstance(event, ReferUnconfirmed):
                seen.outcome, seen.outcome_status, seen.outcome_reason = "unconfirmed", event.status, ""
            else:
                continue
            if not self.outcome.done():
                self.outcome.set_result(None)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        due = refers.get_timer()
        if due is not None and not self.outcome.done():
            self.timer = self.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self.timer = None
        assert self.refers is not None
        self.refers.handle_timer(self.loop.time())
        self._pump()

    def _in_dialog(self, event: RequestReceived) -> None:
        """A request from the carrier on the test call's dialog."""
        dialog, request = self.dialog, event.request
        assert dialog is not None
        if request.method == "ACK":
            return
        try:
            dialog.receive_request(request)
        except SipError as error:
            self.endpoint.send_response(event.transaction_id, dialog.respond(request, error.status))
            return
        refers = self.refers
        if request.method == "NOTIFY" and refers is not None:
            answer = refers.receive_notify(request, self.loop.time())
            self.endpoint.send_response(event.transaction_id, answer)  # answered before we act (refer.py)
            self.seen.notifies.append(NotifySeen(
                round((self.loop.time() - self.refer_sent) * 1000, 1),
                request.headers.get("subscription-state") or "", *_sipfrag(request), answer.status))
            self._pump()
        elif request.method == "BYE":
            self.endpoint.send_response(event.transaction_id, dialog.respond(request, 200))
            self.seen.ended_by = self.seen.ended_by or "carrier"
        elif request.method in ("INVITE", "UPDATE"):
            # a session refresh (RFC 4028) or a connected-line update while the probe
            # waits: the session stays as it is, our SDP unchanged (RFC 3264 8: the same
            # o= version); an UPDATE without an offer gets none (RFC 3311 5.2)
            body = self.sdp if request.method == "INVITE" or request.body else b""
            self.endpoint.send_response(event.transaction_id, dialog.respond(
                request, 200, body=body, content_type="application/sdp" if body else None))
        else:
            self.endpoint.send_response(event.transaction_id, dialog.respond(
                request, 200 if request.method in ("OPTIONS", "INFO") else 501))

    async def _hang_up(self, seen: CallSeen) -> None:
        if seen.ended_by or self.dialog is None or self.peer is None:
            return
        seen.ended_by = "voicegw"
        try:
            bye, hop = self.dialog.create_request("BYE")
        except SipError:
            return
        done: asyncio.Future[None] = self.loop.create_future()

        def on_event(event: Event) -> None:
            if not done.done() and (isinstance(event, TransactionTimedOut) or event.response.status >= 200):  # type: ignore[union-attr]
                done.set_result(None)

        self.send(bye, on_event, to=literal_hop(hop, self.peer))
        try:
            await asyncio.wait_for(done, SETTLE)
        except TimeoutError:
            pass


def _sipfrag(request: Request) -> tuple[str, int | None]:
    if not request.body.strip():
        return "", None
    try:
        frag = SipFrag.parse(request.body)
    except SipError:
        return "", None
    return (frag.start_line() or ""), (frag.status if frag.is_response else None)


def _cancel(invite: Request) -> Request:
    """9.1: CANCEL copies the INVITE's Request-URI, Call-ID, To, From, CSeq number and top Via."""
    headers = Headers()
    headers.add("Via", invite.headers.values("via")[0])
    for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("max-forwards", "Max-Forwards")):
        headers.add(name, invite.headers.get(key) or "")
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return Request("CANCEL", invite.uri, headers)

