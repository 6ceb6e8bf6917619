"""The WebRTC agent desk (issue 15): agents take transferred calls in a browser.

- passwords.py: per-agent credentials, stored as scrypt hashes;
- roster.py: who is signed in, their presence, which agent a ``desk:`` target rings
  (pure: no asyncio, the clock is an argument);
- sessions.py: sign-in sessions that expire and the sign-in rate limit (pure);
- audio.py: the agent leg's media: aiortc (ICE, DTLS-SRTP, PCMU/PCMA/Opus) on one side,
  plain PCMU RTP to the leg's media endpoint on the other, so the call's bridge,
  players and warm transfers treat a desk agent like a SIP one;
- service.py: the engine's seam (``ring`` a target) and the agents' WebSocket sessions;
- web.py: ``/desk`` on the control API's server (the page, sign-in, the WebSocket).
"""
