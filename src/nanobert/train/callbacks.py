"""Loop callbacks that more than one trainer can use (see `nanobert.train.loop` for the protocol)."""

from __future__ import annotations

import logging
import math
import time

from nanobert.train.loop import LoopState

log = logging.getLogger(__name__)

# rule name -> the score of an epoch (its validation metrics, its number); the lowest score is kept
KEEP_RULES = {"loss": lambda m, epoch: m["loss"], "accuracy": lambda m, epoch: -m["accuracy"],
              "last": lambda m, epoch: -epoch}


class KeepBest:
    """The `keep` rule as a loop callback: after each validation pass, remember the trainable weights of the
    epoch the rule scores best; at the end, load them back. Also records the per-epoch history. Its state
    travels in checkpoints, so a resumed run keeps the same epoch."""

    def __init__(self, rule: str, steps_per_epoch: int):
        self.rule, self.steps_per_epoch = rule, steps_per_epoch
        self.load_state_dict({"history": [], "best_score": math.inf, "best_epoch": 0, "best_state": None,
                              "epoch": [0.0, 0, 0.0]})

    def on_step_end(self, state: LoopState) -> None:
        now = time.perf_counter()
        self.epoch = [self.epoch[0] + state.loss, self.epoch[1] + 1, self.epoch[2] + now - self._mark]
        self._mark = now

    def on_eval(self, state: LoopState, metrics: dict) -> None:
        epoch = math.ceil(state.step / self.steps_per_epoch)
        loss_sum, steps, seconds = self.epoch
        self.history.append({"epoch": epoch, "steps": state.step, "train_loss": loss_sum / max(steps, 1),
                             "val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"], "seconds": seconds})
        log.info("epoch %d: train loss %.4f, val loss %.4f, val accuracy %.4f, %.1f s", epoch,
                 self.history[-1]["train_loss"], metrics["loss"], metrics["accuracy"], seconds)
        score = KEEP_RULES[self.rule](metrics, epoch)
        if self.best_state is None or score < self.best_score:
            names = {n for n, p in state.model.named_parameters() if p.requires_grad}
            self.best_state = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items() if k in names}
            self.best_score, self.best_epoch = score, epoch
        self.epoch, self._mark = [0.0, 0, 0.0], time.perf_counter()

    def on_checkpoint(self, state: LoopState, path) -> None:
        self._mark = time.perf_counter()  # saving is not training time

    def on_train_end(self, state: LoopState) -> None:
        if self.best_state is not None:
            state.model.load_state_dict(self.best_state, strict=False)

    def state_dict(self) -> dict:
        return {"history": self.history, "best_score": self.best_score, "best_epoch": self.best_epoch,
                "best_state": self.best_state, "epoch": self.epoch}

    def load_state_dict(self, s: dict) -> None:
        self.history, self.best_score, self.best_epoch = list(s["history"]), s["best_score"], s["best_epoch"]
        self.best_state, self.epoch, self._mark = s["best_state"], list(s["epoch"]), time.perf_counter()
