"""scripts/bleu_variants.py: cased vs lowercased sacreBLEU of one hypothesis file."""
import json
import subprocess
import sys

from helpers import REPO

TOOL = str(REPO / "scripts" / "bleu_variants.py")


def test_case_only_differences_cost_cased_bleu_only(tmp_path):
    refs = ["A man in an orange hat starring at something.", "Two dogs run through the snow."]
    hyps = ["a man in an orange hat starring at something.", "two dogs run through the snow."]
    (tmp_path / "ref").write_text("".join(r + "\n" for r in refs))
    (tmp_path / "hyp").write_text("".join(h + "\n" for h in hyps))
    out = subprocess.run([sys.executable, TOOL, "--hyp", str(tmp_path / "hyp"), "--ref", str(tmp_path / "ref"),
                          "--json", str(tmp_path / "s.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["bleu_lc"] == 100.0
    assert scores["bleu"] < 100.0  # "a"/"two" differ in case: the first unigram of each line misses
    assert "lc" in scores["signatures"]["bleu_lc"] and "mixed" in scores["signatures"]["bleu"]
    assert out.stdout.startswith(f"BLEU {scores['bleu']:.2f} (cased)  BLEU 100.00 (lowercased)")


def test_misaligned_files_are_one_error_line(tmp_path):
    (tmp_path / "ref").write_text("a\nb\n")
    (tmp_path / "hyp").write_text("a\n")
    out = subprocess.run([sys.executable, TOOL, "--hyp", str(tmp_path / "hyp"), "--ref", str(tmp_path / "ref")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "bleu_variants: error: 1 hypotheses but 2 references: the files must be line-aligned"
