"""The output directory of a training command (finetune, pretrain, train-gpt): locked, checked, marked, in place.

Training writes checkpoints and metrics as it goes, so the output is used in place (a kill leaves the
checkpoints that `--resume` continues from) rather than as a temporary swapped in at the end.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable

from nanobert.fileio import MARKER, output_dir, read_marker, write_json


def training_output(path: str | os.PathLike, command: str, inputs: Iterable[str | os.PathLike | None],
                    overwrite: bool, resume: bool, checkpoints: str = "."):
    """`fileio.output_dir(path, command, inputs, overwrite, in_place=True, resume=resume)` for a training run.

    Under torchrun only rank 0 (the process that writes) locks and checks; the others use `path` as it is.
    A directory from before outputs were marked, holding `step-*` checkpoints under `path/checkpoints`,
    is taken as this command's output when resuming, so `--resume` keeps working on it.
    Example: `with training_output(cfg.out_dir, "pretrain", [cfg.data.dir], args.overwrite, args.resume) as out:`.
    """
    path = Path(path)
    inputs = [p for p in inputs if p]
    if int(os.environ.get("RANK", "0")) != 0:
        return contextlib.nullcontext(path)
    if resume and path.is_dir() and read_marker(path) is None and any((path / checkpoints).glob("step-*")):
        write_json(path / MARKER, {"command": command, "written": "before outputs were marked",
                                   "inputs": [str(p) for p in inputs]})
    return _remove_if_unused(path, output_dir(path, command, inputs, overwrite, in_place=True, resume=resume))


@contextlib.contextmanager
def _remove_if_unused(path: Path, output):
    """Run `output`; when the run fails before writing anything, leave no new directory (or marker) behind."""
    existed = path.exists()
    new = not existed or (path.is_dir() and not any(path.iterdir()))
    with output as out:
        try:
            yield out
        except BaseException:
            if new and path.is_dir() and [p.name for p in path.iterdir()] == [MARKER]:
                (path / MARKER).unlink()
                if not existed:
                    path.rmdir()
            raise
