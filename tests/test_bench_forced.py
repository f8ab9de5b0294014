"""kd-nmt bench --teacher-forced / --prefix-tokens / --prefix-fraction (kd_nmt/bench/forced.py)."""
import csv

import pytest
import torch

from helpers import FIXTURE
from kd_nmt.bench.forced import prefix_lengths
from kd_nmt.cli import main

REFERENCE = FIXTURE / "test.en"


def test_prefix_lengths_by_hand():
    # gold lengths count the EOS: a 5-token target has 4 words' pieces + EOS
    assert prefix_lengths([5, 3, 1], prefix_tokens=3) == [3, 2, 0]
    assert prefix_lengths([5, 3, 1], prefix_fraction=0.5) == [2, 1, 0]
    assert prefix_lengths([11], prefix_fraction=0.25) == [2]


def _bench(tmp_path, data_bin, teacher, *extra):
    out = tmp_path / "out"
    rc = main(["bench", "--checkpoint", str(teacher), "--data-bin", str(data_bin), "--split", "test",
               "--reference", str(REFERENCE), "--beam", "1", "--bootstrap", "0", "--buckets", "none",
               "--out", str(out), "--no-progress", *map(str, extra)])
    assert rc == 0
    with open(out / "bench.csv", encoding="utf-8") as f:
        return out, {r["decode"]: r for r in csv.DictReader(f)}


def test_teacher_forced_rows_match_a_forward_pass_by_hand(data_bin, teacher_checkpoint, tmp_path):
    from kd_nmt.checkpoint import load_models
    from kd_nmt.common.detokenize import detokenize
    from kd_nmt.common.task_setup import load_split, translation_task

    out, rows = _bench(tmp_path, data_bin, teacher_checkpoint, "--teacher-forced", "--prefix-fraction", 0.5)
    assert set(rows) == {"greedy", "forced", "greedy+prefix0.5"}
    # by hand: the teacher over each gold prefix, argmax against the gold token, sentence by sentence
    task = translation_task(str(data_bin), "de", "en")
    (model,), _ = load_models([str(teacher_checkpoint)], task=task)
    model.eval()
    test = load_split(task, "test")
    pad, eos = task.target_dictionary.pad(), task.target_dictionary.eos()
    correct = total = 0
    forced_lines = (out / rows["forced"]["hyp_file"]).read_text(encoding="utf-8").split("\n")[:-1]
    for i in range(len(test)):
        item = test.collater([test[i]])
        with torch.no_grad():
            argmax = model(**item["net_input"])[0].argmax(-1)[0]
        gold = item["target"][0]
        correct += int(argmax.eq(gold).sum())
        total += gold.numel()
        assert gold[-1] == eos and gold.ne(pad).all()
        pieces = task.target_dictionary.string(argmax[:-1])
        assert forced_lines[i] == detokenize(pieces, "sentencepiece")
    assert float(rows["forced"]["token_acc"]) == pytest.approx(correct / total, abs=1e-5)
    assert rows["greedy"]["token_acc"] == ""
    # teacher forcing is the easy end: it scores above free greedy decoding on this teacher
    assert float(rows["forced"]["bleu"]) > float(rows["greedy"]["bleu"])
    # every prefix row starts with the first floor(0.5 (len - 1)) gold pieces, detokenized
    prefixed = (out / rows["greedy+prefix0.5"]["hyp_file"]).read_text(encoding="utf-8").split("\n")[:-1]
    forced = 0
    for i, hyp in enumerate(prefixed):
        gold = task.target_dictionary.string(test.tgt[i]).split()
        k = (len(gold) + 1 - 1) // 2  # gold here without its EOS: len + 1 tokens with it
        expected = detokenize(" ".join(gold[:k]), "sentencepiece")
        assert hyp.startswith(expected), (i, hyp, expected)
        forced += bool(k)
    assert forced > len(prefixed) // 2


@pytest.mark.parametrize("extra,message", [
    (["--teacher-forced", "--backend", "ctranslate2"], "--teacher-forced decodes against the gold target"),
    (["--prefix-tokens", "2", "--prefix-fraction", "0.5"], "give --prefix-tokens or --prefix-fraction, not both"),
    (["--prefix-fraction", "1.0"], "--prefix-fraction must be below 1"),
])
def test_gold_decodings_refuse_what_they_cannot_do(tmp_path, capsys, extra, message):
    (tmp_path / "t.pt").write_bytes(b"x")
    assert main(["bench", "--checkpoint", str(tmp_path / "t.pt"), "--data-bin", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
