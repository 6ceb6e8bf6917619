"""voicegw.engine.bot_context: the headers of a bot's REFER as context keys (pure)."""

from __future__ import annotations

from voicegw.engine.bot_context import context_from_bot, uui_data


def test_uui_hex_is_decoded_and_other_encodings_kept_as_written() -> None:
    assert uui_data("6b6f7265;encoding=hex;purpose=x") == "kore"
    assert uui_data("6B6F7265 ; Encoding=HEX") == "kore"
    assert uui_data("kore") == "kore"
    assert uui_data("zz;encoding=hex") == "zz", "not hex: kept"


def test_embedded_headers_win_over_the_refers_own_and_x_headers_become_ivr_properties() -> None:
    context = context_from_bot(
        [("User-to-User", "6f6c64;encoding=hex"), ("X-Intent", "billing"), ("Via", "x"), ("X-Lang", "en")],
        [("User-to-User", "6e6577;encoding=hex"), ("X-Lang", "de"), ("X-Customer-Tier", " gold ")])
    assert context == {"bot_session": "new", "ivr.intent": "billing", "ivr.lang": "de",
                       "ivr.customer_tier": "gold", "ivr": "intent=billing;lang=de;customer_tier=gold"}


def test_no_context_headers_give_no_keys() -> None:
    assert context_from_bot([("Referred-By", "<sip:bot@h>")], []) == {}
