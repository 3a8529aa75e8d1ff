"""`mnist-rnn serve`: an HTTP endpoint and a drawing page for a run or an export (the `serve` extra)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from mnist_rnn.cli.app import app, err_console, run, state
from mnist_rnn.errors import RunError, UsageError
from mnist_rnn.tf_import import import_tensorflow
from mnist_rnn.trained import TrainedRun, open_model

GRACE_SECONDS = 30
SETTINGS_ENV = "MNIST_RNN_SERVE"  # how `serve --workers N` hands its settings to each worker process
WORKER_FAILED = 3  # uvicorn's STARTUP_FAILURE: a worker that exits with it stops the parent, not restarted


def _check_port(host: str, port: int) -> None:
    """Fail with one line before loading the model if the address cannot be bound."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        raise RunError(f"{host}:{port} {reason}; pass another --port (or --host)") from None


def _serve(source: Path, host: str, port: int, batching: tuple[int, float], workers: int) -> None:
    try:
        import uvicorn

        from mnist_rnn.serve import create_app
    except ImportError:
        raise UsageError(
            "serve needs the serve extra; install it with: pip install 'mnist-rnn[serve]'"
        ) from None
    model = open_model(source)  # a missing run or checkpoint fails here, before any worker starts
    if isinstance(model, TrainedRun):
        _ = model.path  # its checkpoint folder, a RunError if there is none
    _check_port(host, port)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "timeout_graceful_shutdown": GRACE_SECONDS,
        # asyncio's own loop even where uvloop is installed: under uvloop, requests sent just before a
        # SIGTERM were reset instead of answered (tests/e2e/test_serve.py's SIGTERM test fails with it).
        "loop": "asyncio",
    }
    if workers == 1:
        import_tensorflow(state["debug"])
        app = create_app(source, max_batch=batching[0], max_wait_ms=batching[1])
        config = uvicorn.Config(app, **options)
    else:  # each worker, a fresh process (spawn), imports the factory by name
        config = uvicorn.Config(
            f"{__name__}:{_worker_app.__name__}", factory=True, workers=workers, **options
        )
    shown = f"[{host}]" if ":" in host else host
    err_console.print(
        f"serving {source} on http://{shown}:{port}/ (POST /predict, GET /healthz"
        f"{'' if workers == 1 else f'; {workers} worker processes'}); Ctrl-C stops it",
        highlight=False,
        markup=False,
    )
    # SIGTERM or Ctrl-C: stop accepting, answer every request already accepted (for at most GRACE_SECONDS:
    # a stuck client cannot hold the shutdown), then exit 0. With workers, uvicorn's parent passes SIGTERM
    # on to each, and each drains its own requests that way.
    with _stop_quietly():
        if workers == 1:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:
                raise RunError(f"{host}:{port} could not be served (the reason is above)")
        else:
            _supervise(config, {"source": str(source), "debug": state["debug"], "batching": batching})
    err_console.print("stopped", highlight=False, markup=False)


def _supervise(config: Any, settings: dict[str, Any]) -> None:
    """uvicorn's parent process over the config's worker processes. The settings reach each worker through the
    environment; a worker that cannot start writes why to a file, which becomes this process's one line."""
    from uvicorn.supervisors import Multiprocess

    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # its "failed to start": we say why
    with tempfile.TemporaryDirectory(prefix="mnist-rnn-serve-") as folder:
        failure = Path(folder) / "failure.txt"
        os.environ[SETTINGS_ENV] = json.dumps({**settings, "failure": str(failure)})
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        if failure.exists():  # each worker that failed wrote the same line
            raise RunError(failure.read_text(encoding="utf-8"))


def _worker_app() -> Any:
    """uvicorn's app factory in each worker process of `serve --workers N`: the server for the settings
    `_serve` put in SETTINGS_ENV. A worker that cannot load the model says why in one line and exits with
    WORKER_FAILED, which stops the parent: a restart would fail the same way."""
    from mnist_rnn.serve import create_app

    settings = json.loads(os.environ[SETTINGS_ENV])
    try:
        import_tensorflow(settings["debug"])
        max_batch, max_wait_ms = settings["batching"]
        return create_app(Path(settings["source"]), max_batch=max_batch, max_wait_ms=max_wait_ms)
    except Exception as exc:
        if settings["debug"]:
            traceback.print_exc()
        Path(settings["failure"]).write_text(str(exc), encoding="utf-8")
        raise SystemExit(WORKER_FAILED) from None


@contextmanager
def _stop_quietly() -> Iterator[None]:
    """uvicorn (0.29 and later) raises the signal that stopped it again once it has shut down, with the
    handlers it found: the process would then die by SIGTERM (or a KeyboardInterrupt, exit 130) after a
    clean stop. With these no-op handlers in place the signal ends uvicorn's shutdown and nothing more."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command(
    "serve",
    epilog=(
        "Examples:\n\n"
        "  mnist-rnn serve runs/try1                       # then open http://127.0.0.1:8000/\n\n"
        "  mnist-rnn serve runs/try1/export/onnx --port 9000\n\n"
        "  curl -F file=@digit.png http://127.0.0.1:8000/predict"
    ),
)
def serve_command(
    source: Annotated[Path, typer.Argument(help="A run directory (best checkpoint) or an export folder.")],
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; 0.0.0.0 makes it reachable from other machines.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch", min=1, help="Requests answered by one model call at most (1: one call each)."
        ),
    ] = 64,  # serve.MAX_BATCH (the CLI imports FastAPI only to serve)
    batch_wait_ms: Annotated[
        float,
        typer.Option("--batch-wait-ms", min=0, help="Hold a batch open this long for more requests."),
    ] = 0.0,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Server processes, each with its own copy of the model (~0.75 GB) and its own batches: "
            "one process's Python uses one core, so 2 on a 2-core machine answers more requests under load.",
        ),
    ] = 1,
) -> None:
    """Serve a model over HTTP: a drawing page (GET /), POST /predict and GET /healthz.

    POST /predict takes a PNG/JPEG upload (multipart field `file`) or JSON {"image": 28x28 values 0..255}
    and answers with the class, its confidence and the ten probabilities, through the same preprocessing
    and model as `mnist-rnn predict`; `?steps=true` adds the probabilities after each 28th of the
    sequence (each image row, for layout rows). SIGTERM or Ctrl-C stops it after answering the requests it
    has accepted (at most 30 s), exit 0. Requests that arrive while the model is busy are answered
    together by its next call (--max-batch, --batch-wait-ms).
    """
    run(_serve, source, host, port, (max_batch, batch_wait_ms), workers)
