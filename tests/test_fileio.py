import os

import pytest

from nanobert.fileio import atomic_dir, atomic_path, write_json


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary left behind
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_dir_swaps_whole_directory(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as tmp:
        (tmp / "one").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(out) as tmp:
            (tmp / "two").write_text("2")
            raise ValueError
    assert sorted(p.name for p in out.iterdir()) == ["one"]
    with atomic_dir(out) as tmp:
        (tmp / "two").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


# -- command outputs: never destroy what is not a previous output ----------------------------------
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from nanobert import fileio  # noqa: E402
from nanobert.errors import NanobertError  # noqa: E402
from nanobert.fileio import MARKER, output_dir, output_lock, read_marker, recover_dir  # noqa: E402


def _write(out, name="f", text="x", **kw):
    with output_dir(out, "prepare", **kw) as tmp:
        (tmp / name).write_text(text)


def test_output_dir_marks_its_output_and_replaces_it_only_with_overwrite(tmp_path):
    out = tmp_path / "out"
    _write(out, "a")
    assert read_marker(out)["command"] == "prepare"
    with pytest.raises(NanobertError, match="--overwrite"):
        _write(out, "b")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a"]
    _write(out, "b", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock, temporary or .old left


def test_output_dir_refuses_a_directory_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(NanobertError, match="not written by nanobert prepare"):
            _write(out, overwrite=overwrite)
    assert (out / "thesis.tex").read_text() == "years of work"
    _write(tmp_path / "other", overwrite=True)
    with pytest.raises(NanobertError, match="output of nanobert prepare"):
        with output_dir(tmp_path / "other", "tokenizer train", overwrite=True):
            pass
    empty = tmp_path / "empty"
    empty.mkdir()
    _write(empty)  # an empty directory is fine
    assert (empty / "f").is_file()


def test_output_dir_refuses_to_hold_or_be_its_input(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "train.tsv").write_text("text\tlabel\n")
    for out in (d, tmp_path):
        with pytest.raises(NanobertError, match="input"):
            _write(out, inputs=[d / "train.tsv"], overwrite=True)
    with pytest.raises(NanobertError, match="is the input"):
        _write(d, inputs=[d], overwrite=True)
    assert (d / "train.tsv").is_file()
    (tmp_path / "file").write_text("")
    with pytest.raises(NanobertError, match="not a directory"):
        _write(tmp_path / "file")


def test_a_second_writer_fails_at_once_naming_the_first(tmp_path):
    out = tmp_path / "out"
    with output_lock(out, "pretrain"):
        with pytest.raises(NanobertError, match=rf"pid {os.getpid()}, nanobert pretrain"):
            _write(out)
    _write(out)  # released


def test_in_place_output_resumes_or_overwrites(tmp_path):
    out = tmp_path / "run"
    with output_dir(out, "pretrain", in_place=True) as d:
        assert d == out
        (d / "metrics.csv").write_text("step\n")
    with pytest.raises(NanobertError, match="--overwrite"):
        with output_dir(out, "pretrain", in_place=True):
            pass
    with output_dir(out, "pretrain", in_place=True, resume=True) as d:
        assert (d / "metrics.csv").is_file()
    with output_dir(out, "pretrain", in_place=True, overwrite=True) as d:
        assert sorted(p.name for p in d.iterdir()) == [MARKER]


_KILL_IN_SWAP = """
import os, signal, sys
from pathlib import Path
from nanobert import fileio
fileio.EXCHANGE = sys.argv[2] == "exchange"
real_replace, real_rmtree, calls = os.replace, fileio.shutil.rmtree, []
def replace(a, b):
    if Path(a).is_dir():
        calls.append(a)
    if len(calls) == 2:  # between the two renames of the swap
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(a, b)
def rmtree(p, **kw):
    if Path(p).name.endswith(".tmp"):  # removing the old content after the exchange
        os.kill(os.getpid(), signal.SIGKILL)
    real_rmtree(p, **kw)
os.replace, fileio.shutil.rmtree = replace, rmtree
with fileio.output_dir(sys.argv[1], "prepare", overwrite=True) as tmp:
    (tmp / "new").write_text("new")
"""


@pytest.mark.parametrize("swap", ["rename", "exchange"])
def test_a_kill_inside_the_swap_is_repaired(tmp_path, swap):
    out = tmp_path / "out"
    _write(out, "old", "old")
    child = subprocess.run([sys.executable, "-c", _KILL_IN_SWAP, str(out), swap], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != ".out.lock")  # the lock dies with its holder
    if swap == "rename":
        assert left[0] == ".out.old" and len(left) == 2  # the window: the name is missing, the new one a temporary
        recover_dir(out)  # what a reader (or the next writer) does
        assert (out / "old").read_text() == "old"
    else:
        assert "out" in left and len(left) == 2  # the new output is in place; the old one in a dead temporary
        assert (out / "new").read_text() == "new"
    _write(out, "next", overwrite=True)  # the next run cleans up what the killed one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_leftovers_of_live_writers_are_kept(tmp_path):
    live = tmp_path / f".out.pid{os.getppid()}-abc.tmp"
    live.mkdir()
    recover_dir(tmp_path / "out")
    assert live.is_dir()


def test_atomic_path_removes_temporaries_of_dead_writers(tmp_path):
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".a.txt.pid{child.stdout.strip()}-xyz.tmp"
    dead.write_text("half")
    fileio.write_text(tmp_path / "a.txt", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_out_dot_is_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("text")
    with pytest.raises(NanobertError, match="not written by nanobert prepare"):
        _write(".", overwrite=True)
    with pytest.raises(NanobertError, match="contains the input"):
        _write(".", inputs=["corpus.txt"], overwrite=True)
    assert (tmp_path / "corpus.txt").read_text() == "text"
