"""Training checkpoints that survive a kill at any moment and resume bit for bit.

A checkpoint is a directory `step-00001200/` holding everything the next step depends on:

    model.safetensors   the weights (shared/tied tensors stored once)
    optimizer.pt        AdamW moments and step counts (read back with weights_only=True)
    rng.safetensors     every process's torch (and CUDA) generator states
    state.json          step, data position, Python/NumPy RNG states, metrics, config
    callbacks.pt        the training callbacks' own state (e.g. the weights of the best epoch so far)

It is written under a temporary name and renamed into place (`fileio.atomic_dir`), so a
directory named `step-*` is always complete; after each save only the newest `keep` remain.
The learning rate is a pure function of the step and masking a pure function of the data
position, so nothing else needs saving.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from nanobert.errors import NanobertError
from nanobert.fileio import atomic_dir
from nanobert.train import distributed

log = logging.getLogger(__name__)
_NAME = re.compile(r"^step-(\d{8})$")


def capture_rng() -> dict:
    """This process's RNG states: {"torch": ByteTensor, "cuda": [ByteTensor...], "numpy": [...], "python": [...]}."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }


def restore_rng(state: dict) -> None:
    """Inverse of `capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints in `run_dir`, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in `run_dir`, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, rng_states: list[dict], keep: int = 3, extra: dict | None = None,
                    full_state: tuple[dict, dict] | None = None) -> Path:
    """Write `run_dir/step-{step:08d}` atomically, then delete all but the newest `keep` checkpoints.

    `state` is JSON-able (data position, metrics, config); `rng_states` holds one `capture_rng()`
    per process, in rank order; `extra` (tensors, numbers, strings) goes to callbacks.pt. `full_state`: the
    (weights, optimizer state) of a sharded model (`distributed.full_state`), saved instead of `model`'s.
    """
    path = Path(run_dir) / f"step-{step:08d}"
    for stale in Path(run_dir).glob(".step-*.tmp"):  # left by a run killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_dir(path) as tmp:
        if full_state is None:
            save_model(model, str(tmp / "model.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        else:
            save_file(_stored_once(full_state[0]), str(tmp / "model.safetensors"))
            torch.save(full_state[1], tmp / "optimizer.pt")
        tensors, host = {}, []
        for r, s in enumerate(rng_states):
            tensors[f"rank{r}.torch"] = s["torch"]
            for i, c in enumerate(s["cuda"]):
                tensors[f"rank{r}.cuda{i}"] = c
            host.append({"numpy": s["numpy"], "python": s["python"], "num_cuda": len(s["cuda"])})
        save_file(tensors, str(tmp / "rng.safetensors"))
        if extra:
            torch.save(extra, tmp / "callbacks.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step, "rng": host}) + "\n", encoding="utf-8")
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    log.debug("saved checkpoint %s", path)
    return path


def _stored_once(weights: dict) -> dict:
    """`weights` without the second name of a tied tensor (safetensors stores a tensor once)."""
    seen, out = set(), {}
    for name, t in weights.items():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            out[name] = t.contiguous()
    return out


def _read(path: Path, what: str, reader):
    """`reader(path)`, or one clear error when the file is missing or damaged."""
    try:
        return reader(path)
    except FileNotFoundError:
        raise NanobertError(f"checkpoint file {path} is missing; resume from an older checkpoint "
                            f"(pass its step-* directory) or start again without --resume") from None
    except Exception as e:  # a truncated or overwritten file: torch, safetensors and json each raise their own
        raise NanobertError(f"checkpoint file {path} is damaged ({what}: {type(e).__name__}); delete "
                            f"{path.parent} to resume from the checkpoint before it") from None


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    rank: int = 0) -> dict:
    """Load weights (and optimizer state) from checkpoint `path`; restore `rank`'s RNG states; return state.json
    (with the callbacks' saved state under "callbacks")."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise NanobertError(f"{path} is not a checkpoint (no state.json); pass a step-XXXXXXXX directory")
    state = _read(path / "state.json", "state", lambda p: json.loads(p.read_text(encoding="utf-8")))
    sharded = distributed.is_sharded(model)
    if sharded:
        weights = _read(path / "model.safetensors", "weights", lambda p: load_file(str(p)))
        missing, unexpected = set(model.state_dict()) - set(weights), set(weights) - set(model.state_dict())
    else:
        missing, unexpected = _read(path / "model.safetensors", "weights",
                                    lambda p: load_model(model, str(p), strict=False))
    if missing or unexpected:
        raise NanobertError(f"checkpoint {path} does not fit this model: missing {sorted(missing)[:5]}, "
                            f"unexpected {sorted(unexpected)[:5]}; resume with the same model settings")
    opt_state = _read(path / "optimizer.pt", "optimizer", lambda p: torch.load(p, weights_only=True)) \
        if optimizer is not None else None
    by_name = opt_state is not None and any(isinstance(p, str) for g in opt_state["param_groups"] for p in g["params"])
    if sharded != by_name and opt_state is not None:
        raise NanobertError(f"checkpoint {path} was written by a {'sharded' if by_name else 'DDP or one-process'} run;"
                            f" resume it with the same train.parallel")
    if sharded:
        distributed.load_full_state(model, weights, optimizer, opt_state)
    elif opt_state is not None:
        optimizer.load_state_dict(opt_state)
    tensors = _read(path / "rng.safetensors", "random states", lambda p: load_file(str(p)))
    extra = path / "callbacks.pt"
    state["callbacks"] = _read(extra, "callbacks", lambda p: torch.load(p, weights_only=True)) \
        if extra.exists() else {}
    hosts = state.pop("rng")
    if rank >= len(hosts):
        raise NanobertError(f"checkpoint {path} was written by {len(hosts)} processes; resume with as many")
    host = hosts[rank]
    restore_rng({"torch": tensors[f"rank{rank}.torch"],
                 "cuda": [tensors[f"rank{rank}.cuda{i}"] for i in range(host["num_cuda"])],
                 "numpy": host["numpy"], "python": host["python"]})
    return state
