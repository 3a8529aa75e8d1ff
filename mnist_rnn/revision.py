"""Which code a run ran: the git commit of the checkout mnist-rnn was imported from.

The package version stays 0.1.0 across commits that train to different weights (a kernel change reorders
float32 sums), so a run that is to be rerun bit for bit needs the commit. command.txt records it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
NOT_A_CHECKOUT = "not from a git checkout of mnist-rnn (an installed package)"


def _git(checkout: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def source_revision(package_dir: Path = PACKAGE_DIR) -> str:
    """The commit, with "+changes" when tracked files differ from it; for an installed wheel, or a package
    that happens to sit inside someone else's repository (a virtual environment in a project), says so."""
    checkout = package_dir.parent
    if not (checkout / "pyproject.toml").is_file():
        return NOT_A_CHECKOUT
    try:
        if Path(_git(checkout, "rev-parse", "--show-toplevel")).resolve() != checkout.resolve():
            return NOT_A_CHECKOUT
        commit = _git(checkout, "rev-parse", "HEAD")
        changed = _git(checkout, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # no git, no repository, no commit yet
        return NOT_A_CHECKOUT
    return commit + ("+changes" if changed else "")
