"""Delayed offer on voicegw's own INVITEs over the wire (issue 12 item 7, RFC 3261
13.2.1): the bot's profile says ``delayed_offer: true``, so voicegw's INVITE to it has
no SDP; the sipp bot offers in its 200 and checks that the ACK carries voicegw's
answer; the caller's RTP then goes through voicegw to the bot (-rtp_echo) and every
packet comes back, in order (the bot's leg is set from that offer and answer)."""

from __future__ import annotations

import pytest
import yaml
from peers.calls import HOST, free_block
from peers.daemon import DaemonProcess
from peers.lab import NO_SHEDDING, caller, echo_check, finish, peer
from peers.net import free_port
from peers.sipp import SIPP

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap")]


def test_bot_profile_with_delayed_offer_offers_in_its_200_and_the_ack_answers(lab):
    lab.bot_port = free_port(HOST)
    bot_uri = f"sip:bot@{HOST}:{lab.bot_port}"
    profiles = lab.workdir / "profiles"
    profiles.mkdir()
    (profiles / "bot.yaml").write_text(yaml.safe_dump({"kind": "bot", "uri": bot_uri, "delayed_offer": True}))
    config = lab.workdir / "voicegw.yaml"
    config.write_text(yaml.safe_dump({**NO_SHEDDING, "api": {"enabled": False}, "profiles_dir": str(profiles)}),
                      encoding="utf-8")
    low = free_block(40)
    lab.daemon = DaemonProcess(HOST, None, "--rtp-ports", f"{low}-{low + 39}", "--bot-uri", bot_uri,
                               "--config", str(config)).start()
    bot = peer(lab, "bot", "b2bua_bot_delayed.xml", port=lab.bot_port, rtp_echo=True)
    c = caller(lab)
    assert c.invite().status == 200, lab.report()
    echo_check(c)
    assert c.bye().status == 200
    finish(lab, bot)
    invite = next(m for m in bot.messages() if m.describe() == "in INVITE")
    assert not invite.body.strip(), invite.body
    ack = next(m for m in bot.messages() if m.describe() == "in ACK")
    assert b"m=audio " in ack.body and b" RTP/AVP 0" in ack.body, ack.body
