"""The docs cannot drift: every figure in README.md and docs/*.md is a marked place filled from a committed
artefact by scripts/docs_figures.py (and equal to it now), no figure is typed by hand, the README stays
short, and its links resolve."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, load_script

# A measured figure: a percentage, a ratio with ×, a rate, a size or a duration. A bound or target written
# with ≥, ≤, <, > or "at least/most" before it is a promise, not a measurement, and may stand alone.
FIGURE = re.compile(
    r"(?<![\w.])\d[\d,]*\.\d+\s?×|(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:%|samples/s|images/s|requests/s|GFLOP/s|ms\b|KiB\b|MiB\b|"
    r"s/epoch|min\b|minutes\b|s\b)"
)
BOUND = re.compile(r"(?:[≥≤<>~]|at least|at most|under|over|up to|within|every|about|per)\s*$")
MARKED = re.compile(r"<!--(fig|include|table):.*?<!--/\1-->", re.DOTALL)
FENCED = re.compile(r"```.*?```", re.DOTALL)


def _script() -> ModuleType:
    return load_script("docs_figures")


def _documents() -> list[Path]:
    return _script().documents()


def test_every_marked_figure_equals_its_artefact() -> None:
    script = _script()
    stale = [
        str(p.relative_to(REPO)) for p in script.documents() if script.fill(p.read_text()) != p.read_text()
    ]
    assert not stale, f"out of date (run python scripts/docs_figures.py): {stale}"


def test_a_changed_figure_is_caught() -> None:
    script = _script()
    readme = (REPO / "README.md").read_text()
    match = script.FIG.search(readme)
    assert match, "the README has no marked figure"
    tampered = readme.replace(match.group(0), match.group(0).replace(match["value"], "12.34%"), 1)
    assert script.fill(tampered) == readme


def unmarked_figures(text: str) -> list[str]:
    text = FENCED.sub("", MARKED.sub("", text))
    found = []
    for line in text.splitlines():
        for match in FIGURE.finditer(line):
            if not BOUND.search(line[: match.start()]):
                found.append(match.group(0))
    return found


@pytest.mark.parametrize("document", _documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_figure_is_typed_by_hand(document: Path) -> None:
    assert unmarked_figures(document.read_text()) == []


def test_the_figure_finder_finds_figures() -> None:
    assert unmarked_figures("reached 99.05% in 3.4 min, 1.43× PyTorch, 1,600 samples/s") == [
        "99.05%", "3.4 min", "1.43×", "1,600 samples/s",
    ]  # fmt: skip
    assert unmarked_figures("the same class on ≥ 99.9% of images; <!--fig:a:b:pct-->98.98%<!--/fig-->") == []


def test_the_readme_is_short() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("document", _documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(document: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", FENCED.sub("", document.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name}: {target}"
        if anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
            assert anchor in {_slug(h) for h in headings}, f"{document.name}: {target}"
