"""Sans-I/O SIP: bytes and timer ticks in, events and bytes out.

Nothing in this package opens a socket, touches an event loop or reads a clock;
the caller passes ``now`` (seconds, any monotonic origin) wherever time matters.
"""
