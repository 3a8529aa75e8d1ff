"""`mnist-rnn serve` as a person runs it: a real process on a free localhost port, the CLI's numbers over
HTTP, a 50 MB upload refused unread, a port in use, and the drawing page in a real (system) Chromium."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnist-rnn[serve]'")
import httpx  # noqa: E402

from tests.conftest import REPO, start_cli  # noqa: E402

DIGITS = REPO / "tests" / "data" / "digits"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SEEN = "#seen"  # the 28x28 picture the network was given
SCREENSHOTS = os.environ.get("MNIST_RNN_SCREENSHOTS")  # keep the page's screenshots here, to look at


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    process = start_cli("serve", str(smoke_run), "--port", str(port), cwd=tmp_path_factory.mktemp("serve"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}: {process.communicate()[1]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("serve did not answer /healthz within 120 s")
    yield url
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_post_predict_returns_the_clis_probabilities(server: str, smoke_run: Path, tmp_path: Path) -> None:
    picture = sorted(DIGITS.glob("*.png"))[0]
    cli = start_cli("predict", str(smoke_run), str(picture), "--json", cwd=tmp_path)
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    (expected,) = json.loads(out)["predictions"]
    with open(picture, "rb") as f:
        response = httpx.post(f"{server}/predict", files={"file": (picture.name, f, "image/png")}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["probabilities"] == expected["probabilities"]


def test_it_listens_on_loopback_only(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[3] == "0A"
    ]
    assert f"0100007F:{port:04X}" in listening  # 127.0.0.1, in the kernel's little-endian hex
    assert f"00000000:{port:04X}" not in listening  # not 0.0.0.0


def test_a_50_mb_upload_is_refused_before_it_is_sent(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
            b"Content-Length: 52428800\r\n\r\n" + b"\0" * 65536  # 64 KiB of the promised 50 MB
        )
        answer = b""
        while b'"}' not in answer:  # the JSON body may come in a segment of its own
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.decode("latin-1").partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413"), head
    assert "over 2048 KiB" in json.loads(body)["error"]


def test_a_port_in_use_is_one_line_and_exit_2(server: str, smoke_run: Path, tmp_path: Path) -> None:
    port = server.rsplit(":", 1)[1]
    process = start_cli("serve", str(smoke_run), "--port", port, cwd=tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.strip() == f"error: 127.0.0.1:{port} is in use; pass another --port (or --host)"


def _draw_seven(page: object, box: dict[str, float]) -> None:
    mouse = page.mouse  # type: ignore[attr-defined]
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    strokes = [[(0.25, 0.22), (0.75, 0.22), (0.45, 0.85)], [(0.35, 0.52), (0.65, 0.52)]]
    for stroke in strokes:
        mouse.move(x0 + stroke[0][0] * w, y0 + stroke[0][1] * h)
        mouse.down()
        for (ax, ay), (bx, by) in zip(stroke, stroke[1:], strict=False):
            for i in range(1, 13):
                t = i / 12
                mouse.move(x0 + (ax + t * (bx - ax)) * w, y0 + (ay + t * (by - ay)) * h)
        mouse.up()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_drawing_a_digit_shows_the_prediction_and_the_row_chart(
    server: str, smoke_run: Path, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(server)
        page.wait_for_function("document.getElementById('model').textContent.includes('checkpoint best')")
        _draw_seven(page, page.locator("#pad").bounding_box())
        page.wait_for_function("/^[0-9]$/.test(document.getElementById('digit').textContent)", timeout=30000)
        page.wait_for_function("document.getElementById('rows-note').textContent.includes('settles on')")
        shown = page.locator("#digit").text_content()
        footer = page.locator("#model").text_content() or ""
        pad, seen = page.locator("#pad").bounding_box(), page.locator(SEEN).bounding_box()
        note = page.locator("#rows-note").text_content() or ""
        bars = page.locator("#bars .bar").count()
        screenshot = page.screenshot(full_page=True)
        browser.close()
    assert shown == "7", shown  # the smoke model reads this drawn 7 as a 7
    assert note.startswith("Each column is the network's belief") and bars == 10
    assert "settles on 7 after " in note and note.endswith("of the 28 image rows.")
    assert str(smoke_run.parent) not in footer  # the run by its folder name, not a machine path
    target = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    (target / "serve-page.png").write_bytes(screenshot)
    # what a person sees: the strokes on the pad, and the 28x28 picture the network was given, not blank
    with Image.open(io.BytesIO(screenshot)) as image:
        shot = np.asarray(image.convert("L"), dtype=np.float32)
    for name, box in (("pad", pad), ("the network's input", seen)):
        x, y, w, h = (round(box[k]) for k in ("x", "y", "width", "height"))
        region = shot[y : y + h, x : x + w]
        assert region.size and 0.02 < (np.abs(region - np.median(region)) > 64).mean() < 0.6, name


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(
    smoke_run: Path, tmp_path: Path, workers: int
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    port = _free_port()
    process = start_cli("serve", str(smoke_run), "--port", str(port), "--workers", str(workers), cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _up(url):
            assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.5)
        body = (DIGITS / sorted(os.listdir(DIGITS))[0]).read_bytes()

        def post(_: int) -> int:  # per-row probabilities: the slow request, so a queue builds up
            files = {"file": ("digit.png", body, "image/png")}
            return httpx.post(f"{url}/predict?steps=true", files=files, timeout=60).status_code

        with ThreadPoolExecutor(24) as pool:
            answers = [pool.submit(post, i) for i in range(24)]
            time.sleep(0.5)  # every request sent and accepted, most still queued behind the model's lock
            process.send_signal(signal.SIGTERM)
            codes = [a.result() for a in answers]
        assert codes == [200] * 24
        assert process.wait(timeout=40) == 0
        with pytest.raises(httpx.TransportError):  # and it no longer listens
            httpx.get(f"{url}/healthz", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()


def test_a_worker_that_cannot_load_the_model_stops_the_server_with_one_line(
    smoke_run: Path, tmp_path: Path
) -> None:
    """The parent finds the checkpoint folder; only the workers find it unreadable. uvicorn would restart a
    worker that dies after starting; one that fails to start must stop everything, and say why once."""
    run = tmp_path / "damaged"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("tensorboard"))
    for model in (run / "checkpoints").glob("*/model.keras"):
        model.write_bytes(b"not a zip file")
    process = start_cli("serve", str(run), "--port", str(_free_port()), "--workers", "2", cwd=tmp_path)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 2, err
    lines = err.strip().splitlines()
    assert "worker processes" in lines[0]  # "serving ...": the workers were started
    assert len(lines) == 2 and lines[1].startswith(f"error: {run}: no loadable 'best' checkpoint"), err


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
