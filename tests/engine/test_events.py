"""The typed call events (voicegw/engine/events.py) and the consumers that read them by type.

Scope: the events module itself (frozen, one docstring per field, the stable names and
details the store and the API show), the engine's emit sites (every ``record(...)`` gets
an event object, never a name string), and the in-memory consumers: the control API's
counters and timeline (``api/control.py``, ``api/app.py``) and the engine's listener
fan-out, and the log listener (``engine/event_log.py``). The store's records are tests/store/test_store.py; the guard's counts tests/transport/test_guard.py.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs

from voicegw.api.app import detail, summary
from voicegw.api.control import Control
from voicegw.engine import events as ev
from voicegw.engine.b2bua import Engine
from voicegw.engine.call import Call, CallInput, Leg
from voicegw.engine.event_log import EventLog
from voicegw.sip.events import Address

ROOT = Path(__file__).resolve().parents[2] / "voicegw"

#: One example of every event and the name it has on the timeline and in the store's
#: ``events.event`` column (names the records have always had: changing one is a
#: migration of everybody's stored timelines).
EXAMPLES: list[tuple[ev.CallEvent, str, dict[str, object]]] = [
    (ev.CallStarted("udp:1.2.3.4:5060", "sip:demo@gw", "alice"), "call.incoming",
     {"source": "udp:1.2.3.4:5060", "uri": "sip:demo@gw", "caller": "alice"}),
    (ev.CallConnected("answered"), "call.connected", {"cause": "answered", "reason": ""}),
    (ev.CallDisposed("transferred", "invite", "demo"), "call.disposition",
     {"disposition": "transferred", "method": "invite", "flow": "demo"}),
    (ev.CallDisposed("contained"), "call.disposition", {"disposition": "contained"}),
    (ev.CallEnded("hung up", "caller hung up"), "call.ended", {"cause": "hung up", "reason": "caller hung up"}),
    (ev.CallEnded("failed", "Busy Here (bot: 486)", 486), "call.ended",
     {"cause": "failed", "reason": "Busy Here (bot: 486)", "status": 486}),
    (ev.SessionRefreshed(), "call.session_refreshed", {}),
    (ev.SessionExpired(), "call.session_expired", {}),
    (ev.LegDialing("bot", "sip:bot@10.0.0.1"), "leg.bot.dialing", {"uri": "sip:bot@10.0.0.1"}),
    (ev.LegDialing("agent", "sip:a@pbx", "t1"), "leg.agent.dialing", {"uri": "sip:a@pbx", "transfer_id": "t1"}),
    (ev.LegProgress("bot", 180), "leg.bot.progress", {"status": 180}),
    (ev.LegEarlyMedia("bot"), "leg.bot.early_media", {}),
    (ev.LegAnswered("agent"), "leg.agent.answered", {}),
    (ev.LegFailed("bot", 486, "Busy Here"), "leg.bot.failed", {"status": 486, "reason": "Busy Here"}),
    (ev.LegFailed("bot", "timeout", "no answer"), "leg.bot.failed", {"status": "timeout", "reason": "no answer"}),
    (ev.LegAcked("caller"), "leg.caller.ack", {}),
    (ev.LegHungUp("caller"), "leg.caller.bye", {}),
    (ev.LegRequestReceived("bot", "INFO", "application/dtmf-relay"), "leg.bot.info",
     {"content_type": "application/dtmf-relay"}),
    (ev.LegRequestReceived("caller", "OPTIONS", None), "leg.caller.options", {"content_type": None}),
    (ev.LegReinvited("caller", True), "leg.caller.reinvite", {"hold": True}),
    (ev.LegReofferSent("bot", "sendonly"), "leg.bot.reinvite_sent", {"direction": "sendonly"}),
    (ev.LegByeSent("bot"), "leg.bot.bye_sent", {}),
    (ev.LegByeFailed("agent", 407, "407 challenge not answered: bad challenge"), "leg.agent.bye_failed",
     {"bye_status": 407, "bye_reason": "407 challenge not answered: bad challenge"}),
    (ev.LegReplaced("caller", "udp:1.2.3.4:5060"), "leg.caller.replaced", {"source": "udp:1.2.3.4:5060"}),
    (ev.LegListening("bot"), "leg.bot.listening", {}),
    (ev.LegConsulting("agent", "sip:a@pbx", "t2"), "leg.agent.consulting", {"uri": "sip:a@pbx", "transfer_id": "t2"}),
    (ev.TransferStarted("t1", "invite", "1001", "api"), "transfer.started",
     {"transfer_id": "t1", "method": "invite", "target": "1001", "trigger": "api"}),
    (ev.TransferProgress("t1", 180), "transfer.progress", {"transfer_id": "t1", "status": 180}),
    (ev.TransferAccepted("t1", 202, False), "transfer.accepted",
     {"transfer_id": "t1", "status": 202, "subscription": False}),
    (ev.TransferSucceeded("t1", 200, "agent answered"), "transfer.succeeded",
     {"transfer_id": "t1", "status": 200, "reason": "agent answered"}),
    (ev.TransferFailed("t1", 486, "Busy Here"), "transfer.failed",
     {"transfer_id": "t1", "status": 486, "reason": "Busy Here"}),
    (ev.FallbackDecided("t1", 486, "4xx", "next", "486 matched rule '4xx' (class): next"), "transfer.fallback",
     {"transfer_id": "t1", "status": 486, "rule": "4xx", "action": "next",
      "why": "486 matched rule '4xx' (class): next"}),
    (ev.WarmTransferMoved("t3", "briefing", "agent answered"), "transfer.warm",
     {"transfer_id": "t3", "state": "briefing", "input": "agent answered"}),
    (ev.BriefingStarted("t3"), "transfer.briefing", {"transfer_id": "t3"}),
    (ev.LiveBriefingStarted("t3", 5.0), "transfer.live_briefing", {"transfer_id": "t3", "seconds": 5.0}),
    (ev.AgentDtmfReceived("t3", "1"), "transfer.agent_dtmf", {"transfer_id": "t3", "digit": "1"}),
    (ev.ReferReplacesSent("t3", "r1"), "transfer.refer_replaces", {"transfer_id": "t3", "refer_id": "r1"}),
    (ev.TransferRefused("sip:x@evil", "policy"), "transfer.refused", {"target": "sip:x@evil", "status": "policy"}),
    (ev.FallbackPromptPlayed("Please hold", None), "fallback.prompt", {"text": "Please hold", "file": None}),
    (ev.FlowDtmfReceived("0"), "flow.dtmf", {"digit": "0"}),
    (ev.FlowPromptStarted("menu"), "flow.prompt", {"node": "menu"}),
    (ev.FlowEnded("done"), "flow.end", {"reason": "done"}),
    (ev.FlowResumed("goodbye"), "flow.post_agent", {"node": "goodbye"}),
    (ev.TranscriptAttached(3, 600), "transcript.attached", {"max_uses": 3, "expires_in": 600}),
]

EVENT_CLASSES = [
    cls for _, cls in inspect.getmembers(ev, inspect.isclass)
    if issubclass(cls, ev.CallEvent) and cls.__module__ == ev.__name__
]
BASES = {ev.CallEvent, ev.LegEvent, ev.TransferEvent}


# ---------------------------------------------------------------------- the module
@pytest.mark.parametrize(("event", "name", "detail_"), EXAMPLES, ids=lambda v: getattr(v, "__name__", None))
def test_each_event_has_its_stable_name_and_detail(event: ev.CallEvent, name: str, detail_: dict) -> None:
    assert event.name == name
    assert event.detail() == detail_


def test_every_concrete_event_has_an_example() -> None:
    assert {type(e) for e, _, _ in EXAMPLES} == set(EVENT_CLASSES) - BASES
    assert set(ev.__all__) == {cls.__name__ for cls in EVENT_CLASSES}


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_events_are_frozen_and_documented_field_by_field(cls: type) -> None:
    params = cls.__dataclass_params__
    assert params.frozen, f"{cls.__name__} must be frozen"
    assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("), f"{cls.__name__} has no docstring"
    # a string literal right under each field is its one-line docstring
    body = _class_bodies()[cls.__name__]
    own = {f.name for f in dataclasses.fields(cls)} - {
        f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in dataclasses.fields(base)}
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in own:
            nxt = body[i + 1] if i + 1 < len(body) else None
            documented = (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                          and isinstance(nxt.value.value, str))
            assert documented, f"{cls.__name__}.{node.target.id} has no docstring"


@functools.cache
def _class_bodies() -> dict[str, list[ast.stmt]]:
    """Each class of events.py by name: the module parsed once (``inspect.getsource``
    of a class parses the whole module again to find it: 15 ms a class)."""
    tree = ast.parse(Path(inspect.getsourcefile(ev) or "").read_text())
    return {node.name: node.body for node in tree.body if isinstance(node, ast.ClassDef)}


def test_an_event_cannot_be_changed_and_compares_by_value() -> None:
    event = ev.TransferFailed("t1", 486, "Busy Here")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status = 200  # type: ignore[misc]
    assert event == ev.TransferFailed("t1", 486, "Busy Here") and hash(event) == hash(ev.TransferFailed("t1", 486, "Busy Here"))


def test_the_sip_status_is_a_field_not_text() -> None:
    ended = ev.CallEnded("failed", "whatever the text says", 503)
    assert ended.status == 503 and ended.detail()["status"] == 503
    assert ev.TransferFailed("t1", 603, "").status == 603


def test_leg_events_are_named_by_role_and_carry_it_as_a_field_only() -> None:
    event = ev.LegFailed("agent", 486, "Busy Here")
    assert isinstance(event, ev.LegEvent) and (event.role, event.what) == ("agent", "failed")
    assert "role" not in event.detail()


# ---------------------------------------------------------------------- emit sites
def _record_calls() -> list[tuple[Path, int, ast.expr]]:
    """(file, line, event argument) of every ``<x>.record(now, event)`` in the engine and API."""
    found = []
    for path in [*sorted((ROOT / "engine").glob("*.py")), *sorted((ROOT / "api").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "record" and len(node.args) >= 2):
                found.append((path, node.lineno, node.args[1]))
    return found


def test_every_emit_site_records_an_event_object_never_a_name() -> None:
    sites = _record_calls()
    assert len(sites) >= 40  # the engine's emit sites (and the API's transcript link)
    for path, line, arg in sites:
        where = f"{path.relative_to(ROOT)}:{line} records {ast.unparse(arg)}: record a typed event"
        assert not isinstance(arg, (ast.Constant, ast.JoinedStr, ast.BinOp)), where
        if isinstance(arg, ast.Call):
            assert isinstance(arg.func, ast.Name) and arg.func.id in ev.__all__, where


def test_no_consumer_dispatches_on_an_event_name() -> None:
    """Names are for display and storage; consumers match on the type."""
    for relative in ("store/records.py", "api/control.py", "api/app.py", "transport/guard.py", "engine/event_log.py"):
        source = (ROOT / relative).read_text()
        for prefix in ('"call.', '"leg.', '"transfer.', '"fallback.', '"flow.'):
            assert prefix not in source, f"{relative} compares event names ({prefix}...)"


# ---------------------------------------------------------------------- call + engine fan-out
def new_call(key: str = "c1") -> Call:
    return Call(key, Leg("caller", Address("udp", "127.0.0.1", 5062)), created=100.0, local_tag="x")


def test_call_apply_records_typed_connected_and_ended_with_the_status() -> None:
    seen: list[tuple[float, ev.CallEvent]] = []
    call = new_call()
    call.listener = lambda c, now, event: seen.append((now, event))
    assert call.apply(CallInput.FAILED, 101.0, "Busy Here (bot: 486)", status=486)
    assert seen == call.timeline == [(101.0, ev.CallEnded("failed", "Busy Here (bot: 486)", 486)),
                                     (101.0, ev.CallDisposed("failed"))]


# ---------------------------------------------------------------------- the control API
class FakeTransfer:
    def __init__(self, transfer_id: str, method: str) -> None:
        self.id = transfer_id
        self.method = SimpleNamespace(value=method)
        self.done = False


def control_with_engine() -> tuple[Control, SimpleNamespace]:
    engine = SimpleNamespace(listeners=[], now=lambda: 130.0, calls={}, find_call=lambda _: None,
                             active_calls=list, transfers=SimpleNamespace(context_source=None))
    return Control(engine), engine  # type: ignore[arg-type]


def feed(engine: SimpleNamespace, call: Call, now: float, event: ev.CallEvent) -> None:
    call.timeline.append((now, event))
    for listener in engine.listeners:
        listener(call, now, event)


def test_control_counts_calls_transfers_and_fallback_actions_by_type() -> None:
    control, engine = control_with_engine()
    call = new_call()
    feed(engine, call, 100.0, ev.CallStarted("udp:127.0.0.1:5062", "sip:demo@gw", "alice"))
    assert control.recent == {"c1;x": call}
    call.transfer = FakeTransfer("t1", "invite")
    feed(engine, call, 101.0, ev.TransferStarted("t1", "invite", "1001", "api"))
    feed(engine, call, 102.0, ev.TransferFailed("t1", 486, "Busy Here"))
    feed(engine, call, 102.0, ev.FallbackDecided("t1", 486, "4xx", "next", "486 matched: next"))
    feed(engine, call, 103.0, ev.FallbackPromptPlayed("Please hold", None))
    call.transfer = FakeTransfer("t2", "refer")
    feed(engine, call, 104.0, ev.TransferStarted("t2", "refer", "1001", "flow"))
    feed(engine, call, 105.0, ev.TransferSucceeded("t2", 200, "connected"))
    feed(engine, call, 110.0, ev.CallEnded("hung up", "caller hung up"))
    assert control.transfer_outcomes == {("invite", "started"): 1, ("invite", "failed"): 1,
                                         ("refer", "started"): 1, ("refer", "succeeded"): 1}
    assert control.fallback_actions == {"next": 1, "prompt": 1}
    assert control.outcomes == {"hung up": 1}
    assert list(control.transfers) == ["t1", "t2"]


def test_the_api_timeline_shows_each_event_by_name_and_detail() -> None:
    control, engine = control_with_engine()
    call = new_call()
    feed(engine, call, 100.0, ev.CallStarted("udp:127.0.0.1:5062", "sip:demo@gw", "alice"))
    feed(engine, call, 100.5, ev.LegDialing("bot", "sip:bot@127.0.0.1:5070"))
    feed(engine, call, 101.0, ev.LegFailed("bot", 486, "Busy Here"))
    feed(engine, call, 101.0, ev.CallEnded("failed", "Busy Here (bot: 486)", 486))
    shown = detail(control, call, messages=False)
    assert [(t.event, t.detail, t.offset_seconds) for t in shown.timeline] == [
        ("call.incoming", {"source": "udp:127.0.0.1:5062", "uri": "sip:demo@gw", "caller": "alice"}, 0.0),
        ("leg.bot.dialing", {"uri": "sip:bot@127.0.0.1:5070"}, 0.5),
        ("leg.bot.failed", {"status": 486, "reason": "Busy Here"}, 1.0),
        ("call.ended", {"cause": "failed", "reason": "Busy Here (bot: 486)", "status": 486}, 1.0),
    ]
    assert summary(control, call).duration_seconds == 1.0  # up to its CallEnded, not "now"


# ---------------------------------------------------------------------- the log listener
def test_the_log_listener_logs_operator_events_at_info_with_their_fields_and_no_other() -> None:
    call = new_call()
    log_event = EventLog()
    with capture_logs() as logs:
        log_event(call, 0.5, ev.TransferStarted("t1", "refer", "1001", "flow"))
        log_event(call, 1.0, ev.TransferFailed("t1", 486, "Busy Here"))
        log_event(call, 1.0, ev.LegAcked("caller"))
        log_event(call, 2.0, ev.CallEnded("failed", "Busy Here (bot: 486)", 486))
        log_event(call, 2.0, ev.CallDisposed("failed", flow="demo"))
    assert logs == [
        {"event": "transfer.started", "log_level": "info", "call_id": "c1", "transfer_id": "t1",
         "method": "refer", "target": "1001", "trigger": "flow"},
        {"event": "transfer.failed", "log_level": "info", "call_id": "c1", "method": "refer",
         "transfer_id": "t1", "status": 486, "reason": "Busy Here"},
        {"event": "call.ended", "log_level": "info", "call_id": "c1", "cause": "failed",
         "reason": "Busy Here (bot: 486)", "status": 486},
        {"event": "call.disposition", "log_level": "info", "call_id": "c1", "disposition": "failed",
         "flow": "demo"},
    ]
    assert not log_event._methods  # forgotten once the attempt has its outcome


def test_the_engine_logs_through_the_listener_first() -> None:
    listeners = Engine(sip=None).listeners  # type: ignore[arg-type]
    assert len(listeners) == 1 and isinstance(listeners[0], EventLog)
