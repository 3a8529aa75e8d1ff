"""source_revision: the commit command.txt records, so a run can be rerun on the code that made it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mnist_rnn.revision import NOT_A_CHECKOUT, source_revision


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A repository shaped like mnist-rnn's: pyproject.toml at the top, the package below it."""
    repo = tmp_path / "repo"
    (repo / "mnist_rnn").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'mnist-rnn'\n")
    (repo / "mnist_rnn" / "kernel.py").write_text("STEP = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return repo


def test_a_clean_checkout_gives_its_commit(checkout: Path) -> None:
    assert source_revision(checkout / "mnist_rnn") == _git(checkout, "rev-parse", "HEAD")


def test_a_changed_tracked_file_is_marked_but_an_untracked_one_is_not(checkout: Path) -> None:
    (checkout / "notes.txt").write_text("not tracked\n")
    assert not source_revision(checkout / "mnist_rnn").endswith("+changes")
    (checkout / "mnist_rnn" / "kernel.py").write_text("STEP = 2\n")
    assert source_revision(checkout / "mnist_rnn") == _git(checkout, "rev-parse", "HEAD") + "+changes"


def test_a_package_inside_someone_elses_repository_is_not_given_their_commit(checkout: Path) -> None:
    # a virtual environment inside a user's project: site-packages/mnist_rnn has no pyproject.toml beside it
    installed = checkout / ".venv" / "lib" / "site-packages" / "mnist_rnn"
    installed.mkdir(parents=True)
    assert source_revision(installed) == NOT_A_CHECKOUT
    # ... nor one whose folder has a pyproject.toml but is not the repository's top
    nested = checkout / "vendor" / "mnist_rnn"
    nested.mkdir(parents=True)
    (checkout / "vendor" / "pyproject.toml").write_text("")
    assert source_revision(nested) == NOT_A_CHECKOUT


def test_a_folder_outside_any_repository(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "mnist_rnn").mkdir()
    assert source_revision(tmp_path / "mnist_rnn") == NOT_A_CHECKOUT
