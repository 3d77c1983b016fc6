import json

import numpy as np
import pytest

from nanobert.data.loaders import TokenShards
from nanobert.data.prepare import PrepareConfig, pack_sentences, prepare, split_sentences
from nanobert.errors import NanobertError
from nanobert.tokenizers import load_tokenizer


@pytest.fixture(scope="module")
def tok(minilm_dir):
    return load_tokenizer(minilm_dir)


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    """The first ~1,500 lines of Persuasion plus a WikiText-style file: a few hundred sequences."""
    d = tmp_path_factory.mktemp("corpus")
    lines = (shared_data / "janeausten" / "persuasion.txt").read_text(encoding="utf-8").splitlines()[:1500]
    (d / "persuasion.txt").write_text("\n".join(lines), encoding="utf-8")
    (d / "wiki.txt").write_text(" = Alpha = \n\nAlpha is the first letter. It comes before beta.\n"
                                " = Beta = \n\nBeta is the second letter!\n", encoding="utf-8")
    return d


def test_split_sentences_worked_example():
    assert split_sentences("It rained. We stayed in! Did you? 3 cats came.") == [
        "It rained.", "We stayed in!", "Did you?", "3 cats came."]
    assert split_sentences("e.g. this stays whole") == ["e.g. this stays whole"]


def test_pack_sentences_worked_examples():
    assert pack_sentences([[1, 2], [3, 4, 5], [6]], 4) == [[1, 2], [3, 4, 5, 6]]
    assert pack_sentences([[1, 2, 3, 4, 5]], 2) == [[1, 2], [3, 4], [5]]
    assert pack_sentences([[1], [], [2]], 8) == [[1, 2]]


def test_segment_mode_packs_whole_sentences(tok, corpus, tmp_path):
    cfg = PrepareConfig(inputs=[str(corpus)], out_dir=str(tmp_path / "seg"), seq_len=64, num_workers=1,
                        val_fraction=0.1, test_fraction=0.1, shard_size=100, min_tokens=4)
    meta = prepare(cfg, tokenizer=tok, progress=False)
    assert meta["dtype"] == "uint16" and meta["documents"] == 3 and meta["seq_len"] == 64
    train = TokenShards(tmp_path / "seg", "train")
    assert len(train.shards) > 1  # shard_size 100 -> several shards
    seqs = [train.seq(s, i) for s in range(len(train.shards)) for i in range(train.shard_sizes()[s])]
    assert all(s.dtype == np.uint16 and 4 <= len(s) <= 64 for s in seqs)
    assert all(s[0] == tok.cls_token_id and s[-1] == tok.sep_token_id for s in seqs)
    # whole sentences: a sequence that is not full stopped because the next sentence did not fit,
    # so it ends with the last token of some sentence of the corpus
    from nanobert.data.sources import read_documents
    sentence_ends = {tok.encode(s, add_special_tokens=False)[-1] for doc in read_documents([corpus])
                     for para in doc.split("\n") for s in split_sentences(para)}
    short = [s for s in seqs if len(s) < 64]
    assert len(short) > 50 and all(int(s[-2]) in sentence_ends for s in short)
    assert sum(tok.id_to_token(int(s[-2])) in {".", "!", "?", "\""} for s in short) / len(short) > 0.9
    counts = {k: v["sequences"] for k, v in meta["splits"].items()}
    total = sum(counts.values())
    assert counts["val"] > 0.05 * total and counts["test"] > 0.05 * total
    # the tokenizer travels with the data, and text round-trips
    assert load_tokenizer(tmp_path / "seg" / "tokenizer").vocab_size == tok.vocab_size
    saved = json.loads((tmp_path / "seg" / "meta.json").read_text())
    assert saved["splits"]["train"]["tokens"] == sum(len(s) for s in seqs)


def test_split_is_reproducible_by_seed_and_independent_of_workers(tok, corpus, tmp_path):
    def run(name, seed, workers):
        cfg = PrepareConfig(inputs=[str(corpus)], out_dir=str(tmp_path / name), seq_len=48, seed=seed,
                            num_workers=workers, val_fraction=0.1, test_fraction=0.1, chunk_docs=1)
        prepare(cfg, tokenizer=tok, progress=False)
        return {split: np.load(tmp_path / name / f"{split}-00000.tokens.npy") for split in ("train", "val")}

    a, b, c = run("a", 1, 1), run("b", 1, 2), run("c", 2, 1)
    assert all(np.array_equal(a[s], b[s]) for s in a)  # same seed: same split, with 1 or 2 processes
    assert not np.array_equal(a["val"], c["val"])  # another seed: another split


def test_split_mode_cuts_fixed_blocks(tok, corpus, tmp_path):
    cfg = PrepareConfig(inputs=[str(corpus)], out_dir=str(tmp_path / "blk"), seq_len=32, mode="split",
                        num_workers=1, val_fraction=0.0, test_fraction=0.0)
    prepare(cfg, tokenizer=tok, progress=False)
    train = TokenShards(tmp_path / "blk", "train")
    lengths = np.diff(train.shards[0][1])
    assert (lengths[:-1] == 32).all() and lengths[-1] <= 32
    seq = train.seq(0, 0)
    assert seq[0] == tok.cls_token_id and seq[-1] == tok.sep_token_id
    # blocks continue the stream: the text reads on across the cut
    text = tok.decode(list(train.seq(0, 0)) + list(train.seq(0, 1)))
    assert "persuasion" in text.lower()


