"""`mnist-rnn serve`: an HTTP endpoint and a drawing page for a run or an export (the `serve` extra)."""

from __future__ import annotations

import errno
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from mnist_rnn.cli.app import app, err_console, run, state
from mnist_rnn.errors import RunError, UsageError
from mnist_rnn.tf_import import import_tensorflow

GRACE_SECONDS = 30


def _check_port(host: str, port: int) -> None:
    """Fail with one line before loading the model if the address cannot be bound."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        raise RunError(f"{host}:{port} {reason}; pass another --port (or --host)") from None


def _serve(source: Path, host: str, port: int, batching: tuple[int, float]) -> None:
    try:
        import uvicorn

        from mnist_rnn.serve import create_app
    except ImportError:
        raise UsageError(
            "serve needs the serve extra; install it with: pip install 'mnist-rnn[serve]'"
        ) from None
    if not source.exists():
        raise RunError(f"{source}: no such run directory or export folder")
    _check_port(host, port)
    import_tensorflow(state["debug"])
    server = create_app(source, max_batch=batching[0], max_wait_ms=batching[1])
    shown = f"[{host}]" if ":" in host else host
    err_console.print(
        f"serving {source} on http://{shown}:{port}/ (POST /predict, GET /healthz); Ctrl-C stops it",
        highlight=False,
        markup=False,
    )
    # SIGTERM or Ctrl-C: stop accepting, answer every request already accepted (for at most GRACE_SECONDS:
    # a stuck client cannot hold the shutdown), then exit 0.
    with _stop_quietly():
        uvicorn.run(
            server, host=host, port=port, log_level="warning", timeout_graceful_shutdown=GRACE_SECONDS
        )
    err_console.print("stopped", highlight=False, markup=False)


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
) -> None:
    """Serve a model over HTTP: a drawing page (GET /), POST /predict and GET /healthz.

    POST /predict takes a PNG/JPEG upload (multipart field `file`) or JSON {"image": 28x28 values 0..255}
    and answers with the class, its confidence and the ten probabilities, through the same preprocessing
    and model as `mnist-rnn predict`; `?steps=true` adds the probabilities after each 28th of the
    sequence (each image row, for layout rows). SIGTERM or Ctrl-C stops it after answering the requests it
    has accepted (at most 30 s), exit 0. Requests that arrive while the model is busy are answered
    together by its next call (--max-batch, --batch-wait-ms).
    """
    run(_serve, source, host, port, (max_batch, batch_wait_ms))
