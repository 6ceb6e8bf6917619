"""Several worker processes behind one control API (``voicegw run --workers N``).

docs/scaling.md says why a supervisor in the daemon rather than a systemd template
unit. plan.py splits the ports (pure), supervisor.py starts, watches and restarts the
workers, aggregate.py merges what they report (pure), api.py serves the merged view.
"""
