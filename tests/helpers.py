"""Helpers shared by the tests: paths, the tiny architecture, subprocess runs, in-process set-up.

Imported by the test modules (``from helpers import ...``) and by ``conftest.py``'s fixtures;
the fixtures themselves (the fixture corpus tokenized and binarized, a tiny teacher) stay in
``conftest.py``.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def kill_after_first_chunk(cmd, chunks, extra_env=None):
    """Start ``cmd`` (a resumable ``kd-nmt relabel``), SIGKILL it once ``chunks``/000000.txt exists.

    Fails if the run ends by itself first or writes no chunk within 300 s.
    """
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(extra_env or {}))
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while not (chunks / "000000.txt").exists():
        assert proc.poll() is None, "relabel ended before writing its first chunk"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def train_losses(log_text, prefix="train_inner", key="loss"):
    """The ``key=`` values of fairseq's simple-format ``| train_inner |`` log lines, in order."""
    # "| train_inner | epoch 001: 1 / 4 loss=..." (fairseq's format) or "INFO:train_inner:..."
    pattern = re.compile(rf"[ |:]{prefix}[ |:].* {key}=(-?[0-9.e+-]+|nan|inf)")
    return [float(m.group(1)) for m in map(pattern.search, log_text.splitlines()) if m]


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
