"""scripts/delta_figure.py: the seed-level Δ and its t interval per method, from hand-made CSVs."""
import csv
import subprocess
import sys

from helpers import REPO


def write_seed(folder, seed, scores):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"seed{seed}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "method", "size", "decode", "bleu", "chrf"])
        for method, bleu in scores.items():
            w.writerow([f"{method}/micro/{seed}", method, "micro", "beam5", bleu, 50.0])
            w.writerow([f"{method}/micro/{seed}", method, "micro", "greedy", bleu - 1, 49.0])


def figure(*argv):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "delta_figure.py"), *map(str, argv)],
                          capture_output=True, text=True, timeout=120)


def test_delta_and_interval_by_hand(tmp_path):
    runs = tmp_path / "runs"
    write_seed(runs, 1, {"baseline": 20.0, "seq_kd": 23.0})
    write_seed(runs, 2, {"baseline": 21.0, "seq_kd": 23.0})
    out = tmp_path / "delta.png"
    proc = figure("--panel", f"m30k={runs}", "--out", out)
    assert proc.returncode == 0, proc.stderr
    (row,) = csv.DictReader(open(tmp_path / "delta.csv"))
    # differences 3 and 2: mean 2.5, sd 0.7071, se 0.5, t(0.975, 1 df) = 12.7062
    assert row["method"] == "seq_kd" and row["seeds"] == "2" and float(row["mean"]) == 2.5
    assert abs(float(row["low"]) - (2.5 - 12.7062 * 0.5)) < 1e-3
    assert abs(float(row["high"]) - (2.5 + 12.7062 * 0.5)) < 1e-3
    assert out.stat().st_size > 1000 and not list(tmp_path.glob("*.tmp*"))


def test_a_bad_panel_or_decoding_is_one_line(tmp_path):
    runs = tmp_path / "runs"
    write_seed(runs, 1, {"baseline": 20.0, "seq_kd": 23.0})
    for argv, message in ((["--panel", str(runs)], "--panel takes LABEL=FOLDER"),
                          (["--panel", f"a={runs}", "--decode", "beam10"], "no rows decoded 'beam10'")):
        proc = figure(*argv, "--out", tmp_path / "x.png")
        assert proc.returncode == 2 and message in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()
