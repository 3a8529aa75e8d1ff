"""`mnist-rnn serve`: classify a person's digit over HTTP, with a page to draw one.

    GET  /          a page: draw a digit, see the class, the probabilities, what the network saw (28x28),
                    and the class probabilities after each row the recurrent network has read
    POST /predict   a PNG/JPEG upload (multipart field `file`, or the raw bytes with an image/* type), or
                    JSON {"image": 28x28 numbers 0..255, white on black}; `?steps=true` adds the per-row
                    probabilities; `?invert=` and `?normalize=` as `mnist-rnn predict`'s flags
    GET  /healthz   liveness, and what is served

The same preprocessing (`images.prepare_digit`) and the same predictor (`trained.open_model`) as
`mnist-rnn predict`, so the two return identical probabilities for the same file (to float rounding when
the request shares a model call with others: `Batcher`). Bad input is a 4xx with
{"error": "..."}; a body over MAX_UPLOAD_BYTES is refused with 413 before it is read into memory.
FastAPI and uvicorn come with the `serve` extra; only the CLI's `serve` command imports this module.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnist_rnn.errors import ConfigError, DataError, ImageTooLarge, MnistRnnError, RunError, UsageError
from mnist_rnn.images import pixel_count, prepare_digit
from mnist_rnn.layouts import READ_ORDER, READ_PER_CALL, make_sequences
from mnist_rnn.mnist import IMAGE_SHAPE
from mnist_rnn.trained import Predictor, open_model

MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # a phone photo of a digit fits; a 50 MB upload is refused unread
MAX_BATCH = 64  # requests answered by one model call at most (`--max-batch`; 1: one call per request)
# A picture up to this size is prepared in the event loop, at once: the page's 280x280 drawing takes ~2 ms,
# a 200x68 one 0.6 ms, and under load the hops to a worker thread and back cost as much while the threads
# fought the loop for the GIL (the preparation holds it anyway). Larger pictures (640x480: ~6 ms, up to
# MAX_PIXELS) go to a thread, so that a big photo does not hold every other request back.
INLINE_PIXELS = 300 * 300
BATCHES_KEPT = 1000  # how many call sizes `Batcher.batches` remembers
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp", "application/octet-stream")


class Batcher:
    """One model call for every request that arrived while the previous call ran.

    A request alone is answered at once, as a batch of one; under load the requests that queue up during a
    call go together into the next one (at most `max_batch`), so the model's fixed cost per call is paid
    once per batch, not per request. By default no request waits for a batch to fill; `max_wait_ms` holds
    a batch open that long for more. Calls are made one at a time, from a worker thread.
    """

    def __init__(self, predict: Predictor, max_batch: int, max_wait_ms: float = 0.0) -> None:
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] | None = None
        self._task: asyncio.Task[None] | None = None
        # The sizes of the latest calls, for tests and a person looking; bounded, as a server runs for months.
        self.batches: deque[int] = deque(maxlen=BATCHES_KEPT)

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (1, steps, features) -> its row of the predictor's output (its probabilities, or per row)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None:  # a new event loop (a test client's): start anew
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._serve(self._queue))  # held: the loop keeps only a weak one
        answer: asyncio.Future[np.ndarray] = loop.create_future()
        self._queue.put_nowait((x, answer))
        return await answer

    async def _serve(self, queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]]) -> None:
        while True:
            waiting = [await queue.get()]
            deadline = asyncio.get_running_loop().time() + self.max_wait
            while len(waiting) < self.max_batch:
                if not queue.empty():
                    waiting.append(queue.get_nowait())
                    continue
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:  # --batch-wait-ms: hold the batch open a little for requests about to arrive
                    waiting.append(await asyncio.wait_for(queue.get(), left))
                except TimeoutError:
                    break
            self.batches.append(len(waiting))
            try:
                probs = await run_in_threadpool(self.predict, np.concatenate([x for x, _ in waiting]))
            except Exception as exc:  # every request of the batch hears it
                for _, answer in waiting:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), row in zip(waiting, probs, strict=True):
                if not answer.done():  # a client that went away has cancelled its answer
                    answer.set_result(row)


class Classifier:
    """A run's best checkpoint (or an export's artefact) and, for a run, its streaming twin: both made from
    one load of the checkpoint (`trained.open_model`)."""

    def __init__(self, source: Path, max_batch: int = MAX_BATCH, max_wait_ms: float = 0.0) -> None:
        model = open_model(source)
        # fixed-row XLA calls (trained.CALL_ROWS): a request's answer has the same bits alone or in company
        self.batcher = Batcher(model.predictor(), max_batch, max_wait_ms)
        self.layout, self.described = model.layout, model.described
        # `steps`: the probabilities after each row, batched like the answers (requests share its calls)
        self.steps_batcher: Batcher | None = None
        try:
            self.every_step = model.every_step()
            self.steps_batcher = Batcher(self.every_step, max_batch, max_wait_ms)
            self.streaming_note = f"probabilities after each of the 28 {READ_PER_CALL[self.layout]}"
        except MnistRnnError as exc:  # an export, a mean head or a bidirectional model cannot stream
            self.streaming_note = str(exc)

    async def classify(self, image: np.ndarray, steps: bool) -> dict[str, Any]:
        """image (28, 28) uint8 -> class, confidence, probabilities (and per-row probabilities)."""
        x = make_sequences(image[None], self.layout)  # (1, steps, features), exactly as predict feeds it
        probs = await self.batcher(x)
        per_row = await self.steps_batcher(x) if steps and self.steps_batcher is not None else None
        result: dict[str, Any] = {
            "class": int(probs.argmax()),
            "confidence": float(probs.max()),
            "probabilities": [float(p) for p in probs],
            "image": image.tolist(),  # what the network saw
        }
        if steps:
            result["steps"] = None if per_row is None else [[float(p) for p in row] for row in per_row]
        return result


def create_app(
    source: Path,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = 0.0,
) -> FastAPI:
    """The server for a run directory or an export folder (the model is loaded here, once)."""
    classifier = Classifier(source, max_batch, max_wait_ms)
    app = FastAPI(title="mnist-rnn", docs_url=None, redoc_url=None)
    app.state.classifier = classifier  # for tests and scripts that look at its batches
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    _error_handlers(app)
    page = resources.files("mnist_rnn.static").joinpath("index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": classifier.described,
            "layout": str(classifier.layout),
            "reads": READ_ORDER[classifier.layout],
            "read_per_call": READ_PER_CALL[classifier.layout],
            "streaming": classifier.steps_batcher is not None,
            "streaming_note": classifier.streaming_note,
        }

    @app.post("/predict")
    async def predict(
        request: Request, steps: bool = False, invert: bool | None = None, normalize: bool = True
    ) -> JSONResponse:
        image = await read_digit(request, invert, normalize, max_upload_bytes)
        # Plain JSON of plain numbers: FastAPI's own encoder walks the 784 pixels one by one (1.9 ms a
        # request, in the event loop, measured; json.dumps takes 0.1 ms).
        return JSONResponse(await classifier.classify(image, steps))

    return app


async def read_digit(
    request: Request, invert: bool | None, normalize: bool, max_bytes: int = MAX_UPLOAD_BYTES
) -> np.ndarray:
    """The request's picture as the (28, 28) uint8 image the model reads."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return _json_digit(await request.body())
    if kind == "multipart/form-data":
        form = await request.form(max_part_size=max_bytes)  # BodyLimit bounds the whole body too
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "send the picture as the multipart form field 'file'")
        data, name = await upload.read(), upload.filename or "upload"
    elif kind in IMAGE_TYPES:
        data, name = await request.body(), "body"
    else:
        raise HTTPException(
            415, f"unsupported content type {kind or '(none)'}; send image/png, image/jpeg, "
            "multipart/form-data with a 'file' field, or application/json",
        )  # fmt: skip
    pixels = pixel_count(data)
    if pixels is not None and pixels <= INLINE_PIXELS:  # at once: a hop to a thread costs more than this
        return prepare_digit(data, invert, normalize, name)
    return await run_in_threadpool(prepare_digit, data, invert, normalize, name)


