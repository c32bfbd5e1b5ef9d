"""Request batching: batches form under concurrency, answers stay per request, the queue is
bounded."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import resnetlab
from resnetlab.serve import Batcher, Predictor, QueueFull, create_app
from resnetlab.serve.batching import Stopped
from resnetlab.serve.predictor import cam_available

from .conftest import start_server
from .test_api import asgi_post, assert_same_top

HANG_GUARD_S = 60


def _rows(images: torch.Tensor) -> torch.Tensor:
    """A stand-in model: each image's mean pixel and its first pixel, (N, 2)."""
    return torch.stack([images.float().mean((1, 2, 3)), images[:, 0, 0, 0].float()], 1)


def _image(i: int) -> torch.Tensor:
    return torch.full((4, 4, 3), i, dtype=torch.uint8)


@pytest.mark.parametrize("max_batch", [1, 4])
def test_each_request_gets_its_own_row(max_batch):
    sizes = []

    def run_batch(images):
        sizes.append(len(images))
        return _rows(images)

    async def main():
        batcher = Batcher(run_batch, max_batch=max_batch, max_wait_ms=50, max_queue=64)
        await batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit(_image(i)) for i in range(10)))
            return results, batcher.stats()
        finally:
            await batcher.stop()

    results, stats = asyncio.run(main())
    for i, row in enumerate(results):
        assert row.tolist() == [i, i]
    assert sum(sizes) == 10 and max(sizes) <= max_batch
    assert stats["images"] == 10 and stats["batches"] == len(sizes)
    assert stats["largest_batch"] == max(sizes)
    if max_batch > 1:
        assert max(sizes) > 1  # ten requests at once do not go one by one


def test_a_full_queue_refuses_at_once_and_the_rest_complete():
    entered, gate = threading.Event(), threading.Event()

    def run_batch(images):
        entered.set()
        assert gate.wait(HANG_GUARD_S)
        return _rows(images)

    async def main():
        batcher = Batcher(run_batch, max_batch=1, max_wait_ms=0, max_queue=1)
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(_image(1)))
            assert await asyncio.to_thread(entered.wait, HANG_GUARD_S)  # running, not queued
            second = asyncio.create_task(batcher.submit(_image(2)))
            await asyncio.sleep(0)  # lets it take the one place in the queue
            assert batcher.stats()["queued"] == 1
            with pytest.raises(QueueFull):
                await batcher.submit(_image(3))
            gate.set()
            return await first, await second, batcher.stats()
        finally:
            gate.set()
            await batcher.stop()

    first, second, stats = asyncio.run(main())
    assert first.tolist() == [1, 1] and second.tolist() == [2, 2]
    assert stats["rejected"] == 1 and stats["images"] == 2


def test_one_off_jobs_count_against_the_queue():
    """Class activation maps run on the inference thread after their image's batch: they
    were not counted, so a flood of ?cam=1 requests piled up there without limit."""
    entered, gate = threading.Event(), threading.Event()

    def job(i):
        entered.set()
        assert gate.wait(HANG_GUARD_S)
        return i

    async def main():
        batcher = Batcher(_rows, max_batch=1, max_wait_ms=0, max_queue=2)
        await batcher.start()
        try:
            running = asyncio.create_task(batcher.run(job, 1))
            assert await asyncio.to_thread(entered.wait, HANG_GUARD_S)
            waiting = asyncio.create_task(batcher.run(job, 2))
            await asyncio.sleep(0)  # lets it take the second place
            assert batcher.stats()["queued"] == 2
            with pytest.raises(QueueFull):
                await batcher.run(job, 3)
            with pytest.raises(QueueFull):
                await batcher.submit(_image(3))
            gate.set()
            return await running, await waiting, batcher.stats()
        finally:
            gate.set()
            await batcher.stop()

    running, waiting, stats = asyncio.run(main())
    assert (running, waiting) == (1, 2)
    assert stats["rejected"] == 2 and stats["queued"] == 0


