"""`nanobert serve` under concurrent load, beside the FastAPI + transformers server a user would write.

    python benchmarks/serve_load.py                       # makes a small SST-2 classifier first (~1 min)
    python benchmarks/serve_load.py --model runs/sst2-minilm --onnx runs/sst2-int8.onnx

Each server runs as its own process on 127.0.0.1 (a free port) and is driven by asyncio + httpx
clients from this process (loopback only): `--clients` concurrent clients (50 and 200), each its own
httpx client opening its connection with one untimed request, then sending requests of 1 or 8 real SST-2 dev sentences
back to back, until `--requests` timed requests are done or `--seconds` have passed. Reported per run: requests/s, p50/p99 latency, 5xx count (must be 0),
other non-200 answers, the server's peak RSS (/proc/PID/status VmRSS sampled every 20 ms) and its
RSS after the run against its baseline (after start-up and one warm-up request).

Servers:
- ours-int8: `nanobert serve` on the classifier exported to ONNX int8 (`--onnx`, else exported
  from `--model` with `nanobert export onnx --int8 --optimize`), POST /classify;
- naive: FastAPI + `transformers.pipeline("text-classification", model=--model)`, the model
  called inside the request handler, one request at a time;

every server's model gets `--threads` threads (1 by default: on a busy machine PyTorch's
default of one thread per core can run many times slower than one thread);
- ours-embed: `nanobert serve` on all-MiniLM-L6-v2 (PyTorch), POST /embed (no reference: timing only).

Without `--model`, MiniLM is fine-tuned briefly on the first `--train-lines` lines of SST-2 train
(speed does not depend on how well it classifies). The client shares the CPU with the server, so
the figures are lower bounds of what the server alone would do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from nanobert.train.precision import cpu_name

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"

NAIVE_SERVER = """
import sys
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

import torch

torch.set_num_threads(int(sys.argv[3]))
classifier = pipeline("text-classification", model=sys.argv[1])
app = FastAPI()

class Request(BaseModel):
    inputs: list[str]

@app.post("/classify")
async def classify(req: Request):
    return {"results": classifier(req.inputs)}

@app.get("/health")
async def health():
    return {"status": "ok"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def nanobert(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, "-m", "nanobert", *args], check=True, env=env)


def make_classifier(workdir: Path, lines: int) -> Path:
    from nanobert.resources import find_minilm

    for name in ("train", "dev"):
        head = (SST2 / f"{name}.tsv").read_text(encoding="utf-8").splitlines()[: lines + 1]
        (workdir / f"{name}.tsv").write_text("\n".join(head) + "\n", encoding="utf-8")
    out = workdir / "classifier"
    nanobert("finetune", "--model", str(find_minilm()), "--train", str(workdir / "train.tsv"), "--validation", str(workdir / "dev.tsv"),
             "--out", str(out), "--epochs", "1", "--batch-size", "16", "--max-length", "64", "--no-progress")  # fmt: skip
    return out


class Server:
    """A server process on a free loopback port; `rss` samples its resident memory while `sampling`."""

    def __init__(self, name: str, argv: list[str], route: str):
        self.name, self.route, self.port = name, route, free_port()
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"{name} did not come up in 180 s")
            time.sleep(0.3)

    def sample_peak(self, stop: threading.Event, out: list[float]) -> None:
        while not stop.is_set():
            out.append(rss_mib(self.proc.pid))
            time.sleep(0.02)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def drive(url: str, texts: list[str], clients: int, per_request: int, max_requests: int, seconds: float) -> dict:
    """`clients` concurrent clients sending requests back to back; -> latencies, status counts, wall time.

    Each client is its own `httpx.AsyncClient` with one connection, like separate users: one client
    shared by all (one connection pool) queued requests inside httpx for seconds at 50 clients.
    Each opens its connection with one untimed request before the timed ones start together.
    """
    latencies, statuses, issued = [], {}, 0
    opened, start = asyncio.Barrier(clients + 1), asyncio.Event()
    deadline = float("inf")

    async def client():
        nonlocal issued
        async with httpx.AsyncClient(timeout=120) as http:
            await http.post(url, json={"inputs": texts[:1]})
            await opened.wait()
            await start.wait()
            while issued < max_requests and time.perf_counter() < deadline:
                i = issued
                issued += 1
                batch = [texts[(i * per_request + j) % len(texts)] for j in range(per_request)]
                t0 = time.perf_counter()
                try:
                    r = await http.post(url, json={"inputs": batch})
                    code = r.status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                latencies.append(time.perf_counter() - t0)
                statuses[code] = statuses.get(code, 0) + 1

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await opened.wait()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    start.set()
    await asyncio.gather(*tasks)
    return {"latencies": sorted(latencies), "statuses": statuses, "wall": time.perf_counter() - t0}


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else float("nan")


