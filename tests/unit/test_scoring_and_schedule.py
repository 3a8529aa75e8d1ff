"""Pure pieces of training and evaluation: scores, schedules, the epoch order and shape, stop requests,
and the training state's checkpoint form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mnist_rnn.config import TrainConfig
from mnist_rnn.evaluate import scores_from_probabilities
from mnist_rnn.loop import epoch_order, extend_schedule, learning_rate, planned_schedule


def test_scores_from_probabilities() -> None:
    probs = np.full((4, 10), 0.01, dtype=np.float32)
    probs[[0, 1, 2, 3], [3, 3, 5, 1]] = 0.91  # predictions: 3, 3, 5, 1
    labels = np.array([3, 5, 5, 1])
    s = scores_from_probabilities(probs, labels)
    assert s.accuracy == 0.75
    assert s.confusion_matrix[5][3] == 1 and s.confusion_matrix[5][5] == 1 and s.confusion_matrix[3][3] == 1
    assert (
        s.per_class_accuracy[5] == 0.5 and s.per_class_accuracy[3] == 1.0 and s.per_class_accuracy[0] == 0.0
    )
    expected_loss = -(3 * math.log(0.91) + math.log(0.01)) / 4
    assert s.loss == pytest.approx(expected_loss, rel=1e-6)
    assert sum(map(sum, s.confusion_matrix)) == s.samples == 4


def test_schedules() -> None:
    cos = TrainConfig(epochs=4, learning_rate=1.0, lr_schedule="cosine")
    assert [learning_rate(cos, e) for e in range(4)] == pytest.approx(
        [1.0, 0.853553, 0.5, 0.146447], rel=1e-5
    )
    step = TrainConfig(learning_rate=1.0, lr_schedule="step", lr_step_every=2, lr_step_factor=0.1)
    assert [learning_rate(step, e) for e in range(5)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert learning_rate(TrainConfig(learning_rate=0.3, lr_schedule="none"), 7) == 0.3


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    a = epoch_order(1, 3, 1000, shuffle=True)
    assert sorted(a.tolist()) == list(range(1000))
    np.testing.assert_array_equal(a, epoch_order(1, 3, 1000, shuffle=True))
    assert not np.array_equal(a, epoch_order(1, 4, 1000, shuffle=True))
    assert not np.array_equal(a, epoch_order(2, 3, 1000, shuffle=True))
    np.testing.assert_array_equal(epoch_order(1, 3, 5, shuffle=False), np.arange(5))


def test_first_signal_requests_a_stop_and_a_second_aborts_at_once() -> None:
    import os
    import signal

    from mnist_rnn.loop import StopRequest, graceful_signals

    stop = StopRequest()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), graceful_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM  # first: only a request
        os.kill(os.getpid(), signal.SIGINT)  # second: abort
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored


def test_an_injected_stop_fires_at_its_step_and_a_signal_at_once() -> None:
    import signal

    from mnist_rnn.loop import StopRequest

    injected = StopRequest(after_step=21, injected_signum=signal.SIGTERM)
    assert not injected.requested(20) and injected.signum is None
    assert injected.requested(24) and injected.signum == signal.SIGTERM
    signalled = StopRequest(signum=signal.SIGINT, after_step=99)
    assert signalled.requested(1) and signalled.signum == signal.SIGINT  # a real signal is not replaced
    assert not StopRequest().requested(10**9)


@pytest.mark.parametrize(
    ("overrides", "n", "expected"),
    [
        ({}, 1000, (1000, 1, 8, None)),  # a partial last batch is a step
        ({"stateful": True}, 1000, (896, 1, 7, None)),  # stateful drops the remainder
        ({"stateful": True, "reset_states": 3}, 1000, (896, 1, 7, 3)),
    ],
)
def test_epoch_shape(overrides: dict, n: int, expected: tuple) -> None:
    from mnist_rnn.loop import EpochShape

    shape = EpochShape.of(TrainConfig(batch_size=128, **overrides), n, 28, None)
    assert (shape.images_used, shape.chunks, shape.steps, shape.reset_every) == expected
    chunked = EpochShape.of(TrainConfig(batch_size=128, stateful=True), n, 784, 28)
    assert (chunked.chunks, chunked.steps, chunked.reset_every) == (28, 7 * 28, 28)


def test_training_state_keeps_the_checkpoint_keys_of_earlier_releases() -> None:
    from mnist_rnn.state import TrainingState

    state = TrainingState(seed=3, epoch=2, best=0.9, best_epoch=1, epochs_without_improvement=1)
    saved = state.to_json()
    assert saved["stale"] == 1 and "epochs_without_improvement" not in saved
    assert TrainingState.from_json(saved, seed=0) == state  # the checkpoint's seed wins
    old = {"epoch": 4, "stale": 2, "seed": 5, "a_key_from_the_future": 1}
    assert TrainingState.from_json(old, seed=0) == TrainingState(
        seed=5, epoch=4, epochs_without_improvement=2
    )


def test_end_epoch_tracks_the_best_and_the_patience_counter() -> None:
    from mnist_rnn.state import TrainingState

    state = TrainingState(seed=0, step=5, metric_state=[1.0])
    assert state.end_epoch({"epoch": 1}, 0.5, 2.0)
    assert not state.end_epoch({"epoch": 2}, 0.5, 3.0)  # equal is not better
    assert state.end_epoch({"epoch": 3}, 0.7, 1.0)
    assert not state.end_epoch({"epoch": 4}, 0.6, 1.0)
    assert (state.best, state.best_epoch, state.epochs_without_improvement) == (0.7, 3, 1)
    assert (state.epoch, state.step, state.metric_state, state.fit_seconds) == (4, 0, None, 7.0)
    assert [row["epoch"] for row in state.history] == [1, 2, 3, 4]


def test_an_extended_schedule_keeps_the_planned_epochs_and_holds_or_restarts() -> None:
    """A 4-epoch cosine run trained to 6, then to 8: the planned rates never change; `hold` trains the
    added epochs at the last planned rate, `restart` runs the cosine again over the added epochs."""
    planned = [1.0, 0.853553, 0.5, 0.146447]
    for extend, added in (("hold", [0.146447] * 2), ("restart", [1.0, 0.5])):
        cfg = TrainConfig(epochs=4, learning_rate=1.0, lr_schedule="cosine", lr_extend=extend)
        schedule = planned_schedule(cfg)
        assert extend_schedule(schedule, cfg) == schedule  # not extended: nothing added
        longer = cfg.model_copy(update={"epochs": 6})
        schedule = extend_schedule(schedule, longer)
        rates = [learning_rate(longer, e, schedule) for e in range(6)]
        assert rates == pytest.approx(planned + added, rel=1e-5)
    # hold, then restart: the held epochs keep their rate, the restart starts after them
    cfg = TrainConfig(epochs=4, learning_rate=1.0, lr_schedule="cosine")
    held = extend_schedule(planned_schedule(cfg), cfg.model_copy(update={"epochs": 6}))
    both = extend_schedule(held, cfg.model_copy(update={"epochs": 8, "lr_extend": "restart"}))
    assert [learning_rate(cfg, e, both) for e in range(8)] == pytest.approx(
        planned + [0.146447] * 2 + [1.0, 0.5], rel=1e-5
    )
