"""scripts/axis_table.py: one column per bench, differences to each column's own baseline."""
import csv
import sys

import pytest

from helpers import REPO
from kd_nmt.errors import KDNMTError

sys.path.insert(0, str(REPO / "scripts"))

import axis_table  # noqa: E402

FIELDS = ["name", "method", "size", "decode", "bleu", "chrf", "p_bleu", "p_chrf", "baseline", "hyp_file"]


def bench(folder, rows, reference=None, tested_against=""):
    """FOLDER/bench.csv as grid_bench writes it (a teacher row first); rows: (method, size, decode,
    bleu, p, hypothesis lines or None); ``tested_against``: the bench's baseline column."""
    folder.mkdir(parents=True)
    with open(folder / "bench.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerow({"name": "teacher", "decode": "beam5", "bleu": "99", "chrf": "99"})
        for method, size, decode, bleu, p, hyps in rows:
            hyp_file = f"{method}_{size}.{decode}.hyp"
            if hyps is not None:
                (folder / hyp_file).write_text("".join(line + "\n" for line in hyps), encoding="utf-8")
            writer.writerow({"name": f"{method}/{size}", "method": method, "size": size, "decode": decode,
                             "bleu": bleu, "chrf": bleu + 20, "p_bleu": p, "p_chrf": p, "hyp_file": hyp_file,
                             "baseline": tested_against})
    if reference is not None:
        (folder / "reference.txt").write_text("".join(line + "\n" for line in reference), encoding="utf-8")
    return folder


def test_each_column_against_its_own_baseline(tmp_path):
    clean = bench(tmp_path / "clean", [("baseline", "d2", "beam5", 24.0, "", None),
                                       ("word_kd", "d2", "beam5", 24.5, "0.07", None),
                                       ("word_kd", "d2", "greedy", 1.0, "0.9", None)])
    noisy = bench(tmp_path / "noisy", [("baseline", "d2", "beam5", 21.0, "", None),
                                       ("seq_kd", "d2", "beam5", 22.0, "0.012", None)])
    cols = axis_table.columns([f"clean={clean}", f"dropout 0.3={noisy}"], "beam5", False)
    lines = axis_table.axis_table(cols, "baseline")
    assert lines[:2] == ["| method | clean | dropout 0.3 |", "|---|---:|---:|"]
    assert lines[2] == "| baseline | 24.00 | 21.00 |"
    assert lines[3] == "| word_kd | 24.50 (+0.50, 0.070) | – |"  # the greedy row is not beam5's
    assert lines[4] == "| seq_kd | – | 22.00 (+1.00, 0.012) |"
    # chrF is BLEU + 20 in these files: the same differences
    chrf = axis_table.axis_table(cols, "baseline", "chrf", methods=["seq_kd"])
    assert chrf[2] == "| seq_kd | – | 42.00 (+1.00, 0.012) |"


def test_a_bench_of_several_sizes_is_a_column_per_size_and_later_folders_add_methods(tmp_path):
    # a grid bench tests every student against the first size's baseline (baseline/d3)
    first = bench(tmp_path / "a", [("baseline", "d3", "beam5", 28.0, "", None),
                                   ("todi", "d3", "beam5", 27.0, "0.1", None),
                                   ("baseline", "d2", "beam5", 24.0, "0.001", None),
                                   ("todi", "d2", "beam5", 25.0, "0.002", None)], tested_against="baseline/d3")
    later = bench(tmp_path / "b", [("baseline", "d2", "beam5", 0.0, "", None),
                                   ("word_kd", "d2", "beam5", 25.0, "0.2", None)], tested_against="baseline/d2")
    cols = axis_table.columns([f"={first},{later}"], "beam5", False)
    assert [label for label, _ in cols] == ["d3", "d2"]
    lines = axis_table.axis_table(cols, "baseline")
    assert lines[2] == "| baseline | 28.00 | 24.00 |"  # d2's baseline from the first folder, not the later 0.0
    # d2's todi was tested against baseline/d3, not against the d2 baseline it is compared with: no p
    assert lines[3] == "| todi | 27.00 (-1.00, 0.100) | 25.00 (+1.00) |"
    # tested against a student of the same name: taken as the same student (a grid rerun's bench)
    assert lines[4] == "| word_kd | – | 25.00 (+1.00, 0.200) |"


def test_length_ratio_is_sacrebleus(tmp_path):
    ref = ["the cat sat on the mat", "a dog"]
    hyps = ["the cat sat on the mat today too", "a dog"]
    folder = bench(tmp_path / "x", [("baseline", "d2", "beam5", 10.0, "", hyps)], reference=ref)
    cols = axis_table.columns([f"x={folder}"], "beam5", True)
    # 10 hypothesis tokens over 8 reference tokens
    assert axis_table.axis_table(cols, "baseline", with_length=True)[2] == "| baseline | 10.00 [1.25] |"


@pytest.mark.parametrize("spec,message", [("nolabel", "write LABEL=FOLDER"), ("x={missing}", "no .*bench.csv")])
def test_bad_arguments_are_one_error(tmp_path, spec, message):
    with pytest.raises(KDNMTError, match=message):
        axis_table.columns([spec.format(missing=tmp_path / "none")], "beam5", False)


def test_a_bench_without_the_decoding_is_one_error(tmp_path):
    folder = bench(tmp_path / "g", [("baseline", "d2", "greedy", 10.0, "", None)])
    with pytest.raises(KDNMTError, match="no student decoded with beam5"):
        axis_table.columns([f"g={folder}"], "beam5", False)
