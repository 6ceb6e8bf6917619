"""The worked carrier configurations of docs/carriers.md pass ``voicegw check``: each
``sip_profiles/NAME.yaml`` block of its "Worked configurations" section, written out as
an operator would copy it (one carrier at a time, beside the Asterisk agent profile,
with a password file each), is a valid profile set."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = re.compile(r"^## Worked configurations$(.*?)^## ", re.MULTILINE | re.DOTALL)
BLOCK = re.compile(r"```yaml\n# sip_profiles/(\S+)\.yaml\n(.*?)```", re.DOTALL)


def examples() -> dict[str, str]:
    section = SECTION.search((ROOT / "docs" / "carriers.md").read_text())
    assert section is not None, "docs/carriers.md has no 'Worked configurations' section"
    return {name: body for name, body in BLOCK.findall(section.group(1))}


def test_the_section_has_the_four_worked_configurations() -> None:
    assert sorted(examples()) == ["carrier", "pbx", "telnyx", "twilio"]


@pytest.mark.parametrize("carrier", ["twilio", "telnyx", "carrier"])
def test_a_worked_configuration_passes_check(carrier: str, tmp_path: Path) -> None:
    profiles = tmp_path / "sip_profiles"
    profiles.mkdir()
    (tmp_path / "flows").mkdir()
    blocks = examples()
    for name in (carrier, "pbx"):
        (profiles / f"{name}.yaml").write_text(blocks[name])
        password = profiles / f"{name}.password"
        password.write_text("not-a-real-password\n")
        password.chmod(0o600)
    result = subprocess.run([sys.executable, "-m", "voicegw", "check"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"ok: embedded default; profiles: {', '.join(sorted((carrier, 'pbx')))};")
