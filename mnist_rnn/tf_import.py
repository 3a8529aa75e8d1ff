"""Import TensorFlow once, quietly.

TensorFlow's C++ runtime prints start-up lines (oneDNN notice, "could not find cuda drivers", a cuInit
failure on CPU-only machines) to file descriptor 2 before its logging is configured, so
TF_CPP_MIN_LOG_LEVEL cannot hide them. They are noise to a user of this tool; real failures still raise
Python exceptions. `--debug` (or MNIST_RNN_TF_LOGS=1) keeps them.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from mnist_rnn.memory import keep_freed_memory


def import_tensorflow(verbose: bool = False) -> ModuleType:
    keep_freed_memory()  # before TensorFlow's first allocation (memory.py says why)
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    from mnist_rnn.cpu import capped_env, planned_xla_flags  # XLA reads its flags once, from the environment

    os.environ["XLA_FLAGS"] = planned_xla_flags(os.environ.get("XLA_FLAGS", ""))
    for name, value in capped_env().items():  # a user's own setting stays theirs
        os.environ.setdefault(name, value)
    verbose = verbose or os.environ.get("MNIST_RNN_TF_LOGS") == "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    if verbose:
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        # The first device query initialises CUDA, which logs a cuInit failure on CPU-only machines.
        tensorflow.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow
