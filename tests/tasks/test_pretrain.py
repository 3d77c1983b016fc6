import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nanobert.cli import main
from nanobert.data.loaders import TokenShards
from nanobert.tasks.pretrain import fill_mask, unigram_log_probs

RECIPE = """
out_dir = "{out}"
samples = ["She was [MASK] to see him."]
[data]
dir = "{data}"
batch_size = 16
eval_batches = 3
[model]
hidden_size = 64
num_hidden_layers = 1
num_attention_heads = 2
max_position_embeddings = 64
dropout = 0.0
[train]
max_steps = 24
lr = 5e-3
min_lr = 5e-4
warmup_steps = 5
eval_every = 12
checkpoint_every = 12
log_every = 5
progress = false
precision = "fp32"  # "auto" times fp32 against bf16 on a bf16 CPU: two runs compared here could choose differently
"""


@pytest.fixture(scope="module")
def data(shared_data, minilm_dir, tmp_path_factory):
    """Persuasion's first 2,000 lines as 64-token sequences, through the `nanobert prepare` command."""
    root = tmp_path_factory.mktemp("pre")
    lines = (shared_data / "janeausten" / "persuasion.txt").read_text(encoding="utf-8").splitlines()[:2000]
    (root / "persuasion.txt").write_text("\n".join(lines), encoding="utf-8")
    assert main(["prepare", str(root / "persuasion.txt"), "--tokenizer", str(minilm_dir), "--out",
                 str(root / "data"), "--seq-len", "64", "--val-fraction", "0.08", "--workers", "1",
                 "--no-progress"]) == 0
    return root / "data"


def _recipe(tmp_path, data, out="run"):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.format(out=(tmp_path / out).as_posix(), data=data.as_posix()), encoding="utf-8")
    return path


def test_pretrain_learns_and_saves_a_model_transformers_loads(data, tmp_path):
    transformers = pytest.importorskip("transformers")
    recipe = _recipe(tmp_path, data)
    assert main(["pretrain", "--config", str(recipe), "--data.whole_word", "true"]) == 0
    run = tmp_path / "run"
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    val = [(int(r[0]), float(r[2]), float(r[3])) for r in rows if r[1] == "val"]
    assert [s for s, _, _ in val] == [0, 12, 24]
    # a fresh model starts at the data's unigram distribution (~6.5 nats here), not uniform over
    # 30,522 tokens (10.3 nats), and training goes on from there
    assert val[0][1] < 8.0
    assert val[-1][1] < val[0][1] - 0.15
    assert val[-1][2] > 0.05  # MLM accuracy above chance (1/30,522)
    assert (run / "loss.png").exists() and (run / "accuracy.png").exists() and any((run / "tb").iterdir())
    assert "fill-mask" in (run / "train.log").read_text()

    ours = __import__("nanobert.model.bert", fromlist=["BertForMaskedLM"]).BertForMaskedLM.from_pretrained(run / "model")
    hf = transformers.BertForMaskedLM.from_pretrained(run / "model").eval()
    assert (run / "model" / "vocab.txt").is_file()
    ids = torch.tensor([[101, 2016, 2001, 103, 2000, 2156, 2032, 1012, 102]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0], hf(ids).logits, rtol=1e-4, atol=1e-4)
    from nanobert.tokenizers import load_tokenizer
    top = fill_mask(ours, load_tokenizer(run / "model"), "She was [MASK] to see him.", top_k=3)
    assert len(top) == 1 and len(top[0]) == 3 and top[0][0][1] >= top[0][1][1]


def test_packed_batches_learn_as_padded_ones_do(data, tmp_path):
    """`data.packed`: the same sequences in fewer rows; the run learns and its validation (unpacked) is comparable."""
    losses = {}
    for packed in ("false", "true"):
        out = f"run-{packed}"
        assert main(["pretrain", "--config", str(_recipe(tmp_path, data, out)), "--data.packed", packed]) == 0
        rows = [r.split(",") for r in (tmp_path / out / "metrics.csv").read_text().splitlines()[1:]]
        losses[packed] = [float(r[2]) for r in rows if r[1] == "val"]
    assert losses["true"][0] == losses["false"][0]  # step 0: the same model on the same validation batches
    assert losses["true"][-1] < losses["true"][0] - 0.15
    assert abs(losses["true"][-1] - losses["false"][-1]) < 0.1  # the same sequences; only the mask draws differ


