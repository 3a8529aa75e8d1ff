"""Config files: YAML with line numbers, `base:` composition, `--set` overrides, error wording, dumping.

A config file is YAML that may name a `base:` file (relative to itself) that it overrides key by key;
lists are replaced, not merged. `load_config` merges the chain, applies `--set a.b=value` (the value parsed
as YAML), validates against the schema in `config`, and reports any problem as one line naming the source
(file and line, or the `--set` item), the key and the fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from mnist_rnn.config import Config, Key, cross_key_violation
from mnist_rnn.errors import ConfigError
from mnist_rnn.execution import fused_kernel_violation

# ----------------------------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a float (YAML 1.2), where PyYAML's 1.1 rules give a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[Key, int]]:
    """Parse one YAML document; return the data and the line (1-based) of every key and list item."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}; fix the syntax") from None
    finally:
        loader.dispose()
    lines: dict[Key, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, prefix: Key, out: dict[Key, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (key_node.value,)
            out[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[prefix + (i,)] = item.start_mark.line + 1
            _collect_lines(item, prefix + (i,), out)


# ------------------------------------------------------------------------------------- composition


class _Layers:
    """The merged raw dict plus, for every key, where its value came from (for error messages)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origin: dict[Key, tuple[str, int | None]] = {}

    def merge(self, data: dict[str, Any], lines: dict[Key, int], source: str) -> None:
        _deep_merge(self.data, data)
        for key in _leaf_keys(data):
            self.origin[key] = (source, None)
        for key, line in lines.items():
            self.origin[key] = (source, line)

    def message(self, loc: Key, msg: str) -> str:
        """`configs/x.yaml: model.units[1]: must be a positive integer, got -3 (line 7)`."""
        source, line = "config", None
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.origin:
                source, line = self.origin[loc[:n]]
                break
        else:  # the bad value was built from keys below loc (e.g. `--set seed.x=1` made seed a mapping)
            below = [key for key in self.origin if key[: len(loc)] == loc]
            if below:
                source, line = self.origin[below[0]]
        suffix = f" (line {line})" if line is not None else ""
        return f"{source}: {_dotted(loc)}: {msg}{suffix}"


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _leaf_keys(data: Any, prefix: Key = ()) -> list[Key]:
    if isinstance(data, dict):
        return [k for key, v in data.items() for k in _leaf_keys(v, prefix + (key,))] or [prefix]
    return [prefix]


def _read_file(path: Path, chain: tuple[Path, ...], layers: _Layers) -> None:
    """Merge `path` (after its `base:` chain) into `layers`."""
    shown = str(path)
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"{shown}: base: configs include each other ({cycle}); remove one `base:`")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: config file not found; check the path passed to --config") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a config file; pass a .yaml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read config file ({exc}); check the file") from None
    data, lines = parse_yaml(text, shown)
    if data is None:
        raise ConfigError(f"{shown}: the config file is empty; add keys, e.g. `base: default.yaml`")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{shown}: the top level must be a mapping of keys (name, seed, data, model, train, run), "
            f"got {type(data).__name__}"
        )
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{shown}: base: must be a path to another config file, got {base!r}")
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        if not base_path.exists():
            raise ConfigError(f"{shown}: base: file {base_path} not found; paths are relative to {shown}")
        _read_file(base_path, (*chain, resolved), layers)
    layers.merge(data, lines, shown)


def parse_override(item: str) -> tuple[tuple[str, ...], Any]:
    """`model.units=[256,256]` -> (("model", "units"), [256, 256]); the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set train.epochs=3")
    parts = tuple(key.split("."))
    if any(not p or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
        raise ConfigError(f"--set {item}: {key!r} is not a dotted key like train.learning_rate")
    value, _ = parse_yaml(raw, f"--set {item}")
    return parts, value


def _apply_override(layers: _Layers, item: str) -> None:
    parts, value = parse_override(item)
    node = layers.data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:  # a section left out, or an optional one that is off (data.augment: null)
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"--set {item}: {where} is a value, not a section; set {where}=... instead")
        node = child
    node[parts[-1]] = value
    layers.origin[parts] = (f"--set {item}", None)
    for key in list(layers.origin):  # entries below the replaced key no longer describe it
        if key[: len(parts)] == parts and key != parts:
            del layers.origin[key]


def load_config(path: Path | str, overrides: Sequence[str] = ()) -> Config:
    """Read `path` with its `base:` chain, apply `--set` overrides, validate; ConfigError on any problem."""
    layers = _Layers()
    _read_file(Path(path), (), layers)
    for item in overrides:
        _apply_override(layers, item)
    try:
        cfg = Config.model_validate(layers.data)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, layers)) from None
    for rule in (cross_key_violation, fused_kernel_violation):
        if (found := rule(cfg)) is not None:
            raise ConfigError(layers.message(*found))
    return cfg


# --------------------------------------------------------------------------------------- messages


def _dotted(loc: Key) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(loc: Key) -> list[str]:
    """The valid keys of the section that `loc` points into (for 'did you mean')."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        # an optional section (data.augment: AugmentConfig | None) offers its section's keys
        sections = [a for a in (annotation, *get_args(annotation)) if isinstance(a, type)]
        sections = [a for a in sections if issubclass(a, BaseModel)]
        if not sections:
            return []
        model = sections[0]
    return list(model.model_fields)


def _describe(err: Any) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        valid = _fields_at(loc)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key; {hint}valid keys here: {', '.join(valid)}"
    # an integer field's bound is an int (PositiveInt); a float field's is a float (elastic_sigma's 0.0)
    if kind == "greater_than" and type(ctx.get("gt")) is int and ctx["gt"] == 0 and isinstance(value, int):
        return f"must be a positive integer, got {value!r}"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list, e.g. [128, 128], got {value!r}"
    if kind == "model_type" or kind == "model_attributes_type":
        return f"must be a section (a mapping of keys), got {value!r}"
    msg = err["msg"]
    msg = re.sub(r"^Input should be", "must be", msg)
    msg = re.sub(r"^String should match pattern", "must match pattern", msg)
    msg = msg[0].lower() + msg[1:]
    return f"{msg}, got {value!r}"


def _first_error(exc: ValidationError, layers: _Layers) -> str:
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err["loc"])
    more = f" [and {len(errors) - 1} more error(s)]" if len(errors) > 1 else ""
    return layers.message(loc, _describe(err)) + more


# ------------------------------------------------------------------------------------------- output


class _Dumper(yaml.SafeDumper):
    """Sections in block style, lists inline (`units: [128, 128]`), as in configs/*.yaml."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML: enough to rerun with `mnist-rnn train --config`."""
    return yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


# ------------------------------------------------------------------------------------------- output


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"model": {"units": [8]}} -> {"model.units": [8]}: dotted keys to leaf values."""
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def config_diff(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    fa, fb = flatten(config_to_dict(a)), flatten(config_to_dict(b))
    return sorted(key for key in fa.keys() | fb.keys() if fa.get(key) != fb.get(key))
