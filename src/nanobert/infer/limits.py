"""How much one fill-mask request may ask for, shared by the pipelines, the CLI and the HTTP server.

A module of its own, free of torch, so that the server's configuration (read when the CLI builds
its parser) and the pipelines enforce the same two numbers.
"""

MAX_MASKS_PER_TEXT = 20  # [MASK] tokens in one fill-mask text; each costs a vocabulary-wide row of logits
MAX_TOP_K = 50  # candidates per [MASK]; with 20 masks, at most 1,000 candidate sequences to decode per text