def test_empty_and_binary_corpora_fail_and_write_nothing(tok, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(NanobertError, match="empty"):
        prepare(PrepareConfig(inputs=[str(empty)], out_dir=str(out), num_workers=1), tokenizer=tok, progress=False)
    binary = tmp_path / "blob.txt.gz"
    import gzip
    with gzip.open(binary, "wb") as f:
        f.write(bytes(range(256)) * 64)
    with pytest.raises(NanobertError, match="binary"):
        prepare(PrepareConfig(inputs=[str(binary)], out_dir=str(out), num_workers=2), tokenizer=tok, progress=False)
    assert sorted(tmp_path.iterdir()) == sorted([empty, binary])  # no output, no temporary left behind


def _pack_sentences_reference(sentences, body_len):
    """The straightforward packing (it copies the rest of a long sentence at every cut): the expected output."""
    out, cur = [], []
    for sent in sentences:
        if not sent:
            continue
        if len(cur) + len(sent) <= body_len:
            cur = cur + sent
            continue
        if cur:
            out.append(cur)
        while len(sent) > body_len:
            out.append(sent[:body_len])
            sent = sent[body_len:]
        cur = list(sent)
    if cur:
        out.append(cur)
    return out


def test_pack_sentences_matches_the_reference_and_leaves_its_input_alone():
    rng = np.random.default_rng(0)
    for _ in range(300):
        body_len = int(rng.integers(1, 12))
        sentences = [list(range(int(n))) for n in rng.integers(0, 40, size=int(rng.integers(0, 8)))]
        before = [list(s) for s in sentences]
        assert pack_sentences(sentences, body_len) == _pack_sentences_reference(sentences, body_len)
        assert sentences == before


def test_damaged_prepared_data_is_one_clear_error(tmp_path, tok, corpus):
    from nanobert.data.prepare import load_shard, read_meta

    out = tmp_path / "d"
    prepare(PrepareConfig(inputs=[str(corpus)], out_dir=str(out), seq_len=32, num_workers=1), tokenizer=tok,
            progress=False)
    meta = read_meta(out)
    shard = meta["splits"]["train"]["shards"][0]
    tokens, offsets = load_shard(out, meta, shard)
    assert len(offsets) == shard["sequences"] + 1 and len(tokens) == shard["tokens"]
    path = out / f"{shard['name']}.tokens.npy"
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(NanobertError, match="damaged or truncated"):
        load_shard(out, meta, shard)
    path.write_bytes(whole)
    np.save(out / f"{shard['name']}.offsets.npy", offsets[:-1])
    with pytest.raises(NanobertError, match="does not match meta.json"):
        load_shard(out, meta, shard)
    for text in ("{not json", '{"format": "something-else"}', json.dumps({**meta, "splits": {"train": {}}})):
        (out / "meta.json").write_text(text)
        with pytest.raises(NanobertError, match="meta.json"):
            read_meta(out)


def _repeated_corpus(d):
    """Six distinct articles, each written three times (one copy with different case and punctuation)."""
    articles = [f" = Topic {name} = \n\nThe {name} valley holds {n} old farms and a mill by the river. "
                f"Walkers come in spring to see the {name} orchards flower along the road."
                for n, name in enumerate(["north", "south", "east", "west", "upper", "lower"], start=2)]
    copies = [a.replace("The ", "the ").replace(".", " .") for a in articles]
    (d / "wiki.txt").write_text("\n".join(articles + articles + copies) + "\n", encoding="utf-8")
    return d


def test_dedup_exact_prepares_fewer_sequences_and_counts_them(tok, tmp_path):
    (tmp_path / "corpus").mkdir()
    corpus = _repeated_corpus(tmp_path / "corpus")
    base = dict(inputs=[str(corpus)], seq_len=32, val_fraction=0.0, test_fraction=0.0, num_workers=1, min_tokens=2)
    plain = prepare(PrepareConfig(out_dir=str(tmp_path / "plain"), **base), tokenizer=tok, progress=False)
    exact = prepare(PrepareConfig(out_dir=str(tmp_path / "exact"), dedup="exact", **base), tokenizer=tok,
                    progress=False)
    assert plain["filters"] is None and plain["documents"] == 18
    assert exact["documents"] == 6
    assert exact["splits"]["train"]["sequences"] * 3 == plain["splits"]["train"]["sequences"]
    saved = json.loads((tmp_path / "exact" / "meta.json").read_text(encoding="utf-8"))
    f = saved["filters"]
    assert f["documents_in"] == 18 and f["documents_out"] == 6 and f["removed"]["exact_duplicate"] == 12
    assert f["settings"]["dedup"] == "exact"
    with pytest.raises(NanobertError, match="threshold"):
        prepare(PrepareConfig(out_dir=str(tmp_path / "bad"), dedup="near", near_threshold=1.5, **base), tokenizer=tok)
    assert not (tmp_path / "bad").exists()
