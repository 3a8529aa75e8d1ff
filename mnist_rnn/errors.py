"""Domain errors. Each carries a message a user can act on and says what went wrong, never how to exit:
the CLI turns them into exit codes in one place (`cli/app.exit_code`), the server into HTTP statuses in
one place (`serve.http_status`)."""


class MnistRnnError(Exception):
    """Base class: a failure the user can act on, reported as one line."""


class ConfigError(MnistRnnError):
    """The configuration (file, --set override or a combination of keys) is invalid."""


class UsageError(MnistRnnError):
    """A command was asked for something it cannot do as asked: an unknown export format, an option that
    does not apply, an optional extra that is not installed."""


class DataError(MnistRnnError):
    """MNIST or a person's picture could not be read: a missing, truncated or corrupt file, or an
    unavailable source."""


class ImageTooLarge(DataError):
    """A picture whose header says it decodes to more pixels than the bound (`images.MAX_PIXELS`)."""


class RunError(MnistRnnError):
    """A run directory (or an export folder) is unusable: not empty when it must be, missing a checkpoint,
    not a run."""


class DeviceError(MnistRnnError):
    """The requested device is not available (e.g. `train.device: gpu` on a machine without one)."""


class TrainingError(MnistRnnError):
    """Training failed at run time (e.g. the loss became NaN); the last good checkpoint is kept."""


class Interrupted(MnistRnnError):
    """Training stopped on a signal (SIGINT, SIGTERM) after saving what it had; `signum` says which."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = int(signum)


class ExportError(MnistRnnError):
    """An export was written but its artefact disagrees with the trained model (the parity check)."""
