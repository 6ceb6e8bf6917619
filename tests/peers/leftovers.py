"""What "nothing left behind" counts, in one place: the ``GET /debug/objects`` keys that
must be back at 0 once every call is over and forgotten. The wire leak test
(tests/wire/test_leak_wire.py) asserts them on a daemon; the in-process harness
(peers/inproc.py) on an engine in the test process, so both mean the same thing."""

from __future__ import annotations

ENGINE_KEYS = ("calls", "legs", "dialogs", "transaction_handlers", "media_endpoints", "bridges", "players",
               "timers", "tasks", "transfers_in_flight")
"""``engine`` (Engine.statistics()): the calls it keeps and all they hold."""
CORE_KEYS = ("server_transactions", "client_transactions", "pending_transactions", "dialogs", "accepted",
             "timer_entries", "acks_kept")
"""``core`` (UserAgentCore.statistics()): transactions, dialogs, ACK matching, timers, the
ACKs kept to answer a 2xx's copies (64*T1, as the transactions)."""
