"""The ladder's formulas against hand computations and against TRL's own trainers on the same tensors."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nanobert.align import losses as L


def test_gae_matches_a_hand_computed_trajectory():
    # gamma 0.9, lambda 0.8: delta_2 = 1 - 0.4 = 0.6; delta_1 = 0.9*0.4 - 0.2 = 0.16; delta_0 = 0.9*0.2 - 0.5 = -0.32
    # A_2 = 0.6; A_1 = 0.16 + 0.72*0.6 = 0.592; A_0 = -0.32 + 0.72*0.592 = 0.10624
    rewards = torch.tensor([[0.0, 0.0, 1.0], [9.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [9.0, 0.2, 0.4]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])  # row 2: a prompt token first, which must not count
    adv, ret = L.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert torch.allclose(adv[0], torch.tensor([0.10624, 0.592, 0.6]), atol=1e-6)
    assert torch.allclose(ret[0], torch.tensor([0.60624, 0.792, 1.0]), atol=1e-6)
    assert torch.allclose(adv[1], torch.tensor([0.0, 0.592, 0.6]), atol=1e-6)
    padded, _ = L.gae(torch.tensor([[0.0, 0.0, 1.0, 7.0]]), torch.tensor([[0.5, 0.2, 0.4, 5.0]]),
                      torch.tensor([[1, 1, 1, 0]]), gamma=0.9, lam=0.8)
    assert torch.allclose(padded[0], torch.tensor([0.10624, 0.592, 0.6, 0.0]), atol=1e-6)  # padding adds nothing


def test_clipped_policy_and_value_losses_match_the_formulas():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    old = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    loss, frac = L.ppo_policy_loss(logp, old, adv, torch.ones(1, 3), clip=0.2)
    # max(-A r, -A clip(r)): -1.2 (clipped), 0.8 (clipped), -2.2 (inside the range)
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 2.2) / 3, abs=1e-6)
    assert frac.item() == pytest.approx(2 / 3)
    v = L.ppo_value_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[2.0, 0.0]]),
                         torch.ones(1, 2), clip=0.2)
    assert v.item() == pytest.approx(0.5 * (1.69 + 0.09) / 2, abs=1e-6)  # clipped values 0.7 and 0.3 are worse


def test_kl_penalty_puts_the_score_on_the_last_completion_token():
    logp = torch.tensor([[-3.0, -1.0, -2.0, 0.0]])
    ref = torch.tensor([[-9.0, -1.5, -1.0, 0.0]])
    mask = torch.tensor([[0, 1, 1, 0]])  # prompt, two completion tokens, padding
    rewards, kl = L.kl_penalty_rewards(logp, ref, mask, torch.tensor([3.0]), kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.0, 0.5, -1.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[0.0, -0.05, 0.1 + 3.0, 0.0]]))


def test_whiten_and_adaptive_kl():
    assert torch.allclose(L.whiten(torch.tensor([1.0, 3.0])), torch.tensor([-0.7071, 0.7071]), atol=1e-4)
    assert L.adaptive_kl_coef(0.2, 12.0, 6.0, 10000, 256) == pytest.approx(0.2 * (1 + 0.2 * 256 / 10000))
    assert L.adaptive_kl_coef(0.2, 5.4, 6.0, 10000, 256) == pytest.approx(0.2 * (1 - 0.1 * 256 / 10000))


def test_token_logprobs_and_entropy():
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, -100, 4], [0, 2, -100]])
    got = L.token_logprobs(logits, labels)
    ref = -F.cross_entropy(logits.reshape(-1, 5), labels.reshape(-1), reduction="none", ignore_index=-100)
    assert torch.allclose(got.reshape(-1), ref.reshape(-1), atol=1e-6)
    assert torch.allclose(L.entropy(torch.zeros(1, 1, 4)), torch.tensor([[math.log(4)]]))


def _stub_trainer(**attrs):
    acc = SimpleNamespace(gather_for_metrics=lambda x: x, gather=lambda x: x, device=torch.device("cpu"))
    return SimpleNamespace(model=SimpleNamespace(training=True), accelerator=acc, _total_train_tokens=0,
                           _tp_size=1, _metrics=defaultdict(lambda: defaultdict(list)), **attrs)


@pytest.mark.parametrize("center", [None, 0.01])
def test_bradley_terry_matches_trl_reward_trainer(center):
    trl = pytest.importorskip("trl")
    chosen, rejected = torch.randn(6), torch.randn(6)
    stub = _stub_trainer(args=SimpleNamespace(center_rewards_coefficient=center))
    model = lambda **_: SimpleNamespace(logits=torch.cat([chosen, rejected]).unsqueeze(-1))  # noqa: E731
    theirs = trl.RewardTrainer.compute_loss(stub, model, {"attention_mask": torch.ones(12, 4, dtype=torch.long)})
    ours = L.bradley_terry_loss(chosen, rejected)
    if center:
        ours = ours + center * ((chosen + rejected) ** 2).mean()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)


@pytest.mark.parametrize("loss_type,B,beta,smoothing", [("sigmoid", 3, 0.1, 0.0), ("sigmoid", 4, 0.5, 0.0),
                                                      ("aot", 1, 0.5, 0.2)])
def test_dpo_loss_matches_trl_dpo_trainer(loss_type, B, beta, smoothing):
    """TRL's DPOTrainer._compute_loss on the same per-token log-probs and precomputed reference log-probs.

    TRL 1.16's "sigmoid" loss has no label smoothing; its "aot" loss is -(1-ε) log σ(βδ) - ε log σ(-βδ)
    over sorted deltas, which for a single pair is exactly conservative DPO: our label smoothing.
    """
    trl = pytest.importorskip("trl")
    T = 6
    completion_mask = torch.zeros(2 * B, T, dtype=torch.long)
    completion_mask[:, 2:] = 1  # two prompt tokens, then the completion
    per_token = torch.randn(2 * B, T - 1) * completion_mask[:, 1:]  # log-probs of the shifted targets
    ref = torch.randn(2 * B) - 5.0
    outputs = SimpleNamespace(log_probs=per_token, entropy=torch.zeros(2 * B, T - 1),
                              mean_logits=torch.zeros(2 * B, T - 1),
                              is_top1=torch.zeros(2 * B, T - 1, dtype=torch.bool))
    stub = _stub_trainer(aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
                         f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0], beta=beta,
                         label_smoothing=smoothing, use_weighting=False)
    inputs = {"input_ids": torch.ones(2 * B, T, dtype=torch.long), "attention_mask": torch.ones(2 * B, T),
              "completion_mask": completion_mask, "ref_chosen_logps": ref[:B], "ref_rejected_logps": ref[B:]}
    theirs = trl.DPOTrainer._compute_loss(stub, lambda **_: outputs, inputs, return_outputs=False)
    logps = per_token.sum(-1)
    ours, r_chosen, r_rejected = L.dpo_loss(logps[:B], logps[B:], ref[:B], ref[B:], beta, smoothing)
    assert ours.item() == pytest.approx(float(theirs), abs=1e-6)
    assert r_chosen.mean().item() == pytest.approx(stub._metrics["train"]["rewards/chosen"][0], abs=1e-6)
