"""One straight training function for any model that returns `(logits, loss)`.

    result = train(model, batches, LoopConfig(max_steps=1000, lr=1e-3), out_dir="runs/x",
                   eval_data=lambda: val_batches, callbacks=[my_callback])

The contract, all of it:

- `model(**batch)` returns `(logits, loss)`; `loss` is the mean over the batch's targets. Used for
  masked LM (BERT, sparse logits `(M, V)`) and causal LM (GPT, dense logits `(B, T, V)`) alike.
- `batches` is an endless iterator of dicts of tensors, each one micro-batch for this process.
  If a batch has `labels`, targets are the positions with `labels != -100`: micro-batches (and
  processes) are weighted by their share of targets, so accumulation and DDP give exactly the
  mean over the whole global batch. If `batches` has `state_dict()` / `load_state_dict()`, its
  position is saved in checkpoints and restored on resume.
- `eval_data()` returns a fresh, finite iterable of this process's validation batches.
- `callbacks` are objects with any of `on_step_end(state)`, `on_eval(state, metrics)`,
  `on_checkpoint(state, path)`, `on_train_end(state)`; `state` is a `LoopState`. A callback with
  `state_dict()` / `load_state_dict()` (tensors, numbers, strings, lists, dicts) has its state saved in
  each checkpoint and restored on resume.

`cfg.max_steps` ends the run (and `cfg.time_limit_min`, when set, ends it earlier; with `cfg.budget = "time"`
the schedule's decay follows that limit too: train.budget): the last step
is evaluated and checkpointed like any other. Each step: learning rate -> eval / checkpoint -> micro-steps (forward, backward) -> clip -> optimizer
step -> zero grads -> log. A non-finite loss or gradient stops the run with `NanobertError` before
the optimizer touches the weights, so the last checkpoint stays the last good one. Checkpoints hold
everything the following steps depend on, so `resume=True` after a kill at any moment ends with
the same weights, bit for bit on CPU, as a run that was never interrupted. Train rows of
metrics.csv carry tokens/s and model FLOPs utilisation (`train.flops`); under torchrun,
`cfg.parallel` chooses DDP or FSDP (`train.distributed`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from nanobert.config import check_fields
from nanobert.errors import NanobertError
from nanobert.train import checkpoints, distributed
from nanobert.train.budget import Budget
from nanobert.train.flops import FlopModel, flop_model, peak_flops
from nanobert.train.metrics import MetricsLogger, count_correct, perplexity
from nanobert.train.optim import make_optimizer
from nanobert.train.plots import plot_learning_curves
from nanobert.train.precision import PRECISIONS, autocast_for, choose_by_timing, needs_timing, to_device, use_bf16
from nanobert.train.schedule import lr_at

log = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    max_steps: int = 1000  # optimizer steps (each = grad_accum micro-batches on every process)
    time_limit_min: float = 0.0  # also stop (eval, checkpoint, save) after this many minutes; 0: no limit
    budget: str = "steps"  # steps: the schedule runs over max_steps | time: its decay ends with time_limit_min
    # whatever the machine's speed (train.budget; max_steps then only caps)
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    min_lr: float = 5e-5  # floor the schedule decays to and then holds
    warmup_steps: int = 100  # linear warmup from 0: large early updates on random weights diverge
    decay_steps: int | None = None  # None: decay over max_steps - warmup_steps
    schedule: str = "cosine"  # cosine | linear | constant
    weight_decay: float = 0.01  # on >= 2-D weights only (see optim.py)
    beta1: float = 0.9
    beta2: float = 0.98  # 0.98 rather than 0.999: steadier for transformers at high learning rates
    eps: float = 1e-6
    grad_accum: int = 1  # micro-batches per optimizer step (a larger batch without more memory)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    eval_every: int = 200  # steps between validation passes (also at the end)
    eval_first: bool = True  # also evaluate at step 0: the untrained model's point on the curve
    checkpoint_every: int = 500  # steps between checkpoints (also at the end); 0: only at the end
    max_checkpoints: int = 3  # keep this many newest checkpoints
    log_every: int = 10  # steps between train-metric rows in the CSV / log
    precision: str = "auto"  # auto (bf16 autocast on GPUs that support it; on a CPU with bf16 instructions, bf16 when a
    # timed step of the model is faster; else fp32: see train.precision) | fp32
    # | bf16
    compile: bool = False  # torch.compile the model: faster steps after a slow first one
    parallel: str = "ddp"  # under torchrun: ddp (a full copy per process) | fsdp (weights, gradients and optimizer
    # state sharded over the processes: FSDP2's fully_shard; the loop builds the optimizer)
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    progress: bool = True  # tqdm bar with loss, tokens/s and ETA
    tensorboard: bool = True  # write TensorBoard events when tensorboard is installed
    plots: bool = True  # write loss.png / accuracy.png at the end

    def __post_init__(self):
        check_fields(self, {
            "max_steps": ">= 1", "time_limit_min": ">= 0", "lr": "> 0", "min_lr": ">= 0", "warmup_steps": ">= 0",
            "decay_steps": ">= 0", "weight_decay": ">= 0", "beta1": "[0, 1)", "beta2": "[0, 1)", "eps": "> 0",
            "grad_accum": ">= 1", "grad_clip": ">= 0", "eval_every": ">= 1", "checkpoint_every": ">= 0",
            "max_checkpoints": ">= 0", "log_every": ">= 1"},
            {"schedule": ["cosine", "linear", "constant"], "precision": PRECISIONS,
             "parallel": ["ddp", "fsdp"], "budget": ["steps", "time"]}, prefix="train.")
        if self.budget == "time" and self.time_limit_min <= 0:
            raise NanobertError("train.budget = time needs train.time_limit_min > 0: the schedule follows that limit")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise NanobertError(f"train.device is {self.device!r}, but torch sees no CUDA device; use cpu or auto")


@dataclass
class LoopState:
    step: int  # optimizer steps done
    lr: float
    loss: float  # last step's mean training loss (over all processes)
    tokens: int  # tokens seen so far (all processes)
    model: torch.nn.Module  # the plain model (not DDP-wrapped)
    optimizer: torch.optim.Optimizer
    info: distributed.DistInfo
    metrics: dict = field(default_factory=dict)  # last validation metrics
    flops: float = 0.0  # model FLOPs of the steps of this call (all processes; see train.flops)
    precision: str = "fp32"  # what the run trains in: cfg.precision, with "auto" resolved
    clock: Budget | None = None  # the time spent and the schedule's position (train.budget)


def _num_targets(batch: dict) -> int:
    labels = batch.get("labels")
    return int((labels != -100).sum()) if torch.is_tensor(labels) else 1


def _num_tokens(batch: dict) -> int:
    mask = batch.get("attention_mask")
    return int(mask.sum()) if torch.is_tensor(mask) else int(batch["input_ids"].numel())


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict], device: torch.device,
             precision: str = "fp32") -> dict:
    """Mean loss over all targets, accuracy and perplexity of `model` on `batches` (summed over processes)."""
    autocast = autocast_for(precision, device)
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)  # loss * targets, correct, targets
    for batch in batches:
        batch = to_device(batch, device)
        with autocast():
            logits, loss = model(**batch)
        n = _num_targets(batch)
        correct = count_correct(logits, batch["labels"])[0] if "labels" in batch else 0
        totals += torch.tensor([float(loss) * n, correct, n], dtype=torch.float64)
    model.train(was_training)
    loss_sum, correct, n = distributed.all_reduce_sum(totals).tolist()
    if n == 0:
        return {}
    loss = loss_sum / n
    return {"loss": loss, "accuracy": correct / n, "perplexity": perplexity(loss)}


def _call(callbacks, name: str, *args) -> None:
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if fn is not None:
            fn(*args)


def _diverged(what: str, out_dir: Path | None):
    last_good = checkpoints.latest_checkpoint(out_dir) if out_dir is not None else None
    raise NanobertError(f"training diverged: {what}; stopped without saving; last good checkpoint: "
                        f"{last_good or 'none'}; lower the learning rate or raise warmup-steps")


def _callback_states(callbacks) -> dict:
    """{class name: state_dict()} of the callbacks that have one (saved in checkpoints)."""
    return {type(cb).__name__: cb.state_dict() for cb in callbacks if hasattr(cb, "state_dict")}


def _resume(resume, out_dir: Path | None, model, optimizer, batches, callbacks, info) -> tuple[int, int, dict, dict]:
    """Load the checkpoint to resume from (or check that `out_dir` holds none); returns (step, tokens, metrics,
    {"precision": what it trained in, "clock": its Budget state}, empty when unknown)."""
    if not resume:
        if out_dir is not None and checkpoints.latest_checkpoint(out_dir) is not None:
            raise NanobertError(f"{out_dir} already holds checkpoints; pass --resume to continue it or pick a new "
                                "out-dir")
        return 0, 0, {}, {}
    if out_dir is None and not isinstance(resume, (str, Path)):
        raise NanobertError("resume needs the run's output directory")
    ckpt = Path(resume) if isinstance(resume, (str, Path)) else checkpoints.latest_checkpoint(out_dir)
    if ckpt is None:
        raise NanobertError(f"nothing to resume: no checkpoint in {out_dir}; run without --resume")
    saved = checkpoints.load_checkpoint(ckpt, model, optimizer, rank=info.rank)
    if saved.get("data") is not None and hasattr(batches, "load_state_dict"):
        batches.load_state_dict(saved["data"])
    for cb in callbacks:
        if hasattr(cb, "load_state_dict") and type(cb).__name__ in saved.get("callbacks", {}):
            cb.load_state_dict(saved["callbacks"][type(cb).__name__])
    log.info("resuming from %s (step %d)", ckpt, saved["step"])
    kept = {"precision": saved.get("precision", ""), "clock": saved.get("clock")}
    return saved["step"], saved.get("tokens", 0), saved.get("metrics") or {}, kept


def _eval_and_checkpoint(state: LoopState, cfg: LoopConfig, final: bool, fresh: bool, eval_data, batches,
                         out_dir: Path | None, logger, callbacks, run_config) -> None:
    """Step 2 of each step: a validation pass and a checkpoint when they are due."""
    step, info = state.step, state.info
    due = step % cfg.eval_every == 0 and (step > 0 or cfg.eval_first)
    if eval_data is not None and fresh and (due or final):
        state.metrics = evaluate(state.model, eval_data(), info.device, state.precision)
        if state.metrics:
            log.info("step %d val loss %.4f accuracy %.4f perplexity %.2f", step,
                     state.metrics["loss"], state.metrics["accuracy"], state.metrics["perplexity"])
            if logger:
                logger.log(step, "val", **state.metrics)
            _call(callbacks, "on_eval", state, state.metrics)
    if out_dir is None or not fresh or step == 0 or not (
            final or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
        return
    bad = sum(int(not torch.isfinite(distributed.local(p)).all()) for p in state.model.parameters())
    if distributed.all_reduce_sum(torch.tensor(float(bad))).item():
        _diverged(f"the weights became non-finite by step {step}", out_dir)
    rngs = distributed.all_gather_objects(checkpoints.capture_rng())
    sharded = distributed.full_state(state.model, state.optimizer) if distributed.is_sharded(state.model) else None
    if info.is_main:
        data_pos = batches.state_dict() if hasattr(batches, "state_dict") else None
        path = checkpoints.save_checkpoint(
            out_dir, step, state.model, state.optimizer,
            {"tokens": state.tokens, "data": data_pos, "metrics": state.metrics, "config": run_config,
             "precision": state.precision, "clock": state.clock.state_dict() if state.clock else None},
            rngs, keep=cfg.max_checkpoints, extra=_callback_states(callbacks), full_state=sharded)
        _call(callbacks, "on_checkpoint", state, path)
    distributed.barrier()


def _micro_steps(train_model, micro: list[dict], autocast, info: distributed.DistInfo,
                 flops: FlopModel, count: bool = True) -> torch.Tensor:
    """Step 3: forward and backward over this process's micro-batches, each weighted by its share of the
    global targets. Returns (5,) float64 sums: weighted loss, correct, targets, tokens, model FLOPs.
    `count=False` leaves correct at 0: the argmax over (M, V) logits costs as much as a layer, and only
    the steps that write a train row use it."""
    counts = [_num_targets(b) for b in micro]
    total = distributed.all_reduce_sum(torch.tensor(float(sum(counts)), dtype=torch.float64)).item()
    sums = torch.zeros(5, dtype=torch.float64)
    for i, batch in enumerate(micro):
        last = i == len(micro) - 1
        if hasattr(train_model, "set_requires_gradient_sync"):  # FSDP: reduce-scatter after the last only
            train_model.set_requires_gradient_sync(last)
            sync = contextlib.nullcontext()
        else:
            sync = contextlib.nullcontext() if last or not info.enabled else train_model.no_sync()
        weight = counts[i] / total * info.world_size if total > 0 else 1.0 / len(micro)
        with sync:
            with autocast():
                logits, loss = train_model(**batch)
            (loss * weight).backward()
        correct = count_correct(logits.detach(), batch["labels"])[0] if count and "labels" in batch else 0
        tokens = _num_tokens(batch)
        seq_len = batch["input_ids"].shape[-1] if torch.is_tensor(batch.get("input_ids")) else 0
        sums += torch.tensor([loss.item() * weight / info.world_size, correct, counts[i], tokens,
                              flops.batch_flops(tokens, counts[i], seq_len)], dtype=torch.float64)
    return sums


def _clip_and_check(model, sums: torch.Tensor, grad_clip: float, step: int, out_dir) -> list[float]:
    """Step 4: clip the global gradient norm; stop on a non-finite loss or gradient before the weights are
    touched. Returns [loss, correct, targets, tokens, FLOPs] summed over processes."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor
        grad_norm = grad_norm.full_tensor()
    sums = distributed.all_reduce_sum(torch.cat([sums, grad_norm.detach().double().reshape(1).cpu()]))
    step_loss, correct, n, step_tokens, step_flops, _ = sums.tolist()
    if not (math.isfinite(step_loss) and math.isfinite(float(grad_norm))):
        what = f"the loss became {step_loss}" if not math.isfinite(step_loss) else "the gradient became inf"
        _diverged(f"{what} at step {step + 1}", out_dir)
    return [step_loss, correct, n, step_tokens, step_flops]