def run_server(server: Server, texts: list[str], args) -> list[dict]:
    rows = []
    url = server.url + server.route
    httpx.post(url, json={"inputs": texts[:8]}, timeout=120)  # warm-up
    baseline = rss_mib(server.proc.pid)
    for clients in args.clients:
        for per_request in (1, 8):
            stop, samples = threading.Event(), []
            sampler = threading.Thread(target=server.sample_peak, args=(stop, samples), daemon=True)
            sampler.start()
            res = asyncio.run(drive(url, texts, clients, per_request, args.requests, args.seconds))
            stop.set()
            sampler.join()
            n = len(res["latencies"])
            row = {
                "server": server.name, "clients": clients, "texts": per_request, "requests": n,
                "rps": n / res["wall"], "p50": percentile(res["latencies"], 0.5), "p99": percentile(res["latencies"], 0.99),
                "5xx": sum(v for k, v in res["statuses"].items() if isinstance(k, int) and k >= 500),
                "other": sum(v for k, v in res["statuses"].items() if k != 200 and not (isinstance(k, int) and k >= 500)),
                "peak": max(samples), "baseline": baseline,
            }  # fmt: skip
            rows.append(row)
            print(f"  {server.name:10s} {clients:4d} clients x {per_request} text(s): {n} requests, {row['rps']:.1f} req/s, "
                  f"p50 {row['p50'] * 1000:.0f} ms, p99 {row['p99'] * 1000:.0f} ms, 5xx {row['5xx']}, other {row['other']} "
                  f"({res['statuses']})", flush=True)  # fmt: skip
    time.sleep(1.0)
    for row in rows:
        row["after"] = rss_mib(server.proc.pid)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a fine-tuned classifier directory (opens in transformers too)")
    parser.add_argument("--onnx", type=Path, help="its ONNX int8 export (else exported from --model)")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[50, 200])
    parser.add_argument("--requests", type=int, default=1000, help="most requests per run (default 1000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="most seconds per run (default 20)")
    parser.add_argument("--train-lines", type=int, default=300, help="SST-2 lines to fine-tune on without --model")
    parser.add_argument("--threads", type=int, default=1, help="model threads of every server (default 1: a shared machine)")
    parser.add_argument("--skip-embed", action="store_true", help="leave out the /embed server")
    args = parser.parse_args()

    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores); python {platform.python_version()}; "
          f"{args.threads} model thread(s) per server; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    texts = [line.split("\t")[0] for line in (SST2 / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or make_classifier(Path(tmp), args.train_lines)
        onnx = args.onnx
        if onnx is None:
            onnx = Path(tmp) / "classifier-int8.onnx"
            nanobert("export", "onnx", "--model", str(model), "--out", str(onnx), "--int8", "--optimize")
        from nanobert.resources import find_minilm

        threads = str(args.threads)
        servers = [
            ("ours-int8", [sys.executable, "-m", "nanobert", "serve", "--model", str(onnx), "--port", "{port}", "--threads", threads], "/classify"),
            ("naive", [sys.executable, "-c", NAIVE_SERVER, str(model), "{port}", threads], "/classify"),
        ]
        if not args.skip_embed:
            servers.append(("ours-embed", [sys.executable, "-m", "nanobert", "serve", "--model", str(find_minilm()), "--port", "{port}", "--threads", threads], "/embed"))
        rows = []
        for name, argv, route in servers:
            server = Server(name, argv, route)
            try:
                rows += run_server(server, texts, args)
            finally:
                server.close()

    print("\n| server | clients | texts/request | requests | req/s | p50 ms | p99 ms | 5xx | other non-200 | peak RSS MiB | RSS baseline → after MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['server']} | {r['clients']} | {r['texts']} | {r['requests']} | {r['rps']:.1f} | {r['p50'] * 1000:.0f} | "
              f"{r['p99'] * 1000:.0f} | {r['5xx']} | {r['other']} | {r['peak']:.0f} | {r['baseline']:.0f} → {r['after']:.0f} |")  # fmt: skip
    by = {(r["server"], r["clients"], r["texts"]): r for r in rows}
    print()
    for clients in args.clients:
        for n in (1, 8):
            ours, naive = by[("ours-int8", clients, n)], by[("naive", clients, n)]
            print(f"{clients} clients, {n} text(s)/request: ours-int8 / naive requests/s = {ours['rps'] / naive['rps']:.2f}x; "
                  f"p99 ours / naive = {ours['p99'] / naive['p99']:.2f}")  # fmt: skip
    five = sum(r["5xx"] for r in rows if r["server"] != "naive")
    print(f"5xx from our servers: {five}")
    return 0 if five == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
