"""Shared test fixtures: the real de-en fixture, binarized, and a tiny teacher trained on it.

Session-scoped: the sentencepiece model, the data-bin and the teacher are built once per test
run (a few seconds each on 2 CPU cores) and shared by every test that needs them. Tests that use
them, or start processes of their own, are marked ``slow`` (``pytest -m "not slow"`` runs the
rest in well under a minute).
"""
import os

import pytest
import torch

from helpers import FIXTURE, PLUGIN, SPLITS, TINY_ARCH, TRAIN_COMMON, run, tool

# `make test` runs two pytest-xdist workers on the 2 cores: each worker, and every process it
# starts, computes on one thread (two workers of two threads each fight over the cores)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# fixtures that train or binarize in subprocesses: a test using one is slow
SUBPROCESS_FIXTURES = {"tokenized", "data_bin", "teacher_checkpoint"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SUBPROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tokenized(tmp_path_factory):
    """The fixture tokenized with a joint sentencepiece model trained on its train split."""
    import sentencepiece as spm

    out = tmp_path_factory.mktemp("tok")
    spm.SentencePieceTrainer.train(
        input=[str(FIXTURE / "train.de"), str(FIXTURE / "train.en")],
        model_prefix=str(out / "spm"), vocab_size=600, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, num_threads=1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    for split in SPLITS:
        for lang in ("de", "en"):
            lines = (FIXTURE / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            pieces = [" ".join(sp.encode(line, out_type=str)) for line in lines]
            (out / f"{split}.{lang}").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def data_bin(tokenized, tmp_path_factory):
    """fairseq-preprocess'ed fixture (joined dictionary): train / valid / test, de->en."""
    out = tmp_path_factory.mktemp("data-bin")
    run([
        tool("fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
        "--trainpref", tokenized / "train", "--validpref", tokenized / "valid",
        "--testpref", tokenized / "test", "--destdir", out, "--joined-dictionary",
        "--workers", "1",
    ])
    return out


@pytest.fixture(scope="session")
def teacher_checkpoint(data_bin, tmp_path_factory):
    """A tiny transformer teacher trained (plain CE) for 150 updates on the fixture."""
    save = tmp_path_factory.mktemp("teacher")
    run([
        tool("fairseq-train"), data_bin, *TINY_ARCH, *TRAIN_COMMON,
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-update", "150", "--save-dir", save, "--user-dir", PLUGIN,
    ])
    return save / "checkpoint_best.pt"
