"""CORPUS=DIR: the recipes on a user's raw corpus (here the fixture) instead of the Debian one."""
import os

import pytest

from helpers import BIN, FIXTURE, REPO, run


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("KD_NMT_RECIPE_TESTS"),
    reason="the whole quickstart chain (minutes); set KD_NMT_RECIPE_TESTS=1 to run it",
)
def test_quickstart_runs_on_a_raw_corpus_dir(tmp_path):
    """The whole quickstart chain with tiny knobs; the fixture's test split is test, not test_tech."""
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "CORPUS": str(FIXTURE), "TEST_SPLIT": "test",
        "TRAIN_TEACHER": "1", "MAX_TRAIN": "0", "VOCAB": "300",
        "TEACHER_UPDATES": "4", "STUDENT_UPDATES": "2", "THREADS": "1", "PRECISION": "fp32",
        "WORK": str(tmp_path / "work"), "RESULTS": str(tmp_path / "results"),
    }
    proc = run(["bash", REPO / "recipes" / "quickstart.sh"], env=env, timeout=3600)
    data = tmp_path / "work" / "data"
    for split, n in (("train", 400), ("valid", 60), ("test", 60)):
        assert len((data / "raw" / f"{split}.en").read_text(encoding="utf-8").splitlines()) == n
    assert (data / "bin" / "test.de-en.de.idx").exists()
    assert f"prepare {data} from {FIXTURE}" in proc.stderr  # not the Debian corpus (never built)
    table = (tmp_path / "results" / "bench" / "bench.md").read_text(encoding="utf-8")
    for name in ("teacher", "baseline", "word_kd", "seq_kd", "hybrid_kd"):
        assert name in table
    assert table in proc.stdout  # the recipe ends by printing it
    deploy = (tmp_path / "results" / "deploy" / "deploy.md").read_text(encoding="utf-8")
    for name in ("teacher", "hybrid_kd/small_d2", "ctranslate2-int8", "fairseq-float32"):
        assert name in deploy
    assert deploy in proc.stdout  # and then the deployment table
