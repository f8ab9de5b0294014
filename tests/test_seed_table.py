"""scripts/seed_table.py: the mean ± sd table over seeds, against numbers computed by hand."""
import csv
import sys

import pytest

from helpers import REPO
from kd_nmt.errors import KDNMTError

sys.path.insert(0, str(REPO / "scripts"))

import seed_table  # noqa: E402

FIELDS = ["name", "method", "size", "seed", "decode", "bleu", "chrf", "p_bleu"]


def bench_csv(results, seed, rows):
    """RESULTS/seedS/bench.csv with a teacher row first, as grid_bench writes it."""
    folder = results / f"seed{seed}"
    folder.mkdir(parents=True)
    with open(folder / "bench.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerow({"name": "teacher", "decode": "beam5", "bleu": "99", "chrf": "99", "p_bleu": "0.001"})
        for method, decode, bleu, chrf, p in rows:
            writer.writerow({"name": f"{method}/d2/{seed}", "method": method, "size": "d2", "seed": seed,
                             "decode": decode, "bleu": bleu, "chrf": chrf, "p_bleu": p})


def test_mean_sd_and_per_seed_p_values(tmp_path):
    bench_csv(tmp_path, 1, [("baseline", "greedy", 20, 40, ""), ("baseline", "beam5", 22, 44, ""),
                            ("word_kd", "greedy", 21, 41, "0.2"), ("word_kd", "beam5", 23, 45, "0.04")])
    bench_csv(tmp_path, 2, [("baseline", "greedy", 22, 42, ""), ("baseline", "beam5", 24, 46, ""),
                            ("word_kd", "greedy", 24, 41, "0.3"), ("word_kd", "beam5", 26, 45, "0.5")])
    lines = seed_table.table(seed_table.read_rows(tmp_path), "baseline")
    assert lines[0].startswith("| size | method | seeds | BLEU greedy | chrF greedy | BLEU beam5 |")
    assert lines[0].endswith("| Δ BLEU vs baseline (p), per seed |")
    # baseline beam5 BLEU 22, 24: mean 23, sample sd sqrt(((22-23)^2 + (24-23)^2) / 1) = 1.414
    assert lines[2] == "| d2 | baseline | 2 | 21.00 ± 1.41 | 41.00 ± 1.41 | 23.00 ± 1.41 | 45.00 ± 1.41 | (baseline) |"
    # word_kd greedy BLEU 21, 24: mean 22.5, sd 2.121; chrF 41, 41: sd 0; beam5 per seed: 23 - 22, 26 - 24
    assert lines[3] == ("| d2 | word_kd | 2 | 22.50 ± 2.12 | 41.00 ± 0.00 | 24.50 ± 2.12 | 45.00 ± 0.00 "
                        "| +1.00 (0.040), +2.00 (0.500) |")
    first_table = lines[:lines.index("")]
    assert len([line for line in first_table if line.startswith("| d2")]) == 2  # the teacher rows are left out


def test_without_sizes_and_with_the_seqkd_data_sizes(tmp_path):
    bench_csv(tmp_path / "results", 1, [("seq_kd", "beam5", 20, 40, ""), ("seq_kd+filter", "beam5", 21, 41, "0.3")])
    for suffix, pairs in (("", 5000), ("+filter", 4750)):
        (tmp_path / f"seqkd{suffix}-bin").mkdir()
        (tmp_path / f"seqkd{suffix}-bin" / "relabel.json").write_text(f'{{"train_sentences": {pairs}}}')
    rows = [{**r, "size": ""} for r in seed_table.read_rows(tmp_path / "results")]
    lines = seed_table.table(rows, "seq_kd", work=str(tmp_path))
    assert lines[0] == "| method | train pairs | seeds | BLEU beam5 | chrF beam5 | Δ BLEU vs seq_kd (p), per seed |"
    assert lines[1] == "|---|---:|---:|---:|---:|---|"
    assert lines[3] == "| seq_kd+filter | 4750 | 1 | 21.00 ± 0.00 | 41.00 ± 0.00 | +1.00 (0.300) |"


def test_no_bench_files_is_one_error(tmp_path):
    with pytest.raises(KDNMTError, match="seed\\*/bench.csv"):
        seed_table.read_rows(tmp_path)


def buckets_csv(results, seed, rows):
    """RESULTS/seedS/bench_buckets.csv as kd-nmt bench writes it (a teacher row first)."""
    fields = ["name", "seed", "method", "size", "decode", "bucket", "n_sentences", "bleu", "chrf"]
    with open(results / f"seed{seed}" / "bench_buckets.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerow({"name": "teacher", "decode": "beam5", "bucket": "<=10", "n_sentences": 3, "bleu": 99})
        for method, decode, bucket, n, bleu in rows:
            writer.writerow({"name": f"{method}/d2/{seed}", "method": method, "size": "d2", "seed": seed,
                             "decode": decode, "bucket": bucket, "n_sentences": n, "bleu": bleu, "chrf": 0})


def test_later_folders_add_rows_and_the_bucket_table(tmp_path):
    first, second = tmp_path / "run", tmp_path / "beam10"
    for seed, bleu in ((1, 20), (2, 22)):
        bench_csv(first, seed, [("baseline", "beam5", bleu, 40, "")])
        buckets_csv(first, seed, [("baseline", "beam5", "<=10", 3, bleu + 10),
                                  ("baseline", "beam5", ">25", 1, bleu - 10)])
        # the second run decoded with beam 10 and repeats beam 5 with other numbers: the first folder's win
        bench_csv(second, seed, [("baseline", "beam10", bleu + 1, 41, ""), ("baseline", "beam5", 0, 0, "")])
        buckets_csv(second, seed, [("baseline", "beam10", "<=10", 3, bleu + 12), ("baseline", "beam10", ">25", 1, 5),
                                   ("baseline", "beam5", "<=10", 3, 0)])
    rows = seed_table.read_rows(first, second)
    assert sorted((r["decode"], r["bleu"]) for r in rows) == [("beam10", "21"), ("beam10", "23"),
                                                               ("beam5", "20"), ("beam5", "22")]
    lines = seed_table.bucket_table(seed_table.read_rows(first, second, file="bench_buckets.csv"), rows)
    assert lines[0] == ("| size | method | decoding | seeds | BLEU <=10 words (3 lines) | BLEU >25 words (1 lines) "
                        "| BLEU all |")
    # beam5 before beam10; <=10: 30, 32 -> 31 ± 1.41; >25: 10, 12; all: 20, 22
    assert lines[2] == "| d2 | baseline | beam5 | 2 | 31.00 ± 1.41 | 11.00 ± 1.41 | 21.00 ± 1.41 |"
    assert lines[3] == "| d2 | baseline | beam10 | 2 | 33.00 ± 1.41 | 5.00 ± 0.00 | 22.00 ± 1.41 |"


def test_a_missing_bucket_is_a_dash_not_a_crash(tmp_path):
    bench_csv(tmp_path, 1, [("baseline", "beam5", 20, 40, ""), ("seq_kd", "beam5", 18, 38, "0.01")])
    buckets_csv(tmp_path, 1, [("baseline", "beam5", "<=10", 3, 30), ("baseline", "beam5", ">25", 1, 10),
                              ("seq_kd", "beam5", "<=10", 3, 28)])  # seq_kd has no >25 row
    lines = seed_table.bucket_table(seed_table.read_rows(tmp_path, file="bench_buckets.csv"),
                                    seed_table.read_rows(tmp_path))
    assert lines[3] == "| d2 | seq_kd | beam5 | 1 | 28.00 ± 0.00 | – | 18.00 ± 0.00 |"


def test_cli_needs_a_baseline_without_buckets(tmp_path):
    bench_csv(tmp_path, 1, [("baseline", "beam5", 20, 40, "")])
    # (run_tool turns the error into one line and exit status 2: tests/test_scripts.py)
    with pytest.raises(KDNMTError, match=r"--baseline is needed \(or --buckets\)"):
        seed_table.main([str(tmp_path)])


def test_a_p_value_against_another_sizes_baseline_is_not_printed():
    base = {"name": "baseline/d2/1", "method": "baseline", "size": "d2", "seed": "1", "decode": "beam5", "bleu": "24"}
    row = {"name": "todi/d2/1", "method": "todi", "size": "d2", "seed": "1", "decode": "beam5", "bleu": "25",
           "p_bleu": "0.001", "baseline": "baseline/d3/1"}  # a grid bench: tested against the first size's
    assert seed_table.versus(row, [base, row], "baseline") == "+1.00 (-)"
    assert seed_table.versus({**row, "baseline": "baseline/d2/1"}, [base, row], "baseline") == "+1.00 (0.001)"
