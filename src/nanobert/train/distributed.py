"""Data-parallel training under `torchrun`: one process per device, gradients averaged by DDP.

`torchrun --nproc-per-node N -m nanobert pretrain ...` sets RANK, LOCAL_RANK and WORLD_SIZE;
`setup()` reads them, joins the process group (nccl on CUDA, gloo on CPU) and picks the device.
Without those variables everything runs in one process and these helpers are no-ops, so the
training code is the same in both cases. Only rank 0 writes files.

`parallel = "fsdp"` shards the weights, gradients and optimizer state over the processes instead
(PyTorch's FSDP2 `fully_shard`: each block of an `nn.ModuleList`, e.g. a transformer layer, then
the whole model), with the same launch. Checkpoints hold the full (gathered) weights and optimizer
state, written by rank 0, so a sharded run resumes from them as a DDP or one-process run would.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0  # this process's index among all processes
    local_rank: int = 0  # index on this machine (selects the GPU)
    world_size: int = 1  # number of processes
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the one process that writes logs, checkpoints and the final model."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:<local_rank> if CUDA is available, else cpu; otherwise `torch.device(device)`."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(device)


def setup(device: str = "auto") -> DistInfo:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1); return this process's place in it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def cleanup() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str = "auto"):
    """`with process_group(device) as info:` = `setup(device)`, then `cleanup()` on the way out. On a normal
    exit every process first waits for the others: a process that left while rank 0 still wrote its final
    files tore gloo's connection down under it (SIGABRT, "terminate called without an active exception").
    After an error nobody waits, since the others may never arrive. Before leaving, unreachable objects are
    collected while the interpreter is whole: a DDP model caught in a reference cycle keeps gloo work (and
    its tensors) alive until interpreter shutdown, where freeing them aborts the process."""
    info = setup(device)
    try:
        yield info
    except BaseException:
        cleanup()
        raise
    if info.enabled:
        gc.collect()
        barrier()
    cleanup()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over all processes in place (no-op in a single process); returns `t`."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj) -> list:
    """`[obj from rank 0, obj from rank 1, ...]`; `[obj]` in a single process."""
    if dist.is_available() and dist.is_initialized():
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wrap(model: torch.nn.Module, info: DistInfo, parallel: str = "ddp") -> torch.nn.Module:
    """`model` in DistributedDataParallel when several processes train it, else `model` itself. With
    parallel = "fsdp", `model` itself, sharded in place (build its optimizer afterwards)."""
    if not info.enabled:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for blocks in [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]:
            for block in blocks:  # one all-gather per block: only one block's full weights live at a time
                fully_shard(block)
        fully_shard(model)
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside DDP and/or torch.compile wrappers (what gets saved)."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model` was sharded by `wrap(..., parallel="fsdp")`."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of a sharded tensor (DTensor); any other tensor as it is."""
    return t.to_local() if hasattr(t, "to_local") else t


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict | None]:
    """The full weights and optimizer state (keyed by parameter name) of a sharded model, gathered to rank 0's
    CPU (other ranks get empty dicts). Every process must call it: it is a collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=opts)
    return weights, get_optimizer_state_dict(model, optimizer, options=opts) if optimizer is not None else None


def load_full_state(model: torch.nn.Module, weights: dict | None, optimizer=None, optim_state: dict | None = None):
    """Load full weights and/or a full optimizer state (`full_state`'s) into a sharded model and its optimizer,
    each process keeping its shard. Every process must call it with the same dicts."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True)
    if weights is not None:
        set_model_state_dict(model, weights, options=opts)
    if optim_state is not None:
        set_optimizer_state_dict(model, optimizer, optim_state, options=opts)
