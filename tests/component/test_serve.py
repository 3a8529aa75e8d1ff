"""The HTTP app in-process (FastAPI's TestClient): the same numbers as `predict`, per-row probabilities,
and every kind of bad input a 4xx with a JSON error."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnist-rnn[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from mnist_rnn.serve import create_app  # noqa: E402

DIGITS = Path(__file__).resolve().parents[1] / "data" / "digits"


@pytest.fixture(scope="module")
def client(smoke_run: Path) -> TestClient:
    return TestClient(create_app(smoke_run, max_upload_bytes=64 * 1024))


def _png(tmp_path: Path, scale: int = 1) -> Path:
    path = tmp_path / "three.png"
    image = Image.new("L", (90, 120), 255)  # a dark digit on light paper, not square
    image.paste(0, (30, 20, 60, 28))
    image.paste(0, (52, 20, 60, 100))
    image.paste(0, (30, 56, 60, 64))
    image.paste(0, (30, 92, 60, 100))
    image.resize((90 * scale, 120 * scale)).save(path)
    return path


def test_healthz_says_what_is_served(client: TestClient, smoke_run: Path) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["streaming"] is True and health["layout"] == "rows"
    assert health["model"] == f"checkpoint best of {smoke_run.name}"
    assert str(smoke_run.parent) not in json.dumps(health)  # the run by its folder name, not a path


@pytest.mark.parametrize("scale", [1, 5])  # prepared in the event loop; in a worker thread (INLINE_PIXELS)
def test_an_upload_gets_the_same_probabilities_as_predict(
    client: TestClient, smoke_run: Path, tmp_path: Path, scale: int
) -> None:
    from mnist_rnn.predict import predict_files
    from mnist_rnn.serve import INLINE_PIXELS

    path = _png(tmp_path, scale)
    assert (90 * scale * 120 * scale > INLINE_PIXELS) == (scale > 1)
    (expected,), errors, _ = predict_files(smoke_run, [path])
    assert not errors
    with open(path, "rb") as f:
        uploaded = client.post("/predict", files={"file": ("three.png", f, "image/png")})
    assert uploaded.status_code == 200, uploaded.text
    body = uploaded.json()
    assert body["probabilities"] == expected.probabilities  # identical, not just close
    assert body["class"] == expected.label and body["confidence"] == expected.confidence
    raw = client.post("/predict", content=path.read_bytes(), headers={"content-type": "image/png"})
    assert raw.json()["probabilities"] == expected.probabilities
    assert np.asarray(body["image"]).shape == (28, 28)  # what the network saw


def test_steps_give_the_probabilities_after_each_row_ending_on_the_answer(
    client: TestClient, tmp_path: Path
) -> None:
    with open(_png(tmp_path), "rb") as f:
        body = client.post("/predict?steps=true", files={"file": ("d.png", f, "image/png")}).json()
    steps = np.asarray(body["steps"])
    assert steps.shape == (28, 10)
    np.testing.assert_allclose(steps.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(steps[-1], body["probabilities"], atol=1e-5)  # all rows read = the answer
    assert not np.allclose(steps[0], steps[-1], atol=1e-3)  # the rows read change the belief


def test_a_json_array_is_used_as_mnist_like_input(client: TestClient, smoke_run: Path) -> None:
    from mnist_rnn.data import load_embedded
    from mnist_rnn.layouts import make_sequences
    from mnist_rnn.trained import open_model

    digit = load_embedded()["test_images"][0]
    body = client.post("/predict", json={"image": digit.tolist()}).json()
    model = open_model(smoke_run)
    predictor = model.predictor()  # predict's and serve's path: the same bits
    np.testing.assert_array_equal(
        body["probabilities"], predictor(make_sequences(digit[None], model.layout))[0]
    )
    assert np.array_equal(body["image"], digit)  # not normalised: it is MNIST already


def _blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (50, 50), 255).save(buffer, format="PNG")
    return buffer.getvalue()


BAD = {
    "json not json": ({"content": b"{oops", "headers": {"content-type": "application/json"}}, 400),
    "json wrong shape": ({"json": {"image": [[0] * 28] * 27}}, 422),
    "json out of range": ({"json": {"image": [[300] * 28] * 28}}, 422),
    "json no image key": ({"json": {"picture": 1}}, 400),
    "not an image": ({"files": {"file": ("notes.txt", b"hello", "image/png")}}, 422),
    "blank picture": ({"files": {"file": ("blank.png", _blank_png(), "image/png")}}, 422),
    "no file field": ({"files": {"other": ("x.png", b"x", "image/png")}}, 422),
    "unsupported type": ({"content": b"7", "headers": {"content-type": "text/plain"}}, 415),
    "declared too large": ({"content": b"x" * (65 * 1024), "headers": {"content-type": "image/png"}}, 413),
    "bad query": ({"json": {"image": [[0] * 28] * 28}, "params": {"steps": "maybe"}}, 422),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_with_a_json_error(client: TestClient, case: str) -> None:
    kwargs, status = BAD[case]
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and error and "Traceback" not in error


def test_a_streamed_body_over_the_limit_is_cut_off(client: TestClient) -> None:
    def chunks():  # no Content-Length: the limit must act on the bytes as they arrive
        for _ in range(100):
            yield b"x" * 4096

    response = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413 and "over 64 KiB" in response.json()["error"]


def test_the_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<canvas id="pad"' in page.text and "predict?steps=true" in page.text


def test_an_export_folder_serves_without_a_row_chart(smoke_run: Path, tmp_path: Path) -> None:
    from mnist_rnn.export import export_run

    export_run(smoke_run, "keras", out=tmp_path / "keras")
    client = TestClient(create_app(tmp_path / "keras"))
    health = client.get("/healthz").json()
    assert health["streaming"] is False and "need a run directory" in health["streaming_note"]
    with open(_png(tmp_path), "rb") as f:
        body = client.post("/predict?steps=true", files={"file": ("d.png", f, "image/png")}).json()
    assert body["steps"] is None and len(body["probabilities"]) == 10
    # the artefact's answer is a proper distribution whose top class is the one reported
    probabilities = body["probabilities"]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4) and min(probabilities) >= 0
    assert body["class"] == probabilities.index(max(probabilities))
    assert body["confidence"] == pytest.approx(max(probabilities))


def _bomb(tmp_path: Path, side: int = 10_001) -> Path:
    """A PNG of a few tens of KB whose header says over 100 Mpx (one bit per pixel, all white)."""
    path = tmp_path / "bomb.png"
    Image.new("1", (side, side), 1).save(path, optimize=True)
    return path


def test_a_picture_over_the_pixel_bound_is_413_from_its_header(client: TestClient, tmp_path: Path) -> None:
    """Refused before decoding: fast, and the server's memory does not grow by the decoded size."""
    import resource
    import time

    bomb = _bomb(tmp_path)
    assert bomb.stat().st_size < 64 * 1024  # under the upload limit: only the pixel bound can stop it
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    answer = client.post("/predict", content=bomb.read_bytes(), headers={"content-type": "image/png"})
    elapsed = time.perf_counter() - start
    assert answer.status_code == 413, answer.text
    assert "10001x10001 pixels is over the limit" in answer.json()["error"]
    assert elapsed < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 100 * 1024


