"""The run plan: how one run executes, decided once at its start from the config and the machine.

`make_plan` asks `execution` (device, threads, kernel and XLA, the scoring path) and `distribute` (strategy,
replicas, the chief, precision) each once, raises every refusal (a config that cannot run here) while doing
so, and returns one frozen `RunPlan`. Training and its records (command.txt, metrics.json) read the plan,
never the raw config, for these facts. `eval` decides only its scoring path (`evaluate.evaluate_run`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mnist_rnn.config import Config
from mnist_rnn.distribute import check_precision, is_chief, make_strategy
from mnist_rnn.execution import (
    Execution,
    plan_execution,
    plan_scoring,
    planned_cpu_threads,
    scoring_shards,
    select_device,
    set_cpu_threads,
)


@dataclass(frozen=True)
class RunPlan:
    device: str  # the one device ("/CPU:0", "/GPU:0"); under a strategy, the strategy places the replicas
    cpu_threads: int  # threads per CPU op in effect (0: TensorFlow's default, one per logical CPU)
    strategy: Any  # the tf.distribute.Strategy, or None on one device
    chief: bool  # this process writes the run directory (False only for a multi_worker run's other workers)
    mixed_precision: bool
    execution: Execution  # the recurrent kernel, XLA and the replicas of a new model
    scoring_xla: bool  # validation, the final test and eval score through the XLA-compiled twin
    scoring_shards: int  # ... in that many side-by-side XLA calls per batch

    def record(self) -> dict[str, Any]:
        """The plan as metrics.json and command.txt keep it (the strategy by its name)."""
        return {
            "device": self.device,
            "cpu_threads": self.cpu_threads,
            "strategy": type(self.strategy).__name__ if self.strategy is not None else None,
            "chief": self.chief,
            "mixed_precision": self.mixed_precision,
            **asdict(self.execution),
            "scoring_xla": self.scoring_xla,
            "scoring_shards": self.scoring_shards,
        }


def make_plan(cfg: Config) -> RunPlan:
    """The plan of a training run. Threads are set before anything starts TensorFlow's runtime; a device
    or cluster that does not exist, or mixed precision without a GPU, fails here, before any write."""
    device = select_device(cfg.train.device)  # lists the devices; the runtime has not started yet
    execution = plan_execution(cfg, device)
    threads = set_cpu_threads(planned_cpu_threads(cfg, execution), required=cfg.train.cpu_threads is not None)
    check_precision(cfg.train, device)
    chief = is_chief(cfg.train)
    strategy = make_strategy(cfg.train)
    if strategy is not None:
        execution = Execution(execution.fused, execution.xla, strategy.num_replicas_in_sync)
    xla = plan_scoring(cfg, device)
    return RunPlan(
        device, threads, strategy, chief, cfg.train.mixed_precision, execution, xla, scoring_shards(cfg, xla)
    )
