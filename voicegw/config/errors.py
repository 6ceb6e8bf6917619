"""Config errors as people read them: ``flows/main.yaml:12: nodes.menu.routes.1: unknown node``."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the config, located."""

    file: str
    """The file as the user named it (relative paths stay relative); "" for flags."""
    line: int | None
    """1-based; None when the problem has no single line (a missing file)."""
    field: str
    """Dotted path inside the file (``nodes.menu.routes.1``); "" for the whole file."""
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where = f"{where}:{self.line}"
        parts = [p for p in (where, self.field) if p]
        return ": ".join([*parts, self.message])

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ConfigError(ValueError):
    """The config cannot be used; ``problems`` says every reason found."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", None, "", problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
