"""What the reward model and DPO share: the same split of the comparison pairs, and the same run of the loop.

    train_rows, val_rows = split_pairs(data, cfg)        # val held out before any flipping or selection
    result = train_pairwise(model, batches, eval_data, cfg, out_dir, len(train_rows), len(val_rows),
                            "val_pairwise_accuracy")

`cfg` is a RewardConfig or a DPOConfig: both have seed, val_fraction, flip_fraction, max_pairs,
min_margin and loop. The model given to the loop returns (scores, loss) for a batch of pairs; its
held-out accuracy is the share of pairs whose chosen side scores higher (`train.loop.evaluate`).
"""

from __future__ import annotations

import dataclasses
import time

from nanobert.align.records import read_pairs, select_pairs
from nanobert.align.sft import split_indices
from nanobert.train.loop import evaluate, train


def split_pairs(data, cfg) -> tuple[list[dict], list[dict]]:
    """(training pairs after select_pairs' flips and filters, held-out pairs as the labeller gave them)."""
    rows = read_pairs(data)
    train_idx, val_idx = split_indices(len(rows), cfg.val_fraction, cfg.seed)
    val_rows = [rows[i] for i in val_idx]  # held out before any flipping: accuracy against the labeller
    train_rows = select_pairs([rows[i] for i in train_idx], flip_fraction=cfg.flip_fraction,
                              max_pairs=cfg.max_pairs, min_margin=cfg.min_margin, seed=cfg.seed)
    return train_rows, val_rows


def train_pairwise(model, batches, eval_data, cfg, out_dir, train_pairs: int, val_pairs: int, accuracy_key: str,
                   resume: bool = False, callbacks=()) -> dict:
    """Run the loop; return {"steps", "train_pairs", "val_pairs", "train_seconds", "train_loss"} and, with
    held-out pairs, "val_loss" and `accuracy_key` (the final model's pairwise accuracy)."""
    start = time.perf_counter()
    state = train(model, batches, cfg.loop, out_dir, eval_data=eval_data, resume=resume, callbacks=callbacks,
                  run_config=dataclasses.asdict(cfg))
    result = {"steps": state.step, "train_pairs": train_pairs, "val_pairs": val_pairs,
              "train_seconds": round(time.perf_counter() - start, 1), "train_loss": state.loss}
    if eval_data is not None:
        final = evaluate(model, eval_data(), state.info.device)
        result.update({"val_loss": final["loss"], accuracy_key: final["accuracy"]})
    return result
