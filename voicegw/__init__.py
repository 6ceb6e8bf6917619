"""voicegw: a SIP B2BUA that bridges callers to AI voice bots and transfers them to human agents."""

__version__ = "0.1.0"
