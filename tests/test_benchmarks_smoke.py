"""benchmarks/: every script imports and answers --help (a smoke test: their numbers are measured by
`make bench`, not here), and train_cost's autograd criterion keeps word_kd's signature."""
import inspect
import subprocess
import sys

import pytest

from helpers import REPO

SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_answers_help(name):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_train_costs_autograd_criterion_overrides_with_word_kds_signature():
    # benchmarks/train_cost.py:193 overrode kd_and_teacher_nll without kd_mask, so word_kd's
    # non-one-pass path raised TypeError under `run_all.py --with-autograd`
    from kd_nmt.criterions.word_kd import WordKDCriterion

    source = (REPO / "benchmarks" / "train_cost.py").read_text(encoding="utf-8")
    wanted = str(inspect.signature(WordKDCriterion.kd_and_teacher_nll))
    assert f"def kd_and_teacher_nll{wanted}:" in source, wanted
