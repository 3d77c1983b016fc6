"""Generation: KV cache == recomputation, batches == one by one, greedy == transformers, sampling knobs, errors, CLI."""

from __future__ import annotations

import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.infer.generate import GenerationConfig, filter_logits, generate, generate_text
from nanobert.model.gpt import GPT, BigramLanguageModel, GPTConfig

TINY = dict(vocab_size=60, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
PROMPTS = [[5, 17, 3, 9, 22, 41], [7, 8], [30, 2, 2, 11]]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GPT(GPTConfig(**TINY)).eval()
    with torch.no_grad():  # peaked distributions: greedy choices are far from ties
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    return m


def test_kv_cache_gives_the_same_tokens_greedy_and_sampled(model):
    for kw in (dict(greedy=True), dict(seed=3, temperature=0.9, top_k=20, top_p=0.95)):
        cached = generate(model, PROMPTS, max_new_tokens=20, **kw)
        recomputed = generate(model, PROMPTS, max_new_tokens=20, use_cache=False, **kw)
        assert cached == recomputed
        assert [len(x) for x in cached] == [20, 20, 20]


def test_a_prompt_gives_the_same_tokens_in_a_left_padded_batch_as_alone(model):
    batch = generate(model, PROMPTS, max_new_tokens=15, greedy=True)
    alone = [generate(model, [p], max_new_tokens=15, greedy=True)[0] for p in PROMPTS]
    assert batch == alone


def test_beyond_the_context_the_window_slides_the_same_way_with_and_without_cache(model):
    cached = generate(model, PROMPTS, max_new_tokens=40, greedy=True)  # 6 + 40 > 32 positions
    recomputed = generate(model, PROMPTS, max_new_tokens=40, greedy=True, use_cache=False)
    assert cached == recomputed and len(cached[0]) == 40


def test_greedy_matches_transformers_generate(model, tmp_path):
    transformers = pytest.importorskip("transformers")
    model.save_pretrained(tmp_path / "m")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "m").eval()
    ours = generate(model, PROMPTS, max_new_tokens=12, greedy=True)
    longest = max(map(len, PROMPTS))
    ids = torch.tensor([[0] * (longest - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in PROMPTS])
    out = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert out[:, longest:].tolist() == ours


def test_stops_at_end_of_text_without_returning_it(model):
    full = generate(model, [PROMPTS[0]], max_new_tokens=10, greedy=True)[0]
    eos = full[4]
    first = full.index(eos)
    assert generate(model, [PROMPTS[0]], max_new_tokens=10, greedy=True, eos_token_id=eos)[0] == full[:first]


def test_top_k_one_is_greedy_and_filter_logits_worked_example(model):
    assert generate(model, PROMPTS, max_new_tokens=8, top_k=1, seed=0) == \
        generate(model, PROMPTS, max_new_tokens=8, greedy=True)
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = filter_logits(logits, top_p=0.7).isfinite().tolist()
    assert kept == [[True, True, False, False]]  # 0.5 < 0.7 <= 0.8
    assert filter_logits(logits, top_k=3).isfinite().tolist() == [[True, True, True, False]]
    assert filter_logits(logits, top_p=0.4).isfinite().tolist() == [[True, False, False, False]]


def test_temperature_sharpens_sampling(model):
    """At a low temperature sampling agrees with greedy far more often than at a high one."""
    greedy = generate(model, [[5]] * 40, max_new_tokens=1, greedy=True)
    cold = generate(model, [[5]] * 40, max_new_tokens=1, temperature=0.05, seed=1)
    hot = generate(model, [[5]] * 40, max_new_tokens=1, temperature=50.0, seed=1)
    assert cold == greedy
    assert sum(h == g for h, g in zip(hot, greedy)) < 20


def test_bigram_model_generates_from_the_last_token():
    torch.manual_seed(0)
    bigram = BigramLanguageModel(10)
    with torch.no_grad():
        bigram.token_embedding_table.weight.copy_(torch.eye(10).roll(1, dims=1) * 50)  # i -> i + 1
    assert generate(bigram, [[3], [1, 2, 7]], max_new_tokens=4, greedy=True) == [[4, 5, 6, 7], [8, 9, 0, 1]]


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(NanobertError, match="prompt of 33 tokens is longer than the model's context of 32"):
        generate(model, [[1] * 33], max_new_tokens=1)
    for t in (0.0, -1.0):
        with pytest.raises(NanobertError, match="temperature must be > 0"):
            generate(model, PROMPTS, temperature=t)
    with pytest.raises(NanobertError, match="top_p must be in"):
        generate(model, PROMPTS, top_p=0.0)
    with pytest.raises(NanobertError, match="at least one token"):
        generate(model, [[]])
    from nanobert.tokenizers import CharTokenizer

    tok = CharTokenizer.train("abcdefgh ")
    with pytest.raises(NanobertError, match="'Z' is not in the vocabulary"):
        generate_text(model, tok, "a Z", GenerationConfig(max_new_tokens=3))


def test_cli_generate_and_its_errors(model, tmp_path, capsys):
    from nanobert.cli import main
    from nanobert.tokenizers import CharTokenizer

    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?\n")
    assert tok.vocab_size == TINY["vocab_size"]
    model.save_pretrained(tmp_path / "m", tokenizer=tok)
    args = ["generate", "--model", str(tmp_path / "m"), "--max-new-tokens", "10", "--greedy"]
    assert main(args + ["--prompt", "It is", "--prompt", "a truth"]) == 0
    out = capsys.readouterr().out
    expected = generate_text(model, tok, ["It is", "a truth"], max_new_tokens=10, greedy=True)
    assert out.startswith("It is" + expected[0] + "\n") and out.rstrip("\n").endswith("a truth" + expected[1])
    assert main(args + ["--prompt", "x" * 40]) == 2
    assert "longer than the model's context" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "m"), "--prompt", "It", "--temperature", "0"]) == 2
    assert "temperature must be > 0" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "m"), "--prompt", "It is ~"]) == 2
    assert "'~' is not in the vocabulary" in capsys.readouterr().err
