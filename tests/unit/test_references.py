"""Comments and docstrings name only things that exist: a module's attribute (`runs.load_checkpoint`), a
config key (`train.batch_shards`), a package module (`mnist_rnn.layers`) or a backticked name of ours
(`BatchWatch`). A rename that leaves a comment behind fails here, naming the file and line."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from mnist_rnn.config import Config

PACKAGE = Path(__file__).resolve().parents[2] / "mnist_rnn"

# Backticked names that are not ours but are named on purpose (Keras's and TensorFlow's own words).
EXTERNAL = {
    "make_model",
    "sum_over_batch_size",
    "mixed_float16",
    "serving_default",
    "custom_objects",
    "mnist_rnn",
}
KERAS_MODEL_ATTRIBUTES = {"stop_training"}  # set in keras.Model.__init__, so not on the class
FILE_SUFFIXES = {"py", "yaml", "json", "csv", "png", "keras", "txt", "md", "gz", "onnx", "tflite", "idx3"}


def _sources() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts): p
        for p in PACKAGE.rglob("*.py")
        if not {"embedded", "static"} & set(p.parts) and p.name != "__init__.py"
    }


def _top_level(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _all_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            names.add(node.arg)
    return names


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring-like string in a file."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.COMMENT or (
            tok.type == tokenize.STRING and tok.string.lstrip("rbuf").startswith(('"""', "'''"))
        ):
            found.append((tok.start[0], tok.string))
    return found


def _config_keys() -> dict[str, set[str]]:
    sections = {}
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            sections[name] = set(annotation.model_fields)
    return sections


def test_comments_and_docstrings_name_only_what_exists() -> None:
    import keras

    sources = _sources()
    trees = {mod: ast.parse(path.read_text()) for mod, path in sources.items()}
    top = {mod: _top_level(tree) for mod, tree in trees.items()}
    short = {mod.split(".")[-1]: mod for mod in sources}
    known = set().union(*(_all_names(t) for t in trees.values())) | set(short) | EXTERNAL
    sections = _config_keys()
    stale = []
    for path in sources.values():
        for line, text in _prose(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            for m in re.finditer(
                r"(?<![\w./])(?:mnist_rnn\.)?([a-z_]+(?:/[a-z_]+)?)(?:\.py)?\.([A-Za-z_]\w*)", text
            ):
                head, attr = m.group(1).replace("/", "."), m.group(2)
                if attr in FILE_SUFFIXES:
                    continue
                if attr in sections.get(head, ()):  # a config key: train.batch_shards
                    continue
                target = head if head in top else short.get(head)
                if target is not None and attr in top[target]:  # a module's name: runs.load_checkpoint
                    continue
                if head == "model" and (hasattr(keras.Model, attr) or attr in KERAS_MODEL_ATTRIBUTES):
                    continue  # Keras's own: model.fit
                if target is not None or head in sections:
                    stale.append(f"{where}: {m.group(0)} names no config key nor module attribute")
            for m in re.finditer(r"mnist_rnn\.([a-z_]+)", text):
                if m.group(1) not in short and m.group(1) not in ("cli",):
                    stale.append(f"{where}: no module {m.group(0)}")
            for m in re.finditer(r"`([A-Za-z_]\w*)(?:\(\))?`", text):
                if "_" in m.group(1) and not m.group(1).isupper() and m.group(1) not in known:
                    stale.append(f"{where}: `{m.group(1)}` names nothing in the package")
    assert not stale, "\n".join(stale)
