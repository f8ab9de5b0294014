"""Shared test fixtures: the real de-en fixture, binarized, and a tiny teacher trained on it.

Session-scoped: the sentencepiece model, the data-bin and the teacher are built once per test
run (a few seconds each on 2 CPU cores) and shared by every test that needs them.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "data" / "fixtures" / "deen"
PLUGIN = REPO / "kd_nmt"
BIN = Path(sys.executable).parent
SPLITS = ("train", "valid", "test")

# a transformer small enough to train in seconds on the fixture
TINY_ARCH = [
    "--arch", "transformer",
    "--encoder-layers", "1", "--decoder-layers", "1",
    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64",
    "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
    "--share-all-embeddings", "--dropout", "0.0",
]
TRAIN_COMMON = [
    "--optimizer", "adam", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt",
    "--warmup-updates", "10", "--max-tokens", "2000", "--cpu", "--seed", "1",
    "--log-format", "simple", "--log-interval", "1", "--no-epoch-checkpoints",
    "--num-workers", "0", "--no-progress-bar",
]


def tool(name):
    """Path of a console script installed in the test's virtualenv (fairseq-train, kd-nmt, ...)."""
    return str(BIN / name)


def run(cmd, check=True, env=None, timeout=600, **kwargs):
    """Run a command, returning the CompletedProcess; on failure show its output in the assertion."""
    full_env = dict(os.environ, PYTHONWARNINGS="ignore")
    full_env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # our code must not need it
    full_env.update(env or {})
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=full_env, timeout=timeout, **kwargs
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


def train_losses(log_text, prefix="train_inner", key="loss"):
    """The ``key=`` values of fairseq's simple-format ``| train_inner |`` log lines, in order."""
    # "| train_inner | epoch 001: 1 / 4 loss=..." (fairseq's format) or "INFO:train_inner:..."
    pattern = re.compile(rf"[ |:]{prefix}[ |:].* {key}=(-?[0-9.e+-]+|nan|inf)")
    return [float(m.group(1)) for m in map(pattern.search, log_text.splitlines()) if m]


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


def setup_in_process(data_bin, extra_args):
    """Build (cfg, task, model, criterion) in this process, exactly as fairseq-train would."""
    import kd_nmt.registry  # noqa: F401
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, [str(data_bin), *TINY_ARCH, "--cpu", "--seed", "1", *map(str, extra_args)]
    )
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(1)  # the same student weights in every call
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    return cfg, task, model, criterion


def first_batch(task, split="valid", max_sentences=8):
    """The first batch of ``split`` (loaded if needed), as fairseq's iterator builds it."""
    task.load_dataset(split)
    itr = task.get_batch_iterator(
        task.dataset(split), max_sentences=max_sentences, seed=1
    ).next_epoch_itr(shuffle=False)
    return next(iter(itr))
