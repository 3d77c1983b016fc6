"""Does an int8 graph keep its fp32 graph's quality? Checked on real text before the int8 file is written.

    report = check_int8(fp32_path, int8_path, tokenizer, task="classify")    # probes: shipped SST-2 sentences
    report.passed, report.summary()
    verify_int8(fp32_path, int8_path, tokenizer, task)    # the same, raising NanobertError when it fails

Dynamic int8 quantisation wrecks some models (a multilingual MiniLM turned near-random in
onnxruntime#9599; 5-15% drops in #11286), and a max-abs-difference on random ids says nothing about
that. So both graphs run on a probe set of real sentences (default: `DEFAULT_PROBES` sentences of the
SST-2 dev sample that ships with nanobert), batched and padded as the pipelines do, and:

- embeddings (`task="embed"`): the cosine between the int8 and fp32 vector of every probe is
  >= `min_cosine` (0.99);
- classifiers (`task="classify"`): the int8 graph predicts the fp32 graph's label on >= `min_agreement`
  (99%) of the probes, and when a labelled set is given its accuracy is within `max_accuracy_drop`
  (0.5 points) of the fp32 graph's.

The graphs need not carry nanobert's metadata (the export checks them before adding it); their
first output is (B, H) embeddings or (B, K) logits.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from nanobert.errors import NanobertError
from nanobert.resources import ASSETS

log = logging.getLogger(__name__)

DEFAULT_PROBES = 256  # enough to see a 1% label flip rate; a few seconds for a MiniLM on a CPU


@dataclass
class Thresholds:
    min_cosine: float = 0.99  # embeddings: every probe; all-MiniLM-L6-v2 int8 reached 0.984 at worst on Wikipedia
    min_agreement: float = 0.99  # classifiers: share of probes with the fp32 graph's label
    max_accuracy_drop: float = 0.5  # points of accuracy on a labelled set, when one is given


@dataclass
class QualityReport:
    task: str
    probes: int
    worst_cosine: float | None = None  # embed
    agreement: float | None = None  # classify: share of probes with the same label
    accuracy_fp32: float | None = None  # classify with a labelled set, in %
    accuracy_int8: float | None = None
    seconds_fp32: float | None = None  # time both graphs spent on the probes (session runs only, one pass each)
    seconds_int8: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        parts = [f"{self.probes} probes"]
        if self.worst_cosine is not None:
            parts.append(f"worst cosine to fp32 {self.worst_cosine:.4f}")
        if self.agreement is not None:
            parts.append(f"same label as fp32 on {100 * self.agreement:.1f}%")
        if self.accuracy_fp32 is not None:
            parts.append(f"accuracy {self.accuracy_int8:.2f}% (fp32 {self.accuracy_fp32:.2f}%)")
        if self.seconds_fp32 and self.seconds_int8:
            parts.append(f"probes run in {1000 * self.seconds_int8:.0f} ms (fp32 {1000 * self.seconds_fp32:.0f} ms: "
                         f"{self.seconds_fp32 / self.seconds_int8:.2f}x)")
        return ", ".join(parts)


def shipped_sentences(split: str, n: int) -> list[str]:
    """The first `n` sentences of the SST-2 `split` ("dev" or "train") sample shipped in nanobert's assets."""
    with gzip.open(ASSETS / "sst2" / f"{split}.tsv.gz", "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()[1:n + 1]
    return [line.rsplit("\t", 1)[0] for line in lines]


def default_probes(n: int = DEFAULT_PROBES) -> list[str]:
    """The first `n` sentences of the SST-2 dev sample shipped in nanobert's assets."""
    return shipped_sentences("dev", n)


def graph_feeds(names, tokenizer, texts: Sequence[str], batch_size: int = 32,
                max_length: int = 128) -> list[dict[str, np.ndarray]]:
    """A graph's inputs (those in `names`) for `texts`, in batches of `batch_size` padded to their longest."""
    feeds = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[i:i + batch_size]), truncation=True, max_length=max_length, padding=True)
        feeds.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in names})
    return feeds


