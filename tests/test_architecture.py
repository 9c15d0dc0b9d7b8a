"""The import rules of docs/architecture.md hold, and the check catches a broken one.

The rules are import-linter contracts in ``pyproject.toml`` (``[tool.importlinter]``); the
check follows indirect imports too (a chain through the core counts).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("semqa", "training", "validation", "service", "dashboard")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


def _copy_tree(dest: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_repository_keeps_every_import_rule() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("service/violation.py", "import training.train\n", "Serving never imports training"),
        ("semqa/stats/violation.py", "from dashboard import report\n", "The core (semqa) never imports an app"),
        ("dashboard/violation.py", "from training.config import TrainConfig\n", "The dashboard never imports training"),
        # Indirect: the core module imports an app, and serving imports that core module.
        ("semqa/particles/violation.py", "import validation.run\n", "Serving never imports training, validation"),
    ],
)
def test_a_broken_rule_fails_the_check(tmp_path: Path, module: str, line: str, contract: str) -> None:
    root = _copy_tree(tmp_path)
    (root / module).write_text(line)
    if module.startswith("semqa/particles"):
        (root / "service" / "uses_core.py").write_text("import semqa.particles.violation\n")
    result = _lint(root)
    assert result.returncode == 1, result.stdout
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout
