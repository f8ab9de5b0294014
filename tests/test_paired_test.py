"""scripts/paired_test.py: re-testing finished outputs against another baseline."""
import sys

import pytest

from helpers import REPO
from kd_nmt.errors import KDNMTError

sys.path.insert(0, str(REPO / "scripts"))

import paired_test  # noqa: E402

REF = ["the cat sat on the mat", "a dog barks at night", "we translate text"] * 4


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_a_perfect_output_against_a_worse_baseline(tmp_path):
    ref = write(tmp_path / "ref.txt", REF)
    base = write(tmp_path / "base.hyp", [line.replace("the", "a") for line in REF])
    perfect = write(tmp_path / "perfect.hyp", REF)
    lines = paired_test.paired_table(ref, base, [perfect], n_samples=100)
    assert lines[0] == "| output | BLEU | chrF | Δ BLEU (p) | Δ chrF (p) |"
    assert lines[2].startswith("| base.hyp | ") and lines[2].endswith("| (baseline) | |")
    name, bleu, chrf, d_bleu, d_chrf = [c.strip() for c in lines[3].strip("|").split("|")]
    assert (name, bleu, chrf) == ("perfect.hyp", "100.00", "100.00")
    base_bleu = float(lines[2].split("|")[2])
    assert d_bleu == f"{100 - base_bleu:+.2f} (0.010)"  # every resample favours it: p = 1/(100+1)
    assert float(d_chrf.split("(")[1].rstrip(")")) < 0.05


def test_an_output_of_another_length_is_one_error(tmp_path):
    ref = write(tmp_path / "ref.txt", REF)
    short = write(tmp_path / "short.hyp", REF[:-1])
    with pytest.raises(KDNMTError, match="short.hyp has 11 lines, the reference 12"):
        paired_test.paired_table(ref, ref, [short], n_samples=10)
