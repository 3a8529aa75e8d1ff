"""Pure pieces of training and evaluation: scores, the learning-rate schedules, the epoch order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mnist_rnn.config import TrainConfig
from mnist_rnn.evaluate import scores_from_probabilities
from mnist_rnn.train import epoch_order, learning_rate


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

    from mnist_rnn.train import _graceful_signals, _StopRequest

    stop = _StopRequest()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _graceful_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM  # first: only a request
        os.kill(os.getpid(), signal.SIGINT)  # second: abort
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
