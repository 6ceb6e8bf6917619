"""The control API's bearer token: from the config, or from a file made at first start."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


class TokenError(Exception):
    """The token file cannot be read or written; the message names it."""


def load_or_create(path: str | Path) -> str:
    """The token in ``path``; when the file does not exist, a new random one written
    there with mode 0600 (created exclusively: two daemons starting at once agree)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return read(path)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
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
