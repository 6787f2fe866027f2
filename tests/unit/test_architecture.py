"""The allowed import directions hold: `lint-imports` checks the contracts of pyproject.toml's
`[tool.importlinter]` (entry points on top, leaves below, no back-arrow), so a back-arrow fails the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"an import breaks a contract:\n{result.stdout}{result.stderr}"
    assert "0 broken" in result.stdout
