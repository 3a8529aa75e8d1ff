"""mnist-rnn: recurrent networks on sequential MNIST, from a YAML config to a served artefact."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mnist-rnn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
