"""``kd-nmt advise``: IBM model 1 and Zhou et al.'s data complexity, the teacher's entropy and
top-1 mass, the fitted model's arithmetic, the command end to end on the fixture teacher, and
its one-line errors."""
import json
import math
import sys

import pytest
import torch
from helpers import REPO

from kd_nmt.advise import model as advise_model
from kd_nmt.advise.alignment import conditional_entropy, cooccurrences, data_complexity, ibm1
from kd_nmt.advise.features import MODEL_FEATURES
from kd_nmt.advise.teacher_forcing import entropy_and_top1

# a toy corpus where "b" translates as "B" once and as "C" once (no NULL word: hand-computable)
TOY = [("a b".split(), "A B".split()), (["a"], ["A"]), (["b"], ["C"])]


def table_of(table, t):
    """``{(x, y): t(y | x)}`` with words, not ids."""
    return {(table.source_vocab[x], table.target_vocab[y]): v
            for x, y, v in zip(table.pair_source, table.pair_target, t)}


def test_ibm1_em_matches_the_hand_computation():
    table = cooccurrences(TOY, null=False)
    # iteration 1 from uniform: pair 1 splits each target word evenly over "a" and "b";
    # counts a: A 1.5, B 0.5; b: A 0.5, B 0.5, C 1 (each source word's total 2)
    assert table_of(table, ibm1(table, 1)) == pytest.approx(
        {("a", "A"): 0.75, ("a", "B"): 0.25, ("b", "A"): 0.25, ("b", "B"): 0.25, ("b", "C"): 0.5})
    # iteration 2: A splits 0.75 : 0.25, B 0.25 : 0.25 -> counts a: A 1.75, B 0.5; b: A 0.25, B 0.5, C 1
    assert table_of(table, ibm1(table, 2)) == pytest.approx(
        {("a", "A"): 7 / 9, ("a", "B"): 2 / 9, ("b", "A"): 1 / 7, ("b", "B"): 2 / 7, ("b", "C"): 4 / 7})


def test_conditional_entropy_matches_the_hand_computation():
    # after 2 iterations the Viterbi links are A-a (7/9 > 1/7), B-b (2/7 > 2/9), A-a, C-b:
    # H(y | a) = 0, H(y | b) = ln 2 (B once, C once), averaged over the 2 source words
    table = cooccurrences(TOY, null=False)
    assert conditional_entropy(table, ibm1(table, 2), null=False) == (pytest.approx(math.log(2) / 2), 2)
    assert data_complexity(TOY, iterations=2, null=False) == (pytest.approx(math.log(2) / 2), 2)


def test_the_null_word_is_aligned_to_but_not_averaged_over():
    value, words = data_complexity(TOY, iterations=5, null=True)
    assert words <= 2 and 0.0 <= value <= math.log(2)
    # a corpus where every target word has one translation is fully deterministic
    assert data_complexity([(["a"], ["A"]), (["b"], ["B"]), (["a", "b"], ["A", "B"])], 5) == (0.0, 2)


