"""Teacher cache: `kd-nmt cache-teacher` + `--teacher-cache`, on the real de-en fixture.

The cache stores per target token the teacher's top-k ids and log-probs; a word_kd student
trains from it with no teacher in memory. With k = V the cached KD loss equals the live one.
"""
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import PLUGIN, TINY_ARCH, TRAIN_COMMON, first_batch, run, setup_in_process, tool, train_losses
from kd_nmt.cache import cli as cache_cli
from kd_nmt.cache.cached_teacher import CachedTeacher
from kd_nmt.cache.store import TeacherCache
from kd_nmt.errors import KDNMTError

CHUNK = 150  # the fixture's 400 train sentences -> 3 chunks


def build(teacher, data_bin, out, topk, *extra):
    """`kd-nmt cache-teacher` in this process (the CLI's own entry point)."""
    argv = [
        "--teacher", str(teacher), "--data-bin", str(data_bin), "--topk", str(topk), "--out", str(out),
        "--chunk-sentences", str(CHUNK), "--no-progress-bar", *map(str, extra),
    ]
    assert cache_cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def cache8(data_bin, teacher_checkpoint, tmp_path_factory):
    """A top-8 cache built through the real console script."""
    out = tmp_path_factory.mktemp("cache") / "top8"
    proc = run([
        tool("kd-nmt"), "cache-teacher", "--teacher", teacher_checkpoint, "--data-bin", data_bin,
        "--split", "train", "--topk", "8", "--out", out, "--chunk-sentences", CHUNK,
    ])
    assert "cache-teacher train" in proc.stderr  # the tqdm bar
    return out


@pytest.fixture(scope="module")
def cache_full(data_bin, teacher_checkpoint, tmp_path_factory):
    """k >= V: the whole distribution."""
    return build(teacher_checkpoint, data_bin, tmp_path_factory.mktemp("cache") / "full", 100000)


def kd_cache_args(cache, *extra):
    return ["--task", "kd_translation", "--teacher-cache", cache, "--criterion", "word_kd", *extra]


def train_batch(task, seed=3):
    """A shuffled batch of the train split (the cache's split), as fairseq-train draws them."""
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=800, seed=seed).next_epoch_itr(shuffle=True)
    return next(iter(itr))


def test_cache_files_shapes_dtypes_and_values(cache8, data_bin, teacher_checkpoint):
    meta = json.loads((cache8 / "meta.json").read_text())
    assert meta["complete"] and meta["k"] == 8 and meta["split"] == "train"
    assert meta["n_sentences"] == 400 and meta["chunk_sentences"] == CHUNK
    assert meta["ids_dtype"] == "int16" and meta["logp_dtype"] == "float16" and meta["temperature"] == 1.0
    assert meta["teacher"]["sha256"][0] == __import__("hashlib").sha256(teacher_checkpoint.read_bytes()).hexdigest()

    _, task, model, _ = setup_in_process(data_bin, ["--task", "kd_translation", "--teacher-path", teacher_checkpoint,
                                                    "--criterion", "word_kd"])
    task.load_dataset("train")
    ds = task.dataset("train")
    offsets = np.load(cache8 / "offsets.npy")
    assert offsets.dtype == np.int64 and offsets.shape == (401,)
    assert (np.diff(offsets) == ds.tgt_sizes).all() and offsets[-1] == meta["n_tokens"]
    assert len(ds.tgt_sizes) == 400
    chunks = sorted(p.name for p in (cache8 / "chunks").iterdir())
    assert chunks == ["00000", "00001", "00002"]
    for c, name in enumerate(chunks):
        first, end = c * CHUNK, min((c + 1) * CHUNK, 400)
        n = int(offsets[end] - offsets[first])
        arrays = {a: np.load(cache8 / "chunks" / name / f"{a}.npy", mmap_mode="r") for a in ("target", "ids", "logp", "nll")}
        assert isinstance(arrays["ids"], np.memmap)
        assert arrays["target"].shape == (n,) and arrays["target"].dtype == np.int16
        assert arrays["ids"].shape == (n, 8) and arrays["ids"].dtype == np.int16
        assert arrays["logp"].shape == (n, 8) and arrays["logp"].dtype == np.float16
        assert arrays["nll"].shape == (n,) and arrays["nll"].dtype == np.float32
        # rows are the gold targets (EOS included) of sentences first..end, in dataset order
        gold = np.concatenate([ds.tgt[i].numpy() for i in range(first, end)])
        assert (arrays["target"] == gold).all()
        logp = arrays["logp"].astype(np.float32)
        assert (np.diff(logp, axis=1) <= 0).all() and (logp <= 0).all()  # most probable first
        assert (np.log(np.exp(logp).sum(1)) <= 1e-3).all()  # full-vocabulary normalised, top-k kept

    # stored values are the teacher's: compare a shuffled batch against the live model
    sample = train_batch(task)
    with torch.no_grad():
        lprobs = torch.log_softmax(task.teacher.models[0](**sample["net_input"])[0], -1)
    (ids, logp), nll = CachedTeacher.open(cache8, task).distribution(sample, like=lprobs)
    mask = sample["target"].ne(task.target_dictionary.pad())
    top, _ = lprobs.topk(8, -1)
    assert torch.allclose(logp[mask], top[mask], atol=2e-2)
    assert torch.allclose(lprobs.gather(-1, ids)[mask], logp[mask], atol=2e-2)
    live_nll = -lprobs.gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(nll[mask], live_nll[mask], atol=1e-4)


