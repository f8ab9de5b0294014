"""The fault suite (issue 27, "Faults lose nothing", item 6): every ``kd-nmt`` command and every
tool that writes output, under the faults a machine really has.

Fault classes, each on the folder the outputs go to:

* ``full-disk``: a tiny tmpfs (half the pages a clean run's outputs take; at least one page
  short of them);
* ``read-only``: a read-only tmpfs;
* ``file-for-folder``: a regular file where the output folder is expected;
* ``folder-for-file``: a folder where an output file is expected.

Each asserts what docs/faults.md promises: a non-zero exit status (2), exactly one error line
``PROG: error: <path>: <what> (<what to do>)`` (or the command's own one-line message) naming
the folder, no traceback; every file left is whole (byte-identical to a clean run's, or for
files holding timings, parseable and of the same shape), none is empty, no temporary is left;
and, where the fault left something behind, a rerun after the fault is removed (the tmpfs grown,
made writable, the file or folder taken away) completes and gives the clean run's outputs.

Further down: truncated inputs (checkpoints, data-bin ``.bin``/``.idx``, a teacher cache) and
``kill -9`` at a chosen point of the long-running commands (``cache-teacher``, ``train``;
``relabel``'s is ``tests/test_relabel.py::test_kill_9_then_rerun_is_byte_identical``).

Mounts need root (CI runs as root): without it, or where ``mount`` fails, those tests skip.
Inputs are the smallest the fixtures give (tests/conftest.py); runs are in this process
(``train`` and ``generate`` too, with ``sys.argv`` and the root logger's handlers restored) except
the runs that are killed and a teacher cache on a full disk (a memory-mapped write to a full
tmpfs was a SIGBUS, which must not kill the test process). About 50 s on two workers once the
session fixtures exist.
"""
import contextlib
import fnmatch
import gc
import importlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from helpers import FIXTURE, REPO, TINY_ARCH, TRAIN_COMMON, run, tool

SCRIPTS = REPO / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

PAGE = 4096
FAULTS = ("full-disk", "read-only", "file-for-folder", "folder-for-file")
# what the error line says, by fault class (the command's own wording where it checks first)
SAYS = {
    "full-disk": r"No space left on device",
    "read-only": r"[Rr]ead-only file system",
    "file-for-folder": r"[Nn]ot a directory|is not a directory|File exists|exists and is not",
    "folder-for-file": r"[Ii]s a directory|exists and is not|not empty",
}
FILLER = ".filler"  # what fills a tmpfs to the chosen free space; not an output


# --- mounts -----------------------------------------------------------------------------------
def _sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


@contextlib.contextmanager
def tmpfs(path, options):
    """A tmpfs mounted on ``path`` (created) for the block; unmounted after, whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    proc = _sh("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path))
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        gc.collect()  # memory maps and files of a failed in-process run
        if _sh("umount", str(path)).returncode != 0:
            _sh("umount", "-l", str(path))


def remount(path, options):
    proc = _sh("mount", "-o", f"remount,{options}", str(path))
    assert proc.returncode == 0, proc.stderr


@contextlib.contextmanager
def full_disk(path, free):
    """A tmpfs on ``path`` with ``free`` bytes (rounded down to pages) left for the outputs."""
    pages = free // PAGE
    with tmpfs(path, f"size={(pages + 1) * PAGE}") as mounted:
        with open(mounted / FILLER, "wb") as f:
            f.write(b"\0" * PAGE)
        yield mounted


# --- what a run left --------------------------------------------------------------------------
def snapshot(folder):
    """``{relative path: bytes}`` of the files under ``folder`` (lock files and the filler aside)."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("lock", FILLER)}


def digest(name, data, volatile):
    """What must equal between two runs: the bytes, or for a file holding timings (``volatile``
    patterns) a shape that a cut-short file cannot have."""
    if not any(fnmatch.fnmatch(name, pattern) for pattern in volatile):
        return data
    if name.endswith(".json"):
        value = json.loads(data)
        return ("json", sorted(value) if isinstance(value, dict) else len(value))
    if name.endswith(".pt"):
        import io

        import torch

        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        return ("pt", sorted((k, tuple(v.shape)) for k, v in state["model"].items()))
    if name.endswith(".png"):
        return ("png", data[:8], data[-12:])  # signature and IEND chunk: a whole PNG
    if name.endswith(".model"):  # sentencepiece: its bytes hold the path it was trained into
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_proto=data)
        return ("spm", [sp.id_to_piece(i) for i in range(sp.get_piece_size())])
    if name.endswith(".log"):
        return ("log", data.count(b"\n"))  # (paths in its lines)
    return ("lines", data.count(b"\n"), data.split(b"\n", 1)[0])


