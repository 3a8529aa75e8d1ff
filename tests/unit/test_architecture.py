"""The shape docs/architecture.md promises: the modules it names exist, none is too long, imports go one
way, and no test reaches into a private name of the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "mnist_rnn"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 60
# docs/architecture.md's table of levels: a module imports only from its level or below.
LEVELS = {
    "cli": 5,
    "train": 4, "session": 4, "serve": 4, "sweep": 4, "sweep_worker": 4,
    "sweep_study": 3, "sweep_results": 3,
    "predict": 3, "export": 3, "streaming": 3, "evaluate": 3, "state": 3, "tensorboard_log": 3,
    "catalog": 3, "cluster": 3, "tables": 3, "trained": 3,
    "sweep_space": 2,
    "runs": 2, "loop": 2, "images": 2, "plots": 2, "artefacts": 2, "plan": 2,
    "config_files": 1, "execution": 1, "model": 1, "fused_lstm": 1, "sharded_step": 1, "layers": 1,
    "distribute": 1, "augment": 1,
    "config": 0, "data": 0, "layouts": 0, "errors": 0, "tf_import": 0, "memory": 0, "measure": 0,
    "mnist": 0, "runlock": 0, "cpu": 0, "revision": 0,
}  # fmt: skip


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if not {"embedded", "static"} & set(p.parts))


def _top(path: Path) -> str:
    """mnist_rnn/cli/app.py -> "cli", mnist_rnn/train.py -> "train"."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_every_module_the_architecture_page_names_exists() -> None:
    page = (REPO / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"^\| `([a-z_/]+)\.py` \|", page, flags=re.MULTILINE))
    assert len(named) >= 20  # the table was found
    missing = [name for name in named if not (PACKAGE / f"{name}.py").is_file()]
    assert not missing
    unnamed = [
        str(p.relative_to(PACKAGE)) for p in _modules()
        if p.name not in ("__init__.py", "__main__.py") and str(p.relative_to(PACKAGE))[:-3] not in named
    ]  # fmt: skip
    assert not unnamed, "add these modules to docs/architecture.md"


def test_no_module_over_350_lines_and_no_function_over_60() -> None:
    long_modules, long_functions = [], []
    for path in _modules():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{path.name}: {len(text.splitlines())}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.name}:{node.name}: {lines}")
    assert not long_modules and not long_functions, (long_modules, long_functions)


def _imports(tree: ast.Module) -> set[str]:
    """The mnist_rnn modules a file imports anywhere: at module level, inside functions and under
    `if TYPE_CHECKING:` alike (a circle through a deferred import is still a circle)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_rnn"):
            parts = node.module.split(".")
            found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mnist_rnn."))
    return found - {"__init__", "__version__"}


def import_graph() -> dict[str, set[str]]:
    """Top-level module (a package such as cli/ counts as one) -> the other top-level modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in _modules():
        name = _top(path)
        if name not in ("__init__", "__main__"):
            graph.setdefault(name, set()).update(_imports(ast.parse(path.read_text())) - {name})
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as the path that closes it (depth-first search, back edges)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], node, target])
            elif target not in state:
                visit(target, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def depth(graph: dict[str, set[str]]) -> int:
    """The longest import chain, in modules (the graph has no circles when this is asked)."""
    memo: dict[str, int] = {}

    def longest(node: str) -> int:
        if node not in memo:
            memo[node] = 1 + max((longest(t) for t in graph.get(node, ())), default=0)
        return memo[node]

    return max(longest(node) for node in graph)


def test_the_checks_find_a_circle_and_the_depth() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert depth({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"c"}}) == 3


def test_no_import_circles() -> None:
    circles = cycles(import_graph())
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_imports_go_down_the_levels() -> None:
    graph = import_graph()
    assert set(LEVELS) == set(graph)
    upward = [f"{a} imports {b}" for a, targets in graph.items() for b in targets if LEVELS[b] > LEVELS[a]]
    assert not upward
    print(f"import depth: {depth(graph)} modules")  # shown with pytest -s


@pytest.mark.parametrize("folder", ["tests", "scripts"])
def test_tests_and_scripts_use_only_public_names(folder: str) -> None:
    private = []
    for path in sorted((REPO / folder).rglob("*.py")):
        tree = ast.parse(path.read_text())
        modules = set()  # local names bound to mnist_rnn modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_rnn"):
                private += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
                modules.update(a.asname or a.name for a in node.names if node.module == "mnist_rnn")
            elif isinstance(node, ast.Import):
                modules.update(a.asname or a.name for a in node.names if a.name.startswith("mnist_rnn"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                private.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert not private


# Who reads what of a run: a trained run through `trained.TrainedRun` alone; the training session resumes
# (state.py) and scores its best checkpoint (train.py); a run's status through `runs.run_status` alone.
CALLERS = {
    "load_checkpoint": {"trained", "state", "train"},
    "find_checkpoint": {"trained", "runs"},
    "read_run_config": {"trained", "catalog", "session", "train"},
    "load_artefact": {"trained"},
    "lock_holder": {"runs"},
}


def test_runs_are_read_in_one_place() -> None:
    calls: dict[str, set[str]] = {name: set() for name in CALLERS}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in calls:
                    calls[name].add(_top(path))
    assert calls == CALLERS
