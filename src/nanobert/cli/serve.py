"""`nanobert serve`: the HTTP JSON API (/fill-mask, /classify, /embed, /health)."""

from __future__ import annotations

import argparse

ORDER = 70

_EPILOG = """\
Routes (POST, JSON body {"inputs": "text" | ["text", ...]}):
  /fill-mask   + "top_k": 5     -> {"results": [[[{"word", "token", "score", "sequence"}, ...] per mask] per text]}
  /classify                     -> {"results": [{"label", "score", "scores"} per text]}
  /embed                        -> {"embeddings": [[...] per text], "dimensions": H}
  /health (GET)                 -> model, backend, tasks, limits
A model serves its own task and /embed (an .onnx file: the task it was exported for).
Bad requests get a 4xx and {"error": "..."}.

example:
  nanobert serve --model runs/mlm --port 8000
  curl -s localhost:8000/fill-mask -H 'content-type: application/json' -d '{"inputs": "Paris is the [MASK] of France."}'
"""


def _serve(args) -> int:
    from nanobert.infer.serve import ServeConfig, serve

    cfg = ServeConfig(
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        model_batch_size=args.model_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_inputs=args.max_inputs,
        max_text_chars=args.max_text_chars,
    )
    providers = args.provider.split(",") if args.provider else None
    serve(args.model, cfg, providers=providers, threads=args.threads)
    return 0


def register(sub) -> None:
    d = __import__("nanobert.infer.serve", fromlist=["ServeConfig"]).ServeConfig()
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP (fill-mask, classify, embed)",
        description="An HTTP JSON API with dynamic batching of concurrent requests and request validation.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="a model directory (PyTorch) or an .onnx file (ONNX Runtime)")
    p.add_argument("--host", default=d.host, help=f"interface to listen on (default {d.host}, this machine only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port, 1 to 65535 (default {d.port}); checked before the model loads")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help=f"texts batched from concurrent requests (default {d.max_batch_size})")
    p.add_argument("--model-batch-size", type=int, default=d.model_batch_size, help=f"texts per model call: a batch runs in length-sorted chunks of this many (default {d.model_batch_size}; larger on a GPU)")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help=f"how long a request waits to share a batch (default {d.max_wait_ms})")
    p.add_argument("--max-inputs", type=int, default=d.max_inputs, help=f"texts per request (default {d.max_inputs})")
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars, help=f"characters per text (default {d.max_text_chars})")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: the runtime's choice)")
    p.add_argument("--provider", default=None, help="ONNX Runtime execution providers, comma-separated (default: best available)")
    p.set_defaults(func=_serve)