class _Progress:
    """Step 6: the progress bar and the train rows of metrics.csv (tokens/s and MFU since the last row)."""

    def __init__(self, cfg: LoopConfig, state: LoopState, logger, peak: float):
        self.cfg, self.logger = cfg, logger
        self.peak = peak * state.info.world_size  # FLOP/s of all processes' devices
        self.bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not (cfg.progress and state.info.is_main),
                        dynamic_ncols=True, unit="step")
        self.t_last, self.tokens_last, self.flops_last = time.perf_counter(), state.tokens, state.flops

    def logs(self, step: int) -> bool:
        """Whether step `step` writes a train row (every process answers alike: no rank-dependent sums)."""
        return step % self.cfg.log_every == 0 or step == self.cfg.max_steps

    def log(self, state: LoopState, correct: float, n: float) -> None:
        now = time.perf_counter()
        seconds = max(now - self.t_last, 1e-9)
        tok_s = (state.tokens - self.tokens_last) / seconds
        mfu = (state.flops - self.flops_last) / seconds / self.peak
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{state.loss:.3f}", lr=f"{state.lr:.2e}", tok_s=f"{tok_s:,.0f}",
                             mfu=f"{100 * mfu:.1f}%")
        if self.logger and self.logs(state.step):
            acc = correct / n if n else float("nan")
            self.logger.log(state.step, "train", loss=state.loss, accuracy=acc, perplexity=perplexity(state.loss),
                            lr=state.lr, tokens_per_s=tok_s, mfu=mfu)
            self.t_last, self.tokens_last, self.flops_last = now, state.tokens, state.flops


