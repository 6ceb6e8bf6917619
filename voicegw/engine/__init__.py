"""The B2BUA: calls, legs, routing, transfers and the fallback machine."""
