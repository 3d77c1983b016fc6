"""User mistakes give one NanobertError line (exit 2 from the CLI) and leave nothing written."""

from __future__ import annotations

import json

import pytest

from nanobert.align.dpo import dpo
from nanobert.align.evaluate import evaluate_policies
from nanobert.align.ppo import PPOConfig, ppo
from nanobert.align.preferences import CompareConfig, compare
from nanobert.align.reward import train_reward
from nanobert.align.sft import sft
from nanobert.cli import main
from nanobert.errors import NanobertError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("row,message", [
    ({"prompt": "a", "chosen": " good ."}, "no field 'rejected'"),
    ({"prompt": "a", "chosen": " good .", "rejected": "   "}, "field 'rejected' is empty"),
    ({"prompt": "a", "chosen": 3, "rejected": " bad ."}, "must be a string"),
])
def test_bad_preference_rows(gpt_dir, tmp_path, row, message):
    data = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "a", "chosen": " good .", "rejected": " bad ."}, row])
    for run in (lambda: train_reward(gpt_dir, data, tmp_path / "out"), lambda: dpo(gpt_dir, data, tmp_path / "out")):
        with pytest.raises(NanobertError, match=message) as e:
            run()
        assert "pairs.jsonl:2" in str(e.value) and "\n" not in str(e.value)
        assert not (tmp_path / "out").exists()


def test_empty_sft_completion(gpt_dir, tmp_path):
    data = _jsonl(tmp_path / "sft.jsonl", [{"prompt": "a", "completion": " good ."}, {"prompt": "a", "completion": ""}])
    with pytest.raises(NanobertError, match="sft.jsonl:2: field 'completion' is empty"):
        sft(gpt_dir, data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prompts_longer_than_the_context(gpt_dir, tmp_path, good_count):
    long = "the film is " * 4  # 48 characters: no room left in a context of 48
    with pytest.raises(NanobertError, match="prompt 2 .* exceeds the context of 48"):
        ppo(gpt_dir, good_count, ["a", long], tmp_path / "out", PPOConfig(max_new_tokens=8))
    with pytest.raises(NanobertError, match="exceeds the context"):
        compare(gpt_dir, good_count, ["a", long], tmp_path / "pairs.jsonl", CompareConfig(progress=False))
    assert not (tmp_path / "out").exists() and not (tmp_path / "pairs.jsonl").exists()
    data = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": long, "chosen": " good .", "rejected": " bad ."}] * 3)
    with pytest.raises(NanobertError, match="longer than the context|more than the context"):
        dpo(gpt_dir, data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_judge_that_is_not_a_classifier(gpt_dir, bert_mlm_dir, tmp_path):
    for judge in (bert_mlm_dir, gpt_dir):
        with pytest.raises(NanobertError, match="not a classifier"):
            evaluate_policies({"p": gpt_dir}, judge, ["a"], gpt_dir)
    with pytest.raises(NanobertError, match="not a classifier"):
        compare(gpt_dir, bert_mlm_dir, ["a"], tmp_path / "pairs.jsonl")
    assert not (tmp_path / "pairs.jsonl").exists()


def test_cli_reports_one_line_and_exit_2(gpt_dir, tmp_path, capsys):
    data = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "a", "chosen": " good ."}])
    code = main(["dpo", "--policy", str(gpt_dir), "--data", str(data), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("nanobert: error:") and "no field 'rejected'" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_cli_eval_gen_prints_a_table(gpt_dir, bert_cls_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the film\na\n")
    code = main(["eval-gen", "--policy", f"base={gpt_dir}", "--judge", str(bert_cls_dir), "--prompts", str(prompts),
                 "--reference", str(gpt_dir), "--json", str(tmp_path / "eval.json"), "--max_new_tokens", "6"])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[0].split()[:3] == ["policy", "judge", "+rate"]
    report = json.loads((tmp_path / "eval.json").read_text())["policies"]["base"]
    assert report["kl_to_reference"] == 0.0  # the policy is its own reference
    assert 0.0 <= report["judge_positive_rate"] <= 1.0 and report["reference_perplexity"] > 1.0
