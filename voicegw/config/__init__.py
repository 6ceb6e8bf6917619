"""Configuration: the daemon config, SIP profiles and flows (pydantic models)."""
