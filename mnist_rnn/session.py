"""A training session: everything one run works with, built new or restored from checkpoints/last.

`open_session` seeds, records the run (config.yaml, command.txt), builds the model on the path
`execution.plan_execution` picks, or restores the model and its `TrainingState` to resume, and sets up the
epoch shape, the checkpoint clock, TensorBoard and the progress bar. `train` runs the epochs on it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import Progress

from mnist_rnn import runs
from mnist_rnn.augment import example_grid
from mnist_rnn.config import Config
from mnist_rnn.data import Dataset
from mnist_rnn.distribute import gpu_description, placement
from mnist_rnn.evaluate import Scorer
from mnist_rnn.execution import (
    Execution,
    announce_device,
    environment_facts,
    running_execution,
    seed_everything,
)
from mnist_rnn.layouts import sequence_shape
from mnist_rnn.loop import (
    CheckpointClock,
    EpochShape,
    StopRequest,
    compile_model,
    describe_extension,
    extend_schedule,
    planned_schedule,
)
from mnist_rnn.model import build_model
from mnist_rnn.plan import RunPlan
from mnist_rnn.plots import AUGMENT, plot_augment
from mnist_rnn.state import TrainingState, load_training_state
from mnist_rnn.tables import progress_bar
from mnist_rnn.tensorboard_log import TensorBoardLog

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class EpochEnd:
    """What an `on_epoch_end` hook sees after each epoch's checkpoints are written."""

    epoch: int  # 1-based
    row: dict[str, Any]  # the epoch's history.csv row
    model: keras.Model  # the model being trained


EpochHook = Callable[[EpochEnd], bool]  # True ends the run after this epoch, as early stopping does


@dataclass
class Session:
    """What one training session works with; `state` is what its checkpoints hold beside the weights."""

    cfg: Config
    data: Dataset
    run_dir: Path
    plan: RunPlan  # how the run executes, decided once (plan.py)
    console: Console
    model: keras.Model
    execution: Execution  # what the model runs: the plan's, or a resumed checkpoint's
    state: TrainingState
    shape: EpochShape
    clock: CheckpointClock
    tensorboard: TensorBoardLog
    progress: Progress
    scorer: Scorer  # validation and the final test (evaluate.Scorer)
    stop: StopRequest = field(default_factory=StopRequest)
    on_epoch_end: EpochHook | None = None


def open_session(
    cfg: Config,
    data: Dataset,
    run_dir: Path,
    plan: RunPlan,
    console: Console,
    resume: bool,
    command: Sequence[str] | None,
) -> Session:
    """Seed, record the run, and build the model (or restore it and its state from checkpoints/last)."""

    device = plan.device
    seed_everything(cfg.seed, cfg.train.deterministic, plan.execution.xla, device)
    planned = runs.read_run_config(run_dir).train if resume else cfg.train  # before it is rewritten
    _record_run(run_dir, cfg, plan, resume, command)
    console.print(f"data: {data.description}", highlight=False)
    if not resume:
        _picture_augmentation(cfg, data, run_dir)
    announce_device(console, device, cfg.model)
    with placement(device):
        if resume:
            model, state = load_training_state(
                run_dir, "last", cfg.seed, cfg.train.stateful, warn=console.print
            )
            console.print(
                f"resuming at epoch {state.epoch + 1}, batch {state.step} from {run_dir}", highlight=False
            )
        else:
            model, state = _new_model(cfg, plan), TrainingState(seed=cfg.seed)
    state.schedule = extend_schedule(state.schedule or planned_schedule(planned), cfg.train)
    if resume and (extension := describe_extension(state.schedule, cfg.train)):
        console.print(extension, highlight=False)
    running = running_execution(model)  # a resumed run goes on with what its checkpoint holds
    console.print(
        f"model: {model.name}, {model.count_params():,} parameters; {running.describe()}", highlight=False
    )
    shape = EpochShape.of(
        cfg.train, len(data.train), sequence_shape(cfg.data.layout)[0], cfg.data.chunk_steps
    )
    if cfg.train.stateful:
        _announce_stateful(console, cfg, shape, data)
    tensorboard = TensorBoardLog(run_dir, cfg.run.tensorboard)
    runs.write_history(run_dir, state.history)  # drops rows written after the checkpoint, before a crash
    tensorboard.catch_up(state.history)  # and logs the ones a crash kept from TensorBoard
    clock = CheckpointClock(cfg.train.checkpoint_every_steps, cfg.train.checkpoint_every_minutes)
    clock.saved(state.epoch * shape.steps + state.step)  # where the run (re)starts
    return Session(
        cfg, data, run_dir, plan, console, model, running, state, shape, clock, tensorboard,
        progress_bar(console), Scorer(cfg, plan.scoring_xla, plan.scoring_shards),
    )  # fmt: skip


def _record_run(
    run_dir: Path, cfg: Config, plan: RunPlan, resume: bool, command: Sequence[str] | None
) -> None:
    argv = list(command) if command is not None else list(sys.argv)
    runs.write_config(run_dir, cfg)  # on resume: the same config, train.epochs possibly raised
    if resume:
        runs.append_command(run_dir, argv, datetime.now().isoformat(timespec="seconds"))
    else:
        gpu = gpu_description(plan.device)
        facts = environment_facts(plan.device) | ({"gpu": gpu} if gpu else {})
        runs.write_command(run_dir, argv, facts | {"run plan": _describe(plan)})


def _picture_augmentation(cfg: Config, data: Dataset, run_dir: Path) -> None:
    """augment.png: what data.augment does to a few training digits, for a person to look at."""
    if cfg.data.augment is None or data.train_images is None:
        return
    images = data.train_images[:8]
    drawn = cfg.data.augment.model_dump()
    if not drawn["elastic_alpha"]:
        del drawn["elastic_sigma"]  # the smoothness of a field that is not drawn
    settings = ", ".join(f"{key} {value:g}" for key, value in drawn.items() if value)
    grid = example_grid(images, cfg.data.augment, cfg.seed, draws=7)
    plot_augment(images, grid, settings or "every range 0: no augmentation", run_dir / AUGMENT)


def _describe(plan: RunPlan) -> str:
    return ", ".join(f"{key} {value}" for key, value in plan.record().items())


def _new_model(cfg: Config, plan: RunPlan) -> keras.Model:
    # A stateful model sees a fixed batch of (chunks of) sequences; scoring uses a stateless twin.
    steps, features = sequence_shape(cfg.data.layout)
    stateful = cfg.train.stateful
    model = build_model(
        cfg.model,
        (cfg.data.chunk_steps or steps, features),
        batch_size=cfg.train.batch_size if stateful else None,
        stateful=stateful,
        fused=plan.execution.fused,
        sequence_steps=steps,
        shards=plan.execution.shards,
    )
    compile_model(model, cfg.train, plan.execution.xla, distributed=plan.strategy is not None)
    return model


def _announce_stateful(console: Console, cfg: Config, shape: EpochShape, data: Dataset) -> None:
    n, chunk = len(data.train), cfg.data.chunk_steps
    console.print(
        f"stateful: batches of {cfg.train.batch_size}; each epoch trains on {shape.images_used} of {n} "
        f"images ({n - shape.images_used} dropped so every batch is whole)"
        + (f"; {shape.chunks} chunks of {chunk} steps per image, state reset after the last" if chunk else "")
        + f"; scores use a stateless twin on all {len(data.test)} test images",
        highlight=False,
    )