@pytest.mark.parametrize("divergence,tau", [("fkl", 1.0), ("todi", 2.0)])
def test_full_vocab_cache_loss_equals_live_loss(cache_full, data_bin, teacher_checkpoint, divergence, tau):
    args = ["--kd-alpha", "0.5", "--kd-temperature", tau, "--kd-divergence", divergence, "--label-smoothing", "0.1"]
    _, task, model, criterion = setup_in_process(
        data_bin, ["--task", "kd_translation", "--teacher-path", teacher_checkpoint, "--criterion", "word_kd", *args]
    )
    assert json.loads((cache_full / "meta.json").read_text())["k"] == len(task.target_dictionary)
    sample = train_batch(task)
    model.train()
    live_loss, _, live = criterion(model, sample)
    task.teacher = CachedTeacher.open(cache_full, task)  # same task, model and batch: only the teacher differs
    cached_loss, _, cached = criterion(model, sample)
    # log-probs are stored as float16: ~1e-3 relative precision per value
    assert cached["kd_loss"].item() == pytest.approx(live["kd_loss"].item(), rel=2e-3)
    assert cached_loss.item() == pytest.approx(live_loss.item(), rel=1e-3)
    assert cached["teacher_nll_loss"].item() == pytest.approx(live["teacher_nll_loss"].item(), rel=1e-5)
    # the gold CE is the same function of the same logits; the live path sums it chunk by chunk
    # (kd_objective), the cached one through fairseq's label_smoothed_nll_loss: float32 rounding
    assert cached["ce_loss"].item() == pytest.approx(live["ce_loss"].item(), rel=1e-6)


