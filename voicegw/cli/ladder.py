"""A call's SIP ladder diagram in the terminal, like sngrep's call flow.

Columns are the hosts (the caller, voicegw, the bot, the agent), in that order when
known; every message is an arrow between voicegw and a peer, labelled with the
method or the status, with its time since the call arrived::

              caller                voicegw                 bot
          127.0.0.1:5062       127.0.0.1:5060        127.0.0.1:5070
                 |                     |                     |
     0.000       |------INVITE-------->|                     |
     0.001       |<----100 Trying------|                     |
     0.002       |                     |-------INVITE------->|

Input is the control API's call detail (``legs_detail`` and ``trace``); the output
is a list of rich ``Text`` lines, so plain terminals and tests read it as text.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

LANE = 22  # characters between two columns
TIME = 10  # width of the time column


def _label(first_line: str) -> tuple[str, str]:
    """(label, style) for a message's first line."""
    if first_line.startswith("SIP/2.0 "):
        status = first_line[8:]
        code = status[:3]
        style = "yellow" if code.startswith("1") else "green" if code.startswith("2") else "red"
        return status, style
    return first_line.split(" ", 1)[0] or "?", "cyan"


def columns(detail: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, address) per column; the address is the trace's peer (transport:host:port)."""
    roles: dict[str, str] = {}
    for leg in detail.get("legs_detail", []):
        if leg.get("sip_call_id"):
            roles[leg["sip_call_id"]] = leg["role"]
    peers: dict[str, str] = {}
    for message in detail.get("trace", []):
        peers.setdefault(message["peer"], roles.get(message["sip_call_id"], "peer"))
    order = {"caller": 0, "bot": 2, "agent": 3}
    cols = sorted(peers.items(), key=lambda item: order.get(item[1], 4))
    result = [(role, peer) for peer, role in cols]
    at = 1 if result and result[0][0] == "caller" else 0
    result.insert(at, ("voicegw", ""))
    return result


def render(detail: dict[str, Any]) -> list[Text]:
    cols = columns(detail)
    index = {peer: i for i, (_, peer) in enumerate(cols) if peer}
    me = next(i for i, (title, peer) in enumerate(cols) if not peer)
    width = TIME + LANE * len(cols)
    centre = [TIME + LANE * i + LANE // 2 for i in range(len(cols))]

    def row(cells: list[str]) -> Text:
        line = [" "] * width
        for i, text in enumerate(cells):
            start = max(0, centre[i] - len(text) // 2)
            text = text[: LANE - 1]
            line[start:start + len(text)] = text
        return Text("".join(line).rstrip())

    def hostport(peer: str) -> str:
        return peer.split(":", 1)[1] if ":" in peer else peer

    lines = [row([title for title, _ in cols]), row([hostport(peer) if peer else "" for _, peer in cols])]
    lines[0].stylize("bold")
    bars = row(["|"] * len(cols))
    lines.append(bars)
    for message in detail.get("trace", []):
        peer = index.get(message["peer"])
        if peer is None:
            continue
        label, style = _label(message["first_line"])
        src, dst = (peer, me) if message["direction"] == "in" else (me, peer)
        left, right = sorted((centre[src], centre[dst]))
        line = list(f"{message['offset_seconds']:>{TIME - 2}.3f}  ".ljust(width))
        for c in centre:
            line[c] = "|"
        span = right - left - 1
        arrow = ["-"] * span
        text = label[: max(0, span - 4)]
        offset = (span - len(text)) // 2
        arrow[offset:offset + len(text)] = text
        if dst > src:
            arrow[-1] = ">"
        else:
            arrow[0] = "<"
        line[left + 1:right] = arrow
        rendered = Text("".join(line).rstrip())
        rendered.stylize(style, left + 1 + offset, left + 1 + offset + len(text))
        lines.append(rendered)
    lines.append(bars)
    return lines
