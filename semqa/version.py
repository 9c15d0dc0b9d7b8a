"""The code version recorded in lineage: the git commit when run from a checkout."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from semqa import __version__


@functools.cache
def code_version() -> str:
    """``git:<commit>`` (``+dirty`` when the checkout has uncommitted changes) or ``semqa-<version>``.

    Installed wheels carry no git history; then the package version is what identifies
    the code.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"semqa-{__version__}"
    return f"git:{commit}" + ("+dirty" if dirty else "")
