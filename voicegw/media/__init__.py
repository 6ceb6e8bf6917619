"""RTP media: packets, G.711, the relay between legs, prompt and tone players."""
