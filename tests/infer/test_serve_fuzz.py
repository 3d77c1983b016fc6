"""Random JSON bodies against every route: the only answers are a 2xx result or a 4xx with a one-line JSON error."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from nanobert.infer.serve import ServeConfig, create_app

LIMITS = ServeConfig(max_inputs=6, max_text_chars=600, max_body_bytes=16 * 1024, max_batch_size=8, max_wait_ms=1)

WORDS = ["[MASK]", "[mask]", "[CLS]", "[SEP]", "[PAD]", "##s", "the", "café", "日本語", "🤖", "\u200b", "\x00", "\ud800", " ", "\n", "-"]
texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join),
    st.lists(st.sampled_from(WORDS), max_size=6).map("".join),
    st.builds(lambda w, n: w * n, st.sampled_from(WORDS + ["a", "[MASK] "]), st.integers(0, 80) | st.integers(0, 5000)),  # huge or empty
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), texts)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=4), max_leaves=20)
keys = st.sampled_from(["inputs", "top_k", "Inputs", "input", "", "inputs ", "temperature"])
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"inputs": st.one_of(texts, st.lists(texts, max_size=8), json_values)}, optional={"top_k": st.one_of(st.integers(-3, 60), json_values)}),
    st.dictionaries(keys, json_values, max_size=3),
)


def _encoded(body) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


# well-formed requests with random texts, so that many examples reach the model
wellformed = st.fixed_dictionaries({"inputs": st.one_of(texts, st.lists(texts, min_size=1, max_size=3))}, optional={"top_k": st.integers(1, 50)})
raw = st.one_of(
    wellformed.map(_encoded),
    wellformed.map(_encoded),
    bodies.map(_encoded),
    st.binary(max_size=200),  # not JSON at all, or not UTF-8
    st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
    st.integers(1, 5000).map(lambda depth: b'{"inputs": ' * depth + b'"x"' + b"}" * depth),
)


@pytest.fixture(scope="module")
def clients(tiny_mlm_dir, tiny_cls_dir):
    with TestClient(create_app(tiny_mlm_dir, LIMITS), raise_server_exceptions=False) as mlm:
        with TestClient(create_app(tiny_cls_dir, LIMITS), raise_server_exceptions=False) as cls:
            yield {"/fill-mask": mlm, "/embed": mlm, "/classify": cls}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(["/fill-mask", "/embed", "/classify"]), body=raw, ctype=st.sampled_from(["application/json"] * 4 + ["text/plain"]))
def test_random_bodies_get_a_result_or_a_clear_4xx(clients, route, body, ctype):
    r = clients[route].post(route, content=body, headers={"content-type": ctype})
    event(f"{route} {r.status_code}")  # pytest --hypothesis-show-statistics shows the mix of answers
    assert r.status_code < 500, (r.status_code, r.text[:300])
    payload = r.json()  # a JSON answer either way
    if r.status_code >= 400:
        assert set(payload) == {"error"} and isinstance(payload["error"], str)
        assert payload["error"] and "\n" not in payload["error"]
    else:
        assert r.status_code == 200 and ("results" in payload or "embeddings" in payload)