def test_a_failing_batch_fails_its_requests_only():
    calls = []

    def run_batch(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return _rows(images)

    async def main():
        batcher = Batcher(run_batch, max_batch=1, max_wait_ms=0)
        await batcher.start()
        try:
            with pytest.raises(RuntimeError, match="out of memory"):
                await batcher.submit(_image(1))
            return await batcher.submit(_image(2))
        finally:
            await batcher.stop()

    assert asyncio.run(main()).tolist() == [2, 2]


def test_a_batch_answered_with_the_wrong_number_of_rows_fails_its_requests_only():
    """A model that returns a row too many (a fixed-batch export padding its input, say) fails
    that batch's requests, and the batching goes on: it does not stop, leaving every later
    request waiting for ever."""
    calls = []

    def run_batch(images):
        calls.append(len(images))
        rows = _rows(images)
        return torch.cat([rows, rows[:1]]) if len(calls) == 1 else rows

    async def main():
        batcher = Batcher(run_batch, max_batch=1, max_wait_ms=0)
        await batcher.start()
        try:
            with pytest.raises(RuntimeError, match="2 rows for a batch of 1 image"):
                await batcher.submit(_image(1))
            return await asyncio.wait_for(batcher.submit(_image(2)), HANG_GUARD_S)
        finally:
            await batcher.stop()

    assert asyncio.run(main()).tolist() == [2, 2]


def test_a_stopped_batcher_refuses_at_once_rather_than_queueing_for_ever():
    async def main():
        batcher = Batcher(_rows)
        await batcher.start()
        first = await batcher.submit(_image(1))
        await batcher.stop()
        with pytest.raises(RuntimeError, match="the app's lifespan events start it"):
            await asyncio.wait_for(batcher.submit(_image(2)), HANG_GUARD_S)
        return first

    assert asyncio.run(main()).tolist() == [1, 1]


def test_images_waiting_when_the_batcher_stops_are_refused_not_left_waiting():
    """An ASGI server that ends the lifespan with requests still waiting (uvicorn cancels them
    first; another server, or a TestClient, may not) gets an answer for each, not a hang."""

    async def main():
        batcher = Batcher(_rows, max_batch=4, max_wait_ms=HANG_GUARD_S * 1000)
        await batcher.start()
        waiting = [asyncio.create_task(batcher.submit(_image(i))) for i in range(2)]
        await asyncio.sleep(0)  # both queued; the batch waits for two more
        await batcher.stop()
        return await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 10)

    assert [type(result) for result in asyncio.run(main())] == [Stopped, Stopped]


def test_an_app_run_without_its_lifespan_says_what_starts_the_batching(model_file, image_files):
    from fastapi.testclient import TestClient

    app = create_app(Predictor(resnetlab.load_model(model_file)))
    client = TestClient(app, raise_server_exceptions=False)  # outside `with`: no lifespan
    answer = client.post("/predict", content=image_files["red.png"].read_bytes())
    assert answer.status_code == 500
    assert answer.json()["error"] == (
        "internal error (RuntimeError: request batching is not running: the app's lifespan "
        "events start it; run the app under an ASGI server that sends them (uvicorn does; in "
        "tests, `with TestClient(app) as client:`))"
    )


def test_a_batcher_whose_task_ended_is_not_running():
    # /healthz and /predict ask `running`: a task ended by an error it did not catch (a
    # BaseException, a cancel from outside) answers no image, and they say so.
    async def main():
        batcher = Batcher(_rows, max_batch=4, max_wait_ms=1, max_queue=8)
        await batcher.start()
        assert batcher.running
        batcher._task.cancel()
        await asyncio.gather(batcher._task, return_exceptions=True)
        try:
            with pytest.raises(RuntimeError) as caught:
                await batcher.submit(_image(0))
            return batcher.running, str(caught.value)
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == (
        False,
        "request batching ended on an error (in the server's log): restart the server",
    )


