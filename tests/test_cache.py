"""Teacher cache: `kd-nmt cache-teacher` + `--teacher-cache`, on the real de-en fixture.

The cache stores per target token the teacher's top-k ids and log-probs; a word_kd student
trains from it with no teacher in memory. With k = V the cached loss equals the live one: to
float32 rounding for a float32 cache, to ~1e-5 relative for the default float16 one.
"""
import json
import math
import shutil

import numpy as np
import pytest
import torch

from helpers import PLUGIN, TINY_ARCH, TRAIN_COMMON, first_batch, run, setup_in_process, tool, train_losses
from kd_nmt.cache import cli as cache_cli
from kd_nmt.cache.cached_teacher import CachedTeacher
from kd_nmt.cache.store import TeacherCache
from kd_nmt.criterions.word_kd import WordKDCriterion, kd_term
from kd_nmt.divergences import DIVERGENCES
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
    """k >= V: the whole distribution (float16 log-probs, the default)."""
    return build(teacher_checkpoint, data_bin, tmp_path_factory.mktemp("cache") / "full", 100000)


@pytest.fixture(scope="module")
def cache_full32(data_bin, teacher_checkpoint, tmp_path_factory):
    """k >= V with float32 log-probs."""
    out = tmp_path_factory.mktemp("cache") / "full32"
    return build(teacher_checkpoint, data_bin, out, 100000, "--logp-dtype", "float32")


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
        arrays = {a: np.load(cache8 / "chunks" / name / f"{a}.npy", mmap_mode="r")
                  for a in ("target", "ids", "logp", "nll")}
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
    targets, nll = CachedTeacher.open(cache8, task).targets(sample, like=lprobs)
    ids, logp = targets.ids, targets.scores
    mask = sample["target"].ne(task.target_dictionary.pad())
    top, _ = lprobs.topk(8, -1)
    assert torch.allclose(logp[mask], top[mask], atol=2e-2)
    assert torch.allclose(lprobs.gather(-1, ids)[mask], logp[mask], atol=2e-2)
    live_nll = -lprobs.gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(nll[mask], live_nll[mask], atol=1e-4)


@pytest.fixture(scope="module")
def live_setup(data_bin, teacher_checkpoint):
    """(cfg, task with the live teacher, student in training mode, a shuffled train batch)."""
    cfg, task, model, _ = setup_in_process(data_bin, [
        "--task", "kd_translation", "--teacher-path", teacher_checkpoint, "--criterion", "word_kd",
        "--kd-alpha", "0.5", "--label-smoothing", "0.1",
    ])
    model.train()
    return cfg, task, model, train_batch(task)


def word_kd(cfg, task, **options):
    """A word_kd criterion of ``cfg`` with some ``--kd-*`` options changed."""
    criterion_cfg = cfg.criterion.copy()
    for key, value in options.items():
        setattr(criterion_cfg, key, value)
    return WordKDCriterion(criterion_cfg, task)


# log-prob precision of the cache -> (KD term, loss) relative tolerance against the live teacher
# (measured on this batch: float32 <= 1.2e-7; float16 <= 6e-6, akl 5e-5: its head moves)
CACHE_PRECISION = {"float32": (1e-6, 1e-6), "float16": (2e-4, 5e-5)}


@pytest.mark.parametrize("logp_dtype", sorted(CACHE_PRECISION))
@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
def test_full_vocab_cache_loss_equals_live_loss(cache_full, cache_full32, live_setup, divergence, tau, logp_dtype):
    cfg, task, model, sample = live_setup
    cache = cache_full32 if logp_dtype == "float32" else cache_full
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["k"] == len(task.target_dictionary) and meta["logp_dtype"] == logp_dtype
    live_teacher = task.teacher
    criterion = word_kd(cfg, task, kd_divergence=divergence, kd_temperature=tau)
    live_loss, _, live = criterion(model, sample)
    task.teacher = CachedTeacher.open(cache, task)  # same task, model and batch: only the teacher differs
    try:
        cached_loss, _, cached = criterion(model, sample)
    finally:
        task.teacher = live_teacher
    kd_rel, loss_rel = CACHE_PRECISION[logp_dtype]
    assert cached["kd_loss"].item() == pytest.approx(live["kd_loss"].item(), rel=kd_rel)
    assert cached_loss.item() == pytest.approx(live_loss.item(), rel=loss_rel)
    assert cached["teacher_nll_loss"].item() == pytest.approx(live["teacher_nll_loss"].item(), rel=1e-5)
    # the gold CE: the same function of the same logits, the same pass
    assert cached["ce_loss"].item() == pytest.approx(live["ce_loss"].item(), rel=1e-6)


