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

Every request is bounded before the model sees it, so that no single client can make the server
hold or send much more than its limits: the body's bytes are counted while it is read (chunked
bodies too), then the texts per request, the characters per text, the [MASK] tokens per text and
top_k x [MASK] tokens per request (the fill-mask answer grows with both). Every bad request is a
4xx with a one-line `{"error": ...}`: malformed JSON 400, a wrong field or type, an empty text, a
fill-mask text without [MASK] or with too many 422, a body, text list, text or fill-mask answer
over its limit 413, an unknown route 404.
"""

# No `from __future__ import annotations`: FastAPI reads the request models from the route annotations at runtime.
import asyncio
import errno
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from nanobert.errors import NanobertError
from nanobert.infer.limits import MAX_MASKS_PER_TEXT, MAX_TOP_K

log = logging.getLogger(__name__)



@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback only; pass 0.0.0.0 deliberately to listen on every interface
    port: int = 8000
    max_batch_size: int = 32  # texts a batcher takes from concurrent requests; more wait for the next round
    # The batcher's texts are sorted by length and run in chunks of this many: on CPU a MiniLM int8
    # classifier ran 77 texts/s in chunks of 8 against 34 in chunks of 32 (less padding per chunk).
    model_batch_size: int = 8
    max_wait_ms: float = 5.0  # how long a lone request waits for company before it runs alone
    max_inputs: int = 64  # texts per request
    max_text_chars: int = 4000  # characters per text (about 1000 tokens; longer inputs are cut to the model's length)
    max_top_k: int = MAX_TOP_K
    max_masks_per_text: int = MAX_MASKS_PER_TEXT
    # top_k x [MASK] tokens in one request: one text at both per-text limits. Each candidate carries
    # the whole filled-in text, so this bounds a fill-mask answer to about 1000 x 2.5 KB.
    max_fill_candidates: int = MAX_MASKS_PER_TEXT * MAX_TOP_K
    max_body_bytes: int = 1 << 20  # a request body larger than this is refused while it is read


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


class Problem(Exception):
    """A bad request: answered with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class BodyLimit:
    """ASGI middleware: reads the request body itself, refusing it with 413 as soon as it passes `max_bytes`.

    A declared Content-Length over the cap is refused before reading; a chunked body (no length) is
    counted chunk by chunk, so at most one chunk past the cap is ever held. A body within the cap is
    handed on to the application as one message.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect as the server would
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        from fastapi.responses import JSONResponse

        message = f"the request body is larger than {self.max_bytes} bytes"
        await JSONResponse({"error": message}, status_code=413, headers={"connection": "close"})(scope, receive, send)


def _json_type(value) -> str:
    """How a JSON value reads in an error message. Example: 5 -> "a number", None -> "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def validation_problem(errors: list[dict]) -> Problem:
    """The one-line 4xx for pydantic's validation errors of a request body."""
    for e in errors:
        if e.get("type") == "json_invalid":
            return Problem(400, f"malformed JSON: {e.get('ctx', {}).get('error', 'cannot parse the body')}")
    first = errors[0] if errors else {}
    loc = [p for p in first.get("loc", ()) if p != "body"]
    if not loc:
        return Problem(422, 'the body must be a JSON object such as {"inputs": ["a text"]}')
    if loc[0] == "inputs" and first.get("type") != "missing":
        # a union: one error per branch; an item index means a list was given with a bad item in it
        for e in errors:
            index = next((p for p in e.get("loc", ())[2:] if isinstance(p, int)), None)
            if index is not None:
                return Problem(422, f"inputs[{index}]: must be a string, got {_json_type(e.get('input'))}")
        return Problem(422, f"inputs: must be a string or a list of strings, got {_json_type(first.get('input'))}")
    return Problem(422, f"{'.'.join(map(str, loc))}: {first.get('msg', 'invalid value')}")


def texts_of(inputs: Union[str, list[str]], cfg: ServeConfig) -> list[str]:
    """The request's texts, checked against the per-request limits."""
    texts = [inputs] if isinstance(inputs, str) else inputs
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


def check_masks(ids: list[list[int]], mask_id: int, top_k: int, cfg: ServeConfig) -> None:
    """Bound [MASK] tokens per text and top_k x [MASK] tokens per request (the size of the answer)."""
    counts = [seq.count(mask_id) for seq in ids]
    for i, n in enumerate(counts):
        if n > cfg.max_masks_per_text:
            raise Problem(422, f"inputs[{i}]: the text has {n} [MASK] tokens; at most {cfg.max_masks_per_text} per text are allowed")
    if top_k * sum(counts) > cfg.max_fill_candidates:
        raise Problem(
            413,
            f"top_k {top_k} x {sum(counts)} [MASK] tokens = {top_k * sum(counts)} candidates in one request; "
            f"at most {cfg.max_fill_candidates} are allowed: lower top_k or send fewer texts per request",
        )


