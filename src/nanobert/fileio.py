"""Write files so that a crash never leaves anything half-written.

Every writer in nanobert goes through these helpers: the content goes to a temporary name
beside the target, is flushed to disk, and only then renamed over the target (rename is
atomic on POSIX within one filesystem).

Command outputs (a prepared corpus, a tokenizer, a fine-tuned model) go through `output_dir`: it
locks the output against a second writer, refuses to replace anything that is not a previous
output of the same command (or that holds the command's own inputs), and repairs what killed
runs left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from nanobert.errors import NanobertError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success rename it to `path`, on error remove it.

    Example: `with atomic_path("model.safetensors") as tmp: save_file(tensors, tmp)`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.pid{os.getpid()}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private (0600); the result should look like any new file
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Atomically write `obj` as pretty, key-sorted-as-given JSON to `path`."""
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


# -- directories ------------------------------------------------------------------------------
# An output directory OUT is written as a hidden temporary sibling `.OUT.pid<PID>-<random>.tmp`
# and swapped in whole. Beside it live, only while a command runs, `.OUT.lock` (who writes OUT)
# and, only inside the swap when the filesystem cannot exchange two names at once, `.OUT.old`.
MARKER = ".nanobert-output.json"  # written into every command output: {"command": ..., "written": ...}


def _old_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _temp_re(path: Path) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(path.name)}\.pid(\d+)-\w+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def recover_dir(path: str | os.PathLike) -> None:
    """Repair what a killed writer left beside directory `path`.

    A kill between the two renames of a swap leaves `path` missing and the previous content in
    `.NAME.old`: it is renamed back. A `.NAME.old` beside an existing `path` is removed, and so are
    temporaries whose writer process is gone. Safe to call from readers; a no-op when all is well.
    """
    path = Path(path)
    old = _old_path(path)
    if old.is_dir():
        if not path.exists():
            with contextlib.suppress(FileNotFoundError):
                os.rename(old, path)
                log.warning("restored %s, left aside by an interrupted write", path)
        else:
            shutil.rmtree(old, ignore_errors=True)
    remove_dead_temporaries(path)


