"""Replaced-token detection: the corrupted row, the two losses against a hand computation, saving and loading."""

import pytest
import torch
import torch.nn.functional as F

from nanobert.model.bert import BertConfig, BertForMaskedLM
from nanobert.model.electra import ElectraForPretraining


def _model(**kw):
    torch.manual_seed(0)
    cfg = BertConfig.from_preset("mini", vocab_size=300, max_position_embeddings=32, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0)
    return ElectraForPretraining(cfg, **kw)


def _batch():
    g = torch.Generator().manual_seed(1)
    text = torch.randint(10, 300, (3, 12), generator=g)  # (B, T) the text before masking
    attention = torch.ones_like(text)
    attention[2, 8:] = 0
    text[2, 8:] = 0
    labels = torch.full_like(text, -100)
    for b, t in [(0, 2), (0, 5), (1, 1), (1, 9), (2, 3)]:
        labels[b, t] = text[b, t]
    text[1, 9] = 7  # the generator below always proposes 7: this masked position gets its own token back
    labels[1, 9] = 7
    masked = text.clone()
    masked[labels != -100] = 4  # [MASK]
    return text, masked, attention, labels


def test_losses_equal_a_hand_computation():
    model = _model(generator_layers=1, disc_weight=50.0)
    with torch.no_grad():
        model.cls.predictions.bias.zero_()
        model.cls.predictions.bias[7] = 1e4  # a generator that samples 7 wherever it fills a blank
    text, masked, attention, labels = _batch()
    logits, loss = model(masked, attention, labels=labels)

    assert logits.shape == (5, 300)  # the 5 masked positions only
    gen_loss = F.cross_entropy(logits.float(), labels[labels != -100])
    corrupted = text.clone()
    corrupted[labels != -100] = 7
    replaced = (corrupted != text).float()  # (B, T): 4 of the 5 blanks; the one whose token was 7 is original
    assert replaced.sum() == 4 and replaced[1, 9] == 0
    hidden, _ = model.bert(corrupted, attention)
    disc = model.discriminator_head(hidden)  # (B, T)
    real = attention.bool()
    disc_loss = F.binary_cross_entropy_with_logits(disc[real], replaced[real])  # padding excluded
    torch.testing.assert_close(loss, gen_loss + 50.0 * disc_loss)
    assert float(model.last_losses["replaced"]) == pytest.approx(4 / real.sum().item())
    assert float(model.last_losses["discriminator_loss"]) == pytest.approx(disc_loss.item(), rel=1e-5)


def test_both_losses_train_the_shared_embeddings():
    model = _model()
    text, masked, attention, labels = _batch()
    _, loss = model(masked, attention, labels=labels)
    loss.backward()
    words = model.bert.embeddings.word_embeddings.weight.grad
    assert words is not None and words.abs().sum() > 0
    assert all(p.grad is not None for p in model.generator.parameters())
    assert all(p.grad is not None for p in model.discriminator_head.parameters())
    model.zero_grad()
    model.disc_weight = 1e-12  # the discriminator's part alone reaches the encoder layers the generator lacks
    _, loss = model(masked, attention, labels=labels)
    loss.backward()
    assert model.bert.encoder.layer[1].output.dense.weight.grad.abs().max() < 1e-9


def test_saved_parts_load_in_transformers_and_back(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = _model(generator_layers=1).eval()
    model.save_pretrained(tmp_path / "m")
    text, masked, attention, labels = _batch()
    with torch.no_grad():
        ours = model.bert(text, attention)[0]
        hf = transformers.BertModel.from_pretrained(tmp_path / "m", add_pooling_layer=False).eval()
        torch.testing.assert_close(hf(text, attention_mask=attention).last_hidden_state, ours, rtol=1e-4,
                                   atol=1e-5)
        gen = BertForMaskedLM.from_pretrained(tmp_path / "m" / "generator")
        assert gen.config.num_hidden_layers == 1 and gen.config.hidden_size == model.config.hidden_size
        torch.testing.assert_close(gen(masked, attention)[0], model(masked, attention)[0])
        again = ElectraForPretraining.from_saved(tmp_path / "m")
        torch.manual_seed(3)
        a = model(masked, attention, labels=labels)[1]
        torch.manual_seed(3)
        b = again(masked, attention, labels=labels)[1]
        torch.testing.assert_close(a, b)


def test_sample_draws_from_the_softmax():
    from nanobert.model.electra import sample
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0, -float("inf")]]).repeat(100_000, 1)
    counts = torch.bincount(sample(logits), minlength=5).float() / 100_000
    torch.testing.assert_close(counts, logits[0].softmax(-1), atol=0.006, rtol=0)
    assert counts[4] == 0  # a token of probability 0 is never drawn
