"""The desk service: rings agents for the engine, and runs each agent's WebSocket.

Signalling is JSON over the WebSocket at ``/desk/ws`` (web.py). The page sends
``presence`` {status}, ``accept`` {offer, sdp} (its WebRTC offer: the browser's
microphone track, sendrecv), ``decline`` {offer}, ``mute`` {on}, ``hold`` {on} and
``hangup``. The server sends ``hello`` {agent, presence}, ``incoming`` {offer,
context, timeout}, ``withdrawn`` {offer, reason}, ``answer`` {sdp}, ``ended``
{reason} and ``presence`` {status}. No trickle ICE: aiortc gathers its host candidates
before it answers, so one offer and one answer carry everything (RFC 8829 allows it).

One :class:`Offer` per ringing call, moved by ``_TABLE`` (state, input) -> state:

    RINGING --accept--> TALKING --hangup / call ended / page gone--> ENDED
       |--decline / timeout / page gone / call ended--> ENDED
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription, sdp

from ..config.defaults import DeskConfig
from ..engine.desk_leg import DeskLegEvents
from ..media.endpoint import MediaEndpoint
from ..media.prompts import load_prompt
from ..media.wav import WavError
from .audio import DeskAudio
from .ice import use_host_address
from .roster import DeskAgent, Presence, Roster
from .sessions import SessionRecords

log = structlog.get_logger("voicegw.desk")
_ids = itertools.count(1)


class OfferState(enum.Enum):
    RINGING = "ringing"
    TALKING = "talking"
    ENDED = "ended"


class OfferInput(enum.Enum):
    ACCEPT = "accept"
    END = "end"  # decline, timeout, hang-up, the call or the page gone


_TABLE: dict[tuple[OfferState, OfferInput], OfferState] = {
    (OfferState.RINGING, OfferInput.ACCEPT): OfferState.TALKING,
    (OfferState.RINGING, OfferInput.END): OfferState.ENDED,
    (OfferState.TALKING, OfferInput.END): OfferState.ENDED,
}


@dataclass(eq=False)
class Offer:
    id: str
    agent: DeskAgent
    context: dict[str, str]
    endpoint: MediaEndpoint
    events: DeskLegEvents
    timeout: float
    state: OfferState = OfferState.RINGING
    timer: asyncio.TimerHandle | None = None
    pc: RTCPeerConnection | None = None
    audio: DeskAudio | None = None
    held: bool = False

    def move(self, event: OfferInput) -> bool:
        target = _TABLE.get((self.state, event))
        if target is None:
            return False
        self.state = target
        return True


@dataclass(eq=False)
class Connection:
    """One open WebSocket of a signed-in agent."""

    agent: DeskAgent
    send: Any  # async (dict) -> None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class DeskService:
    def __init__(self, config: DeskConfig, media_host: str, *, secure: bool = True,
                 records: SessionRecords | None = None) -> None:
        self.config = config
        self.records = records
        """Where sign-in sessions outlive the process (the records store), or None."""
        self.secure = secure
        """The session cookie is Secure (always, but on a loopback-only server)."""
        self.media_host = media_host
        """Where the leg's endpoint and our side of the relay socket live (loopback hop)."""
        self.hold_music = _hold_music(config.hold_file)
        """What the caller hears while the agent holds the call (None: the hold beep)."""
        self.roster = Roster(list(config.agents), {k: tuple(v) for k, v in config.queues.items()})
        self.connections: dict[str, list[Connection]] = {}
        self.offers: dict[str, Offer] = {}
        use_host_address(config.ice_host or media_host)

    # ------------------------------------------------------------------ engine side
    def known(self, name: str) -> bool:
        return self.roster.known(name)

    def available(self, name: str) -> bool:
        return self.roster.pick(name) is not None

    def ring(self, name: str, context: dict[str, str], endpoint: MediaEndpoint, timeout: float,
             events: DeskLegEvents) -> str | None:
        agent = self.roster.pick(name)
        if agent is None:
            return None
        offer = Offer(f"o{next(_ids)}", agent, dict(context), endpoint, events, timeout)
        agent.engaged = offer
        self.offers[offer.id] = offer
        loop = asyncio.get_running_loop()
        offer.timer = loop.call_later(timeout, self._end, offer, "no_answer", "not accepted in time")
        endpoint.on_close = lambda: self._end(offer, None, "the call ended")
        self._tell(agent, {"type": "incoming", "offer": offer.id, "context": offer.context,
                           "timeout": timeout})
        self._presence(agent)
        log.info("desk.ringing", agent=agent.name, offer=offer.id, target=name)
        return agent.name

    # ------------------------------------------------------------------ the page's side
    def attach(self, agent_name: str, send: Any) -> Connection:
        agent = self.roster.agents[agent_name]
        connection = Connection(agent, send)
        self.connections.setdefault(agent_name, []).append(connection)
        agent.connections += 1
        self._send(connection, {"type": "hello", "agent": agent.name, "presence": agent.presence.value})
        for offer in self.offers.values():  # a reloaded page sees the call it is ringing for
            if offer.agent is agent and offer.state is OfferState.RINGING:
                self._send(connection, {"type": "incoming", "offer": offer.id, "context": offer.context,
                                        "timeout": offer.timeout})
        return connection

    def detach(self, connection: Connection) -> None:
        agent = connection.agent
        held = self.connections.get(agent.name, [])
        if connection in held:
            held.remove(connection)
            agent.connections -= 1
        if not agent.online:
            agent.chosen = Presence.AWAY  # the next sign-in starts away, until the agent says
            for offer in list(self.offers.values()):
                if offer.agent is agent:
                    self._end(offer, 480, "the agent's page closed")

    async def receive(self, connection: Connection, message: dict[str, Any]) -> None:
        agent, kind = connection.agent, message.get("type")
        offer = self._offer_of(agent, message.get("offer"))
        if kind == "presence" and message.get("status") in ("available", "away"):
            agent.chosen = Presence(message["status"])
            self._presence(agent)
        elif kind == "accept" and offer is not None and isinstance(message.get("sdp"), str):
            await self._accept(offer, message["sdp"])
        elif kind == "decline" and offer is not None and offer.state is OfferState.RINGING:
            self._end(offer, 603, "declined at the desk")
        elif kind == "hangup" and offer is not None:
            if offer.state is OfferState.TALKING:
                self._end(offer, None, "the agent hung up", hung_up=True)
            else:
                self._end(offer, 603, "declined at the desk")
        elif kind == "mute" and offer is not None and offer.audio is not None:
            offer.audio.muted = bool(message.get("on"))
        elif kind == "hold" and offer is not None and offer.audio is not None and offer.state is OfferState.TALKING:
            offer.held = offer.audio.held = bool(message.get("on"))
            offer.events.hold(offer.held)
        elif (kind == "warm" and offer is not None and offer.state is OfferState.TALKING
              and offer.events.warm is not None and isinstance(message.get("action"), str)):
            offer.events.warm(message["action"])
        else:
            self._send(connection, {"type": "error", "message": f"cannot {kind} now"})

    def _offer_of(self, agent: DeskAgent, offer_id: Any) -> Offer | None:
        offer = agent.engaged
        if isinstance(offer, Offer) and (offer_id is None or offer.id == offer_id):
            return offer
        return None

    async def _accept(self, offer: Offer, sdp: str) -> None:
        if not offer.move(OfferInput.ACCEPT):
            return
        if offer.timer is not None:
            offer.timer.cancel()
            offer.timer = None
        try:
            answer = await self._negotiate(offer, sdp)
        except Exception as error:  # noqa: BLE001 - a bad offer from the page, ICE or codec failure
            log.warning("desk.negotiation_failed", offer=offer.id, error=repr(error))
            offer.state = OfferState.RINGING
            self._end(offer, 488, f"the page's offer could not be answered: {error}")
            return
        if offer.state is not OfferState.TALKING:  # the call ended meanwhile
            return
        self._tell(offer.agent, {"type": "answer", "offer": offer.id, "sdp": answer})
        log.info("desk.accepted", agent=offer.agent.name, offer=offer.id)
        offer.events.answered()

    async def _negotiate(self, offer: Offer, sdp: str) -> str:
        """aiortc answers the page's offer: host candidates only, no STUN (nothing is
        fetched from outside), our codec order (Opus, PCMU, PCMA by default)."""
        audio = DeskAudio()
        offer.audio = audio
        leg = (offer.endpoint.host, offer.endpoint.port)
        host, port = await audio.open(self.media_host, leg)
        offer.endpoint.set_remote(host, port)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        offer.pc = pc
        transceiver = pc.addTransceiver(audio.track, direction="sendrecv")
        audio.attach(transceiver)
        codecs = RTCRtpSender.getCapabilities("audio").codecs
        wanted = [c for name in self.config.codecs for c in codecs if c.mimeType.lower() == f"audio/{name.lower()}"]
        if wanted:
            transceiver.setCodecPreferences(wanted)

        @pc.on("track")
        def _track(track: Any) -> None:
            audio.listen(track)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState == "failed":
                self._end(offer, None, "the browser's media connection failed", hung_up=True)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        audio.use_codec(sent_codec(pc.localDescription.sdp))
        return pc.localDescription.sdp

    def _end(self, offer: Offer, status: int | str | None, reason: str, *, hung_up: bool = False) -> None:
        """The offer is over. ``status``: a failure to report to the engine (603, no_answer,
        480); None with ``hung_up``: the agent hung up; None alone: the engine ended it."""
        was = offer.state
        if not offer.move(OfferInput.END):
            return
        if offer.timer is not None:
            offer.timer.cancel()
            offer.timer = None
        self.offers.pop(offer.id, None)
        agent = offer.agent
        if agent.engaged is offer:
            agent.engaged = None
        if offer.endpoint.on_close is not None:
            offer.endpoint.on_close = None
        if offer.audio is not None:
            offer.audio.close()
        if offer.pc is not None:
            pc, offer.pc = offer.pc, None
            asyncio.get_running_loop().create_task(pc.close())
        if offer.held:
            offer.held = False
            offer.events.hold(False)
        kind = "withdrawn" if was is OfferState.RINGING else "ended"
        self._tell(agent, {"type": kind, "offer": offer.id, "reason": reason})
        self._presence(agent)
        log.info("desk.ended", agent=agent.name, offer=offer.id, was=was.value, reason=reason,
                 status=status)
        if status is not None and was is OfferState.RINGING:
            offer.events.failed(status, reason)
        elif hung_up:
            offer.events.hung_up()

    # ------------------------------------------------------------------ sending
    def _presence(self, agent: DeskAgent) -> None:
        self._tell(agent, {"type": "presence", "status": agent.presence.value})

    def _tell(self, agent: DeskAgent, message: dict[str, Any]) -> None:
        for connection in self.connections.get(agent.name, []):
            self._send(connection, message)

    @staticmethod
    def _send(connection: Connection, message: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(connection.send(json.dumps(message)))
        connection.tasks.add(task)
        task.add_done_callback(connection.tasks.discard)

    def statistics(self) -> dict[str, Any]:
        return {"agents": {a.name: {"online": a.online, "presence": a.presence.value}
                           for a in self.roster.agents.values()},
                "ringing": sum(o.state is OfferState.RINGING for o in self.offers.values()),
                "talking": sum(o.state is OfferState.TALKING for o in self.offers.values())}


def sent_codec(answer: str) -> str:
    """The codec aiortc sends with: the first of the answer's audio m-line (RFC 3264 6.1)."""
    for media in sdp.SessionDescription.parse(answer).media:
        if media.kind == "audio" and media.rtp.codecs:
            return str(media.rtp.codecs[0].name)
    return ""


def _hold_music(path: str | None) -> np.ndarray | None:
    if not path:
        return None
    try:
        return load_prompt(path)
    except (OSError, WavError) as error:  # the beep instead: a missing file must not stop the desk
        log.warning("desk.hold_unreadable", file=path, error=str(error))
        return None


__all__ = ["DeskService", "Offer", "OfferInput", "OfferState", "sent_codec"]
