"""The alignment ladder for GPT policies: SFT -> comparisons -> reward model -> PPO, and DPO; judged by eval-gen.

    sft(base, "demos.jsonl", "runs/sft")                                   # align.sft
    compare("runs/sft/model", "runs/labeller", "prompts.txt", "pairs.jsonl")  # align.preferences
    train_reward("runs/minilm", "pairs.jsonl", "runs/reward")              # align.reward
    dpo("runs/sft/model", "pairs.jsonl", "runs/dpo")                       # align.dpo
    ppo("runs/sft/model", "runs/reward/model", "prompts.txt", "runs/ppo")  # align.ppo
    evaluate_policies({...}, judge="runs/judge", prompts=..., reference=...)  # align.evaluate

Every trainer runs on `train.loop.train`; the formulas are in `align.losses`.
"""

from nanobert.align.dpo import DPOConfig, dpo
from nanobert.align.evaluate import EvalConfig, evaluate_policies, format_table
from nanobert.align.ppo import PPOConfig, ppo
from nanobert.align.preferences import CompareConfig, compare
from nanobert.align.records import read_pairs, read_prompts, read_sft_rows
from nanobert.align.reward import RewardConfig, train_reward
from nanobert.align.scoring import load_scorer
from nanobert.align.sft import SFTConfig, sft

__all__ = ["DPOConfig", "dpo", "EvalConfig", "evaluate_policies", "format_table", "PPOConfig", "ppo", "CompareConfig",
           "compare", "read_pairs", "read_prompts", "read_sft_rows", "RewardConfig", "train_reward", "load_scorer",
           "SFTConfig", "sft"]
