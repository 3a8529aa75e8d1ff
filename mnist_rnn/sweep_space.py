"""What a sweep searches over, parsed from the command line: `--grid KEY=[v1,v2,...]` (every combination) or
`--search KEY=DIST` (a sampler picks), and how one trial draws its values from an Optuna trial.

    --grid  model.units=[[64],[128]]                 values are YAML; lists of lists are fine
    --search train.learning_rate=loguniform(1e-4,1e-2)
    --search model.dropout=uniform(0,0.5)   model.units=choice([64],[128])   train.batch_size=int(32,256)

Categorical values travel through Optuna as their YAML text ("[64]"): Optuna's storage keeps only numbers,
strings, booleans and None, and a grid or choice of lists is common here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from mnist_rnn.config_files import parse_override, parse_yaml
from mnist_rnn.errors import ConfigError

if TYPE_CHECKING:
    import optuna

DISTRIBUTIONS = ("choice(v1,v2,...)", "uniform(low,high)", "loguniform(low,high)", "int(low,high)")


@dataclass(frozen=True)
class Param:
    key: str  # dotted config key
    kind: str  # "choice" (a grid's values too), "uniform", "loguniform" or "int"
    choices: tuple[str, ...] = ()  # YAML texts, for "choice"
    low: float = 0.0
    high: float = 0.0

    def suggest(self, trial: optuna.Trial) -> Any:
        """This trial's value for the key, as the config will read it."""
        if self.kind == "choice":
            return yaml.safe_load(trial.suggest_categorical(self.key, list(self.choices)))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform")

    def corners(self) -> list[Any]:
        """The values that validating the config must try: every choice, or both ends of a range."""
        if self.kind == "choice":
            return [yaml.safe_load(c) for c in self.choices]
        return [int(self.low), int(self.high)] if self.kind == "int" else [self.low, self.high]


def as_yaml(value: Any) -> str:
    """One value in YAML flow style, as `--set` takes it: [64, 64], 0.001, gru."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _split(item: str, flag: str) -> tuple[str, str]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep:
        example = "train.learning_rate=[1e-3,3e-3]" if flag == "--grid" else "model.dropout=uniform(0,0.5)"
        raise ConfigError(f"{flag} {item}: expected KEY={'[v1, v2, ...]' if flag == '--grid' else 'DIST'}, "
                          f"e.g. {flag} {example}")  # fmt: skip
    parse_override(f"{key}=0")  # the key must look like a dotted key
    return key, raw


def parse_grid_item(item: str) -> Param:
    """`model.units=[[64],[128]]` -> a choice among [64] and [128]."""
    key, raw = _split(item, "--grid")
    values, _ = parse_yaml(raw, f"--grid {item}")
    if not isinstance(values, list) or not values:
        raise ConfigError(
            f"--grid {item}: expected KEY=[v1, v2, ...], e.g. --grid train.learning_rate=[1e-3,3e-3]"
        )
    return Param(key, "choice", tuple(as_yaml(v) for v in values))


def parse_search_item(item: str) -> Param:
    """`train.learning_rate=loguniform(1e-4,1e-2)` -> a log-uniform range; see DISTRIBUTIONS."""
    key, raw = _split(item, "--search")
    found = re.fullmatch(r"\s*(choice|uniform|loguniform|int)\s*\((.*)\)\s*", raw)
    if found is None:
        raise ConfigError(
            f"--search {item}: {raw!r} is not a distribution; use one of {', '.join(DISTRIBUTIONS)}"
        )
    kind, body = found.groups()
    args, _ = parse_yaml(f"[{body}]", f"--search {item}")
    if kind == "choice":
        if not args:
            raise ConfigError(f"--search {item}: choice() needs at least one value, e.g. choice(64,128)")
        return Param(key, kind, tuple(as_yaml(v) for v in args))
    numbers = len(args) == 2 and all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
    if not numbers or not args[0] < args[1]:
        raise ConfigError(f"--search {item}: {kind}() takes two numbers, low < high, e.g. {kind}(1,8)")
    if kind == "loguniform" and args[0] <= 0:
        raise ConfigError(f"--search {item}: loguniform() needs low > 0, e.g. loguniform(1e-4,1e-2)")
    if kind == "int" and not all(isinstance(a, int) for a in args):
        raise ConfigError(f"--search {item}: int() takes two whole numbers, e.g. int(32,256)")
    return Param(key, kind, low=float(args[0]), high=float(args[1]))


def parse_space(grid: list[str], search: list[str]) -> list[Param]:
    """The sweep's parameters, in the order given; a grid and a search do not mix."""
    if grid and search:
        raise ConfigError("give either --grid (every combination) or --search (a sampler picks), not both")
    params = [parse_grid_item(i) for i in grid] + [parse_search_item(i) for i in search]
    if not params:
        raise ConfigError("sweep needs at least one --grid KEY=[v1, v2, ...] or --search KEY=DIST")
    seen: set[str] = set()
    for param, item in zip(params, grid + search, strict=True):
        if param.key in seen:
            raise ConfigError(f"{item}: {param.key} is already in the sweep; give its values once")
        seen.add(param.key)
    return params


def grid_space(params: list[Param]) -> dict[str, list[str]]:
    """The grid as Optuna's GridSampler takes it (the YAML texts of the values)."""
    return {p.key: list(p.choices) for p in params}


def label(values: dict[str, Any]) -> str:
    """A trial folder's name part: `model.units=[64]-train.learning_rate=0.00123` (safe on any filesystem)."""
    parts = []
    for key, value in values.items():
        text = f"{value:.3g}" if isinstance(value, float) else as_yaml(value)
        parts.append(re.sub(r"[^A-Za-z0-9._=\[\],-]", "", f"{key}={text}".replace(" ", "")))
    return "-".join(parts)[:110]
