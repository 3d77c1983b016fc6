"""An HTTP JSON API over the pipelines: /fill-mask, /classify, /embed and /health (FastAPI + uvicorn).

    nanobert serve --model runs/mlm --port 8000
    curl -s localhost:8000/fill-mask -H 'content-type: application/json' -d '{"inputs": ["Paris is the [MASK] of France."], "top_k": 3}'

Requests: `{"inputs": "a text" | ["text", ...]}` (+ `"top_k"` for /fill-mask). Responses always
hold one result per input text: `{"results": [...]}` (/fill-mask, /classify) or
`{"embeddings": [[...], ...]}` (/embed). The routes a model cannot serve answer 404 (a classifier
has no /fill-mask).

Dynamic batching: requests that arrive while the model is busy, or within `max_wait_ms` of each
other, are run as one batch of up to `max_batch_size` texts, so many small concurrent requests
cost about as much as one large one. The model runs in one worker thread; the event loop only
parses, validates and queues.

Every bad request is a 4xx with a one-line `{"error": ...}`: malformed JSON 400, a wrong field
or type, an empty text or a fill-mask text without [MASK] 422, too many texts or too long a text
413, an unknown route 404.
"""

# No `from __future__ import annotations`: FastAPI reads the request models from the route annotations at runtime.
import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from nanobert.errors import NanobertError

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback only; pass 0.0.0.0 deliberately to listen on every interface
    port: int = 8000
    max_batch_size: int = 32  # texts per model call; more concurrent texts wait for the next call
    max_wait_ms: float = 5.0  # how long a lone request waits for company before it runs alone
    max_inputs: int = 64  # texts per request
    max_text_chars: int = 4000  # characters per text (about 1000 tokens; longer inputs are cut to the model's length)
    max_top_k: int = 50
    max_body_bytes: int = 1 << 20  # a request body larger than this is refused before it is parsed


class DynamicBatcher:
    """Collects items from concurrent `submit` calls and runs `fn(items) -> results` on them in batches.

    `fn` runs in a single worker thread; each caller gets back the results of its own items, in order.
    `batches` records the size of every batch run (for monitoring and tests).
    """

    def __init__(self, fn: Callable[[list], list], executor: ThreadPoolExecutor, max_batch_size: int = 32, max_wait_ms: float = 5.0):
        self.fn, self.executor = fn, executor
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.batches: list[int] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, items: list) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((items, future))
        return await future

    async def _collect(self) -> list[tuple[list, asyncio.Future]]:
        """Wait for one request, then take more until the batch is full or `max_wait` has passed."""
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        size, deadline = len(batch[0][0]), loop.time() + self.max_wait
        while size < self.max_batch_size:
            try:
                batch.append(self.queue.get_nowait())
                size += len(batch[-1][0])
            except asyncio.QueueEmpty:
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(min(0.001, self.max_wait))  # polling keeps get() cancellation-safe
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            flat = [item for items, _ in batch for item in items]
            self.batches.append(len(flat))
            try:
                results = await loop.run_in_executor(self.executor, self.fn, flat)
            except Exception as e:  # hand the failure to every waiting request; keep serving
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            start = 0
            for items, future in batch:
                if not future.done():
                    future.set_result(results[start : start + len(items)])
                start += len(items)