def test_kd_topk_cuts_a_cache_to_its_top_k_or_refuses_more(cache8, live_setup):
    cfg, task, model, sample = live_setup
    live_teacher = task.teacher
    task.teacher = CachedTeacher.open(cache8, task)
    try:
        targets, _ = task.teacher.targets(sample, like=torch.zeros(()))
        ids, logp = targets.ids, targets.scores
        losses = {k: word_kd(cfg, task, kd_alpha=1.0, kd_topk=k)(model, sample)[2]["kd_loss"].item()
                  for k in (0, 3, 8)}
        with pytest.raises(KDNMTError, match=r"--kd-topk 9 asks for more .* holds \(its top 8\)"):
            word_kd(cfg, task, kd_topk=9)
        with pytest.raises(KDNMTError, match=r"--kd-topk 100000 asks for more"):
            word_kd(cfg, task, kd_topk=100000)  # (k >= V: the full distribution, which it lacks)
    finally:
        task.teacher = live_teacher
    # hand: the 3 most probable cached ids, both sides renormalised over them
    with torch.no_grad():
        s = model(**sample["net_input"])[0]
    top, where = logp.topk(3, -1)
    p = torch.log_softmax(top, -1)
    q = torch.log_softmax(s.gather(-1, ids.gather(-1, where)), -1)
    mask = sample["target"].ne(task.target_dictionary.pad())
    assert losses[3] == pytest.approx(((p.exp() * (p - q)).sum(-1) * mask).sum().item(), rel=1e-5)
    assert losses[8] == losses[0] and losses[3] != pytest.approx(losses[0], rel=1e-2)


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
        task.teacher.targets(sample, like=torch.zeros(1))


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
    assert (f"first difference at index 4: data {lines[1].split()[0]!r} "
            f"vs cache {lines[0].split()[0]!r}") in str(err.value)
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


# --------------------------------------------------------------------- modes (kd_nmt/teacher/cache_modes.py)


@pytest.fixture(scope="module")
def cache_tail(data_bin, teacher_checkpoint, tmp_path_factory):
    """topk-tail with one id in the rest (k = V - 1), float32 log-probs, temperature 2."""
    from fairseq.data import Dictionary

    V = len(Dictionary.load(str(data_bin / "dict.en.txt")))
    out = tmp_path_factory.mktemp("cache") / "tail"
    return build(teacher_checkpoint, data_bin, out, V - 1, "--mode", "topk-tail", "--temperature", 2,
                 "--logp-dtype", "float32")


@pytest.fixture(scope="module")
def cache_sample(data_bin, teacher_checkpoint, tmp_path_factory):
    return build(teacher_checkpoint, data_bin, tmp_path_factory.mktemp("cache") / "sample", 16, "--mode", "sample")


@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
def test_tail_cache_with_one_id_in_the_rest_is_the_live_loss(cache_tail, live_setup, divergence):
    cfg, task, model, sample = live_setup
    meta = json.loads((cache_tail / "meta.json").read_text())
    assert (meta["mode"], meta["k"], meta["temperature"]) == ("topk-tail", len(task.target_dictionary) - 1, 2.0)
    live_teacher = task.teacher
    criterion = word_kd(cfg, task, kd_divergence=divergence, kd_temperature=2.0)
    live_loss, _, live = criterion(model, sample)
    task.teacher = CachedTeacher.open(cache_tail, task)
    try:
        cached_loss, _, cached = word_kd(cfg, task, kd_divergence=divergence, kd_temperature=2.0)(model, sample)
    finally:
        task.teacher = live_teacher
    assert cached["kd_loss"].item() == pytest.approx(live["kd_loss"].item(), rel=1e-5)
    assert cached_loss.item() == pytest.approx(live_loss.item(), rel=1e-5)


def test_sample_cache_files_and_one_pass(cache_sample, live_setup):
    cfg, task, model, sample = live_setup
    meta = json.loads((cache_sample / "meta.json").read_text())
    assert (meta["mode"], meta["k"], meta["draws"], meta["seed"], meta["temperature"]) == ("sample", 16, 16, 1, 1.0)
    counts = np.load(cache_sample / "chunks" / "00001" / "count.npy")
    assert counts.dtype == np.int16 and (counts.sum(1) == 16).all() and (np.diff(counts, axis=1) <= 0).all()
    live_teacher = task.teacher
    task.teacher = CachedTeacher.open(cache_sample, task)
    try:
        criterion = word_kd(cfg, task, kd_alpha=1.0)
        _, _, log = criterion(model, sample)  # the one pass (training mode)
        dist, _ = task.teacher.targets(sample, like=torch.zeros(()))
    finally:
        task.teacher = live_teacher
    with torch.no_grad():
        logits = model(**sample["net_input"])[0]
    want = kd_term(logits, dist, sample["target"], task.target_dictionary.pad(), "fkl")
    assert log["kd_loss"].item() == pytest.approx(want.item(), rel=1e-5)


