"""Call flows: named nodes run per call."""
