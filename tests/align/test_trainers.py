"""The trainers end to end on tiny models: SFT's loss mask, reward/DPO/PPO outputs, PPO's exact resume."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nanobert.align.dpo import DPOConfig, dpo
from nanobert.align.policy import Policy
from nanobert.align.ppo import PPOConfig, ppo
from nanobert.align.reward import RewardConfig, train_reward
from nanobert.align.scoring import load_scorer
from nanobert.align.sft import CompletionLM, SFTConfig, encode_rows, sft
from nanobert.data.causal import pad_examples
from nanobert.errors import NanobertError
from nanobert.model.gpt import GPT
from nanobert.train.loop import LoopConfig


def _loop(**kw) -> LoopConfig:
    base = dict(progress=False, tensorboard=False, plots=False, device="cpu", warmup_steps=0, eval_every=1000)
    return LoopConfig(**{**base, **kw})


def test_sft_loss_covers_completion_tokens_only(gpt_dir, tmp_path):
    policy = Policy.load(gpt_dir)
    rows = [("the film is", " a delight ."), ("a", " bad movie .")]
    seqs, starts = encode_rows(policy, rows, add_eos=True)
    batch = pad_examples(seqs, starts)
    logits, loss = policy.model(**batch)
    completion = [(r, t) for r in range(2) for t in range(batch["labels"].size(1))
                  if starts[r] - 1 <= t < len(seqs[r]) - 1]  # targets at positions after the prompt
    hand = torch.stack([F.cross_entropy(logits[r, t], torch.tensor(seqs[r][t + 1])) for r, t in completion]).mean()
    assert loss.item() == pytest.approx(hand.item(), abs=1e-6)
    assert len(completion) == len(" a delight .") + len(" bad movie .")  # no prompt token, no padding
    sparse_logits, sparse_loss = CompletionLM(policy.model)(**batch)  # what SFT trains: the same loss
    assert sparse_logits.shape == (len(completion), policy.tokenizer.vocab_size)
    assert sparse_loss.item() == pytest.approx(hand.item(), abs=1e-6)

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in rows * 4))
    result = sft(gpt_dir, data, tmp_path / "run", SFTConfig(batch_size=4, val_fraction=0.25, loop=_loop(max_steps=3)))
    assert result["steps"] == 3 and result["val_rows"] == 2
    assert isinstance(GPT.from_pretrained(tmp_path / "run" / "model"), GPT)


def test_bert_reward_model_saves_as_transformers_regression_head(bert_mlm_dir, pairs_file, tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = RewardConfig(batch_size=4, val_fraction=0.25, loop=_loop(max_steps=3, lr=1e-3))
    result = train_reward(bert_mlm_dir, pairs_file, tmp_path / "rm", cfg)
    assert 0.0 <= result["val_pairwise_accuracy"] <= 1.0 and result["val_pairs"] == 4
    hf = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "rm" / "model").eval()
    assert hf.config.num_labels == 1
    texts = ["the film is a good movie .", "i hated it ."]
    ours = load_scorer(tmp_path / "rm" / "model")(texts)
    tok = transformers.BertTokenizerFast.from_pretrained(tmp_path / "rm" / "model")
    with torch.no_grad():
        theirs = hf(**tok(texts, return_tensors="pt", padding=True)).logits[:, 0].numpy()
    assert abs(ours - theirs).max() < 1e-4


def test_gpt_reward_model_learns_the_pairs_and_dpo_prefers_chosen(gpt_dir, pairs_file, tmp_path):
    cfg = RewardConfig(batch_size=4, val_fraction=0.25, loop=_loop(max_steps=30, lr=1e-2))
    result = train_reward(gpt_dir, pairs_file, tmp_path / "rm", cfg)
    assert result["val_pairwise_accuracy"] == 1.0  # the held-out pairs repeat training pairs: learnt
    score = load_scorer(tmp_path / "rm" / "model")
    assert score(["the film is a good movie ."])[0] > score(["the film is a bad movie ."])[0]
    out = dpo(gpt_dir, pairs_file, tmp_path / "dpo", DPOConfig(batch_size=4, val_fraction=0.25,
                                                               loop=_loop(max_steps=10, lr=1e-2)))
    assert out["val_reward_accuracy"] == 1.0 and out["val_loss"] < 0.69  # below log 2: chosen now more likely


def _ppo_cfg(**loop) -> PPOConfig:
    return PPOConfig(rollouts=3, batch_size=4, minibatch_size=2, ppo_epochs=2, max_new_tokens=8,
                     loop=_loop(lr=1e-2, schedule="constant", checkpoint_every=3, **loop))


def test_ppo_logs_rollouts_and_resumes_bit_for_bit(gpt_dir, tmp_path, good_count):
    prompts = ["the", "a", "i", "the film"]
    full = ppo(gpt_dir, good_count, prompts, tmp_path / "full", _ppo_cfg())
    assert full["steps"] == 12 and full["rollouts"] == 3
    header, *rows = (tmp_path / "full" / "ppo.csv").read_text().splitlines()
    assert header.split(",")[3:8] == ["reward", "shaped_reward", "kl", "kl_coef", "length"] and len(rows) == 3

    class Kill:  # dies after step 7: the newest checkpoint (step 6) is in the middle of rollout 2
        def on_step_end(self, state):
            if state.step == 7:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ppo(gpt_dir, good_count, prompts, tmp_path / "cut", _ppo_cfg(), callbacks=[Kill()])
    ppo(gpt_dir, good_count, prompts, tmp_path / "cut", _ppo_cfg(), resume=True)
    a, b = GPT.from_pretrained(tmp_path / "full" / "model"), GPT.from_pretrained(tmp_path / "cut" / "model")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert (tmp_path / "cut" / "ppo.csv").read_text() == (tmp_path / "full" / "ppo.csv").read_text()
    assert not torch.equal(a.transformer.wte.weight, GPT.from_pretrained(gpt_dir).transformer.wte.weight)


@pytest.mark.parametrize("norm", ["initial", "batch", "none"])
def test_ppo_reward_norm_scales_scores_as_documented(norm):
    from nanobert.align.ppo import RolloutStream

    stream = RolloutStream.__new__(RolloutStream)  # only the normalisation state is needed
    stream.cfg, stream.score_stats = PPOConfig(reward_norm=norm), None
    first, later = torch.tensor([1.0, 3.0, 5.0]), torch.tensor([5.0, 7.0, 9.0])
    a, b = stream._normalise(first), stream._normalise(later)
    if norm == "initial":  # the first rollout's mean 3 and std 2, kept: later scores are measured on that scale
        assert torch.allclose(a, torch.tensor([-1.0, 0.0, 1.0])) and torch.allclose(b, torch.tensor([1.0, 2.0, 3.0]))
        assert stream.score_stats == [3.0, 2.0]
    elif norm == "batch":  # each rollout whitened anew: the better batch looks the same as the first
        assert torch.allclose(a, b, atol=1e-5)
    else:
        assert torch.equal(a, first) and torch.equal(b, later)


def test_ppo_refuses_an_unknown_reward_norm():
    with pytest.raises(NanobertError, match="reward_norm"):
        PPOConfig(reward_norm="rank")
