"""Domain errors carry no exit codes: the CLI maps them in one place (`cli/app.exit_code`), the server in
one place (`serve.http_status`), and every error class has its code there."""

from __future__ import annotations

import inspect
import signal

import pytest

from mnist_rnn import errors
from mnist_rnn.cli.app import EXIT_CODES, exit_code

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.MnistRnnError)]


def test_no_error_class_carries_an_exit_code() -> None:
    assert not [c.__name__ for c in CLASSES if "exit_code" in vars(c)]


@pytest.mark.parametrize("cls", [c for c in CLASSES if c not in (errors.MnistRnnError, errors.Interrupted)])
def test_every_error_class_is_mapped_to_the_readme_codes(cls: type[errors.MnistRnnError]) -> None:
    mapped = [base for base in cls.__mro__ if base in EXIT_CODES]
    assert mapped, f"{cls.__name__} has no exit code in cli/app.EXIT_CODES"
    usage = (errors.ConfigError, errors.UsageError, errors.DataError, errors.RunError, errors.DeviceError)
    assert exit_code(cls("x")) == (2 if issubclass(cls, usage) else 1)


def test_an_interrupted_run_exits_128_plus_its_signal() -> None:
    assert exit_code(errors.Interrupted("x", signal.SIGINT)) == 130
    assert exit_code(errors.Interrupted("x", signal.SIGTERM)) == 143


def test_the_server_maps_the_requests_fault_to_4xx_and_its_own_to_500() -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnist-rnn[serve]'")
    from mnist_rnn.serve import http_status

    assert http_status(errors.ImageTooLarge("x")) == 413
    assert http_status(errors.DataError("x")) == http_status(errors.UsageError("x")) == 422
    assert http_status(errors.TrainingError("x")) == http_status(errors.ExportError("x")) == 500