def test_mode_misuses_are_one_clear_line(cache8, cache_sample, data_bin, teacher_checkpoint, tmp_path):
    # a run the cache's mode cannot serve
    with pytest.raises(KDNMTError, match=r"sample cache, an unbiased estimate of fkl only, not of --kd-divergence rkl"):
        setup_in_process(data_bin, kd_cache_args(cache_sample, "--kd-divergence", "rkl"))
    with pytest.raises(KDNMTError, match=r"built at temperature 1 and serves only that one, the run asks for "
                                         r"--kd-temperature 2: use --kd-temperature 1 or rebuild"):
        setup_in_process(data_bin, kd_cache_args(cache_sample, "--kd-temperature", "2"))
    with pytest.raises(KDNMTError, match=r"--kd-topk 4 cuts a topk cache; .* is a sample cache"):
        setup_in_process(data_bin, kd_cache_args(cache_sample, "--kd-topk", "4"))
    # resuming into an --out of another mode
    out = tmp_path / "cache"
    shutil.copytree(cache8, out)
    with pytest.raises(KDNMTError, match=r"built with other settings \(differs in: mode, temperature\)"):
        build(teacher_checkpoint, data_bin, out, 8, "--mode", "topk-tail", "--temperature", 2)
    # a cache from before modes (no "mode" key) is a topk cache; an unknown mode is refused
    meta = json.loads((out / "meta.json").read_text())
    del meta["mode"]
    (out / "meta.json").write_text(json.dumps(meta))
    assert TeacherCache(out).mode == "topk"
    build(teacher_checkpoint, data_bin, out, 8)  # resumes (nothing to do): same settings
    meta["mode"] = "topp"
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(KDNMTError, match=r"teacher cache mode 'topp' is unknown to this kd_nmt \(it reads topk, "
                                         r"topk-tail, sample\)"):
        TeacherCache(out)
    # bad k / temperature at build time: one line, status 2, nothing written
    for extra, message in (
        (["--mode", "sample", "--topk", "0"], "--topk must be at least 1, got 0"),
        (["--mode", "topk-tail", "--topk", "4", "--temperature", "0"], "--temperature must be a finite number > 0"),
        (["--topk", "4", "--temperature", "2"], "--temperature is for --mode topk-tail and sample"),
    ):
        proc = run([tool("kd-nmt"), "cache-teacher", "--teacher", teacher_checkpoint, "--data-bin", data_bin,
                    "--out", tmp_path / "never", *extra], check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "never").exists()


@pytest.mark.parametrize("damage,message", [
    ("ids", r"chunks/00001/ids.npy holds id \d+ outside the \d+-symbol dictionary"),
    ("target", r"chunks/00001/target.npy holds id -3 outside"),
    ("logp_positive", r"chunks/00001/logp.npy holds values that are not log-probabilities"),
    ("logp_mass", r"chunks/00001/logp.npy: the kept probabilities sum to [\d.]+, not at most 1"),
])
def test_garbage_of_the_right_size_is_refused_on_open(cache8, cache_full, data_bin, tmp_path, damage, message):
    import numpy as np

    from kd_nmt.cache.store import TeacherCache

    damaged = tmp_path / "damaged"
    shutil.copytree(cache8, damaged)
    chunk = damaged / "chunks" / "00001"
    name = "logp" if damage.startswith("logp") else damage
    array = np.load(chunk / f"{name}.npy")
    if damage == "ids":
        array[0, 0] = TeacherCache(str(cache8)).vocab_size + 5
    elif damage == "target":
        array[-1] = -3
    elif damage == "logp_positive":
        array[0, 3] = 0.5  # row 0: one the check always reads
    else:  # every kept id at probability 1/2: the top 8 hold 4 times the mass there is
        array[:] = np.log(0.5)
    np.save(chunk / f"{name}.npy", array)  # same shape and dtype: only the contents are wrong
    with pytest.raises(KDNMTError, match=message):
        setup_in_process(data_bin, kd_cache_args(damaged))
    TeacherCache(str(cache8))  # the intact cache opens
    TeacherCache(str(cache_full))  # and a k = V one, whose rows sum to 1 within float16 rounding


def test_a_second_build_of_one_cache_is_refused(cache8, data_bin, teacher_checkpoint, tmp_path, capsys):
    from kd_nmt.common.locks import take_lock

    out = tmp_path / "top8"
    shutil.copytree(cache8, out)
    held = take_lock(str(out), "kd-nmt cache-teacher", "-")  # as a running build holds it
    try:
        argv = ["--teacher", str(teacher_checkpoint), "--data-bin", str(data_bin), "--split", "train",
                "--topk", "8", "--out", str(out), "--chunk-sentences", str(CHUNK), "--no-progress-bar"]
        from kd_nmt.cli import main

        assert main(["cache-teacher", *argv]) == 2
        assert f"another kd-nmt cache-teacher process is working in {str(out)!r}" in capsys.readouterr().err
    finally:
        held.close()
    assert main(["cache-teacher", *argv]) == 0  # released: the (complete) cache is reopened and checked
