"""Fine-tuning end to end on a tiny BERT and real SST-2 sentences: full, LoRA, text + tabular, evaluate, bad input."""

from __future__ import annotations

import collections
import gzip
import json

import numpy as np
import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.model.bert import BertConfig, BertModel
from nanobert.resources import ASSETS
from nanobert.data.labelled import Encoded, bucketed_batches, collate_labelled
from nanobert.model.lora import LoRAConfig
from nanobert.tasks.finetune import FinetuneConfig, evaluate_classifier as evaluate, finetune
from nanobert.tokenizers import WordPieceTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _sst2_rows(name: str, n: int) -> list[tuple[str, int]]:
    with gzip.open(ASSETS / "sst2" / f"{name}.tsv.gz", "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()[1:n + 1]
    return [(s, int(y)) for s, y in (line.rsplit("\t", 1) for line in lines)]


def _write_tsv(path, rows, header=("sentence", "label")):
    path.write_text("\t".join(header) + "\n" + "".join(f"{s}\t{y}\n" for s, y in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random BertModel (no classifier, like MiniLM) with a word-level vocabulary of the SST-2 sample."""
    rows = _sst2_rows("train", 2000)
    counts = collections.Counter(w for s, _ in rows for w in s.lower().split())
    chars = sorted({c for s, _ in rows for c in s.lower() if not c.isspace()})
    tokens = SPECIALS + chars + [f"##{c}" for c in chars] + [w for w, _ in counts.most_common(600) if w not in chars]
    tok = WordPieceTokenizer({t: i for i, t in enumerate(dict.fromkeys(tokens))})
    torch.manual_seed(0)  # module-scoped: the autouse seed has not run yet
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    d = tmp_path_factory.mktemp("tiny") / "base"
    BertModel(cfg).save_pretrained(d, tokenizer=tok)
    return d


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    d = tmp_path_factory.mktemp("sst2")
    return _write_tsv(d / "train.tsv", _sst2_rows("train", 1200)), _write_tsv(d / "dev.tsv", _sst2_rows("dev", 200))


ACCURACY_SEEN = 0.7  # this setup reaches 0.83 (chance: 0.5)
FAST = dict(epochs=2, batch_size=16, lr=3e-3, progress=False, eval_batch_size=64, threads=1,  # tiny: 1 thread is fastest
            precision="fp32")  # not "auto": its timing could choose differently in two runs a test compares


def test_full_finetune_learns_and_saves_hf_layout(tiny_dir, splits, tmp_path):
    train, dev = splits
    # A tiny model from random weights does not generalise from 1,200 sentences in a few seconds, but it must fit
    # them: validating on 200 of its training sentences shows the loop learns and keeps the right epoch.
    seen = _write_tsv(tmp_path / "seen.tsv", _sst2_rows("train", 200))
    out = tmp_path / "out"
    report = finetune(tiny_dir, train, seen, out, FinetuneConfig(**{**FAST, "epochs": 4}))
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt", "metrics.json", "finetune.json",
            "classification_report.txt", "confusion_matrix.png"} <= files
    hist = report["history"]
    assert hist[0]["train_loss"] > 0.68 and hist[-1]["train_loss"] < 0.62  # from ln 2 = 0.693 (chance) down
    assert report["accuracy"] > ACCURACY_SEEN
    assert len(hist) == 4 and report["best_epoch"] == 1 + int(np.argmin([h["val_loss"] for h in hist]))
    assert report["loss"] == pytest.approx(min(h["val_loss"] for h in hist), rel=1e-5)  # the kept epoch is the best one
    assert report["trainable_params"] == report["total_params"]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"} and config["label2id"] == {"0": 0, "1": 1}
    saved = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "macro", "weighted", "per_class", "loss", "trainable_params", "total_params",
            "train_time_s"} <= set(saved)
    # The saved directory is the kept model: evaluate gives the same numbers; transformers loads it too.
    again = evaluate(out, seen)
    assert again["accuracy"] == pytest.approx(report["accuracy"]) and again["loss"] == pytest.approx(report["loss"], abs=1e-5)
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertForSequenceClassification.from_pretrained(out)
    assert hf.config.id2label == {0: "0", 1: "1"}


def test_lora_finetune_trains_few_params_and_saves_adapter(tiny_dir, splits, tmp_path):
    train, dev = splits
    out = tmp_path / "lora"
    cfg = FinetuneConfig(**{**FAST, "epochs": 1}, lora=LoRAConfig(r=4, alpha=8, layers="last-1"))
    report = finetune(tiny_dir, train, dev, out, cfg)
    H = 32
    assert report["trainable_params"] == 1 * 2 * 4 * (H + H) + (H * 2 + 2)  # 1 layer x (q, v) x r x (in+out) + classifier
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    from safetensors.torch import load_file

    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if k.endswith("lora_B.weight")]
    assert len(lora_b) == 2 and all(v.abs().sum() > 0 for v in lora_b)  # B left zero: the adapters got gradients
    assert evaluate(out, dev)["accuracy"] == pytest.approx(report["accuracy"])  # merged weights = adapter outputs


def test_string_labels_and_tabular_columns(tiny_dir, tmp_path):
    rows = _sst2_rows("train", 600)
    rng = np.random.default_rng(0)

    def write(path, part):
        lines = ["text,stars,votes,sentiment"]
        for s, y in part:
            stars = rng.normal(4.0 if y else 2.0, 0.5)  # a feature that carries the label
            lines.append(f"\"{s.strip().replace(chr(34), '')}\",{stars:.3f},{rng.integers(0, 100)},{'pos' if y else 'neg'}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    train, dev = write(tmp_path / "train.csv", rows[:480]), write(tmp_path / "dev.csv", rows[480:])
    cfg = FinetuneConfig(**FAST, label_column="sentiment", tabular_columns=["stars", "votes"])
    report = finetune(tiny_dir, train, dev, tmp_path / "tab", cfg)
    assert report["accuracy"] > 0.85  # stars alone separate the classes (~98%); the text alone gives ~0.6 here
    config = json.loads((tmp_path / "tab" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    stats = json.loads((tmp_path / "tab" / "tabular.json").read_text())
    assert stats["columns"] == ["stars", "votes"] and stats["mean"][0] == pytest.approx(3.0, abs=0.3)
    assert evaluate(tmp_path / "tab", dev)["accuracy"] == pytest.approx(report["accuracy"])


def test_bucketed_batches_and_dynamic_padding():
    lengths = np.array([5, 1, 5, 1, 3, 3])
    batches = bucketed_batches(lengths, 2, np.random.default_rng(0), pool=10)
    assert sorted(sorted(lengths[b].tolist()) for b in batches) == [[1, 1], [3, 3], [5, 5]]
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    data = Encoded([[2, 7, 3], [2, 3]], [[0, 0, 0], [0, 0]], np.array([1, 0]), None)
    batch = collate_labelled(data, [0, 1], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 7, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [1, 0]


# --- bad input: one clear error each ---------------------------------------------------------------------------------

def test_unknown_label_in_validation(tiny_dir, splits, tmp_path):
    train, _ = splits
    dev = _write_tsv(tmp_path / "dev.tsv", [("fine", 0), ("odd one", 7)])
    with pytest.raises(NanobertError, match=r"label 7 \(row 3\) is not one of the training labels"):
        finetune(tiny_dir, train, dev, tmp_path / "out", FinetuneConfig(**FAST))
    assert not (tmp_path / "out").exists()


def test_missing_column(tiny_dir, splits, tmp_path):
    train, dev = splits
    with pytest.raises(NanobertError, match="no label column 'stars'.*--label-column"):
        finetune(tiny_dir, train, dev, tmp_path / "out", FinetuneConfig(**FAST, label_column="stars"))
    with pytest.raises(NanobertError, match="no text column 'review'"):
        finetune(tiny_dir, train, dev, tmp_path / "out", FinetuneConfig(**FAST, text_column="review"))


def test_empty_file(tiny_dir, splits, tmp_path):
    train, _ = splits
    empty = tmp_path / "dev.tsv"
    empty.write_text("sentence\tlabel\n")
    with pytest.raises(NanobertError, match="has no data rows"):
        finetune(tiny_dir, train, empty, tmp_path / "out", FinetuneConfig(**FAST))


def test_model_directory_without_config(splits, tmp_path):
    train, dev = splits
    (tmp_path / "weights").mkdir()
    with pytest.raises(NanobertError, match="no config.json"):
        finetune(tmp_path / "weights", train, dev, tmp_path / "out", FinetuneConfig(**FAST))


def test_lora_plus_moves_lora_b_faster(tiny_dir, splits, tmp_path):
    """LoRA+ (lora_plus_ratio): the B matrices get ratio x the learning rate, so they end up larger."""
    from safetensors.torch import load_file

    train, dev = splits
    norms = {}
    for ratio in (1.0, 16.0):
        out = tmp_path / f"ratio{ratio:g}"
        cfg = FinetuneConfig(**{**FAST, "epochs": 1, "lr": 1e-3}, max_steps=20, lora=LoRAConfig(r=4, alpha=8, plus_ratio=ratio))
        finetune(tiny_dir, train, dev, out, cfg)
        adapter = load_file(out / "adapter" / "adapter_model.safetensors")
        norms[ratio] = sum(v.norm().item() for k, v in adapter.items() if k.endswith("lora_B.weight"))
    assert norms[16.0] > 5 * norms[1.0]


def test_layer_lr_decay_moves_lower_layers_less(tiny_dir, splits, tmp_path):
    """layer_lr_decay 0.1 on the one-layer model: the layer learns at 0.1x, the embeddings at 0.01x, the head at 1x."""
    from safetensors.torch import load_file

    train, dev = splits
    start = load_file(tiny_dir / "model.safetensors")
    moved = {}
    for decay in (1.0, 0.1):
        out = tmp_path / f"decay{decay:g}"
        finetune(tiny_dir, train, dev, out, FinetuneConfig(**{**FAST, "epochs": 1}, max_steps=3, layer_lr_decay=decay))
        end = load_file(out / "model.safetensors")
        moved[decay] = {name: (end[f"bert.{name}"] - start[name]).abs().mean().item() for name in (
            "embeddings.word_embeddings.weight", "encoder.layer.0.intermediate.dense.weight")}
        moved[decay]["classifier"] = end["classifier.weight"].abs().mean().item()  # a new head: its size after 3 steps
    ratio = {k: moved[0.1][k] / moved[1.0][k] for k in moved[1.0]}
    assert ratio["embeddings.word_embeddings.weight"] < 0.03
    assert 0.03 < ratio["encoder.layer.0.intermediate.dense.weight"] < 0.3
    assert 0.5 < ratio["classifier"] < 2


def test_layer_lr_decay_out_of_range():
    with pytest.raises(NanobertError, match="layer_lr_decay"):
        FinetuneConfig(layer_lr_decay=0)


@pytest.mark.parametrize("keep", ["accuracy", "last"])
def test_keep_chooses_the_epoch(tiny_dir, splits, tmp_path, keep):
    train, dev = splits
    report = finetune(tiny_dir, train, dev, tmp_path / keep, FinetuneConfig(**{**FAST, "epochs": 3}, keep=keep))
    hist = report["history"]
    chosen = 1 + int(np.argmax([h["val_accuracy"] for h in hist])) if keep == "accuracy" else len(hist)
    assert report["best_epoch"] == chosen
    assert report["accuracy"] == pytest.approx(hist[chosen - 1]["val_accuracy"])
    assert evaluate(tmp_path / keep, dev)["accuracy"] == pytest.approx(report["accuracy"])  # the saved model is that epoch


def test_unknown_keep_rule(tiny_dir, splits, tmp_path):
    with pytest.raises(NanobertError, match="keep must be one of loss, accuracy, last"):
        finetune(tiny_dir, *splits, tmp_path / "x", FinetuneConfig(**FAST, keep="best"))
    assert not (tmp_path / "x").exists()


def test_same_seed_same_model(tiny_dir, splits, tmp_path):
    """The new head and the LoRA matrices come from the seed, not from torch's start state (which differs per run)."""
    from safetensors.torch import load_file

    train, dev = splits
    cfg = FinetuneConfig(**{**FAST, "epochs": 1}, max_steps=5, lora=LoRAConfig(r=4, alpha=8))
    for state, name in ((1, "a"), (2, "b")):
        torch.manual_seed(state)  # whatever state the process is in
        finetune(tiny_dir, train, dev, tmp_path / name, cfg)
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dropout_override_reaches_every_encoder_layer(tiny_dir):
    from nanobert.data.tables import LabelMap
    from nanobert.tasks.finetune import build_classifier

    labels = LabelMap.from_labels(["0", "1"])
    plain = build_classifier(tiny_dir, labels, FinetuneConfig(), None)
    assert plain.config.hidden_dropout_prob == 0.1  # the checkpoint's own
    model = build_classifier(tiny_dir, labels, FinetuneConfig(dropout=0.25), None)
    assert model.config.hidden_dropout_prob == model.config.attention_probs_dropout_prob == 0.25
    rates = {m.p for m in model.bert.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.25}
    with pytest.raises(NanobertError, match="dropout"):
        FinetuneConfig(dropout=1.0)
