"""The control API's bearer token: from the config, or from a file made at first start."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


class TokenError(Exception):
    """The token file cannot be read or written; the message names it."""


def load_or_create(path: str | Path) -> str:
    """The token in ``path``; when the file does not exist, a new random one written
    there with mode 0600. The token is written to a file of its own first and then
    linked to ``path`` (link(2) fails if it exists): ``path`` never exists empty, so
    two daemons (or workers) starting at once agree on one token, and neither reads
    the other's file half written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(token + "\n")
            try:
                os.link(draft, path)
            except FileExistsError:
                return read(path)
        finally:
            draft.unlink(missing_ok=True)
        return token
    except OSError as error:
        raise TokenError(f"{path}: {error.strerror or error}") from None


def read(path: str | Path) -> str:
    path = Path(path)
    try:
        token = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError as error:
        raise TokenError(f"{path}: {error.strerror or error}") from None
    if not token:
        raise TokenError(f"{path}: empty token file")
    return token
