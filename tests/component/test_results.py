"""What a run leaves for a person to look at: curves.png each epoch, status.json at every way out, the
HParams summary, and eval's pictures, each from the run's own numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_rnn import runs
from mnist_rnn.errors import Interrupted
from mnist_rnn.evaluate import evaluate_run
from mnist_rnn.loop import StopRequest
from mnist_rnn.plots import most_confident_errors
from tests.conftest import TINY, train_run

WITH_TB = {**TINY, "run": {"tensorboard": True}}


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()  # a whole, valid PNG
    with Image.open(path) as image:
        return image.size


def _drawn_share(path: Path) -> float:
    """The share of a picture's pixels that are not its background (its most common colour): near 0 for a
    blank or nearly empty plot, near 1 for a flood of one wrong colour."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    return 1.0 - counts.max() / len(pixels)


def test_a_run_leaves_curves_status_and_hparams(tmp_path: Path) -> None:
    import tensorflow as tf

    result = train_run(WITH_TB, tmp_path / "run", "train.epochs=3")
    run = result.run_dir
    assert _png_size(run / "curves.png") == (1000, 400)
    assert 0.03 < _drawn_share(run / "curves.png") < 0.6  # axes, lines and labels drawn, not a blank canvas
    status = runs.read_json(run / "status.json")
    assert status["status"] == "finished" and status["epochs_planned"] == 3
    model, _ = runs.load_checkpoint(run, "last")
    assert status["parameters"] == model.count_params()
    found: dict[str, object] = {}
    for path in (run / "tensorboard").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found[value.tag] = value
    start = found["_hparams_/session_start_info"]
    assert b"model.units" in start.metadata.plugin_data.content  # type: ignore[attr-defined]
    assert b"train.learning_rate" in start.metadata.plugin_data.content  # type: ignore[attr-defined]
    logged = tf.make_ndarray(found["test_accuracy"].tensor)  # type: ignore[attr-defined]
    assert float(logged) == pytest.approx(result.metrics["test_accuracy"])


def test_status_says_interrupted_with_the_resume_command_then_finished(tmp_path: Path) -> None:
    with pytest.raises(Interrupted):
        train_run(TINY, tmp_path / "run", "train.epochs=2", stop=StopRequest(after_step=20))
    status = runs.read_json(tmp_path / "run" / "status.json")
    assert status["status"] == "interrupted" and "mnist-rnn train --resume" in status["message"]
    train_run(TINY, tmp_path / "run", "train.epochs=2", resume=True)
    assert runs.read_json(tmp_path / "run" / "status.json")["status"] == "finished"


def test_eval_draws_its_pictures_from_its_own_numbers(tmp_path: Path) -> None:
    run = train_run(TINY, tmp_path / "run", "train.epochs=2").run_dir
    report = evaluate_run(run, "best", "test", explain=3)
    assert sum(map(sum, report["confusion_matrix"])) == report["samples"] == 256
    names = [Path(p).name for p in report["pictures"]]
    assert names == ["confusion_matrix.png", "errors.png", "explain.png"]
    assert _png_size(run / "confusion_matrix.png") == (700, 600)
    assert _png_size(run / "errors.png")[0] == 1040
    for name in ("confusion_matrix.png", "errors.png", "explain.png"):
        assert 0.05 < _drawn_share(run / name) < 0.9, name  # cells, digits and bars drawn
    assert json.loads((run / "eval.json").read_text())["pictures"] == report["pictures"]
    # explain.png has one row per digit: two more digits make it two equal rows taller
    three = _png_size(run / "explain.png")
    evaluate_run(run, "best", "test", explain=1)
    one = _png_size(run / "explain.png")
    evaluate_run(run, "best", "test", explain=5)
    five = _png_size(run / "explain.png")
    assert one[0] == three[0] == five[0] and one[1] < three[1] < five[1]
    assert five[1] - three[1] == three[1] - one[1]


def test_the_most_confident_errors_come_first() -> None:
    probs = np.full((5, 10), 0.01)
    probs[0, 3], probs[1, 1], probs[2, 2], probs[3, 3], probs[4, 9] = 0.9, 0.6, 0.99, 0.7, 0.95
    labels = np.array([3, 0, 5, 3, 1])  # wrong: 1 (0.6), 2 (0.99), 4 (0.95)
    assert most_confident_errors(probs, labels, 10).tolist() == [2, 4, 1]
    assert most_confident_errors(probs, labels, 2).tolist() == [2, 4]


def test_the_robustness_script_counts_what_predict_reads_right(smoke_run: Path, tmp_path: Path) -> None:
    """scripts/robustness.py: a set's correct count is predict's labels against the file names' digits."""
    from mnist_rnn.predict import predict_files
    from tests.conftest import REPO, load_script

    robustness = load_script("robustness")
    folder = tmp_path / "set"
    folder.mkdir()
    sources = sorted((REPO / "tests" / "data" / "heavy").glob("*.png"))[::20][:8]
    for i, source in enumerate(sources):  # the third one relabelled: it must count as wrong
        name = source.name if i != 2 else f"{(int(source.name[0]) + 1) % 10}_relabelled.png"
        (folder / name).write_bytes(source.read_bytes())
    predictions, _, _ = predict_files(smoke_run, sorted(folder.iterdir()))
    files = sorted(folder.iterdir())
    expected = sum(int(p.label == int(f.name[0])) for p, f in zip(predictions, files, strict=True))
    result = robustness.score(smoke_run, folder)
    assert result == {"correct": expected, "total": 8, "accuracy": expected / 8}