def _json_digit(body: bytes) -> np.ndarray:
    """{"image": 28x28} (or the bare array): MNIST-like already, so used as it is, like IDX input."""
    try:
        data = json.loads(body)
        pixels = np.asarray(data["image"] if isinstance(data, dict) else data, dtype=np.float64)
    except (ValueError, KeyError, TypeError):
        raise HTTPException(400, 'the JSON must be {"image": [[28 numbers] x 28]}, values 0..255') from None
    if pixels.shape != IMAGE_SHAPE or not np.isfinite(pixels).all():
        raise HTTPException(422, f"the image must be 28x28 finite numbers, got shape {list(pixels.shape)}")
    if pixels.min() < 0 or pixels.max() > 255:
        raise HTTPException(422, "pixel values must lie in 0..255 (white digit on black, as MNIST)")
    return np.round(pixels).astype(np.uint8)


def _error_handlers(app: FastAPI) -> None:
    """Every error is JSON {"error": "..."}: bad input a 4xx naming the problem, never a traceback."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=422)

    @app.exception_handler(MnistRnnError)
    async def domain(request: Request, exc: MnistRnnError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=http_status(exc))


# The one mapping of domain errors to HTTP statuses: the request's fault is a 4xx, the server's a 500.
HTTP_STATUSES: dict[type[MnistRnnError], int] = {
    ImageTooLarge: 413,
    DataError: 422,
    UsageError: 422,
    ConfigError: 422,
    RunError: 422,
}


def http_status(exc: MnistRnnError) -> int:
    """The HTTP status for a domain error (`HTTP_STATUSES`, through its bases; 500 if none is named)."""
    return next((HTTP_STATUSES[c] for c in type(exc).__mro__ if c in HTTP_STATUSES), 500)


class BodyLimit:
    """Refuse a request body over `max_bytes` with 413: at once from its Content-Length, else as soon as
    the streamed body passes the limit, so an oversized upload is never held in memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse(self._message(), status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self._message()["error"])
            return message

        await self.app(scope, limited, send)

    def _message(self) -> dict[str, str]:
        return {"error": f"request body over {self.max_bytes // 1024} KiB; send a smaller picture"}