def test_health_is_not_ok_while_the_batching_is_not_running(model_file):
    """An uptime check sees what /predict would: 503 without the lifespan and after it."""
    from fastapi.testclient import TestClient

    app = create_app(Predictor(resnetlab.load_model(model_file)))
    unavailable = TestClient(app).get("/healthz")  # outside `with`: no lifespan
    assert unavailable.status_code == 503
    assert unavailable.json()["status"] == "unavailable"
    assert "the app's lifespan events start it" in unavailable.json()["error"]
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.head("/healthz").status_code == 200
    assert TestClient(app).get("/healthz").status_code == 503  # stopped


def test_busy_server_answers_503_with_retry_after(model_file, image_files):
    """Through the app: one request running, one queued, the next is refused, before its
    image is decoded."""
    from fastapi.testclient import TestClient

    entered, gate = threading.Event(), threading.Event()
    decoded = []

    class Gated(Predictor):
        def decode(self, data, name=None):
            decoded.append(name)
            return super().decode(data, name)

        def __call__(self, images):
            entered.set()
            assert gate.wait(HANG_GUARD_S)
            return super().__call__(images)

    predictor = Gated(resnetlab.load_model(model_file))
    app = create_app(predictor, max_batch=1, max_wait_ms=0, max_queue=1)
    data = image_files["blue.png"].read_bytes()
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        try:
            running = pool.submit(client.post, "/predict", content=data)
            assert entered.wait(HANG_GUARD_S)
            queued = pool.submit(client.post, "/predict", content=data)
            deadline = time.monotonic() + HANG_GUARD_S
            while client.get("/metadata").json()["batching"]["queued"] < 1:
                assert time.monotonic() < deadline, "the second request never queued"
                time.sleep(0.01)
            refused = client.post("/predict", content=data)
        finally:
            gate.set()
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        # "1 image", not "1 images"
        assert refused.json() == {
            "error": "the server is busy (1 image waiting); try again shortly"
        }
        for answer in (running.result(HANG_GUARD_S), queued.result(HANG_GUARD_S)):
            assert answer.status_code == 200 and answer.json()["top"][0]["class"] == "blue"
        assert client.get("/metadata").json()["batching"]["rejected"] == 1
    # The refused image was not decoded: a full queue costs an overloaded server no more work.
    assert len(decoded) == 2


def test_a_map_being_drawn_takes_a_place_in_the_queue(model_file, image_files):
    """Through the app, --max-queue 1: while one request's map is drawn, the next request
    is refused 503, as it is while an image waits."""
    from fastapi.testclient import TestClient

    if not cam_available():
        pytest.skip("this build cannot draw class activation maps")
    entered, gate = threading.Event(), threading.Event()

    class Gated(Predictor):
        def cam_png(self, pixels):
            entered.set()
            assert gate.wait(HANG_GUARD_S)
            return super().cam_png(pixels)

    app = create_app(Gated(resnetlab.load_model(model_file)), max_batch=1, max_queue=1)
    data = image_files["red.png"].read_bytes()
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        try:
            drawing = pool.submit(client.post, "/predict", params={"cam": 1}, content=data)
            assert entered.wait(HANG_GUARD_S)
            refused = [client.post("/predict", params=p, content=data) for p in ({"cam": 1}, {})]
        finally:
            gate.set()
        assert [r.status_code for r in refused] == [503, 503]
        assert refused[0].headers["retry-after"] == "1"
        answer = drawing.result(HANG_GUARD_S)
        assert answer.status_code == 200 and answer.json()["cam"].startswith("data:image/png")
        assert client.get("/metadata").json()["batching"]["rejected"] == 2


