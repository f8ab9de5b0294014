"""recipes/study_seqkd_data.sh on the fixture with tiny knobs: five Seq-KD data sets, two seeds, one table."""
import json
import os

import pytest

from helpers import BIN, FIXTURE, REPO, run


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("KD_NMT_RECIPE_TESTS"),
    reason="the whole study chain (minutes); set KD_NMT_RECIPE_TESTS=1 to run it",
)
def test_study_seqkd_data_runs_on_the_fixture(tmp_path):
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "CORPUS": str(FIXTURE), "TEST_SPLIT": "test", "MAX_TRAIN": "0",
        "TRAIN_TEACHER": "1", "VOCAB": "300", "TEACHER_UPDATES": "4", "STUDENT_UPDATES": "2",
        "BACKWARD_UPDATES": "2", "SEEDS": "1 2", "NBEST": "2", "MONO": "20",
        "MONO_FILE": str(FIXTURE / "valid.de"),  # stands in for manpages-de (no download in tests)
        "THREADS": "1", "PRECISION": "fp32",
        "WORK": str(tmp_path / "work"), "RESULTS": str(tmp_path / "results"),
    }
    proc = run(["bash", REPO / "recipes" / "study_seqkd_data.sh"], env=env, timeout=3600)
    work = tmp_path / "work"
    sizes = {}
    for name in ("seqkd", "seqkd+filter", "seqkd+mbrchrf", "seqkd+nbest2", "seqkd+mono20"):
        sizes[name] = json.loads((work / f"{name}-bin" / "relabel.json").read_text())["train_sentences"]
    assert sizes["seqkd"] == sizes["seqkd+mbrchrf"] == 400
    assert sizes["seqkd+nbest2"] == 800 and sizes["seqkd+mono20"] == 420
    assert sizes["seqkd+filter"] <= 400
    assert (work / "backward" / "checkpoint_best.pt").exists()
    summary = (tmp_path / "results" / "summary.md").read_text(encoding="utf-8")
    for method in ("seq_kd ", "seq_kd+filter", "seq_kd+mbrchrf", "seq_kd+nbest2", "seq_kd+mono20"):
        assert f"| {method.strip()} |" in summary
    assert summary in proc.stdout  # the recipe ends by printing it
    # a rerun resumes: every step is skipped
    again = run(["bash", REPO / "recipes" / "study_seqkd_data.sh"], env=env, timeout=3600)
    for step in ("train", "relabel", "filter"):
        assert f"study_seqkd_data] {step} " not in again.stderr, again.stderr
