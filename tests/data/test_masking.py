import torch

from nanobert.data.masking import continuation_table, mask_tokens, special_table, word_starts
from nanobert.tokenizers import load_tokenizer

PAD, CLS, SEP, MASK = 0, 101, 102, 103
V = 30522


def _batch(B=64, T=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, V, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = CLS, SEP
    ids[: B // 2, 100:] = PAD  # half the rows padded
    ids[: B // 2, 99] = SEP
    return ids, (ids != PAD).long()


def test_80_10_10_never_special_or_padding():
    ids, attn = _batch()
    special = special_table([PAD, CLS, SEP, MASK, 100], V)
    masked, labels = mask_tokens(ids, mask_id=MASK, special=special, attention_mask=attn,
                                 generator=torch.Generator().manual_seed(1))
    chosen = labels != -100
    allowed = (attn == 1) & ~special[ids]
    assert not (chosen & ~allowed).any()  # never [CLS]/[SEP]/padding
    assert torch.equal(labels[chosen], ids[chosen])  # labels: the original token
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes
    rate = chosen.sum() / allowed.sum()
    assert 0.14 < rate < 0.16
    as_mask = (masked[chosen] == MASK).float().mean()
    unchanged = (masked[chosen] == ids[chosen]).float().mean()
    assert 0.77 < as_mask < 0.83 and 0.08 < unchanged < 0.12  # the rest (~10%) are random tokens


def test_split_batch_gets_the_same_masks_as_the_whole():
    ids, attn = _batch(B=8)
    special = special_table([PAD, CLS, SEP, MASK], V)
    kw = dict(mask_id=MASK, special=special, rows_total=8, width=128)
    whole = mask_tokens(ids, attention_mask=attn, generator=torch.Generator().manual_seed(5), **kw)
    top = mask_tokens(ids[:4, :100], attention_mask=attn[:4, :100], row_offset=0,
                      generator=torch.Generator().manual_seed(5), **kw)  # a process that padded to 100 only
    bottom = mask_tokens(ids[4:], attention_mask=attn[4:], row_offset=4,
                         generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(whole[1][:4, :100], top[1]) and torch.equal(whole[1][4:], bottom[1])
    assert torch.equal(whole[0][4:], bottom[0])


def test_at_least_one_position_and_hand_worked_word_starts():
    ids = torch.tensor([[CLS, 2000, SEP, PAD]])
    special = special_table([PAD, CLS, SEP, MASK], V)
    _, labels = mask_tokens(ids, mask_id=MASK, special=special, rate=1e-9)
    assert labels.tolist() == [[-100, 2000, -100, -100]]  # a tiny batch still predicts something
    cont = torch.zeros(V, dtype=torch.bool)
    cont[3000] = True  # "##ing"
    assert word_starts(torch.tensor([[CLS, 2000, 3000, 2001]]), cont).tolist() == [[0, 1, 1, 3]]


def test_whole_word_masks_every_piece_of_a_word(minilm_dir):
    tok = load_tokenizer(minilm_dir)
    text = "unbelievable tokenization of extraordinary hyperparameters " * 20
    ids = torch.tensor([tok.encode(text)[:128]] * 16)
    cont = continuation_table(tok)
    special = special_table(tok.special_ids, tok.vocab_size)
    _, labels = mask_tokens(ids, mask_id=tok.mask_token_id, special=special, continuation=cont,
                            generator=torch.Generator().manual_seed(0))
    starts = word_starts(ids, cont)
    chosen = labels != -100
    assert chosen.any()
    # each piece is chosen exactly when its word's first piece is
    assert torch.equal(chosen, chosen.gather(1, starts) & ~special[ids])
    assert cont[ids][chosen].any()  # some continuation pieces were masked along with their words
