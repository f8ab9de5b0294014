"""MBR selection (kd_nmt/relabel/mbr.py): expected utility against the other hypotheses, by hand.

chrF of a string against itself is 100 and against a string sharing no character is 0, so the
expected utilities of the lists below can be written down exactly.
"""
import math

import pytest

from kd_nmt.errors import KDNMTError
from kd_nmt.relabel.mbr import MBRSelector, mbr_select, pseudo_reference_weights


def test_uniform_weights_pick_the_consensus():
    # two copies of "abcd" against three of "wxyz": each "wxyz" agrees with two of its four
    # pseudo-references (EU 50), each "abcd" with one (EU 25)
    index, eu = mbr_select(["abcd", "abcd", "wxyz", "wxyz", "wxyz"], "chrf")
    assert eu == pytest.approx([25, 25, 50, 50, 50])
    assert index == 2  # the first of the best


def test_softmax_weights_follow_the_model_scores():
    # scores 5 for the "abcd"s: weight e^5 / (2 e^5 + 3) each, e^0 for the rest
    hyps = ["abcd", "abcd", "wxyz", "wxyz", "wxyz"]
    index, eu = mbr_select(hyps, "chrf", scores=[5.0, 5.0, 0.0, 0.0, 0.0])
    big, small = math.exp(5), 1.0
    assert eu[0] == pytest.approx(100 * big / (big + 3 * small))
    assert eu[2] == pytest.approx(100 * 2 * small / (2 * big + 2 * small))
    assert index == 0
    w = pseudo_reference_weights(5, [5.0, 5.0, 0.0, 0.0, 0.0])
    assert sum(w) == pytest.approx(1) and w[0] == pytest.approx(big / (2 * big + 3))


def test_a_sentence_list_picks_the_central_hypothesis_with_both_utilities():
    hyps = ["a dog ran in the park",  # the teacher's 1-best, an outlier
            "the cat sat on the mat", "the cat sat on a mat", "the cat is on the mat"]
    for utility in ("chrf", "bleu"):
        index, eu = mbr_select(hyps, utility)
        assert index == 1, (utility, eu)
        assert min(eu) == eu[0]


def test_edge_cases():
    assert mbr_select([], "chrf") == (None, [])
    assert mbr_select(["only one"], "bleu") == (0, [0.0])
    # all equal: a tie, the teacher's first choice wins
    index, eu = mbr_select(["x y", "x y", "x y"], "bleu")
    assert index == 0 and eu == pytest.approx([100.0, 100.0, 100.0])
    with pytest.raises(KDNMTError, match="unknown MBR utility"):
        mbr_select(["a", "b"], "ter")


def test_selector_detokenizes_pieces_first():
    selector = MBRSelector("chrf", remove_bpe="sentencepiece")
    pieces = ["\u2581ab cd", "\u2581a bcd", "\u2581wx yz"]  # "abcd", "abcd", "wxyz"
    values = selector.scores(pieces)
    assert values == pytest.approx([50, 50, 0]) and selector.best(values) == 0


def test_relabel_select_by_mbr(capsys, tokenized, data_bin, teacher_checkpoint, tmp_path):
    import json

    from kd_nmt.cli import main as kd_nmt
    from kd_nmt.common.detokenize import detokenize

    out, nbest = tmp_path / "mbr.en", tmp_path / "nbest.jsonl"
    common = ["relabel", "--teacher", str(teacher_checkpoint), "--data-bin", str(data_bin),
              "--input", str(tokenized / "test.de"), "--output", str(out), "--beam", "4",
              "--threads", "1", "--no-progress"]
    # MBR needs an n-best list and no reference
    assert kd_nmt(common + ["--select-by-mbr", "chrf"]) == 2
    assert "--select-by-mbr selects among n-best" in capsys.readouterr().err
    assert kd_nmt(common + ["--nbest", "4", "--select-by-mbr", "chrf", "--nbest-output", str(nbest)]) == 0
    hyps = out.read_text(encoding="utf-8").splitlines()
    for record, hyp in zip(map(json.loads, nbest.read_text().splitlines()), hyps):
        entries = record["hypotheses"]
        index, eu = mbr_select([detokenize(e["tokens"]) for e in entries], "chrf")
        assert record["selected"] == index and hyp == entries[index]["tokens"]
        assert [e["mbr_chrf"] for e in entries] == [round(v, 4) for v in eu]