def test_a_request_cancelled_as_the_server_stops_is_answered_503(model_file, image_files):
    """uvicorn cancels the requests still running when its graceful shutdown runs out of
    time: each is told the server stopped, in JSON, rather than answered a plain-text 500
    with a traceback in the log."""
    entered, gate = threading.Event(), threading.Event()

    class Gated(Predictor):
        def __call__(self, images):
            entered.set()
            assert gate.wait(HANG_GUARD_S)
            return super().__call__(images)

    app = create_app(Gated(resnetlab.load_model(model_file)), max_batch=1, max_wait_ms=0)
    body = [{"type": "http.request", "body": image_files["red.png"].read_bytes()}]

    async def receive() -> dict:
        if body:
            return body.pop()
        await asyncio.Event().wait()  # no disconnect: the client waits for its answer
        raise AssertionError("unreachable")

    async def main() -> list[dict]:
        async with app.router.lifespan_context(app):
            try:
                request = asyncio.create_task(asgi_post(app, receive))
                assert await asyncio.to_thread(entered.wait, HANG_GUARD_S)  # in its batch
                request.cancel()
                return await request
            finally:
                gate.set()

    start, answer = asyncio.run(main())
    assert start["status"] == 503
    assert json.loads(answer["body"]) == {
        "error": "the server stopped before answering this request; send it again once it is back"
    }


def test_concurrent_requests_share_batches_with_unbatched_answers(
    model_file, image_files, tmp_path
):
    """16 requests at once to a server that fills batches of 4: four batches of 4, and each
    answer is what `predict` gives for that file alone."""
    paths = list(image_files.values()) * 2
    assert len(paths) == 16
    alone = {p: resnetlab.predict(model_file, [p], top_k=3, batch_size=1)[0] for p in paths}
    # A long wait: each batch fills to 4 however slowly the requests arrive.
    server = start_server(model_file, tmp_path, "--max-batch", "4", "--max-wait-ms", "30000")
    try:
        with ThreadPoolExecutor(len(paths)) as pool:
            answers = list(
                pool.map(lambda p: server.post("predict", content=p.read_bytes()), paths)
            )
        for path, answer in zip(paths, answers, strict=True):
            assert answer.status_code == 200, answer.text
            assert_same_top(answer.json()["top"], alone[path].top)
        batching = server.get("metadata").json()["batching"]
    finally:
        server.stop()
    assert batching["batch_sizes"] == {"4": 4}
    assert batching["images"] == 16 and batching["largest_batch"] == 4


def test_a_failing_batch_is_a_json_500_and_the_server_goes_on(model_file, image_files):
    from fastapi.testclient import TestClient

    class FailsOnce(Predictor):
        calls = 0

        def __call__(self, images):
            FailsOnce.calls += 1
            if FailsOnce.calls == 1:
                raise RuntimeError("CUDA out of memory")
            return super().__call__(images)

    app = create_app(FailsOnce(resnetlab.load_model(model_file)), max_batch=1)
    data = image_files["red.png"].read_bytes()
    with TestClient(app, raise_server_exceptions=False) as client:
        failed = client.post("/predict", content=data)
        assert failed.status_code == 500
        assert failed.json() == {"error": "internal error (RuntimeError: CUDA out of memory)"}
        answer = client.post("/predict", content=data)
        assert answer.status_code == 200 and answer.json()["top"][0]["class"] == "red"


def test_a_fractional_upload_limit_is_named_as_given():
    from resnetlab.serve.app import _too_large

    answer = _too_large(int(0.01 * 2**20))  # 10,485 bytes
    assert json.loads(answer.body)["error"] == (
        "the upload is larger than the limit of 0.01 MB (--max-upload-mb)"
    )
    answer = _too_large(int(0.0001 * 2**20))  # 104 bytes: not "the limit of 0 MB"
    assert json.loads(answer.body)["error"] == (
        "the upload is larger than the limit of 9.92e-05 MB (--max-upload-mb)"
    )
    assert "limit of 1000 MB" in json.loads(_too_large(1000 * 2**20).body)["error"]
