"""``voicegw probe PROFILE [--call NUMBER]``: what a carrier does with REFER.

- :mod:`.report`: what was seen on the wire, the verdict per capability and the
  profile settings it recommends (pure: no I/O, no clock).
- :mod:`.runner`: the asyncio side, in the running daemon: OPTIONS to the carrier and
  the test call that REFERs, over the daemon's own SIP endpoint (so the carrier sees
  the address, port and transport voicegw's calls come from).
"""