def test_entropy_and_top1_match_the_hand_computation():
    probs = torch.tensor([[[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]])  # the last is padding
    mask = torch.tensor([[True, True, False]])
    entropy, top1, n = entropy_and_top1(probs.log(), mask)
    # H(0.5, 0.25, 0.25) = 0.5 ln 2 + 2 · 0.25 ln 4 = 1.5 ln 2; a one-hot distribution has H = 0
    assert entropy == pytest.approx(1.5 * math.log(2))
    assert top1 == pytest.approx(0.5 + 1.0)
    assert n == 2


def test_the_shipped_model_predicts_what_its_json_says():
    with open(advise_model.DEFAULT_MODEL, encoding="utf-8") as f:
        raw = json.load(f)
    assert raw["features"] == list(MODEL_FEATURES)
    assert set(raw["methods"]) == {"word_kd", "seq_kd", "word_seq", "hybrid_kd"}
    # one standard deviation above the mean in param_ratio, at the mean in every other feature:
    # Δ = intercept + weight[param_ratio], the interval ± 1.96 · interval_sd
    features = {f: raw["mean"][f] for f in raw["features"]}
    features["param_ratio"] += raw["sd"]["param_ratio"]
    predictions = advise_model.predict(advise_model.load_model(), features)
    for method, fit in raw["methods"].items():
        hand = fit["intercept"] + fit["weights"]["param_ratio"]
        assert predictions[method]["delta"] == pytest.approx(hand)
        assert predictions[method]["high"] - hand == pytest.approx(1.96 * fit["interval_sd"])
        assert predictions[method]["contributions"]["teacher_entropy"] == pytest.approx(0.0)
    best, second, drivers = advise_model.recommend(predictions)
    ranked = [m for m, fit in raw["methods"].items() if fit["ranked"]]
    assert ranked == [m for m, fit in raw["methods"].items() if fit["groups"] >= raw["min_groups"]]
    assert best == max(ranked, key=lambda m: predictions[m]["delta"])
    gap = predictions[best]["delta"] - predictions[second]["delta"]
    assert sum(drivers.values()) == pytest.approx(gap)  # the shares add up to the margin


def test_the_shipped_model_is_what_the_committed_tables_fit(capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    import fit_advise

    assert fit_advise.main(["--check"]) == 0
    assert "is what the committed tables fit" in capsys.readouterr().out


def test_advise_end_to_end_on_the_fixture(teacher_checkpoint, data_bin, tmp_path, capsys):
    from kd_nmt.cli import main

    out = tmp_path / "advise.json"
    assert main(["advise", "--teacher", str(teacher_checkpoint), "--data-bin", str(data_bin), "--student-arch",
                 "transformer_kd_mini", "transformer_kd_micro", "--sample", "100", "--decode-sentences", "12",
                 "--student-beam", "1", "--json", str(out), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"teacher {teacher_checkpoint} (")
    assert "100 of 400 sentence pairs measured, 12 decoded" in lines[0]
    assert lines[1] == "measurements:"
    assert any(line.startswith("  data complexity C(d)") and "IBM-1, 5 EM iterations" in line for line in lines)
    report = json.loads(out.read_text())
    m = report["measurements"]
    assert m["sample_sentences"] == 100 and m["decoded_sentences"] == 12 and m["split_sentences"] == 400
    assert 0 < m["teacher_top1"] <= 1 and m["teacher_entropy"] >= 0 and m["data_complexity"] >= 0
    assert m["teacher_beam_gain"] == pytest.approx(m["teacher_gold_bleu"] - m["teacher_greedy_bleu"])
    assert [s["arch"] for s in report["students"]] == ["transformer_kd_mini", "transformer_kd_micro"]
    for student in report["students"]:
        assert list(student["features"]) == list(MODEL_FEATURES)
        assert student["features"]["param_ratio"] == pytest.approx(student["params"] / m["teacher_params"])
        assert student["features"]["student_beam_search"] == 0.0
        predictions = student["predictions"]
        assert set(predictions) == {"word_kd", "seq_kd", "word_seq", "hybrid_kd"}
        ranked = [k for k in predictions if predictions[k]["ranked"]]
        assert student["recommendation"] == max(ranked, key=lambda k: predictions[k]["delta"])
        assert any(line.startswith(f"student {student['arch']}: {student['params']:,} parameters (") for line in lines)
        assert any(line.startswith(f"  recommendation: {student['recommendation']}") for line in lines)
        for method, p in predictions.items():
            assert p["low"] < p["delta"] < p["high"]
            assert any(line.split()[:2] == [method, f"{p['delta']:+.2f}"] for line in lines)
    assert lines[-1] == f"wrote {out}"


def one_error_line(capsys, *argv):
    from kd_nmt.cli import main

    assert main(["advise", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kd-nmt: error: "), err
    return err[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"not read before the checks")
    line = one_error_line(capsys, "--teacher", teacher, "--data-bin", tmp_path / "missing", "--student-arch",
                          "transformer_kd_mini")
    assert "data-bin directory not found" in line
    line = one_error_line(capsys, "--teacher", teacher, "--data-bin", tmp_path, "--student-arch",
                          "transformer_kd_nope")
    assert "unknown --student-arch 'transformer_kd_nope'" in line and "transformer_kd_micro" in line
    line = one_error_line(capsys, "--teacher", tmp_path / "none.pt", "--data-bin", tmp_path, "--student-arch",
                          "transformer_kd_mini")
    assert "teacher checkpoint not found" in line
    assert "--sample must be at least 1" in one_error_line(
        capsys, "--teacher", teacher, "--data-bin", tmp_path, "--student-arch", "transformer_kd_mini", "--sample", "0")
    assert "see `kd-nmt advise --help`" in one_error_line(capsys, "--no-such-option")


def test_help_has_examples(capsys):
    from kd_nmt.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["advise", "--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out
