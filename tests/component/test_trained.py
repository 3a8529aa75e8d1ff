"""A trained run is read one way (`trained.TrainedRun`): one load of the checkpoint gives the scoring model,
the predictor and the streaming twin, and an export folder answers the same questions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from mnist_rnn import export, runs
from mnist_rnn.data import load_embedded
from mnist_rnn.errors import RunError, UsageError
from mnist_rnn.layouts import make_sequences
from mnist_rnn.trained import ExportedModel, TrainedRun, open_model


def digest(weights: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for w in weights:
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every checkpoint load of the test, by run directory."""
    seen: list[Path] = []
    original = runs.load_checkpoint

    def counted(run_dir: Path, *args: object, **kwargs: object) -> object:
        seen.append(run_dir)
        return original(run_dir, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runs, "load_checkpoint", counted)
    return seen


def test_one_load_gives_the_predictor_and_the_streaming_twin(smoke_run: Path, loads: list[Path]) -> None:
    best = TrainedRun.open(smoke_run / "checkpoints" / "best")
    assert (best.run_dir, best.checkpoint, best.status) == (smoke_run, "best", "finished")
    assert not loads  # config and status without loading the model
    x = make_sequences(load_embedded()["test_images"][:4], best.layout)
    whole = best.predictor()(x)
    streamer = best.streamer()
    assert len(loads) == 1
    assert digest(streamer.model.get_weights()) == digest(best.model.get_weights())
    np.testing.assert_allclose(streamer.stream(x[0])[-1], whole[0], atol=1e-5)
    rows = best.every_step()(x)  # the same per-row numbers for a batch at once, from the same load
    assert len(loads) == 1 and rows.shape == (4, 28, 10)
    for image, per_row in zip(x, rows, strict=True):
        np.testing.assert_allclose(per_row, streamer.stream(image), atol=1e-5)
        np.testing.assert_allclose(per_row, best.every_step()(image[None])[0], atol=1e-6)  # alone


def test_serve_loads_the_checkpoint_once(smoke_run: Path, loads: list[Path]) -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnist-rnn[serve]'")
    from mnist_rnn.serve import Classifier

    classifier = Classifier(smoke_run)
    assert len(loads) == 1 and classifier.steps_batcher is not None
    on_disk, _ = runs.load_checkpoint(smoke_run, "best")
    assert digest(classifier.every_step.model.get_weights()) == digest(on_disk.get_weights())


def test_an_export_folder_opens_through_the_same_reader(smoke_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "keras"
    export.export_run(smoke_run, "keras", out=folder)
    exported = open_model(folder)
    assert isinstance(exported, ExportedModel) and exported.layout == "rows"
    x = make_sequences(load_embedded()["test_images"][:4], exported.layout)
    np.testing.assert_allclose(exported.predictor()(x), TrainedRun.open(smoke_run).predictor()(x), atol=1e-5)
    with pytest.raises(UsageError, match="need a run directory"):
        exported.streamer()
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(RunError, match="not a readable export"):
        open_model(folder)
    with pytest.raises(RunError, match="no such run directory or export folder"):
        open_model(tmp_path / "nowhere")