def pages(files):
    return sum(-(-len(data) // PAGE) for data in files.values())


def error_line(err, prog):
    """The one error line of ``err`` (stderr), checked: no traceback, one line, ``PROG: error:``."""
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err[-3000:]
    assert errors[0].startswith(f"{prog}: error: "), errors
    assert "(no file)" not in errors[0], errors
    return errors[0]


def check_left(folder, reference, volatile, allowed=()):
    """Every file under ``folder`` whole: no temporary, none empty, each one a clean run also
    writes (``reference()``) equal to its (``digest``); others (a resumable work folder's) in
    ``allowed``."""
    left = snapshot(folder)
    if left:
        reference = reference()
    for name, data in left.items():
        assert ".tmp" not in name, f"a temporary is left: {name}"
        assert data or not reference.get(name, b"x"), f"an empty file is left: {name}"
        if name in reference:
            assert digest(name, data, volatile) == digest(name, reference[name], volatile), \
                f"{name} is not whole"
        else:
            assert any(fnmatch.fnmatch(name, pattern) for pattern in allowed), f"unexpected {name}"
            if name.endswith(".json"):
                json.loads(data)
    return left


def same_as(folder, reference, volatile):
    left = snapshot(folder)
    assert sorted(left) == sorted(reference)
    for name in reference:
        assert digest(name, left[name], volatile) == digest(name, reference[name], volatile), name


# --- the commands and tools -------------------------------------------------------------------
@dataclass
class Case:
    """One command or tool: ``run(fx, out)`` -> (status, stderr), its outputs under ``out``."""

    run: object
    prog: str = "kd-nmt"
    file: str = None  # an output file, for folder-for-file (None: the outputs are one folder)
    volatile: tuple = ()  # files holding timings or dates: compared by shape
    allowed: tuple = ()  # files a failed run may leave beside the outputs (resumable work)
    mkdir: bool = True  # the command wants an existing output folder (else it creates it)
    free: int = None  # full-disk: bytes left (default: half the clean run's pages)
    faults: tuple = FAULTS  # the classes run (the others: ``why``)
    why: str = None


def kd_nmt(fx, *argv):
    """``kd-nmt ARGV`` in this process."""
    from kd_nmt import cli

    fx.capsys.readouterr()
    argv0 = sys.argv  # (kd-nmt train/generate set it for fairseq)
    root = logging.getLogger()
    handlers = list(root.handlers)
    streams = [(h, h.stream) for h in handlers if isinstance(h, logging.StreamHandler)]
    try:
        rc = cli.main([str(a) for a in argv])
    finally:  # (setup_logging points a root handler at this test's capture: undo it)
        sys.argv = argv0
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        for handler, stream in streams:
            handler.stream = stream
    return rc, fx.capsys.readouterr().err


def kd_nmt_process(fx, *argv):
    proc = run([tool("kd-nmt"), *argv], check=False, env={"OMP_NUM_THREADS": "1"})
    return proc.returncode, proc.stderr


def script(fx, name, *argv, prog=None):
    """``python scripts/NAME.py ARGV`` in this process (``run_tool``, as its ``__main__`` does)."""
    from tool_common import run_tool

    module = importlib.import_module(name)
    prog = prog or getattr(module, "PROG", name)
    fx.capsys.readouterr()
    rc = run_tool(prog, module.main, [str(a) for a in argv])
    return rc, fx.capsys.readouterr().err


def data_tool(fx, module, *argv):
    """``python -m data.MODULE ARGV`` in this process."""
    fx.capsys.readouterr()
    rc = importlib.import_module(f"data.{module}").main([str(a) for a in argv])
    return rc, fx.capsys.readouterr().err


def _relabel(fx, out):
    return kd_nmt(fx, "relabel", "--teacher", fx.teacher, "--data-bin", fx.data_bin, "--input", fx.src,
                  "--output", out / "kd.en", "--nbest-output", out / "kd.nbest.jsonl", "--beam", "1",
                  "--chunk-size", "4", "--threads", "1", "--no-progress")


def _binarize(fx, out):
    return kd_nmt(fx, "relabel", "binarize", "--data-bin", fx.data_bin, "--source", fx.tok / "train.de",
                  "--target", fx.tok / "train.en", "--destdir", out / "bin", "--workers", "1")


def _keep_nbest(fx, out):
    return kd_nmt(fx, "relabel", "keep-nbest", "--nbest-file", fx.nbest, "--input", fx.src, "--keep-nbest", "2",
                  "--output", out / "k.en", "--output-source", out / "k.de")


def _filter(fx, out):
    return kd_nmt(fx, "filter", "--source", fx.tok / "valid.de", "--hypothesis", fx.tok / "valid.en",
                  "--output-source", out / "kept.de", "--output-target", out / "kept.en", "--drop-empty",
                  "--dedup", "--max-repeats", "3", "--no-progress")


def _cache_argv(fx, out):
    return ["cache-teacher", "--teacher", fx.teacher, "--data-bin", fx.data_bin, "--split", "valid",
            "--topk", "4", "--chunk-sentences", "20", "--out", out / "cache", "--cpu", "--no-progress"]


def _cache(fx, out):
    if fx.fault == "full-disk" and not fx.rerun:  # a memory map on a full tmpfs: not in this process
        return kd_nmt_process(fx, *_cache_argv(fx, out))
    return kd_nmt(fx, *_cache_argv(fx, out))


def _bench(fx, out):
    return kd_nmt(fx, "bench", "--checkpoint", fx.teacher, "--data-bin", fx.data_bin, "--split", "valid",
                  "--beam", "1", "--bootstrap", "0", "--max-len-b", "40", "--out", out, "--no-progress")


def _deploy(fx, out):
    return kd_nmt(fx, "deploy", "--checkpoint", fx.teacher, "--data-bin", fx.data_dir / "bin",
                  "--input", FIXTURE / "valid.de", "--reference", FIXTURE / "valid.en", "--normalize", "none",
                  "--engines", "fairseq-float32", "--beam", "1", "--latency-lines", "2", "--max-len-b", "40",
                  "--bootstrap", "0", "--buckets", "none", "--out", out, "--no-progress")


def _plot(fx, out):
    return kd_nmt(fx, "plot", "--results", fx.bench_csv, "--decode", "all", "--out", out)


def _train(fx, out):
    return kd_nmt(fx, "train", fx.data_bin, "--task", "translation", *TINY_ARCH, *TRAIN_COMMON,
                          "--max-update", "2", "--save-dir", out)


def _generate(fx, out):
    return kd_nmt(fx, "generate", fx.data_bin, "--path", fx.teacher, "--gen-subset", "valid",
                          "--beam", "1", "--cpu", "--max-len-b", "40", "--required-batch-size-multiple", "1",
                          "--results-path", out)


def _average(fx, out):
    return script(fx, "average_checkpoints", "--inputs", fx.teacher, fx.teacher2, "--out", out / "avg.pt")


def _bleu_variants(fx, out):
    return script(fx, "bleu_variants", "--hyp", FIXTURE / "valid.en", "--ref", FIXTURE / "valid.en",
                  "--json", out / "scores.json")


def _encode(fx, out):
    return script(fx, "encode_text", FIXTURE / "valid.de", out / "valid.de", "--spm", fx.spm, "--lang", "de",
                  prog="encode_text.py")


def _export(fx, out):
    return script(fx, "export_ct2", "--checkpoint", fx.teacher, "--data-bin", fx.data_bin, "--spm", fx.spm,
                  "--out", out / "ct2")


def _prepare_corpus(fx, out):
    return script(fx, "prepare_corpus", "--raw", fx.raw, "--out", out, "--vocab", "200")


def _prune(fx, out):
    return script(fx, "prune", "--checkpoint", fx.teacher, "--keep", "0.5", "--out", out)


def _ship(fx, out):
    return script(fx, "ship_checkpoint", "--checkpoints", fx.teacher, "--data", fx.data_dir, "--out", out)


def _shrink(fx, out):
    return script(fx, "shrink_teacher", "--teacher", fx.teacher, "--decoder-layers", "0", "--out", out / "s.pt")


def _learning_curve(fx, out):
    return script(fx, "learning_curve", "--data", fx.data_dir, "--run", fx.run_dir, "--splits", "valid",
                  "--beam", "1", "--threads", "1", "--out", out / "curve")


def _gpu_check_report(fx, out):
    """gpu_check.py's writers (its run needs CUDA): the work folder and the JSON report."""
    import gpu_check

    def main(_argv):
        gpu_check.prepare_work(out / "work", out / "report.json")
        gpu_check.write_report(out / "report.json", {"passed": True, "steps": [{"name": "x" * 5000}]})

    from tool_common import run_tool

    fx.capsys.readouterr()
    rc = run_tool(gpu_check.PROG, main, [])
    return rc, fx.capsys.readouterr().err


def _prepare(fx, out):
    return data_tool(fx, "prepare", "--raw", fx.raw, "--out", out, "--vocab", "200")


def _multi30k(fx, out):
    return data_tool(fx, "build_multi30k", "--out", out / "multi30k")


def _noise(fx, out):
    return data_tool(fx, "noise", "--kind", "dropout", "--rate", "0.1", FIXTURE / "valid.de", out / "noisy.de")


CASES = {
    "relabel": Case(_relabel, file="kd.en", allowed=("kd.en.chunks/*",)),
    "relabel-binarize": Case(_binarize, volatile=("bin/preprocess.log",)),
    "relabel-keep-nbest": Case(_keep_nbest, file="k.de"),
    "filter": Case(_filter, file="kept.en.counts.json"),
    "cache-teacher": Case(_cache, file="cache/meta.json", volatile=("cache/meta.json",),
                          allowed=("cache/chunks/*", "cache/*.npy", "cache/*.txt")),
    "bench": Case(_bench, file="bench.md", volatile=("bench.*",)),
    "deploy": Case(_deploy, file="reference.txt", volatile=("deploy*", "deploy_work/*"),
                   allowed=("deploy_work/*", "*.hyp")),
    "plot": Case(_plot, file="bleu_vs_params.png"),
    "train": Case(_train, file="checkpoint_last.pt", volatile=("*.pt",), mkdir=False),
    "generate": Case(_generate, file="generate-valid.txt", volatile=("generate-*.txt",), mkdir=False),
    "average_checkpoints": Case(_average, prog="average_checkpoints", file="avg.pt"),
    "bleu_variants": Case(_bleu_variants, prog="bleu_variants", file="scores.json"),
    "encode_text": Case(_encode, prog="encode_text.py", file="valid.de"),
    "export_ct2": Case(_export, prog="export_ct2", volatile=("ct2/MANIFEST.json",)),
    "prepare_corpus": Case(_prepare_corpus, prog="prepare_corpus", file="prepare.json",
                           volatile=("prepare.json", "bin/preprocess.log", "spm.model"),
                           allowed=("prepare.start.json", "raw/*", "tok/*", "spm.*")),
    "prune": Case(_prune, prog="prune", file="prune.json", volatile=("prune.json",), allowed=("keep0.5.pt",)),
    "ship_checkpoint": Case(_ship, prog="ship_checkpoint", file="MANIFEST.json", volatile=("MANIFEST.json", "model.pt"),
                            allowed=("model.pt", "*.txt", "spm.model")),
    "shrink_teacher": Case(_shrink, prog="shrink_teacher", file="s.pt"),
    "learning_curve": Case(_learning_curve, prog="learning_curve", file="curve.png", allowed=("curve.tsv",)),
    "gpu_check": Case(_gpu_check_report, prog="gpu_check", file="report.json", allowed=("work/*",)),
    "data.prepare": Case(_prepare, prog="prepare", faults=("read-only", "file-for-folder"),
                         why="prepare_corpus runs the same data.prepare.prepare(): its case has every fault"),
    "data.build_multi30k": Case(_multi30k, prog="build_multi30k", file="multi30k/MANIFEST.json",
                                volatile=("multi30k/MANIFEST.json",)),
    "data.noise": Case(_noise, prog="noise", file="noisy.de"),
}


@pytest.fixture(scope="module")
def inputs(tokenized, data_bin, teacher_checkpoint, tmp_path_factory):
    """The smallest inputs of every case, made once."""
    root = tmp_path_factory.mktemp("fault-inputs")
    src = root / "in.de"
    src.write_text("".join((tokenized / "test.de").read_text(encoding="utf-8").splitlines(True)[:10]),
                   encoding="utf-8")
    lines = src.read_text(encoding="utf-8").splitlines()
    nbest = root / "nbest.jsonl"
    nbest.write_text("".join(json.dumps({"id": i, "hypotheses": [{"tokens": line, "score": -1.0},
                                                                  {"tokens": line[::-1], "score": -2.0}]}) + "\n"
                             for i, line in enumerate(lines)), encoding="utf-8")
    teacher2 = root / "teacher2.pt"
    shutil.copy(teacher_checkpoint, teacher2)
    data = root / "data"  # data/prepare.py's layout: bin/, spm.model, tok/, raw/
    data.mkdir()
    shutil.copytree(data_bin, data / "bin")
    shutil.copy(tokenized / "spm.model", data / "spm.model")
    shutil.copytree(tokenized, data / "tok")
    shutil.copytree(FIXTURE, data / "raw")
    run_dir = root / "run"  # a training run with one interval checkpoint
    run_dir.mkdir()
    shutil.copy(teacher_checkpoint, run_dir / "checkpoint_1_150.pt")
    raw = root / "raw"  # a corpus for the corpus builders: 100 pairs
    raw.mkdir()
    for split, n in (("train", 100), ("valid", 20)):
        for lang in ("de", "en"):
            text = (FIXTURE / f"{split}.{lang}").read_text(encoding="utf-8").splitlines(True)[:n]
            (raw / f"{split}.{lang}").write_text("".join(text), encoding="utf-8")
    return SimpleNamespace(teacher=teacher_checkpoint, teacher2=teacher2, data_bin=data_bin, tok=tokenized,
                           spm=tokenized / "spm.model", src=src, nbest=nbest, data_dir=data, run_dir=run_dir,
                           raw=raw, bench_csv=None, root=root)


_REFERENCES = {}


@pytest.fixture
def fx(inputs, capsys, tmp_path_factory):
    """The inputs, ``capsys`` and the clean run of a case (made once per process)."""
    fx = SimpleNamespace(**vars(inputs), capsys=capsys, fault=None, rerun=False)
    if fx.bench_csv is None:
        fx.bench_csv = clean_run(fx, "bench", tmp_path_factory)[1] / "bench.csv"
        inputs.bench_csv = fx.bench_csv
    return fx


def clean_run(fx, name, tmp_path_factory):
    """``(outputs, folder)`` of an uninterrupted run of case ``name``."""
    if name not in _REFERENCES:
        case = CASES[name]
        out = tmp_path_factory.mktemp(f"clean-{name}") / "out"
        if case.mkdir:
            out.mkdir()
        rc, err = case.run(fx, out)
        assert rc == 0, err[-3000:]
        _REFERENCES[name] = (snapshot(out), out)
    return _REFERENCES[name]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", list(CASES))
def test_fault(name, fault, fx, tmp_path, tmp_path_factory):
    case = CASES[name]
    if fault not in case.faults:
        pytest.skip(case.why)
    if fault == "folder-for-file" and case.file is None:
        pytest.skip(f"{name}'s output is one folder: file-for-folder is its case")
    fx.fault = fault
    out = tmp_path / "out"

    def reference():
        return clean_run(fx, name, tmp_path_factory)[0]

    if fault == "full-disk":
        free = case.free if case.free is not None else pages(reference()) // 2 * PAGE
        assert free < pages(reference()) * PAGE
        with full_disk(out, free):
            _fault_then_rerun(case, fx, out, reference, fault, lambda: remount(out, "size=256m"))
    elif fault == "read-only":
        with tmpfs(out, "ro,size=1m"):
            _fault_then_rerun(case, fx, out, reference, fault, lambda: remount(out, "rw"))
    elif fault == "file-for-folder":
        out.write_text("a file, not a folder\n")
        rc, err = case.run(fx, out)
        assert rc == 2, err[-3000:]
        line = error_line(err, case.prog)
        assert re.search(SAYS[fault], line) and str(out) in line, line
        assert out.read_text() == "a file, not a folder\n" and os.listdir(tmp_path) == ["out"]
    else:
        (out / case.file).mkdir(parents=True)
        (out / case.file / "keep").write_text("someone's file\n")
        rc, err = case.run(fx, out)
        assert rc == 2, err[-3000:]
        line = error_line(err, case.prog)
        assert re.search(SAYS[fault], line) and str(out) in line, line
        assert (out / case.file / "keep").read_text() == "someone's file\n"
        left = check_left(out, lambda: {**reference(), f"{case.file}/keep": b"someone's file\n"}, case.volatile,
                          case.allowed)
        shutil.rmtree(out / case.file)
        if len(left) == 1:
            return  # nothing else was written: a rerun is a clean run
        fx.rerun = True
        rc, err = case.run(fx, out)
        assert rc == 0, err[-3000:]
        same_as(out, reference(), case.volatile)


def _fault_then_rerun(case, fx, out, reference, fault, remove_fault):
    folder = out if case.mkdir else out / "sub"
    rc, err = case.run(fx, folder)
    assert rc == 2, err[-3000:]
    line = error_line(err, case.prog)
    assert re.search(SAYS[fault], line) and str(out) in line, line
    left = check_left(folder, reference, case.volatile, case.allowed)
    if not left:
        return  # nothing was written: a rerun is a clean run
    remove_fault()
    fx.rerun = True
    rc, err = case.run(fx, folder)
    assert rc == 0, err[-3000:]
    same_as(folder, reference(), case.volatile)


# --- truncated inputs -------------------------------------------------------------------------
def _cut(path, dest):
    """``dest``: the first half of ``path``'s bytes."""
    data = path.read_bytes()
    dest.write_bytes(data[:len(data) // 2])
    return dest


def _train_on_cache(fx, out):
    return kd_nmt(fx, "train", fx.data_bin, "--task", "kd_translation", "--teacher-cache", fx.cache,
                  "--train-subset", "valid", "--criterion", "word_kd", "--kd-alpha", "0.5", *TINY_ARCH,
                  *TRAIN_COMMON, "--max-update", "1", "--save-dir", out)


TRUNCATED = [  # (case, the input cut to half its bytes)
    ("relabel", "checkpoint"), ("bench", "checkpoint"), ("bench", "valid.de-en.en.bin"),
    ("bench", "valid.de-en.de.idx"), ("cache-teacher", "checkpoint"), ("cache-teacher", "valid.de-en.en.bin"),
    ("cache-teacher", "valid.de-en.en.idx"), ("train", "train.de-en.de.bin"), ("train", "train.de-en.en.idx"),
    ("train-on-cache", "cache/chunks/00001/logp.npy"), ("generate", "checkpoint"),
    ("generate", "valid.de-en.de.bin"), ("relabel-binarize", "train.de-en.de.idx"), ("deploy", "checkpoint"),
    ("average_checkpoints", "checkpoint"), ("prune", "checkpoint"), ("shrink_teacher", "checkpoint"),
    ("ship_checkpoint", "checkpoint"), ("export_ct2", "checkpoint"), ("learning_curve", "checkpoint"),
]


@pytest.mark.parametrize("name,cut", TRUNCATED, ids=[f"{n}-{c.split('/')[-1]}" for n, c in TRUNCATED])
def test_truncated_input(name, cut, fx, tmp_path, tmp_path_factory):
    """A cut-short checkpoint, data-bin file or teacher cache: one line naming it, no output."""
    if name == "train-on-cache":
        case = Case(_train_on_cache, mkdir=False)
        cache = tmp_path / "cache"
        shutil.copytree(clean_run(fx, "cache-teacher", tmp_path_factory)[1] / "cache", cache)
        damaged = _cut(tmp_path / cut, tmp_path / cut)
        fx.cache = cache
    else:
        case = CASES[name]
        if cut == "checkpoint":
            damaged = _cut(fx.teacher, tmp_path / "teacher.pt")
            fx.teacher = fx.teacher2 = damaged
            if name == "learning_curve":
                fx.run_dir = tmp_path / "run"
                fx.run_dir.mkdir()
                damaged = _cut(fx.teacher, fx.run_dir / "checkpoint_1_150.pt")
        else:
            original, fx.data_bin = fx.data_bin, tmp_path / "data-bin"
            shutil.copytree(original, fx.data_bin)
            damaged = _cut(fx.data_bin / cut, fx.data_bin / cut)
    out = tmp_path / "out"
    if case.mkdir:
        out.mkdir()
    rc, err = case.run(fx, out)
    assert rc == 2, err[-3000:]
    line = error_line(err, case.prog)
    assert str(damaged) in line or os.path.basename(damaged) in line, line
    assert not [name for name in snapshot(out) if not name.startswith("deploy_work/")], snapshot(out).keys()


# --- kill -9 at a chosen point, then the same command again ------------------------------------
def kill_when(cmd, done, timeout=300):
    """Start ``cmd``; SIGKILL it as soon as ``done()`` holds (it must not finish first)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while not done():
        assert proc.poll() is None, "it finished before the kill point: give it more work"
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_cache_teacher_kill_9_after_the_first_chunk_then_rerun_is_byte_identical(fx, tmp_path):
    argv = ["cache-teacher", "--teacher", fx.teacher, "--data-bin", fx.data_bin, "--split", "train",
            "--topk", "4", "--chunk-sentences", "5", "--max-tokens", "400", "--cpu", "--no-progress"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    kill_when([tool("kd-nmt"), *argv, "--out", killed], lambda: (killed / "chunks" / "00000").is_dir())
    assert not json.loads((killed / "meta.json").read_text())["complete"]
    assert 1 <= len(list((killed / "chunks").glob("[0-9]*[0-9]"))) < 80
    rc, err = kd_nmt(fx, *argv, "--out", killed)
    assert rc == 0, err[-3000:]
    rc, err = kd_nmt(fx, *argv, "--out", clean)
    assert rc == 0, err[-3000:]
    ours, theirs = snapshot(killed), snapshot(clean)
    assert sorted(ours) == sorted(theirs) and not [n for n in ours if ".tmp" in n]
    meta = [{k: v for k, v in json.loads(s["meta.json"]).items() if k != "created"}
            for s in (ours, theirs)]
    assert meta[0] == meta[1]
    assert all(ours[n] == theirs[n] for n in ours if n != "meta.json"), [n for n in ours if ours[n] != theirs[n]]


def test_train_kill_9_after_the_first_checkpoint_then_rerun_gives_the_same_weights(fx, tmp_path):
    import torch

    argv = ["train", fx.data_bin, "--task", "translation", *TINY_ARCH, *TRAIN_COMMON, "--max-update", "12",
            "--save-interval-updates", "4"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    kill_when([tool("kd-nmt"), *argv, "--save-dir", killed], lambda: (killed / "checkpoint_last.pt").exists())
    assert not (killed / "checkpoint_3_12.pt").exists() and not (killed / "checkpoint_2_12.pt").exists()
    rc, err = kd_nmt(fx, *argv, "--save-dir", killed)  # resumes from its checkpoint_last.pt
    assert rc == 0, err[-3000:]
    rc, err = kd_nmt(fx, *argv, "--save-dir", clean)
    assert rc == 0, err[-3000:]
    names = sorted(p.name for p in clean.iterdir())
    assert sorted(p.name for p in killed.iterdir()) == names
    for name in names:
        ours, theirs = (torch.load(d / name, map_location="cpu", weights_only=False)["model"] for d in (killed, clean))
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name


# --- the Debian corpus builders: a read-only package cache --------------------------------------
@pytest.mark.parametrize("module,argv", [
    ("debian_sources", []),
    ("build_corpus", ["--out", "{tmp}/corpus"]),
    ("monolingual", ["--out", "{tmp}/mono", "--corpus", str(FIXTURE)]),
])
def test_debian_builders_on_a_read_only_cache_are_one_line(module, argv, fx, tmp_path):
    """Their builds need the Debian packages (apt-get, ~10 s): the fault is their cache folder."""
    with tmpfs(tmp_path / "cache", "ro,size=64k") as cache:
        rc, err = data_tool(fx, module, *[a.format(tmp=tmp_path) for a in argv], "--cache", cache)
    assert rc == 2, err[-3000:]
    line = error_line(err, module)
    assert "Read-only file system" in line and str(cache) in line, line
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "mono").exists()