def remove_dead_temporaries(path: str | os.PathLike) -> None:
    """Remove the temporaries (`.NAME.pid<PID>-*.tmp`, files or directories) of writers of `path` that are gone."""
    path = Path(path)
    pattern = _temp_re(path)
    if not path.parent.is_dir():
        return
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            log.info("removing %s, left by a killed run", entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names `a` and `b` in one step (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    fn = getattr(_LIBC, "renameat2", None) if _LIBC is not None else None
    if fn is None or not EXCHANGE:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):  # filesystem or kernel without it
        return False
    raise OSError(err, os.strerror(err), str(a))


try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no C library to ask
    _LIBC = None
EXCHANGE = True  # use the one-step exchange where available (tests switch it off to check the fallback)


def _swap_in(tmp: Path, path: Path) -> None:
    """Put directory `tmp` at `path`; the previous `path` (if any) is removed."""
    if path.exists() and _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old content; a kill here leaves a dead temporary
        return
    if path.exists():
        # Two renames: a kill between them leaves `path` missing; recover_dir (run by the next
        # writer, or any reader) renames `.NAME.old` back.
        old = _old_path(path)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold an exclusive lock on output directory `path` (a `.NAME.lock` file beside it) while the block runs.

    A second writer fails at once with a NanobertError naming the process that holds the lock.
    """
    lock = _lock_path(Path(os.path.abspath(path)))
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = {}
            with contextlib.suppress(OSError, ValueError):
                who = json.loads(os.pread(fd, 4096, 0) or b"{}")
            os.close(fd)
            who = who if isinstance(who, dict) else {}
            raise NanobertError(f"{path} is being written by another run (pid {who.get('pid', '?')}, "
                                f"nanobert {who.get('command', '?')}, started {who.get('started', '?')}); "
                                "wait for it to finish or choose another output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino  # not unlinked by the previous holder meanwhile
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        info = {"pid": os.getpid(), "command": command, "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def read_marker(path: str | os.PathLike) -> dict | None:
    """The `.nanobert-output.json` of output directory `path`, or None when it has none (or it is unreadable)."""
    try:
        marker = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def check_output(path: str | os.PathLike, command: str, inputs: Iterable[str | os.PathLike] = (),
                 overwrite: bool = False, resume: bool = False) -> None:
    """Refuse to write `command`'s output to `path` where that would destroy something.

    Refused: `path` equal to or holding one of `inputs`; `path` an existing file; a non-empty
    directory that is not a previous output of the same command (no marker); a previous output
    unless `overwrite` (replace it) or `resume` (continue it) is set.
    """
    path = Path(path)
    target = path.resolve()
    for item in inputs:
        inp = Path(item).resolve()
        if inp == target or target in inp.parents:
            raise NanobertError(f"output {path} {'is' if inp == target else 'contains'} the input {item}; "
                                "writing it would delete the input: choose another output")
    if path.is_file() or (path.exists() and not path.is_dir()):
        raise NanobertError(f"output {path} exists and is not a directory; choose another output")
    if not path.is_dir() or not any(path.iterdir()):
        return
    marker = read_marker(path)
    if marker is None:
        raise NanobertError(f"output {path} is not empty and was not written by nanobert {command} "
                            f"(no {MARKER}); choose a new directory, or empty it yourself")
    if marker.get("command") != command:
        raise NanobertError(f"output {path} holds the output of nanobert {marker.get('command')}, "
                            f"not of nanobert {command}; choose another output")
    if not (overwrite or resume):
        raise NanobertError(f"output {path} holds a previous output of nanobert {command}; "
                            "pass --overwrite to replace it, or choose another output")


def _write_marker(directory: Path, command: str, inputs) -> None:
    write_json(directory / MARKER, {"command": command, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
                                    "inputs": [str(p) for p in inputs]})


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, command: str | None = None, inputs: Iterable[str | os.PathLike] = (),
               overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `path` whole, on error it is removed.

    Used for outputs made of several files (a checkpoint, a saved model) so that a reader never sees
    a directory with some files new and some missing. Leftovers of killed writers are repaired first
    (`recover_dir`). With `command` (a user-facing output, e.g. "prepare") the run also holds the
    output's lock, refuses outputs that would destroy data (`check_output`) and marks its output.
    """
    path = Path(os.path.abspath(path)) if command else Path(path)  # "--out ." has a name only once absolute
    inputs = list(inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(path, command) if command else contextlib.nullcontext():
        recover_dir(path)
        if command:
            check_output(path, command, inputs, overwrite)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.pid{os.getpid()}-", suffix=".tmp", dir=path.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); the result should look like any new directory
        try:
            yield tmp
            if command:
                _write_marker(tmp, command, inputs)
            _swap_in(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, command: str, inputs: Iterable[str | os.PathLike] = (),
               overwrite: bool = False, *, in_place: bool = False, resume: bool = False) -> Iterator[Path]:
    """The one way a command writes its output directory: locked, checked, marked, never destroying input.

    Default: like `atomic_dir` (write into the yielded temporary; it replaces `path` whole on success).
    `in_place=True` (training runs that write checkpoints and metrics as they go) yields `path` itself:
    a previous output of the same command is emptied first with `overwrite`, kept with `resume`.
    Example: `with output_dir(args.out, "prepare", args.inputs, args.overwrite) as tmp: ...`.
    """
    if not in_place:
        with atomic_dir(path, command, inputs, overwrite) as tmp:
            yield tmp
        return
    path, inputs = Path(os.path.abspath(path)), list(inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(path, command):
        recover_dir(path)
        check_output(path, command, inputs, overwrite, resume)
        if overwrite and not resume and path.is_dir():
            shutil.rmtree(path)
        path.mkdir(exist_ok=True)
        _write_marker(path, command, inputs)
        yield path