def test_predict_names_the_oversized_file_and_classifies_the_rest(smoke_run: Path, tmp_path: Path) -> None:
    from mnist_rnn.predict import predict_files

    predictions, errors, _ = predict_files(smoke_run, [_bomb(tmp_path), _png(tmp_path)])
    assert [p.file for p in predictions] == [str(tmp_path / "three.png")]
    assert len(errors) == 1 and str(errors[0]).startswith(f"{tmp_path / 'bomb.png'}: 10001x10001 pixels")


def _post_together(app: Any, path: str, pictures: list[Path]) -> list[Any]:
    """Post every picture to `path` at once, through the app's own ASGI interface (one event loop)."""
    import asyncio

    import httpx

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            headers = {"content-type": "image/png"}
            sends = [http.post(path, content=p.read_bytes(), headers=headers) for p in pictures]
            return list(await asyncio.gather(*sends))

    return asyncio.run(send_all())


def _post_one_by_one(app: Any, path: str, pictures: list[Path]) -> list[Any]:
    """Post the pictures one after another: each request is alone in its model call."""
    with TestClient(app) as client:
        headers = {"content-type": "image/png"}
        return [client.post(path, content=p.read_bytes(), headers=headers) for p in pictures]


@pytest.mark.parametrize("steps", [False, True], ids=["answers", "steps"])
def test_requests_that_arrive_together_share_model_calls_and_keep_their_own_answers(
    smoke_run: Path, steps: bool
) -> None:
    from mnist_rnn.images import prepare_digit
    from mnist_rnn.layouts import make_sequences
    from mnist_rnn.trained import TrainedRun

    pictures = sorted(DIGITS.glob("*.png"))[:24]
    app = create_app(smoke_run)
    classifier = app.state.classifier
    batcher = classifier.steps_batcher if steps else classifier.batcher
    responses = _post_together(app, "/predict?steps=true" if steps else "/predict", pictures)
    assert [r.status_code for r in responses] == [200] * len(pictures)
    assert sum(batcher.batches) == len(pictures) and max(batcher.batches) > 1  # some calls were shared
    run = TrainedRun.open(smoke_run)
    predictor, streamer = run.predictor(), run.streamer()  # one picture alone; its rows a row at a time
    alone = _post_one_by_one(app, "/predict?steps=true" if steps else "/predict", pictures)
    assert list(batcher.batches)[-len(pictures) :] == [1] * len(pictures)  # those were alone
    for picture, response, single in zip(pictures, responses, alone, strict=True):
        assert response.json() == single.json()  # the same bits, whoever shared its model call
        x = make_sequences(prepare_digit(picture.read_bytes(), None, True, picture.name)[None], "rows")
        if steps:
            np.testing.assert_allclose(response.json()["steps"], streamer.stream(x[0]), atol=1e-5)
        else:
            np.testing.assert_allclose(response.json()["probabilities"], predictor(x)[0], atol=1e-6)


