"""The voicegw command."""
