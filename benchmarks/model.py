"""Speed of nanobert's BERT against transformers' on the same config, weights and input, in one run.

Three measurements per size, each as tokens/s for ours and theirs and the ratio (ours / theirs):
  forward     BertModel forward, no grad (equal math)
  fwd+bwd     BertModel forward + backward of the summed hidden states (equal math)
  mlm step    BertForMaskedLM forward + backward + AdamW step with 15% of tokens labelled
              (ours predicts only the labelled tokens; transformers computes every position)

    python benchmarks/model.py                      # mini (L2/H128) and small (L4/H256), batch 32 x 128
    python benchmarks/model.py --sizes mini --batch 8 --seq 128 --repeats 5
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from _timing import timed_pair



CLOCK = "wall"  # --clock cpu: CPU seconds of this process (see _timing.py)


def make_pair(cls_ours, cls_hf, cfg):
    """The same random weights in ours and in transformers' (saved by ours, loaded by theirs)."""
    ours = cls_ours(cfg)
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        theirs = cls_hf.from_pretrained(d, attn_implementation="sdpa")
    return ours, theirs


def bench_size(name: str, batch: int, seq: int, repeats: int, vocab: int) -> list[tuple[str, float, float]]:
    import transformers

    from nanobert.model.bert import BertConfig, BertForMaskedLM, BertModel

    cfg = BertConfig.from_preset(name, vocab_size=vocab)
    ids = torch.randint(5, vocab, (batch, seq))
    mask = torch.ones(batch, seq, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(batch, seq) < 0.15
    labels[chosen] = ids[chosen]
    tokens = batch * seq
    rows = []

    ours, theirs = make_pair(BertModel, transformers.BertModel, cfg)
    for m in (ours, theirs):
        m.eval()
    with torch.no_grad():
        t_ours, t_hf = timed_pair(lambda: ours(ids, mask), lambda: theirs(input_ids=ids, attention_mask=mask), repeats, clock=CLOCK)
    rows.append(("forward", tokens / t_ours, tokens / t_hf))

    for m in (ours, theirs):
        m.train()
    t_ours, t_hf = timed_pair(
        lambda: ours(ids, mask)[0].sum().backward(),
        lambda: theirs(input_ids=ids, attention_mask=mask).last_hidden_state.sum().backward(),
        repeats, clock=CLOCK,
    )
    rows.append(("fwd+bwd", tokens / t_ours, tokens / t_hf))

    ours, theirs = make_pair(BertForMaskedLM, transformers.BertForMaskedLM, cfg)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_hf = torch.optim.AdamW(theirs.parameters(), lr=1e-4)
    ours.train()
    theirs.train()

    def step_ours():
        _, loss = ours(ids, mask, labels=labels)
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_hf():
        loss = theirs(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt_hf.step()
        opt_hf.zero_grad(set_to_none=True)

    t_ours, t_hf = timed_pair(step_ours, step_hf, repeats, clock=CLOCK)
    rows.append(("mlm step", tokens / t_ours, tokens / t_hf))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="mini,small", help="comma-separated presets (see nanobert.model.config)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time, steadier than wall time on a busy machine (use --threads 1)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = args.clock
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, batch {args.batch} x {args.seq}")
    print(f"{'size':<8} {'measure':<10} {'ours tok/s':>12} {'HF tok/s':>12} {'ratio':>7}")
    for name in args.sizes.split(","):
        for what, ours, theirs in bench_size(name, args.batch, args.seq, args.repeats, args.vocab):
            print(f"{name:<8} {what:<10} {ours:>12,.0f} {theirs:>12,.0f} {ours / theirs:>6.2f}x")


if __name__ == "__main__":
    main()
