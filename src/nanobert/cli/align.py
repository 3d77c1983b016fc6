"""`nanobert sft | compare | reward | dpo | ppo | eval-gen`: the alignment ladder for GPT policies."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

ORDER = 85

TASK_HELP = """\
Write the files of the SST-2 alignment task: corpus.txt (training sentences, for train-gpt),
sft.jsonl (every training sentence of 6+ words cut into a 2-5 word prompt and its completion),
train_prompts.txt, dev_prompts.txt (held-out prompts from SST-2 dev), and labeller.tsv /
judge.tsv (the two halves of SST-2 train, for two different classifiers).

example:
  nanobert align-data --sst2 ../shared/data/sst2 --out runs/align/data"""

SFT_HELP = """\
Supervised fine-tuning of a GPT on {"prompt", "completion"} rows (JSON Lines; {"text"} rows too).
The loss covers the completion tokens only (the prompt's labels are -100); rows of similar length
are batched together. OUT/model is a GPT directory like any other; checkpoints, metrics.csv and
plots are in OUT, and --resume continues the newest checkpoint. Any SFTConfig field can follow
the options, e.g. --loop.max_steps 500 --loop.lr 1e-4 --batch_size 16.

example:
  nanobert sft --model runs/base/model --data demos.jsonl --out runs/sft --loop.max_steps 300"""

COMPARE_HELP = """\
Sample --samples completions per prompt from a policy, score each `prompt + completion` with a
labeller (a classifier directory made by `nanobert finetune`: its positive label's log-odds; or a
reward model), and write the best and the worst as {"prompt", "chosen", "rejected"} rows (TRL's
preference format), with the labeller's chosen_score and rejected_score.

example:
  nanobert compare --policy runs/sft/model --labeller runs/labeller --prompts prompts.txt --samples 4 \\
      --out pairs.jsonl"""

REWARD_HELP = """\
Train a reward model on preference pairs with the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected):
a scalar head on a BERT backbone (saved as transformers' BertForSequenceClassification with
num_labels=1) or on a GPT backbone (GPT2ForSequenceClassification layout). Reports the pairwise
accuracy on held-out pairs (val_fraction). Data-quality options: --flip_fraction, --max_pairs,
--min_margin, --label_smoothing.