def _install_error_handlers(app, routes: list[str]) -> None:
    """Every error as a one-line `{"error": ...}` with its 4xx status."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(Problem)
    async def _problem(request, exc: Problem):
        return error(exc.status, exc.message)

    @app.exception_handler(NanobertError)
    async def _user_error(request, exc: NanobertError):
        return error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        problem = validation_problem(exc.errors())
        return error(problem.status, problem.message)

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        if exc.status_code == 404:
            return error(404, f"no route {request.url.path}; this server answers {', '.join(routes)}")
        if exc.status_code == 405:
            return error(405, f"{request.method} is not allowed on {request.url.path}; use POST (GET for /health)")
        return error(exc.status_code, str(exc.detail))


def _add_routes(app, pipes: dict, batchers: dict, cfg: ServeConfig, model_name: str) -> None:
    """/health, and a POST route for each task the model serves."""
    from pydantic import BaseModel, ConfigDict, Field

    class TextsRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        inputs: Union[str, list[str]]

    class FillMaskRequest(TextsRequest):
        top_k: int = Field(5, ge=1, le=cfg.max_top_k)

    @app.get("/health")
    async def health():
        first = next(iter(pipes.values()))
        limits = ("max_inputs", "max_text_chars", "max_top_k", "max_masks_per_text", "max_fill_candidates", "max_body_bytes")
        return {
            "status": "ok",
            "model": model_name,
            "task": next(iter(pipes)),
            "backend": first.backend,
            "tasks": list(pipes),
            "limits": {name: getattr(cfg, name) for name in limits},
        }

    if "fill-mask" in pipes:
        fill = pipes["fill-mask"]

        @app.post("/fill-mask")
        async def fill_mask(req: FillMaskRequest):
            ids = await asyncio.get_running_loop().run_in_executor(None, fill.check, texts_of(req.inputs, cfg))
            check_masks(ids, fill.tokenizer.mask_token_id, req.top_k, cfg)
            return {"results": await batchers["fill-mask"].submit([(seq, req.top_k) for seq in ids])}

    if "classify" in pipes:

        @app.post("/classify")
        async def classify(req: TextsRequest):
            return {"results": await batchers["classify"].submit(texts_of(req.inputs, cfg))}

    if "embed" in pipes:

        @app.post("/embed")
        async def embed(req: TextsRequest):
            vectors = await batchers["embed"].submit(texts_of(req.inputs, cfg))
            return {"embeddings": vectors, "dimensions": len(vectors[0])}


def _batch_functions(pipes: dict) -> dict[str, Callable[[list], list]]:
    """{task: fn(items) -> results} run by the batchers in the model thread."""

    def fill_batch(items):  # items: (token ids, top_k) pairs
        found = pipes["fill-mask"].predict_ids([ids for ids, _ in items], max(k for _, k in items))
        return [[candidates[:k] for candidates in per_mask] for per_mask, (_, k) in zip(found, items)]

    def embed_batch(texts):
        return pipes["embed"](texts).tolist()

    run = {"fill-mask": fill_batch, "classify": lambda texts: pipes["classify"](texts), "embed": embed_batch}
    return {task: run[task] for task in pipes}


def create_app(model: str | Path, config: ServeConfig | None = None, **pipeline_kwargs):
    """The FastAPI application serving `model` (a model directory or an .onnx file)."""
    try:
        from fastapi import FastAPI
    except ImportError as e:
        raise NanobertError("the server needs fastapi and uvicorn: pip install 'nanobert[serve]'") from e

    from nanobert.infer.pipelines import load_pipelines  # torch loads here, not when the CLI builds its parser

    cfg = config or ServeConfig()
    pipes = load_pipelines(model, batch_size=cfg.model_batch_size, **pipeline_kwargs)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanobert-model")
    batchers = {t: DynamicBatcher(fn, executor, cfg.max_batch_size, cfg.max_wait_ms) for t, fn in _batch_functions(pipes).items()}

    async def lifespan(app):
        for b in batchers.values():
            b.start()
        yield
        for b in batchers.values():
            await b.stop()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="nanobert", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batchers, app.state.pipelines, app.state.config = batchers, pipes, cfg
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    _install_error_handlers(app, ["GET /health"] + [f"POST /{t}" for t in pipes])
    _add_routes(app, pipes, batchers, cfg, Path(model).name)
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a NanobertError saying why not (bad port, port in use)."""
    if not 1 <= port <= 65535:
        raise NanobertError(f"port {port} is out of range: give a port from 1 to 65535 with --port")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise NanobertError(f"port {port} on {host} is in use by another program: choose another with --port") from None
        raise NanobertError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def serve(model: str | Path, config: ServeConfig | None = None, **pipeline_kwargs) -> None:
    """Load `model` and serve it until interrupted (blocking). The port is taken before the model loads."""
    try:
        import uvicorn
    except ImportError as e:
        raise NanobertError("the server needs fastapi and uvicorn: pip install 'nanobert[serve]'") from e
    cfg = config or ServeConfig()
    sock = bind(cfg.host, cfg.port)
    try:
        app = create_app(model, cfg, **pipeline_kwargs)
        log.info("serving %s on http://%s:%d (%s)", model, cfg.host, cfg.port, ", ".join(app.state.pipelines))
        uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
