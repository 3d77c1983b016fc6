"""The server's bounds: request body bytes (also when chunked), texts, characters, masks and top_k x masks."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.testclient import TestClient

from nanobert.infer.serve import MAX_MASKS_PER_TEXT, MAX_TOP_K, ServeConfig, create_app

LIMITS = ServeConfig(max_inputs=8, max_text_chars=4000, max_body_bytes=64 * 1024)


@pytest.fixture(scope="module")
def mlm_app(tiny_mlm_dir):
    return create_app(tiny_mlm_dir, LIMITS)


@pytest.fixture(scope="module")
def mlm(mlm_app):
    with TestClient(mlm_app) as client:  # runs the lifespan: the batchers are started
        yield client


@pytest.fixture(scope="module")
def cls(tiny_cls_dir):
    with TestClient(create_app(tiny_cls_dir, LIMITS)) as client:
        yield client


def _post_chunked(app, total_bytes: int, chunk_bytes: int = 1 << 20):
    """POST a chunked JSON body of `total_bytes` (no Content-Length) in-process; -> (response, bytes the client sent)."""
    sent = 0

    async def body():
        nonlocal sent
        head = b'{"inputs": "'
        sent += len(head)
        yield head
        while sent < total_bytes - 2:
            chunk = b"a" * min(chunk_bytes, total_bytes - 2 - sent)
            sent += len(chunk)
            yield chunk
        sent += 2
        yield b'"}'

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/embed", content=body(), headers={"content-type": "application/json"})

    return asyncio.run(run()), sent


def test_chunked_body_over_the_cap_is_refused_while_reading(mlm_app):
    r, sent = _post_chunked(mlm_app, 150 << 20)  # 150 MB without a Content-Length
    assert r.status_code == 413, r.text
    assert "65536 bytes" in r.json()["error"]
    assert sent <= 2 << 20  # reading stopped at the first chunk past the cap, not after 150 MB


def test_chunked_body_under_the_cap_is_served(mlm):
    def chunks():
        yield b'{"inputs": ["a small'
        yield b' chunked body"]}'

    r = mlm.post("/embed", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["dimensions"] == 32


def test_declared_length_over_the_cap_is_refused(mlm):
    r = mlm.post("/embed", content=b'{"inputs": "' + b"a" * (64 * 1024) + b'"}', headers={"content-type": "application/json"})
    assert r.status_code == 413 and "65536 bytes" in r.json()["error"]


def test_the_reported_blow_up_is_refused_quickly(mlm):
    # many [MASK] tokens x top_k 50 on a 512-position model: once a 15 MB answer
    r = mlm.post("/fill-mask", json={"inputs": ["[MASK] " * 500], "top_k": 50})
    assert r.status_code == 422 and f"at most {MAX_MASKS_PER_TEXT}" in r.json()["error"]


def test_masks_per_text_limit(mlm):
    ok = "a " + "[MASK] " * MAX_MASKS_PER_TEXT
    r = mlm.post("/fill-mask", json={"inputs": ["fine [MASK]", ok + "[MASK]"], "top_k": 1})
    assert r.status_code == 422, r.text
    err = r.json()["error"]  # the pipeline checks it first, naming the text and the limit
    assert err.startswith("text 1 ") and f"{MAX_MASKS_PER_TEXT + 1} [MASK]" in err and f"at most {MAX_MASKS_PER_TEXT}" in err
    r = mlm.post("/fill-mask", json={"inputs": ok, "top_k": MAX_TOP_K})
    assert r.status_code == 200  # one text at both per-text limits is allowed
    assert len(r.json()["results"][0]) == MAX_MASKS_PER_TEXT and len(r.json()["results"][0][0]) == MAX_TOP_K


def test_top_k_times_masks_per_request_limit(mlm, mlm_app):
    cap = mlm_app.state.config.max_fill_candidates
    text = "a " + "[MASK] " * 10
    r = mlm.post("/fill-mask", json={"inputs": [text] * 3, "top_k": MAX_TOP_K})  # 30 masks x 50 = 1500 candidates
    assert r.status_code == 413, r.text
    assert "1500" in r.json()["error"] and str(cap) in r.json()["error"] and "top_k" in r.json()["error"]
    assert mlm.post("/fill-mask", json={"inputs": [text] * 3, "top_k": 5}).status_code == 200


def test_health_names_the_model_without_its_path(mlm, tiny_mlm_dir):
    health = mlm.get("/health").json()
    assert health["model"] == tiny_mlm_dir.name and "/" not in health["model"]
    assert health["task"] == "fill-mask" and health["tasks"] == ["fill-mask", "embed"]
    assert str(tiny_mlm_dir.parent) not in mlm.get("/health").text
    assert health["limits"]["max_masks_per_text"] == MAX_MASKS_PER_TEXT


@pytest.mark.parametrize("route", ["/classify", "/embed"])
def test_texts_and_characters_per_request_are_bounded(cls, route):
    r = cls.post(route, json={"inputs": ["fine"] * 9})
    assert r.status_code == 413 and "9 texts" in r.json()["error"] and "at most 8" in r.json()["error"]
    r = cls.post(route, json={"inputs": ["fine", "x" * 4001]})
    assert r.status_code == 413 and r.json()["error"].startswith("inputs[1]") and "at most 4000" in r.json()["error"]
    assert cls.post(route, json={"inputs": ["fine"] * 8}).status_code == 200


def test_model_runs_in_chunks_of_model_batch_size(tiny_mlm_dir):
    app = create_app(tiny_mlm_dir, ServeConfig(max_batch_size=32, model_batch_size=4))
    assert {p.batch_size for p in app.state.pipelines.values()} == {4}
