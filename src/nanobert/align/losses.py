"""The formulas of the alignment ladder as pure tensor functions: each one small, each one tested by hand.

    bradley_terry_loss(r_chosen, r_rejected)             reward model: -log σ(r_c - r_r)
    dpo_loss(pi_c, pi_r, ref_c, ref_r, beta)             DPO: -log σ(β[(π_c - ref_c) - (π_r - ref_r)])
    token_logprobs(logits, labels)                       log p(label) per position (0 where label = -100)
    kl_penalty_rewards(logp, ref_logp, mask, score, kl_coef)   PPO's per-token reward
    gae(rewards, values, mask, gamma, lam)               advantages and returns
    ppo_policy_loss / ppo_value_loss                     the clipped surrogate objectives

Masks are (B, T) floats or bools with 1 on the completion tokens that count; every mean is over
those tokens only (`masked_mean`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean -log σ(r_chosen - r_rejected - margin) over pairs (B,), TRL RewardTrainer's loss.

    `label_smoothing` ε trusts each label with probability 1 - ε (robust to flipped pairs):
    -(1-ε) log σ(d) - ε log σ(-d). Example: chosen 1, rejected 0 -> log(1 + e^-1) = 0.3133.
    """
    d = chosen.float() - rejected.float() - margin
    return (-(1 - label_smoothing) * F.logsigmoid(d) - label_smoothing * F.logsigmoid(-d)).mean()


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1, label_smoothing: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO's sigmoid loss from summed completion log-probs (B,) -> (mean loss, chosen rewards, rejected rewards).

    The implicit rewards are β·(log π - log π_ref) of each completion; label smoothing as in
    `bradley_terry_loss` (the "conservative DPO" of TRL's `label_smoothing`).
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    d = beta * (chosen_ratio - rejected_ratio)
    loss = -(1 - label_smoothing) * F.logsigmoid(d) - label_smoothing * F.logsigmoid(-d)
    return loss.mean(), beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] at each position: logits (B, T, V), labels (B, T) -> (B, T), 0 where label = -100."""
    keep = labels != -100
    safe = labels.masked_fill(~keep, 0)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return logp * keep


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the next-token distribution at each position: (B, T, V) -> (B, T), in nats."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1. Example: x [1, 2, 9], mask [1, 1, 0] -> 1.5."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked positions (all when mask is None); `shift_mean=False` keeps the mean.

    Example: [1, 3] -> [-0.7071, 0.7071] (std with Bessel's correction, as TRL's `whiten`).
    """
    mask = torch.ones_like(x) if mask is None else mask.to(x.dtype)
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = ((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def kl_penalty_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, score: torch.Tensor,
                       kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's per-token reward: -β·(log π - log π_ref) at every completion token, + the score at the last one.

    logp, ref_logp, mask: (B, T); score: (B,). Returns (rewards (B, T), per-token KL (B, T)); the
    KL estimate of a sequence is the sum of its per-token terms (log π(y) - log π_ref(y)).
    Example: logp [-1, -2], ref [-1.5, -1], score 3, β 0.1 -> KL [0.5, -1], rewards [-0.05, 3.1].
    """
    mask = mask.to(logp.dtype)
    kl = (logp - ref_logp) * mask  # (B, T)
    rewards = -kl_coef * kl
    last = (mask.cumsum(-1) == mask.sum(-1, keepdim=True)) & (mask > 0)  # (B, T) the last completion token
    rewards = rewards + last.to(logp.dtype) * score.unsqueeze(-1).to(logp.dtype)
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the completion tokens: (advantages, returns), each (B, T).

    δ_t = r_t + γ·V_{t+1} - V_t (V after the last token is 0), A_t = δ_t + γλ·A_{t+1}, return =
    A + V. Completion tokens are contiguous (prompt before, padding after); masked positions
    are 0 and do not propagate. Example: r [0, 1], V [0.5, 0.5], γ=λ=1 -> A [0.5, 0.5], R [1, 1].
    """
    mask = mask.to(rewards.dtype)
    T = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate: mean of max(-A·ρ, -A·clip(ρ, 1-ε, 1+ε)), ρ = exp(log π - log π_old).

    Returns (loss, clip fraction: the share of tokens where the clipped term is the larger one).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_frac.detach()


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float = 0.2) -> torch.Tensor:
    """Clipped value loss: 0.5 · mean of max((V - R)², (clip(V, V_old ± ε) - R)²)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def adaptive_kl_coef(coef: float, kl: float, target: float, horizon: float, n_steps: int) -> float:
    """Ziegler et al.'s controller: coef · (1 + clip(KL/target - 1, ±0.2) · n_steps / horizon).

    Example: coef 0.2, KL 12, target 6, horizon 10000, 256 samples -> 0.2 · (1 + 0.2 · 0.0256) = 0.201024.
    """
    error = max(-0.2, min(0.2, kl / target - 1.0))
    return coef * (1.0 + error * n_steps / horizon)