def test_resume_skips_finished_chunks_byte_identical(cache8, data_bin, teacher_checkpoint, tmp_path, caplog):
    out = tmp_path / "cache"
    shutil.copytree(cache8, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    kept = out / "chunks" / "00000" / "ids.npy"
    mtime = kept.stat().st_mtime_ns
    shutil.rmtree(out / "chunks" / "00001")
    (out / "chunks" / "00002.tmp").mkdir()  # debris of an interrupted chunk
    meta = json.loads((out / "meta.json").read_text())
    meta["complete"] = False
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(KDNMTError, match="incomplete"):
        TeacherCache(out)
    with caplog.at_level("INFO"):
        build(teacher_checkpoint, data_bin, out, 8)
    assert "3 chunks (1 to do)" in caplog.text
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after.keys() == before.keys()
    assert all(after[k] == before[k] for k in before), [str(k) for k in before if after[k] != before[k]]
    assert kept.stat().st_mtime_ns == mtime  # finished chunks were not rewritten
    # a rerun of a complete cache does nothing
    with caplog.at_level("INFO"):
        build(teacher_checkpoint, data_bin, out, 8)
    assert "3 chunks (0 to do)" in caplog.text


def test_training_from_cache_end_to_end_without_teacher(data_bin, teacher_checkpoint, tmp_path):
    # the cache is built from a copy of the teacher, which is then deleted: training cannot load it
    teacher = tmp_path / "teacher.pt"
    shutil.copy(teacher_checkpoint, teacher)
    cache = build(teacher, data_bin, tmp_path / "cache", 16)
    teacher.unlink()
    save = tmp_path / "student"
    proc = run([
        tool("fairseq-train"), "--user-dir", PLUGIN, data_bin, *TINY_ARCH, *TRAIN_COMMON,
        "--task", "kd_translation", "--teacher-cache", cache, "--criterion", "word_kd",
        "--kd-alpha", "0.5", "--kd-temperature", "2", "--label-smoothing", "0.1",
        "--max-update", "30", "--save-dir", save,
    ])
    log = proc.stdout + proc.stderr
    losses = train_losses(log)
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses
    assert "teacher cache" in log and "model(s)" not in log  # no live teacher was built
    assert "kd_loss" in log
    # validation ran (no teacher for the valid split: its loss is the student's CE)
    valid = [line for line in log.splitlines() if "| valid |" in line]
    assert valid and "| loss " in valid[-1] and "kd_loss" not in valid[-1]
    from kd_nmt.checkpoint import load_checkpoint

    state = load_checkpoint(str(save / "checkpoint_last.pt"))
    assert state["cfg"]["task"]["_name"] == "translation" and "teacher_cache" not in state["cfg"]["task"]
    assert not any("teacher" in k for k in state["model"])


def test_validation_with_cache_is_student_ce(cache8, data_bin):
    _, task, model, criterion = setup_in_process(data_bin, kd_cache_args(cache8, "--label-smoothing", "0.1"))
    sample = first_batch(task, "valid")
    model.eval()
    with torch.no_grad():
        loss, _, log = criterion(model, sample)
    assert loss.item() == log["ce_loss"].item()
    assert "kd_loss" not in log
    # a valid batch handed to the cache (a criterion ignoring training_split_only): a clear error
    with pytest.raises(KDNMTError, match="does not match teacher cache"):
        task.teacher.distribution(sample, like=torch.zeros(1))


def copy_data_bin(data_bin, dest, replace=None):
    dest.mkdir()
    for f in data_bin.iterdir():
        (dest / f.name).symlink_to(f)
    for name, text in (replace or {}).items():
        (dest / name).unlink()
        (dest / name).write_text(text, encoding="utf-8")
    return dest


def test_cache_of_other_data_bin_is_refused(cache8, data_bin, tmp_path):
    # same dictionaries, but the "train" split is another corpus (the valid one)
    other = tmp_path / "other"
    other.mkdir()
    for f in data_bin.iterdir():
        target = f.name.replace("valid.", "train.") if f.name.startswith("valid.") else f.name
        if not f.name.startswith("train."):
            (other / target).symlink_to(f)
    with pytest.raises(KDNMTError, match="was built for other data") as err:
        setup_in_process(other, kd_cache_args(cache8))
    assert "kd-nmt cache-teacher" in str(err.value)


def test_truncated_cache_file_is_refused(cache8, data_bin, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(cache8, damaged)
    path = damaged / "chunks" / "00001" / "logp.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(KDNMTError, match=r"damaged: chunks/00001/logp.npy \d+ bytes, expected \d+ \(truncated"):
        setup_in_process(data_bin, kd_cache_args(damaged))
    path.write_bytes(b"\x93NUMPY")  # the header itself cut
    with pytest.raises(KDNMTError, match="chunks/00001/logp.npy unreadable"):
        setup_in_process(data_bin, kd_cache_args(damaged))


def test_dictionary_mismatch_is_refused(cache8, data_bin, teacher_checkpoint, tmp_path):
    lines = (data_bin / "dict.en.txt").read_text(encoding="utf-8").splitlines()
    swapped = "\n".join([lines[1], lines[0]] + lines[2:]) + "\n"
    other = copy_data_bin(data_bin, tmp_path / "bin", {"dict.de.txt": swapped, "dict.en.txt": swapped})
    # training data with another dictionary than the cache's
    with pytest.raises(KDNMTError, match="built with a different source dictionary") as err:
        setup_in_process(other, kd_cache_args(cache8))
    assert f"first difference at index 4: data {lines[1].split()[0]!r} vs cache {lines[0].split()[0]!r}" in str(err.value)
    # building a cache with a teacher whose dictionary differs from the data: one line, status 2
    proc = run([
        tool("kd-nmt"), "cache-teacher", "--teacher", teacher_checkpoint, "--data-bin", other,
        "--topk", "4", "--out", tmp_path / "never",
    ], check=False)
    assert proc.returncode == 2
    assert "kd-nmt: error: teacher" in proc.stderr and "different source dictionary" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "never").exists()


def test_other_misuses_are_clear_errors(cache8, data_bin, teacher_checkpoint, tmp_path):
    with pytest.raises(KDNMTError, match="--teacher-path and --teacher-cache both given"):
        setup_in_process(data_bin, kd_cache_args(cache8, "--teacher-path", teacher_checkpoint))
    with pytest.raises(KDNMTError, match="holds split 'train' but training reads --train-subset 'valid'"):
        setup_in_process(data_bin, kd_cache_args(cache8, "--train-subset", "valid"))
    with pytest.raises(KDNMTError, match="teacher cache not found"):
        setup_in_process(data_bin, kd_cache_args(tmp_path / "nope"))
    # resuming into an --out built with other settings
    out = tmp_path / "cache"
    shutil.copytree(cache8, out)
    with pytest.raises(KDNMTError, match=r"built with other settings \(differs in: k\)"):
        build(teacher_checkpoint, data_bin, out, 4)