example:
  nanobert reward --model minilm/ --data pairs.jsonl --out runs/reward --loop.max_steps 300"""

DPO_HELP = """\
Direct Preference Optimisation of a GPT on preference pairs (TRL's sigmoid loss; --beta). The
reference is the starting policy; its log-probs are computed once before training. OUT/model is
the tuned GPT.

example:
  nanobert dpo --policy runs/sft/model --data pairs.jsonl --out runs/dpo --beta 0.1"""

PPO_HELP = """\
PPO of a GPT against a reward model (or a classifier: its positive log-odds), with a per-token
KL penalty to the frozen starting policy (fixed, or adaptive with --adaptive_kl), a value head,
GAE, clipped policy and value losses, --ppo_epochs minibatch passes per rollout and reward
whitening. Per-rollout reward, KL, entropy, clip fraction and value loss go to OUT/ppo.csv and
OUT/*.png; checkpoints to OUT (--resume continues, bit for bit); the tuned policy to OUT/model.

example:
  nanobert ppo --policy runs/sft/model --reward runs/reward/model --prompts prompts.txt --out runs/ppo \\
      --rollouts 40 --batch_size 64"""

EVAL_HELP = """\
Judge the samples of one or more policies on held-out prompts: the judge's positive rate and
mean logit, the KL to the reference policy (nats per sequence) and the reference's perplexity
of the samples (fluency); with --reward also the reward model's mean score, its correlation with
the judge, and reward hacking (top-quarter reward, judge says negative). Prints a table and a
few samples; --json writes everything.

example:
  nanobert eval-gen --policy sft=runs/sft/model --policy ppo=runs/ppo/model --judge runs/judge \\
      --reference runs/sft/model --prompts dev_prompts.txt --json eval.json"""


def _task(args) -> int:
    from nanobert.align.task import write_task_files

    print(json.dumps(write_task_files(args.sst2, args.out, seed=args.seed), indent=2))
    return 0


def _cfg(cls, args, named: dict):
    from nanobert.config import load_config

    overrides = list(args.overrides)
    for key, value in named.items():
        if value is not None:
            overrides = [f"--{key}", str(value)] + overrides
    cfg = load_config(cls, args.config, overrides)
    if args.no_progress:
        if hasattr(cfg, "loop"):
            cfg = dataclasses.replace(cfg, loop=dataclasses.replace(cfg.loop, progress=False))
        elif hasattr(cfg, "progress"):
            cfg = dataclasses.replace(cfg, progress=False)
    return cfg


def _sft(args) -> int:
    from nanobert.align.sft import SFTConfig, sft

    print(json.dumps(sft(args.model, args.data, args.out, _cfg(SFTConfig, args, {}), resume=args.resume), indent=2))
    return 0


def _compare(args) -> int:
    from nanobert.align.preferences import CompareConfig, compare

    cfg = _cfg(CompareConfig, args, {"samples": args.samples})
    print(json.dumps(compare(args.policy, args.labeller, args.prompts, args.out, cfg), indent=2))
    return 0


def _reward(args) -> int:
    from nanobert.align.reward import RewardConfig, train_reward

    result = train_reward(args.model, args.data, args.out, _cfg(RewardConfig, args, {}), resume=args.resume)
    print(json.dumps(result, indent=2))
    return 0


def _dpo(args) -> int:
    from nanobert.align.dpo import DPOConfig, dpo

    cfg = _cfg(DPOConfig, args, {"beta": args.beta})
    print(json.dumps(dpo(args.policy, args.data, args.out, cfg, resume=args.resume), indent=2))
    return 0


def _ppo(args) -> int:
    from nanobert.align.ppo import PPOConfig, ppo

    result = ppo(args.policy, args.reward, args.prompts, args.out, _cfg(PPOConfig, args, {}), resume=args.resume)
    print(json.dumps(result, indent=2))
    return 0


def _eval(args) -> int:
    from nanobert.align.evaluate import EvalConfig, evaluate_policies, format_table
    from nanobert.errors import NanobertError
    from nanobert.fileio import write_json

    policies = {}
    for spec in args.policy:
        name, _, path = spec.rpartition("=")
        policies[name or path] = path
    if not args.reference and len(policies) != 1:
        raise NanobertError("give --reference DIR (the policy KL and perplexity are measured against)")
    cfg = _cfg(EvalConfig, args, {})
    report = evaluate_policies(policies, args.judge, args.prompts, args.reference or next(iter(policies.values())),
                               reward=args.reward, cfg=cfg)
    sys.stdout.write(format_table(report))
    if args.json:
        write_json(args.json, report)
    return 0


def _parser(subparsers, name, help, description, func, *, resume=True):
    p = subparsers.add_parser(name, help=help, description=description,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="TOML", help="settings file (the command's config fields); "
                   "--key value after the options overrides any of them")
    if resume:
        p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=func, accepts_overrides=True)
    return p


def register(subparsers) -> None:
    p = subparsers.add_parser("align-data", help="write the SST-2 alignment task's files (corpus, demos, prompts)",
                              description=TASK_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sst2", required=True, metavar="DIR", help="directory with SST-2's train.tsv and dev.tsv")
    p.add_argument("--out", required=True, metavar="DIR", help="where the files go")
    p.add_argument("--seed", type=int, default=0, help="prompt lengths and the labeller/judge halves")
    p.set_defaults(func=_task)

    p = _parser(subparsers, "sft", "supervised fine-tuning of a GPT on prompt/completion rows", SFT_HELP, _sft)
    p.add_argument("--model", required=True, metavar="DIR", help="the GPT to start from")
    p.add_argument("--data", required=True, metavar="JSONL", help='{"prompt", "completion"} or {"text"} rows')
    p.add_argument("--out", required=True, metavar="DIR", help="run directory; the model goes to OUT/model")

    p = _parser(subparsers, "compare", "sample completions and write labeller-ranked preference pairs",
                COMPARE_HELP, _compare, resume=False)
    p.add_argument("--policy", required=True, metavar="DIR", help="the GPT to sample from")
    p.add_argument("--labeller", required=True, metavar="DIR", help="classifier or reward-model directory")
    p.add_argument("--prompts", required=True, metavar="FILE", help='one prompt a line (.txt) or {"prompt"} rows')
    p.add_argument("--samples", type=int, metavar="K", help="completions per prompt (default 4)")
    p.add_argument("--out", required=True, metavar="JSONL", help="the pairs file to write")

    p = _parser(subparsers, "reward", "train a reward model (Bradley-Terry) on preference pairs", REWARD_HELP,
                _reward)
    p.add_argument("--model", required=True, metavar="DIR", help="BERT or GPT backbone directory")
    p.add_argument("--data", required=True, metavar="JSONL", help='{"prompt", "chosen", "rejected"} rows')
    p.add_argument("--out", required=True, metavar="DIR", help="run directory; the model goes to OUT/model")

    p = _parser(subparsers, "dpo", "Direct Preference Optimisation of a GPT on preference pairs", DPO_HELP, _dpo)
    p.add_argument("--policy", required=True, metavar="DIR", help="the GPT to start from (and the reference)")
    p.add_argument("--data", required=True, metavar="JSONL", help='{"prompt", "chosen", "rejected"} rows')
    p.add_argument("--out", required=True, metavar="DIR", help="run directory; the model goes to OUT/model")
    p.add_argument("--beta", type=float, help="KL strength (default 0.1)")

    p = _parser(subparsers, "ppo", "PPO of a GPT against a reward model with a KL penalty", PPO_HELP, _ppo)
    p.add_argument("--policy", required=True, metavar="DIR", help="the GPT to start from (and the reference)")
    p.add_argument("--reward", required=True, metavar="DIR", help="reward-model or classifier directory")
    p.add_argument("--prompts", required=True, metavar="FILE", help='one prompt a line (.txt) or {"prompt"} rows')
    p.add_argument("--out", required=True, metavar="DIR", help="run directory; the model goes to OUT/model")

    p = _parser(subparsers, "eval-gen", "judge policies' samples: positive rate, KL, perplexity", EVAL_HELP,
                _eval, resume=False)
    p.add_argument("--policy", required=True, action="append", metavar="[NAME=]DIR", help="a GPT (repeatable)")
    p.add_argument("--judge", required=True, metavar="DIR", help="the classifier that judges the samples")
    p.add_argument("--prompts", required=True, metavar="FILE", help="held-out prompts")
    p.add_argument("--reference", metavar="DIR", help="the reference GPT for KL and perplexity")
    p.add_argument("--reward", metavar="DIR", help="a reward model: mean reward, correlation, reward hacking")
    p.add_argument("--json", metavar="FILE", help="write the whole report as JSON")
