"""The RFC 4475 / RFC 5118 torture-test corpora, loaded from their manifests.

Shared by the unit-level conformance test (tests/sip/test_conformance.py) and the
over-the-wire one that sends each case to the daemon as a UDP datagram. The corpora
live outside the project (``../shared/conformance`` next to the repository root, or
``$VOICEGW_CONFORMANCE_DIR``) and are never copied into it.

Each manifest case says what a conforming element may answer, in a small vocabulary:

- ``NNN``: exactly that status (``"416"``);
- ``Nxx``: any status of that class (``"4xx"``);
- ``provisional``: 1xx; ``final``: 200-699;
- ``any``: any response at all; ``none``: no response.

:func:`status_matches` implements it, with ``None`` standing for "no response".
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

CORPORA = ("rfc4475", "rfc5118")
ENV_VAR = "VOICEGW_CONFORMANCE_DIR"


@dataclass(frozen=True)
class Case:
    name: str
    """Case name from the manifest (``wsinv``, ``ipv6-good``...)."""
    corpus: str
    """``rfc4475`` or ``rfc5118``."""
    path: Path
    """The message file, sent unchanged as one datagram."""
    data: bytes
    """The file's bytes."""
    klass: str
    """``valid``, ``invalid``, ``valid-semantic``, ``valid-response``...; ``class`` in the manifest."""
    kind: str
    """``request`` or ``response``."""
    must_parse: bool
    """Whether a conforming parser has to accept the message."""
    pass_if: tuple[str, ...]
    """Outcomes that pass (vocabulary above)."""
    fail_if: tuple[str, ...]
    """Outcomes that fail, even if ``pass_if`` also matches."""
    note: str
    """The manifest's explanation, for failure messages."""
    sha256: str
    """The digest the manifest records for ``data``."""
    section: str = ""
    """The RFC section that describes the case."""

    def passes(self, status: int | None) -> bool:
        """Whether answering ``status`` (None: not answering) conforms for this case."""
        return any(status_matches(t, status) for t in self.pass_if) and not any(
            status_matches(t, status) for t in self.fail_if
        )


def conformance_dir() -> Path | None:
    """Where the corpora are, or None when they are not on this machine."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
    else:
        path = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
    return path if (path / CORPORA[0] / "manifest.json").is_file() else None


def load_cases(root: Path | None = None) -> list[Case]:
    """Every case of both corpora, in manifest order; [] when the corpora are absent."""
    root = root or conformance_dir()
    if root is None:
        return []
    cases: list[Case] = []
    for corpus in CORPORA:
        manifest_path = root / corpus / "manifest.json"
        if not manifest_path.is_file():
            continue
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for entry in manifest["cases"]:
            path = root / corpus / entry["file"]
            expect = entry.get("expect", {})
            cases.append(
                Case(
                    name=entry["name"],
                    corpus=corpus,
                    path=path,
                    data=path.read_bytes(),
                    klass=entry["class"],
                    kind=entry["kind"],
                    must_parse=bool(entry["must_parse"]),
                    pass_if=tuple(expect.get("pass_if", ())),
                    fail_if=tuple(expect.get("fail_if", ())),
                    note=entry.get("note", ""),
                    sha256=entry.get("sha256", ""),
                    section=entry.get("section", ""),
                )
            )
    return cases


def sha256_ok(case: Case) -> bool:
    return hashlib.sha256(case.data).hexdigest() == case.sha256


def status_matches(token: str, status: int | None) -> bool:
    """Whether ``status`` (None: no response) is covered by one vocabulary token."""
    token = token.strip().lower()
    if token == "none":
        return status is None
    if status is None:
        return False
    if token == "any":
        return True
    if token == "provisional":
        return 100 <= status < 200
    if token == "final":
        return 200 <= status < 700
    if len(token) == 3 and token[0].isdigit():
        if token[1:] == "xx":
            return status // 100 == int(token[0])
        if token.isdigit():
            return status == int(token)
    raise ValueError(f"unknown expectation token {token!r}")