def test_max_batch_1_makes_one_model_call_per_request(smoke_run: Path) -> None:
    import asyncio

    import httpx

    app = create_app(smoke_run, max_batch=1)
    pictures = sorted(DIGITS.glob("*.png"))[:6]

    async def send_all() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            await asyncio.gather(*(
                http.post("/predict", content=p.read_bytes(), headers={"content-type": "image/png"})
                for p in pictures
            ))  # fmt: skip

    asyncio.run(send_all())
    assert list(app.state.classifier.batcher.batches) == [1] * len(pictures)


def test_batch_wait_holds_a_batch_open_for_requests_about_to_arrive(smoke_run: Path) -> None:
    import asyncio

    import httpx

    pictures = sorted(DIGITS.glob("*.png"))[:4]

    def batches(max_wait_ms: float) -> list[int]:
        app = create_app(smoke_run, max_wait_ms=max_wait_ms)

        async def send(http: httpx.AsyncClient, picture: Path, delay: float) -> None:
            await asyncio.sleep(delay)
            response = await http.post(
                "/predict", content=picture.read_bytes(), headers={"content-type": "image/png"}
            )
            assert response.status_code == 200

        async def send_all() -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                await http.post(
                    "/predict", content=pictures[0].read_bytes(), headers={"content-type": "image/png"}
                )
                app.state.classifier.batcher.batches.clear()  # the first call traces the model: not timed
                await asyncio.gather(*(send(http, p, 0.02 * i) for i, p in enumerate(pictures)))

        asyncio.run(send_all())
        return list(app.state.classifier.batcher.batches)

    assert batches(1000.0) == [4]  # all four arrive within the wait, 20 ms apart
    assert max(batches(0.0)) < 4  # without it, the first goes alone
