"""Domain errors. Each carries a message a user can act on; only cli.py turns them into exit codes."""


class MnistRnnError(Exception):
    """Base class. `exit_code` follows the README: 1 runtime failure, 2 bad usage or input; a raise site
    may override the class's code (an interrupted run's depends on the signal)."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(MnistRnnError):
    """The configuration (file, --set override or a combination of keys) is invalid."""

    exit_code = 2


class DataError(MnistRnnError):
    """MNIST could not be read: a missing, truncated or corrupt file, or an unavailable source."""

    exit_code = 2


class ImageTooLarge(DataError):
    """A picture whose header says it decodes to more pixels than the bound (`images.MAX_PIXELS`)."""


class RunError(MnistRnnError):
    """A run directory is unusable: not empty when it must be, missing a checkpoint, not a run."""

    exit_code = 2


class DeviceError(MnistRnnError):
    """The requested device is not available (e.g. `train.device: gpu` on a machine without one)."""

    exit_code = 2


class TrainingError(MnistRnnError):
    """Training failed at run time (e.g. the loss became NaN); the last good checkpoint is kept."""

    exit_code = 1


class Interrupted(MnistRnnError):
    """Training stopped on SIGINT (exit 130) or SIGTERM (exit 143) after saving what it had."""


class ExportError(MnistRnnError):
    """An export could not be written, or its artefact disagrees with the trained model (exit 1); a bad
    request (unknown format, missing extra) is raised with exit_code=2."""
