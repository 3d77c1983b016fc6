"""TinyBERT-style augmentation: nearest neighbours in an embedding matrix, swaps that use only them, repeatability."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nanobert.cli import main
from nanobert.distill import DistillConfig, distill
from nanobert.distill.augment import AugmentConfig, augment_sentence, augment_texts, neighbour_table, words_of
from nanobert.errors import NanobertError

from sst2_sample import sst2_rows

VOCAB = {t: i for i, t in enumerate(["[PAD]", "[CLS]", "good", "great", "fine", "bad", "awful", "##ly", "film",
                                     "movie", "42", "."])}


def _embeddings() -> torch.Tensor:
    """Rows chosen so that the neighbours are known: good~great~fine, bad~awful, film~movie; [CLS] and ##ly sit next
    to everything (they must never be offered), 42 and . too."""
    e = torch.zeros(len(VOCAB), 3)
    for t, v in {"good": [1, 0, 0], "great": [0.95, 0.05, 0], "fine": [0.8, 0.2, 0.1], "bad": [0, 1, 0],
                 "awful": [0.05, 0.95, 0], "film": [0, 0, 1], "movie": [0, 0.05, 0.95], "[CLS]": [1, 0, 0.01],
                 "##ly": [0, 1, 0.01], "42": [0, 0.01, 1], ".": [1, 0.01, 0], "[PAD]": [1, 1, 1]}.items():
        e[VOCAB[t]] = torch.tensor(v)
    return e


def test_neighbours_are_whole_words_by_cosine():
    table = neighbour_table(VOCAB, _embeddings(), {"good", "bad", "film", "##ly", ".", "unknown"}, k=2)
    assert table == {"good": ["great", "fine"], "bad": ["awful", "fine"], "film": ["movie", "fine"]}
    with pytest.raises(NanobertError, match="whole words"):
        neighbour_table(VOCAB, _embeddings(), {"good"}, k=7)


def test_swaps_use_only_neighbours_and_repeat_with_the_seed():
    table = neighbour_table(VOCAB, _embeddings(), {"good", "bad", "film", "movie", "fine"}, k=2)
    cfg = AugmentConfig(n=6, p=0.5, k=2)
    texts = ["a good film .", "bad", "Good movie , fine 42 ."]
    out = augment_texts(texts, table, cfg, seed=3)
    assert out == augment_texts(texts, table, cfg, seed=3) and out != augment_texts(texts, table, cfg, seed=4)
    assert out and not {"bad"} & set(out)  # a one-word phrase is under min_words: no variants
    originals = {t.split().__len__(): t.split() for t in texts}
    for variant in out:
        words = variant.split()
        source = originals[len(words)]
        assert variant != " ".join(source)
        for new, old in zip(words, source):
            assert new == old or new in table[old.lower()], (old, new)
    # p = 1: every replaceable word changes; punctuation and numbers never do
    every = augment_sentence("good film 42 .", table, AugmentConfig(n=3, p=1.0, k=2), np.random.default_rng(0))
    assert every and all(v.split()[2:] == ["42", "."] and v.split()[0] in ("great", "fine") for v in every)
    assert len(set(every)) == len(every)  # no repeats


def test_bad_augment_options_are_refused():
    table = {"good": ["great"]}
    for bad in (AugmentConfig(n=-1), AugmentConfig(n=1, p=0.0), AugmentConfig(n=1, p=1.5), AugmentConfig(n=1, k=0)):
        with pytest.raises(NanobertError, match="augment needs"):
            augment_texts(["good good good"], table, bad)
    with pytest.raises(NanobertError, match="fewer than k=15"):
        augment_texts(["good good good"], table, AugmentConfig(n=1))
    assert words_of(["A b", "a C"]) == {"a", "b", "c"}


def test_distill_with_augmentation_labels_the_variants(teacher_dir, splits, tmp_path):
    train, dev = splits
    cfg = DistillConfig(student="L1/H32", max_train_examples=48, epochs=1, batch_size=16, lr=1e-3, progress=False,
                        threads=1, augment=AugmentConfig(n=2, k=3), teacher_precision="bf16",
                        teacher_logits_cache=str(tmp_path / "logits.safetensors"))
    report = distill(teacher_dir, train, dev, tmp_path / "out", cfg)
    assert 0 < report["augmented_examples"] <= 96 and report["unlabeled_examples"] == report["augmented_examples"]
    assert report["teacher_labelling_bf16"] is True and report["student_params"] < 60_000
    assert report["steps"] == -(-(48 + report["augmented_examples"]) // 16)
    assert json.loads((tmp_path / "out" / "distill.json").read_text())["augment"]["n"] == 2
    assert not report["teacher_logits_cached"] and (tmp_path / "logits.safetensors").is_file()
    # the same rows again: the cached logits, the same student bit for bit; other rows: labelled afresh
    again = distill(teacher_dir, train, dev, tmp_path / "again", cfg)
    assert again["teacher_logits_cached"] and again["accuracy"] == report["accuracy"]
    assert torch.equal(load_file(tmp_path / "out" / "model.safetensors")["classifier.weight"],
                       load_file(tmp_path / "again" / "model.safetensors")["classifier.weight"])
    other = distill(teacher_dir, train, dev, tmp_path / "other", dataclasses.replace(cfg, seed=1))
    assert not other["teacher_logits_cached"]


def test_cli_refuses_bad_options_in_one_line(teacher_dir, splits, tmp_path, capsys):
    train, dev = splits
    base = ["distill", "--teacher", str(teacher_dir), "--train", str(train), "--validation", str(dev),
            "--out", str(tmp_path / "out"), "--no-progress"]
    for extra, message in ((["--augment", "-2"], "augment needs"), (["--augment.p", "0"], "augment needs"),
                           (["--student", "L2/H30/A4"], "divisible by the heads"),
                           (["--student", "teacher:1", "--init-from-teacher", "--init-embeddings-from-teacher"],
                            "already copies the teacher's embeddings"),
                           (["--epochs", "0"], "epochs must be >= 1")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
