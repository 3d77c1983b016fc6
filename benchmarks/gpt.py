"""Speed of nanobert's GPT against transformers' GPT2LMHeadModel (sdpa) on the same config, weights and data.

Training: forward + backward + AdamW step on (batch, block) tokens, ours and theirs alternated so
that load on a shared machine hits both alike; median step time -> tokens/s and the ratio.
Generation: greedy continuation of `--prompt-len` tokens by `--new-tokens`, ours with the KV cache,
ours recomputing every step, and transformers' generate() with its cache; all three must give the
same tokens.

    python benchmarks/gpt.py                                  # L4 / C256 / H4, block 256, GPT-2 vocab
    python benchmarks/gpt.py --n-layer 4 --n-embd 128 --n-head 4 --vocab 81 --block 128 --batch 32
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from _timing import timed_pair


CLOCK = time.perf_counter  # --clock cpu: time.process_time (CPU seconds of this process, all threads)


def make_pair(args):
    """Our GPT and transformers' GPT-2 with the same random weights (saved by ours, loaded by theirs)."""
    import transformers

    from nanobert.model.gpt import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=args.vocab, n_positions=max(args.block, args.prompt_len + args.new_tokens),
                    n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head, bos_token_id=None,
                    eos_token_id=None, resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout)
    torch.manual_seed(0)
    ours = GPT(cfg)
    with torch.no_grad():  # larger weights than the init's: peaked next-token distributions, so greedy
        for p in ours.parameters():  # choices are far from ties that rounding could flip
            if p.dim() == 2:
                p.mul_(args.weight_scale)
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        theirs = transformers.GPT2LMHeadModel.from_pretrained(d, attn_implementation="sdpa")
    return ours, theirs


def bench_training(ours, theirs, args) -> tuple[float, float]:
    data = torch.randint(0, args.vocab, (args.batch, args.block + 1))
    x, y = data[:, :-1], data[:, 1:]
    opt_a = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_b = torch.optim.AdamW(theirs.parameters(), lr=1e-4)
    ours.train()
    theirs.train()

    def step_ours():
        _, loss = ours(x, y)
        loss.backward()
        opt_a.step()
        opt_a.zero_grad(set_to_none=True)

    def step_theirs():
        loss = theirs(input_ids=x, labels=x).loss  # shifts the labels itself: the same next-token task
        loss.backward()
        opt_b.step()
        opt_b.zero_grad(set_to_none=True)

    return timed_pair(step_ours, step_theirs, args.repeats, warmup=2, clock=args.clock)


@torch.no_grad()
def bench_generation(ours, theirs, args) -> dict:
    from nanobert.infer.generate import generate

    ours.eval()
    theirs.eval()
    prompts = torch.randint(0, args.vocab, (args.gen_batch, args.prompt_len))
    runs = {
        "ours, KV cache": lambda: generate(ours, prompts.tolist(), max_new_tokens=args.new_tokens, greedy=True),
        "ours, no cache": lambda: generate(ours, prompts.tolist(), max_new_tokens=args.new_tokens, greedy=True,
                                           use_cache=False),
        "transformers, cache": lambda: theirs.generate(
            prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)[:, args.prompt_len:].tolist(),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs = {k: fn() for k, fn in runs.items()}  # warmup, and the tokens to compare
    for _ in range(args.gen_repeats):
        for k, fn in runs.items():
            t0 = CLOCK()
            fn()
            times[k].append(CLOCK() - t0)
    tokens = args.gen_batch * args.new_tokens
    same = {"cache == no cache": outputs["ours, KV cache"] == outputs["ours, no cache"],
            "ours == transformers": outputs["ours, KV cache"] == outputs["transformers, cache"]}
    return {"tok_s": {k: tokens / sorted(v)[len(v) // 2] for k, v in times.items()}, "same_tokens": same}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--weight-scale", type=float, default=5.0, help="multiply the random init's matrices by this")
    p.add_argument("--dropout", type=float, default=0.0, help="all three GPT-2 dropouts (0: as in pretraining)")
    p.add_argument("--block", type=int, default=256, help="training sequence length")
    p.add_argument("--batch", type=int, default=8, help="training batch size")
    p.add_argument("--repeats", type=int, default=10, help="timed training steps each")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=224)
    p.add_argument("--gen-batch", type=int, default=1)
    p.add_argument("--gen-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: CPU time of this process, steadier than wall time on a machine shared with others")
    args = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)

    ours, theirs = make_pair(args)
    n = sum(q.numel() for q in ours.parameters())
    print(f"GPT L{args.n_layer} C{args.n_embd} H{args.n_head} V{args.vocab}: {n / 1e6:.2f}M parameters, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock")
    t_ours, t_theirs = bench_training(ours, theirs, args)
    tokens = args.batch * args.block
    print(f"training step, batch {args.batch} x {args.block}:")
    print(f"  ours          {tokens / t_ours:10.0f} tokens/s  ({t_ours * 1000:.0f} ms/step)")
    print(f"  transformers  {tokens / t_theirs:10.0f} tokens/s  ({t_theirs * 1000:.0f} ms/step)")
    print(f"  ratio ours/transformers: {t_theirs / t_ours:.2f}x")
    gen = bench_generation(*make_pair(args), args)  # fresh weights: training moved the two pairs apart by rounding
    print(f"generation, greedy, batch {args.gen_batch}, prompt {args.prompt_len} + {args.new_tokens} new tokens:")
    for k, v in gen["tok_s"].items():
        print(f"  {k:20s} {v:8.1f} tokens/s")
    speedup = gen["tok_s"]["ours, KV cache"] / gen["tok_s"]["ours, no cache"]
    ratio = gen["tok_s"]["ours, KV cache"] / gen["tok_s"]["transformers, cache"]
    print(f"  KV cache speed-up: {speedup:.2f}x; ours/transformers with cache: {ratio:.2f}x")
    print("  same tokens: " + ", ".join(f"{k}: {v}" for k, v in gen["same_tokens"].items()))


if __name__ == "__main__":
    main()