def _mean_over(info: distributed.DistInfo) -> Callable[[float], float]:
    return lambda value: distributed.all_reduce_sum(torch.tensor(value, dtype=torch.float64)).item() / info.world_size


def train(model: torch.nn.Module, batches: Iterator[dict], cfg: LoopConfig, out_dir: str | Path | None = None, *,
          eval_data: Callable[[], Iterable[dict]] | None = None, optimizer: torch.optim.Optimizer | None = None,
          resume: bool | str | Path = False, callbacks: Iterable = (), info: distributed.DistInfo | None = None,
          run_config: dict | None = None) -> LoopState:
    """Train `model` for `cfg.max_steps` optimizer steps; checkpoints, logs and plots go to `out_dir`.

    `resume=True` continues from the newest checkpoint in `out_dir` (a path picks one). `info`
    comes from `distributed.setup()` (default: one process on `cfg.device`). `run_config` is
    stored in checkpoints for the record. Returns the final `LoopState`.
    """
    info = info or distributed.DistInfo(device=distributed.pick_device(cfg.device))
    callbacks = list(callbacks)
    model.to(info.device)
    if cfg.parallel == "fsdp" and info.enabled:
        if optimizer is not None:
            raise NanobertError("train.parallel = fsdp shards the weights before the loop builds the optimizer; "
                                "call train() without an optimizer, or use ddp")
        distributed.wrap(model, info, "fsdp")  # in place: `model` is the sharded model
    if optimizer is None:
        optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), cfg.eps)
    decay_steps = cfg.decay_steps if cfg.decay_steps is not None else max(1, cfg.max_steps - cfg.warmup_steps)
    out_dir = Path(out_dir) if out_dir is not None else None
    start_step, tokens, metrics, kept = _resume(resume, out_dir, model, optimizer, batches, callbacks, info)
    precision = kept.get("precision", "")
    if not precision or cfg.precision != "auto":  # a resumed "auto" run keeps what it chose
        precision = cfg.precision
        if needs_timing(precision, info.device):
            precision, batches = choose_by_timing(model, batches, info.device, distributed.all_reduce_sum)
    autocast = autocast_for(precision, info.device)
    flops = flop_model(model)
    peak = peak_flops(info.device, torch.bfloat16 if use_bf16(precision, info.device) else torch.float32)
    logger = MetricsLogger(out_dir, start_step if resume else None, cfg.tensorboard) \
        if out_dir is not None and info.is_main else None
    train_model = model if distributed.is_sharded(model) else distributed.wrap(model, info)
    if cfg.compile:
        train_model = torch.compile(train_model)
    state = LoopState(step=start_step, lr=0.0, loss=float("nan"), tokens=tokens, model=model,
                      optimizer=optimizer, info=info, metrics=metrics,
                      precision="bf16" if use_bf16(precision, info.device) else "fp32",
                      clock=Budget.start(cfg, decay_steps, kept.get("clock"), agree=_mean_over(info)))
    progress = _Progress(cfg, state, logger, peak)
    model.train()
    try:
        while True:
            position, late = state.clock.tick(state.step)  # every process agrees on both
            final = late or state.step >= cfg.max_steps
            # 1. learning rate: a pure function of the step (or, with budget "time", of the time spent as well)
            state.lr = lr_at(position, max_lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps,
                             decay_steps=decay_steps, kind=cfg.schedule)
            for group in optimizer.param_groups:
                group["lr"] = state.lr * group.get("lr_scale", 1.0)
            # 2. eval and checkpoint (skipped at the step we resumed at: done before the kill)
            fresh = not (resume and state.step == start_step)
            _eval_and_checkpoint(state, cfg, final, fresh, eval_data, batches, out_dir, logger, callbacks, run_config)
            if final:
                break
            # 3. micro-steps: forward and backward
            try:
                micro = [to_device(next(batches), info.device) for _ in range(cfg.grad_accum)]
            except StopIteration:
                log.warning("the batch iterator ran out at step %d; stopping", state.step)
                break
            sums = _micro_steps(train_model, micro, autocast, info, flops, count=progress.logs(state.step + 1))
            # 4. clip; stop on a non-finite loss or gradient
            step_loss, correct, n, step_tokens, step_flops = _clip_and_check(model, sums, cfg.grad_clip, state.step,
                                                                             out_dir)
            # 5. optimizer step, zero grads
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step, state.loss, state.tokens = state.step + 1, step_loss, state.tokens + int(step_tokens)
            state.flops += step_flops
            # 6. log
            progress.log(state, correct, n)
            _call(callbacks, "on_step_end", state)
        _call(callbacks, "on_train_end", state)  # still inside: its log lines reach train.log
    finally:
        progress.bar.close()
        if logger:
            logger.close()
    if logger and cfg.plots:
        plot_learning_curves(out_dir / "metrics.csv", out_dir)
    return state


def loop_config_dict(cfg: LoopConfig) -> dict:
    """The config as a plain dict (for the record in checkpoints and logs)."""
    return asdict(cfg)
