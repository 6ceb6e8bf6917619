"""Asyncio endpoints for SIP: UDP and TCP listeners feeding the sans-I/O core."""