def run_graph(path: str | Path, tokenizer, texts: Sequence[str], batch_size: int = 32,
              max_length: int = 128, clock: list[float] | None = None) -> np.ndarray:
    """The first output of the ONNX graph at `path` on `texts`, batched and padded: (N, D) float32.
    `clock`: a list that gets the seconds the graph's runs took (tokenizing and loading not counted)."""
    import time

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    out = []
    for feeds in graph_feeds(names, tokenizer, texts, batch_size, max_length):
        t0 = time.perf_counter()
        out.append(session.run(None, feeds)[0])
        if clock is not None:
            clock.append(time.perf_counter() - t0)
    return np.concatenate(out).astype(np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) arrays. Example: [[1, 0]], [[1, 1]] -> [0.7071]."""
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def compare(task: str, fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray | None = None,
            thresholds: Thresholds | None = None) -> QualityReport:
    """Judge int8 outputs against fp32 ones (see the module docstring); `labels` (N,) class ids of labelled rows.

    With labels, the first len(labels) rows are the labelled ones.
    """
    t = thresholds or Thresholds()
    report = QualityReport(task, len(fp32))
    if task == "embed":
        cos = cosines(fp32, int8)
        report.worst_cosine = float(cos.min())
        if not report.worst_cosine >= t.min_cosine:
            report.failures.append(f"cosine to fp32 is {report.worst_cosine:.4f} on the worst probe "
                                   f"({int((cos < t.min_cosine).sum())} below {t.min_cosine})")
    elif task == "classify":
        a, b = fp32.argmax(-1), int8.argmax(-1)
        report.agreement = float((a == b).mean())
        if not report.agreement >= t.min_agreement:
            report.failures.append(f"the int8 graph changes the label of {100 * (1 - report.agreement):.1f}% of the "
                                   f"probes (at most {100 * (1 - t.min_agreement):.1f}% allowed)")
        if labels is not None:
            n = len(labels)
            report.accuracy_fp32 = 100.0 * float((a[:n] == labels).mean())
            report.accuracy_int8 = 100.0 * float((b[:n] == labels).mean())
            drop = report.accuracy_fp32 - report.accuracy_int8
            if drop > t.max_accuracy_drop:
                report.failures.append(f"accuracy falls from {report.accuracy_fp32:.2f}% to {report.accuracy_int8:.2f}% "
                                       f"(at most {t.max_accuracy_drop} points allowed)")
    else:
        raise NanobertError(f"int8 quality is checked for embed and classify graphs, not {task!r}")
    return report


def check_int8(fp32_path, int8_path, tokenizer, task: str, probes: Sequence[str] | None = None,
               labelled: tuple[Sequence[str], Sequence[int]] | None = None, thresholds: Thresholds | None = None,
               max_length: int = 128) -> QualityReport:
    """Run both graphs on `labelled` texts (if any) then `probes`, and `compare` them."""
    texts = list(labelled[0]) if labelled is not None else []
    texts += list(probes) if probes is not None else default_probes()
    clocks: tuple[list[float], list[float]] = ([], [])
    fp32 = run_graph(fp32_path, tokenizer, texts, max_length=max_length, clock=clocks[0])
    int8 = run_graph(int8_path, tokenizer, texts, max_length=max_length, clock=clocks[1])
    labels = np.asarray(labelled[1], dtype=np.int64) if labelled is not None else None
    report = compare(task, fp32, int8, labels, thresholds)
    report.seconds_fp32, report.seconds_int8 = sum(clocks[0]), sum(clocks[1])
    log.info("int8 quality: %s: %s", "passed" if report.passed else "FAILED", report.summary())
    return report


def verify_int8(fp32_path, int8_path, tokenizer, task: str, **kwargs) -> QualityReport:
    """`check_int8`, raising NanobertError (nothing should be written then) when the int8 graph fails it."""
    report = check_int8(fp32_path, int8_path, tokenizer, task, **kwargs)
    if not report.passed:
        raise NanobertError(f"int8 quantisation loses quality: {'; '.join(report.failures)} ({report.summary()}); "
                            "export without --int8, or keep the fp32 graph")
    return report