def _json_type(value) -> str:
    """How a JSON value reads in an error message. Example: 5 -> "a number", None -> "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def create_app(model: str | Path, config: ServeConfig | None = None, **pipeline_kwargs):
    """The FastAPI application serving `model` (a model directory or an .onnx file)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from pydantic import BaseModel, ConfigDict, Field
        from starlette.exceptions import HTTPException
    except ImportError as e:
        raise NanobertError("the server needs fastapi and uvicorn: pip install 'nanobert[serve]'") from e

    from nanobert.infer.pipelines import load_pipelines  # torch loads here, not when the CLI builds its parser

    cfg = config or ServeConfig()
    pipes = load_pipelines(model, batch_size=cfg.max_batch_size, **pipeline_kwargs)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanobert-model")
    top_k_field = Field(5, ge=1, le=cfg.max_top_k)

    class TextsRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        inputs: Union[str, list[str]]

    class FillMaskRequest(TextsRequest):
        top_k: int = top_k_field

    class Problem(Exception):
        def __init__(self, status: int, message: str):
            self.status, self.message = status, message

    def texts_of(req: TextsRequest) -> list[str]:
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        if not texts:
            raise Problem(422, "inputs: give at least one text")
        if len(texts) > cfg.max_inputs:
            raise Problem(413, f"inputs: {len(texts)} texts in one request; at most {cfg.max_inputs} are allowed")
        for i, t in enumerate(texts):
            if not t.strip():
                raise Problem(422, f"inputs[{i}]: the text is empty")
            if len(t) > cfg.max_text_chars:
                raise Problem(413, f"inputs[{i}]: the text has {len(t)} characters; at most {cfg.max_text_chars} are allowed")
        return texts

    def fill_batch(items):  # items: (token ids, top_k) pairs
        found = pipes["fill-mask"].predict_ids([ids for ids, _ in items], max(k for _, k in items))
        return [[candidates[:k] for candidates in per_mask] for per_mask, (_, k) in zip(found, items)]

    def embed_batch(texts):
        return pipes["embed"](texts).tolist()

    run = {"fill-mask": fill_batch, "classify": lambda texts: pipes["classify"](texts), "embed": embed_batch}
    batchers = {t: DynamicBatcher(run[t], executor, cfg.max_batch_size, cfg.max_wait_ms) for t in pipes}

    async def lifespan(app):
        for b in batchers.values():
            b.start()
        yield
        for b in batchers.values():
            await b.stop()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="nanobert", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batchers, app.state.pipelines, app.state.config = batchers, pipes, cfg

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return error(exc.status, exc.message)

    @app.exception_handler(NanobertError)
    async def _user_error(request: Request, exc: NanobertError):
        return error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        for e in errors:
            if e.get("type") == "json_invalid":
                return error(400, f"malformed JSON: {e.get('ctx', {}).get('error', 'cannot parse the body')}")
        first = errors[0] if errors else {}
        loc = [p for p in first.get("loc", ()) if p != "body"]
        if not loc:
            return error(422, 'the body must be a JSON object such as {"inputs": ["a text"]}')
        if loc[0] == "inputs" and first.get("type") != "missing":
            # a union: one error per branch; an item index means a list was given with a bad item in it
            for e in errors:
                index = next((p for p in e.get("loc", ())[2:] if isinstance(p, int)), None)
                if index is not None:
                    return error(422, f"inputs[{index}]: must be a string, got {_json_type(e.get('input'))}")
            return error(422, f"inputs: must be a string or a list of strings, got {_json_type(first.get('input'))}")
        return error(422, f"{'.'.join(map(str, loc))}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            return error(404, f"no route {request.url.path}; this server answers {', '.join(routes)}")
        if exc.status_code == 405:
            return error(405, f"{request.method} is not allowed on {request.url.path}; use POST (GET for /health)")
        return error(exc.status_code, str(exc.detail))

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cfg.max_body_bytes):
            return error(413, f"the request body is larger than {cfg.max_body_bytes} bytes")
        return await call_next(request)

    routes = ["GET /health"] + [f"POST /{t}" for t in pipes]

    @app.get("/health")
    async def health():
        first = next(iter(pipes.values()))
        return {
            "status": "ok",
            "model": str(model),
            "backend": first.backend,
            "tasks": list(pipes),
            "limits": {"max_inputs": cfg.max_inputs, "max_text_chars": cfg.max_text_chars, "max_top_k": cfg.max_top_k},
        }

    if "fill-mask" in pipes:

        @app.post("/fill-mask")
        async def fill_mask(req: FillMaskRequest):
            ids = await asyncio.get_running_loop().run_in_executor(None, pipes["fill-mask"].check, texts_of(req))
            return {"results": await batchers["fill-mask"].submit([(seq, req.top_k) for seq in ids])}

    if "classify" in pipes:

        @app.post("/classify")
        async def classify(req: TextsRequest):
            return {"results": await batchers["classify"].submit(texts_of(req))}

    if "embed" in pipes:

        @app.post("/embed")
        async def embed(req: TextsRequest):
            vectors = await batchers["embed"].submit(texts_of(req))
            return {"embeddings": vectors, "dimensions": len(vectors[0])}

    return app


def serve(model: str | Path, config: ServeConfig | None = None, **pipeline_kwargs) -> None:
    """Load `model` and serve it until interrupted (blocking)."""
    try:
        import uvicorn
    except ImportError as e:
        raise NanobertError("the server needs fastapi and uvicorn: pip install 'nanobert[serve]'") from e
    cfg = config or ServeConfig()
    app = create_app(model, cfg, **pipeline_kwargs)
    log.info("serving %s on http://%s:%d (%s)", model, cfg.host, cfg.port, ", ".join(app.state.pipelines))
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
