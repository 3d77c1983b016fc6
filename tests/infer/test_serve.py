"""The HTTP server on loopback, driven with real HTTP requests: results, validation, a concurrent burst."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn

from nanobert.infer.pipelines import EmbedPipeline, FillMaskPipeline
from nanobert.infer.serve import DynamicBatcher, ServeConfig, create_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_mlm_dir):
    """The app on 127.0.0.1 in a background thread; yields (base url, app)."""
    app = create_app(tiny_mlm_dir, ServeConfig(max_batch_size=16, max_wait_ms=10, max_inputs=8, max_text_chars=300))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(timeout=10)


def test_routes_answer_like_the_pipelines(server, tiny_mlm_dir):
    url, _ = server
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["tasks"] == ["fill-mask", "embed"] and health["backend"] == "pytorch"
    texts = ["the capital of france is [MASK].", "a [MASK] film with [MASK] acting"]
    r = httpx.post(f"{url}/fill-mask", json={"inputs": texts, "top_k": 3})
    assert r.status_code == 200
    assert r.json()["results"] == json.loads(json.dumps(FillMaskPipeline(tiny_mlm_dir)(texts, top_k=3)))
    one = httpx.post(f"{url}/fill-mask", json={"inputs": texts[0]}).json()["results"]
    assert len(one) == 1 and len(one[0][0]) == 5  # a single string is one text; default top_k 5
    r = httpx.post(f"{url}/embed", json={"inputs": ["hello there", "general kenobi"]}).json()
    assert r["dimensions"] == 32
    np.testing.assert_allclose(r["embeddings"], EmbedPipeline(tiny_mlm_dir)(["hello there", "general kenobi"]), atol=1e-6)


BAD_REQUESTS = [
    # (body, content type, status, words in the error)
    ('{"inputs": ', "application/json", 400, "malformed JSON"),
    ("", "application/json", 422, "JSON object"),
    ("[1, 2]", "application/json", 422, "JSON object"),
    ('"just a string"', "application/json", 422, "JSON object"),
    ('{"inputs": "a [MASK]"}', "text/plain", 422, "JSON object"),
    ("{}", "application/json", 422, "inputs"),
    ('{"inputs": 5}', "application/json", 422, "string or a list of strings, got a number"),
    ('{"inputs": null}', "application/json", 422, "got null"),
    ('{"inputs": ["ok [MASK]", 7]}', "application/json", 422, "inputs[1]: must be a string"),
    ('{"inputs": ""}', "application/json", 422, "inputs[0]: the text is empty"),
    ('{"inputs": ["fine [MASK]", "   "]}', "application/json", 422, "inputs[1]: the text is empty"),
    ('{"inputs": []}', "application/json", 422, "at least one text"),
    ('{"inputs": "no mask here"}', "application/json", 422, "no [MASK]"),
    ('{"inputs": "a [MASK]", "top_k": 0}', "application/json", 422, "top_k"),
    ('{"inputs": "a [MASK]", "top_k": 51}', "application/json", 422, "top_k"),
    ('{"inputs": "a [MASK]", "top_k": "3"}', "application/json", 422, "top_k"),
    ('{"inputs": "a [MASK]", "temperature": 1}', "application/json", 422, "temperature"),
    (json.dumps({"inputs": "[MASK] " + "x" * 400}), "application/json", 413, "at most 300"),
    (json.dumps({"inputs": ["a [MASK]"] * 9}), "application/json", 413, "at most 8"),
]


@pytest.mark.parametrize("body,ctype,status,message", BAD_REQUESTS)
def test_bad_requests_get_a_clear_4xx(server, body, ctype, status, message):
    url, _ = server
    r = httpx.post(f"{url}/fill-mask", content=body.encode(), headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_wrong_routes_and_methods(server):
    url, _ = server
    r = httpx.post(f"{url}/classify", json={"inputs": "x"})
    assert r.status_code == 404 and "POST /fill-mask" in r.json()["error"]
    r = httpx.get(f"{url}/fill-mask")
    assert r.status_code == 405 and "POST" in r.json()["error"]
    big = b'{"inputs": "' + b"a" * (1 << 20) + b'"}'
    r = httpx.post(f"{url}/embed", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert httpx.get(f"{url}/health").status_code == 200  # still serving after all that


def test_concurrent_burst_is_batched(server, tiny_mlm_dir):
    url, app = server
    texts = [f"request {i} asks for a [MASK] here" + " and more" * (i % 5) for i in range(40)]
    before = len(app.state.batchers["fill-mask"].batches)

    async def burst():
        limit = asyncio.Semaphore(40)  # a bounded burst: at most 40 requests in flight

        async def one(client, text):
            async with limit:
                return await client.post(f"{url}/fill-mask", json={"inputs": [text], "top_k": 2})

        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(one(client, t) for t in texts))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * len(texts)
    expected = json.loads(json.dumps(FillMaskPipeline(tiny_mlm_dir)(texts, top_k=2)))
    for r, e in zip(responses, expected):  # every client gets its own answer back
        got = r.json()["results"][0]
        assert [[c["token_id"] for c in m] for m in got] == [[c["token_id"] for c in m] for m in e]
        np.testing.assert_allclose([[c["score"] for c in m] for m in got], [[c["score"] for c in m] for m in e], atol=1e-5)
    sizes = app.state.batchers["fill-mask"].batches[before:]
    assert sum(sizes) == len(texts) and max(sizes) > 1 and max(sizes) <= 16  # concurrent requests shared model calls


def test_dynamic_batcher_returns_each_callers_results():
    calls = []

    def double(items):
        calls.append(list(items))
        time.sleep(0.02)
        return [2 * x for x in items]

    async def run():
        batcher = DynamicBatcher(double, ThreadPoolExecutor(1), max_batch_size=4, max_wait_ms=20)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([i, 100 + i]) for i in range(5)))
        await batcher.stop()
        return results

    results = asyncio.run(run())
    assert results == [[2 * i, 200 + 2 * i] for i in range(5)]
    assert sorted(x for c in calls for x in c) == sorted([i for i in range(5)] + [100 + i for i in range(5)])
    assert all(len(c) <= 4 for c in calls) and len(calls) < 5


def test_batcher_survives_a_failing_batch():
    def fail_on_negative(items):
        if any(x < 0 for x in items):
            raise ValueError("negative")
        return items

    async def run():
        batcher = DynamicBatcher(fail_on_negative, ThreadPoolExecutor(1), max_batch_size=1, max_wait_ms=0)
        batcher.start()
        with pytest.raises(ValueError):
            await batcher.submit([-1])
        ok = await batcher.submit([3])
        await batcher.stop()
        return ok

    assert asyncio.run(run()) == [3]


@pytest.mark.slow
def test_cli_serve_on_loopback(tiny_mlm_dir, tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanobert", "serve", "--model", str(tiny_mlm_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.time() < deadline, "server did not come up"
                time.sleep(0.25)
        r = httpx.post(f"http://127.0.0.1:{port}/fill-mask", json={"inputs": "a [MASK] day", "top_k": 1})
        assert r.status_code == 200 and len(r.json()["results"][0][0]) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
