"""Loading a config as ``voicegw run``, ``voicegw check`` and a reload do: read each
file (loader.py), check across fields and files (checks.py), convert (convert.py).

This module sits on top of the three so that none of them imports another in a
circle: loader reads, checks uses loader and convert, convert uses loader.
"""

from __future__ import annotations

from pathlib import Path

from .checks import check_all
from .convert import daemon_config
from .defaults import DaemonConfig
from .errors import ConfigError, Problem
from .loader import LoadedConfig, read_config


def load_config(path: Path | None = None, *, profiles_dir: Path | None = None,
                flows_dir: Path | None = None) -> LoadedConfig:
    """Read and check the config at ``path`` and the profiles and flows it names
    (``path=None``: the embedded default, see :func:`loader.read_config`). Raises
    :class:`ConfigError` with every problem found."""
    config = read_config(path, profiles_dir=profiles_dir, flows_dir=flows_dir)
    problems = check_all(config)
    if problems:
        raise ConfigError(problems)
    return config


def check(path: Path | None = None, **dirs: Path | None) -> tuple[LoadedConfig | None, list[Problem]]:
    """:func:`load_config` without the exception: the config or the problems."""
    try:
        return load_config(path, **dirs), []
    except ConfigError as error:
        return None, error.problems


def load_runtime(path: Path | None) -> DaemonConfig:
    """Load, check and convert: the one call for ``voicegw run`` and reloads. Raises
    :class:`ConfigError` naming file, line and field."""
    return daemon_config(load_config(path))


__all__ = ["check", "load_config", "load_runtime"]
