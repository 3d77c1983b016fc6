"""`nanobert serve` refuses an unusable port with one line on stderr and exit code 2, before loading the model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _serve(port: str, model: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "nanobert", "serve", "--model", str(model), "--port", port],
        capture_output=True,
        text=True,
        timeout=120,  # a port that is wrongly accepted would serve forever
        env=env,
    )


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1"])
def test_out_of_range_port_is_one_clear_error(port, tmp_path):
    r = _serve(port, tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr  # one line
    assert "Traceback" not in r.stderr and "1 to 65535" in r.stderr and port in r.stderr


def test_port_in_use_is_one_clear_error(minilm_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _serve(str(port), minilm_dir)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "in use" in r.stderr and str(port) in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("nanobert: error:")
    assert len([line for line in r.stderr.splitlines() if "error" in line.lower()]) == 1