def test_replaced_token_detection_trains_resumes_exactly_and_fine_tunes(data, tmp_path):
    """objective = "rtd": the run writes the discriminator as a BERT encoder (and the generator beside it),
    a killed run resumed from its checkpoint ends with the same weights, and the result fine-tunes."""
    from safetensors.torch import load_file

    from nanobert.model.bert import BertForMaskedLM
    from nanobert.tasks.finetune import FinetuneConfig, build_classifier
    from nanobert.data.tables import LabelMap
    rtd = ["--objective", "rtd", "--data.mask_rate", "0.15", "--train.checkpoint_every", "12"]
    recipe = str(_recipe(tmp_path, data, "full"))
    assert main(["pretrain", "--config", recipe, *rtd]) == 0
    run = tmp_path / "full"
    full = load_file(run / "model" / "model.safetensors")
    head = load_file(run / "model" / "rtd_head.safetensors")
    log = (run / "train.log").read_text()
    shutil.rmtree(run / "step-00000024")  # as if killed between step 12 and step 24
    shutil.rmtree(run / "model")
    assert main(["pretrain", "--config", recipe, *rtd, "--resume"]) == 0
    resumed = load_file(run / "model" / "model.safetensors")
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)
    assert all(torch.equal(t, load_file(run / "model" / "rtd_head.safetensors")[k]) for k, t in head.items())
    assert "rtd: generator loss" in log and "discriminator accuracy" in log
    gen = BertForMaskedLM.from_pretrained(run / "model" / "generator")
    assert gen.config.num_hidden_layers == 1
    clf = build_classifier(run / "model", LabelMap.from_labels(["a", "b"]), FinetuneConfig(), None)
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(clf.state_dict()[key], full["encoder.layer.0.attention.self.query.weight"])


def test_a_val_split_smaller_than_a_batch_is_still_validated(data, tmp_path):
    from nanobert.data.loaders import read_meta
    val = read_meta(data)["splits"]["val"]["sequences"]
    assert main(["pretrain", "--config", str(_recipe(tmp_path, data)), "--data.batch_size", str(val + 5),
                 "--train.max_steps", "2", "--train.eval_every", "2", "--train.checkpoint_every", "0"]) == 0
    rows = [r.split(",") for r in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows if r[1] == "val"] == [0, 2]


def test_ppmi_embedding_init_replaces_the_rows_of_tokens_the_data_has(data):
    from nanobert.tasks.pretrain import ModelSettings, build_mlm_model, init_fresh_model
    from nanobert.tokenizers import load_tokenizer
    tokenizer = load_tokenizer(data / "tokenizer")
    train = TokenShards(data, "train")
    models = {}
    for init in ("normal", "ppmi"):
        settings = ModelSettings(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 max_position_embeddings=64, embedding_init=init)
        torch.manual_seed(0)
        models[init] = build_mlm_model(settings, tokenizer, 64)
        init_fresh_model(models[init], settings, train, tokenizer)
    normal, ppmi = (models[k].bert.embeddings.word_embeddings.weight.detach() for k in ("normal", "ppmi"))
    seen = np.zeros(normal.shape[0], dtype=bool)
    seen[np.unique(np.concatenate([np.asarray(t) for t, _ in train.shards]))] = True
    seen[list(tokenizer.special_ids)] = False
    changed = (normal != ppmi).any(dim=1).numpy()
    assert (changed == seen).all()  # every token of the data, and nothing else, starts from its PPMI vector
    std = models["ppmi"].config.initializer_range
    assert ppmi[changed].norm(dim=1).mean().item() == pytest.approx(std * 64 ** 0.5, rel=1e-3)
    with pytest.raises(Exception, match="embedding_init must be normal or ppmi"):
        ModelSettings(embedding_init="glove")


