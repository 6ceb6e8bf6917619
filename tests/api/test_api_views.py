"""What the control API keeps of an ended call (api/views.py, issue 16): in-process
(tests/peers/inproc.py) with the API's Control watching the engine, a call whose bot
REFERs it to an agent (INVITE transfer), then hangs up. While the engine holds the
call the API shows the engine's Call; once the engine forgets it the API keeps an
immutable view, which shows the same summary, timeline, legs and transfer, while no
Call, Leg, media endpoint, player or Transfer of it stays alive (the lab's instance
count after a full collection). A transcript attached after the call is gone lands on
the view's timeline. (The routes' 409 for an ended call: tests/api/test_api.py.)"""

from __future__ import annotations

from peers.inproc import Answer, Lab, engine_config, peer_uri

from voicegw.api.app import detail, summary, transfer_info
from voicegw.api.control import Control
from voicegw.api.views import CallView, TransferView
from voicegw.engine.call import Call
from voicegw.engine.events import TranscriptAttached


def steady(shown: object) -> object:
    """A rendered call without its wall-clock times (the lab's loop runs on virtual
    time: the wall clock of the same instant moves between two renderings)."""
    if isinstance(shown, dict):
        return {k: steady(v) for k, v in shown.items() if k not in ("at", "created_at", "started_at", "ended_at")}
    if isinstance(shown, list):
        return [steady(v) for v in shown]
    return shown


def watched(lab: Lab, **options: int) -> Control:
    """The API's Control on the lab's engine, tracing the lab's SIP as the daemon does."""
    control = Control(lab.engine, **options)
    lab.endpoint.trace = control.trace
    return control


def transferred_then_ended(lab: Lab, control: Control) -> str:
    """A bot REFER by INVITE to the agent, then the agent hangs up: the call's key."""
    lab.agent.answer = Answer(after=0.2)
    caller = lab.caller.call()
    lab.run_for(0.5)
    bot = lab.bot.last
    assert bot.state == "confirmed", lab.describe()
    lab.bot.refer(bot, peer_uri("agent"))
    lab.run_for(1.5)
    assert lab.agent.last.state == "confirmed", lab.describe()
    (key,) = control.recent
    assert isinstance(control.recent[key], Call)  # the engine holds it: the API shows it live
    lab.agent.hang_up()
    lab.run_for(1.0)
    assert caller.state == "ended", lab.describe()
    return key


def test_a_forgotten_call_is_kept_as_a_view_that_shows_what_the_call_showed() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        control = watched(lab)
        # what the API showed of the call at the moment the engine let go of it
        shown: list[dict] = []
        lab.engine.forgotten.insert(0, lambda call: shown.append(steady(detail(control, call, messages=True).model_dump())))
        key = transferred_then_ended(lab, control)
        assert key not in lab.engine.calls and len(shown) == 1, lab.describe()
        kept = control.recent[key]
        assert isinstance(kept, CallView), "the engine forgot the call: the API keeps its view"
        # after the end: the same, but for the messages that crossed the wire since
        now = steady(detail(control, kept, messages=True).model_dump())
        assert {**now, "trace": None} == {**shown[0], "trace": None}
        assert all(message in now["trace"] for message in shown[0]["trace"])
        assert now["state"] == "ended" and now["legs"] == ["caller", "bot", "agent"]
        assert now["transfer"]["state"] == "succeeded" and now["transfer"]["method"] == "invite"
        # the view is taken when the engine lets go, so it has what came after the end
        events = [e["event"] for e in now["timeline"]]
        assert events[-3:] == ["call.ended", "call.disposition", "leg.caller.bye_sent"], events
        # the ladder: the caller's, the bot's and the agent's INVITE and BYE
        firsts = [m["first_line"].split(" ")[0] for m in now["trace"] if m["direction"] == "out"]
        assert firsts.count("INVITE") == 2 and firsts.count("BYE") >= 1, firsts
        (transfer_id,) = control.transfers
        assert isinstance(control.transfers[transfer_id], TransferView)
        assert transfer_info(control, control.transfers[transfer_id]).state == "succeeded"
        assert control.find_call(kept.id) is kept and control.calls("ended") == [kept]
        brief = steady(summary(control, kept).model_dump())
        assert brief == {k: now[k] for k in brief}


def test_the_api_keeps_no_engine_object_of_an_ended_call() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        control = watched(lab)
        key = transferred_then_ended(lab, control)
        # after a full collection nothing of the call is alive (the lab counts Call, Leg,
        # Transfer, Player, MediaEndpoint and Bridge instances), yet the API shows it
        lab.assert_clean(instances=True)
        kept = control.recent[key]
        assert isinstance(kept, CallView) and kept.transfer is not None
        assert len(kept.sip_call_ids) == 3  # caller, bot, agent
        assert control.leg_call_ids == {}


def test_a_transcript_attached_after_the_call_is_gone_lands_on_its_view() -> None:
    """(Through Control.record, as the route does: building the FastAPI app here would
    keep the lab alive in FastAPI's dependency caches for the tests that follow.)"""
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        control = watched(lab)
        key = transferred_then_ended(lab, control)
        kept = control.recent[key]
        assert isinstance(kept, CallView)
        event = TranscriptAttached(10, 86400)
        async def attach() -> None:  # on the loop, as the route does
            control.record(kept, event)

        lab.loop.run_until_complete(attach())
        after = control.recent[key]
        assert isinstance(after, CallView) and after.timeline[-1][1] == event
        assert after.timeline[:-1] == kept.timeline
        assert detail(control, after, messages=False).timeline[-1].event == "transcript.attached"


def test_ended_calls_beyond_keep_ended_are_dropped_views_and_all() -> None:
    with Lab(engine_config(bot_uri=peer_uri("bot"))) as lab:
        control = watched(lab, keep_ended=1)
        for _ in range(3):
            lab.caller.call()
            lab.run_for(0.5)
            lab.caller.hang_up()
            lab.run_for(0.5)
        lab.assert_clean(instances=True)
        assert len(control.recent) == 1 and all(isinstance(v, CallView) for v in control.recent.values())
        assert control.leg_call_ids == {} and len(control._ended) == 1