@pytest.mark.parametrize("override, message", [
    (["--model.vocab_size", "1000"], "vocab_size is 1000 but the data's tokenizer has 30522"),
    (["--model.max_position_embeddings", "32"], "sequences have 64 tokens but the model has only 32 positions"),
    (["--train.learning_rate", "1e-3"], "unknown config key 'train.learning_rate'"),
])
def test_bad_settings_fail_with_one_line_and_write_nothing(data, tmp_path, capsys, override, message):
    recipe = _recipe(tmp_path, data)
    assert main(["pretrain", "--config", str(recipe), *override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nanobert: error:") and message in err[0]
    assert not (tmp_path / "run").exists()


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(data, tmp_path, capsys):
    recipe = _recipe(tmp_path, data)
    short = ["--train.max_steps", "2", "--train.checkpoint_every", "1", "--train.eval_every", "100"]
    assert main(["pretrain", "--config", str(recipe), *short]) == 0
    # continue with an absurd learning rate: the weights overflow, then the loss is NaN
    code = main(["pretrain", "--config", str(recipe), "--resume", "--train.max_steps", "8", "--train.lr", "1e38",
                 "--train.grad_clip", "0", "--train.checkpoint_every", "1", "--train.eval_every", "100"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("nanobert: error: training diverged:") and "lower the learning rate" in err
    good = err.split("last good checkpoint: ")[1].split(";")[0]
    saved = sorted((tmp_path / "run").glob("step-*"))
    assert good == str(saved[-1]) and len(saved) < 8  # the newest checkpoint, written before it diverged
    from safetensors.torch import load_file
    assert all(torch.isfinite(t).all() for t in load_file(f"{good}/model.safetensors").values())


def test_prepare_rejects_empty_and_binary_corpora(minilm_dir, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    (tmp_path / "blob.txt").write_bytes(np.random.default_rng(0).bytes(5000))
    for name, message in (("empty.txt", "the corpus is empty"), ("blob.txt", "binary")):
        out = tmp_path / f"out-{name}"
        assert main(["prepare", str(tmp_path / name), "--tokenizer", str(minilm_dir), "--out", str(out),
                     "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
        assert not out.exists()


def test_unigram_log_probs_are_the_smoothed_token_frequencies(data):
    shards = TokenShards(data, "train")
    special = {0, 100, 101, 102, 103}  # [PAD] [UNK] [CLS] [SEP] [MASK] in MiniLM's vocabulary
    logp = unigram_log_probs(shards, 30522, special)
    tokens = np.concatenate([np.asarray(t) for t, _ in shards.shards])
    counts = np.bincount(tokens, minlength=30522)
    counts[list(special)] = 0
    assert torch.isclose(logp.exp().sum(), torch.tensor(1.0), atol=1e-4)
    the = 1996  # "the"
    assert logp[the].item() == pytest.approx(np.log((counts[the] + 1) / (counts.sum() + 30522)), rel=1e-5)
    assert logp[101].item() == logp.min().item()  # [CLS] is never a target
    assert int(logp.argmax()) == int(counts.argmax())
    few = unigram_log_probs(shards, 30522, special, max_tokens=100)  # only the first 100 tokens are counted
    seen = np.bincount(np.asarray(shards.shards[0][0][:100]), minlength=30522)
    assert int((few > few.min()).sum()) == int((np.delete(seen, list(special)) > 0).sum())


CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TOY = ["--model.hidden_size", "32", "--model.num_hidden_layers", "1", "--model.num_attention_heads", "2",
       "--model.intermediate_size", "64", "--data.batch_size", "4", "--data.eval_batches", "1",
       "--train.max_steps", "3", "--train.warmup_steps", "1", "--train.decay_steps", "2", "--train.grad_accum", "2",
       "--train.eval_every", "3", "--train.checkpoint_every", "3", "--train.log_every", "1",
       "--train.progress", "false", "--train.device", "cpu", "--train.precision", "bf16"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlm-wikitext103.toml", "mlm-gpu-budget.toml"])
def test_gpu_recipes_run_at_toy_scale(name, data, tmp_path):
    """The GPU recipes end to end on a tiny model: their own settings (the budget recipe's torch.compile, the
    optimizer's fused AdamW) with bf16 autocast, so that the first GPU run does not discover a crash."""
    run = tmp_path / "run"
    assert main(["pretrain", "--config", str(CONFIGS / name), "--data.dir", str(data), "--out_dir", str(run),
                 *TOY]) == 0
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()]
    assert rows[0][-1] == "mfu"
    train_rows = [r for r in rows[1:] if r[1] == "train"]
    assert [int(r[0]) for r in train_rows] == [1, 2, 3] and all(float(r[-1]) > 0 for r in train_rows)
    assert (run / "step-00000003").is_dir() and (run / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("mlm-*.toml")), ids=lambda p: p.name)
def test_every_pretraining_recipe_loads(path):
    """Each shipped masked-LM recipe is a valid PretrainConfig (a renamed or mistyped key fails here, not an hour in)."""
    from nanobert.config import load_config
    from nanobert.tasks.pretrain import PretrainConfig

    cfg = load_config(PretrainConfig, path)
    assert cfg.train.max_steps >= 1 and cfg.data.dir
    if cfg.train.budget == "time":
        assert cfg.train.time_limit_min > 0
