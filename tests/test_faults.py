"""Faults lose nothing (issue: 'Faults lose nothing'): bad values refused at parse time, inputs
normalised or refused, outputs whole or absent. Each test here failed before its fix."""
import subprocess
import sys

import pytest

from helpers import setup_in_process, tool
from kd_nmt.errors import KDNMTError
from test_filter import corpus  # noqa: F401  (a fixture: the filter's planted-fault corpus)


def kd_args(teacher, *extra):
    return ["--task", "kd_translation", "--teacher-path", teacher, "--criterion", "word_kd",
            "--label-smoothing", "0.1", *map(str, extra)]


# --- NaN and infinity -------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["relabel", "--teacher", "t.pt", "--input", "in", "--output", "out", "--lenpen", "nan"],
    ["bench", "--checkpoint", "t.pt", "--max-len-a", "inf"],
])
def test_nan_and_inf_options_are_refused_at_parse_time(tmp_path, command):
    proc = subprocess.run([tool("kd-nmt"), *command], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    option, value = command[-2], command[-1]
    assert proc.stderr.strip() == (f"kd-nmt: error: {option} must be a finite number, got '{value}' "
                                   f"(see `kd-nmt {command[0]} --help`)")


@pytest.mark.parametrize("option,value", [("--kd-temperature", "inf"), ("--kd-alpha", "nan")])
def test_nan_and_inf_criterion_options_are_one_error(data_bin, teacher_checkpoint, option, value):
    with pytest.raises(KDNMTError) as err:
        setup_in_process(data_bin, kd_args(teacher_checkpoint, option, value))
    assert str(err.value) == f"{option} must be a finite number, got {float(value)}"


def test_the_python_api_still_takes_finite_floats():
    from kd_nmt.common.args import ArgumentParser

    p = ArgumentParser(prog="x")
    p.add_argument("--lenpen", type=float)
    assert p.parse_args(["--lenpen", "1e3"]).lenpen == 1000.0
    with pytest.raises(KDNMTError, match="--lenpen must be a finite number, got '-inf'"):
        p.parse_args(["--lenpen=-inf"])
    assert p.parse_args(["--lenpen", str(sys.float_info.max)]).lenpen == sys.float_info.max  # finite


# --- byte-order marks -------------------------------------------------------------------------
def test_a_bom_is_removed_and_said_by_every_reader(tmp_path, capsys):
    from data.prepare import read_lines as prepare_read_lines
    from kd_nmt.common.lines import TextFile

    path = tmp_path / "ref.en"
    path.write_bytes("\ufeffA man .\r\nTwo dogs .\n".encode("utf-8"))
    assert TextFile(str(path), "reference").lines == ["A man .", "Two dogs ."]
    assert capsys.readouterr().err == f"kd-nmt: note: {path}: removed the UTF-8 byte-order mark at its start\n"
    assert prepare_read_lines(path) == ["A man .", "Two dogs ."]
    assert "removed the UTF-8 byte-order mark" in capsys.readouterr().err
    path.write_bytes(b"A man .\n")
    assert TextFile(str(path)).lines == ["A man ."] and capsys.readouterr().err == ""


# --- prepare_corpus into an OUT made from other inputs ---------------------------------------
def test_prepare_corpus_refuses_an_out_made_from_other_inputs(tmp_path):
    from helpers import FIXTURE, REPO

    raw = tmp_path / "raw"
    raw.mkdir()
    for split in ("train", "valid"):
        for lang in ("de", "en"):
            (raw / f"{split}.{lang}").write_text((FIXTURE / f"{split}.{lang}").read_text())

    def prepare(*extra):
        return subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_corpus.py"), "--raw", str(raw),
                               "--out", str(tmp_path / "out"), "--vocab", "300", *extra],
                              capture_output=True, text=True)

    first = prepare("--max-train", "200")
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    again = prepare("--max-train", "100")  # exited 0 before and printed "train 100" over the old 200
    assert again.returncode == 2
    assert again.stderr.strip().endswith("out was prepared from other inputs or options (max_train 200 -> 100); "
                                         "its steps would be skipped and the old corpus kept: delete "
                                         f"{tmp_path / 'out'} or choose another --out")
    (raw / "valid.en").write_text((raw / "valid.en").read_text().replace("the", "a", 1))
    changed = prepare("--max-train", "200")
    assert changed.returncode == 2 and "input files valid.en" in changed.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before
    (raw / "valid.en").write_text((FIXTURE / "valid.en").read_text())
    assert prepare("--max-train", "200").returncode == 0  # the same inputs: every step skipped


# --- relabel resumes verify their chunks -----------------------------------------------------
def test_relabel_redoes_a_chunk_cut_short_or_edited(capsys, tokenized, data_bin, teacher_checkpoint, tmp_path):
    from test_relabel import base_args, relabel

    out = tmp_path / "test.kd.en"
    args = [*base_args(teacher_checkpoint, data_bin, tokenized / "test.de", out),
            "--beam", "2", "--chunk-size", "10", "--keep-chunks"]
    rc, err = relabel(capsys, *args)
    assert rc == 0, err
    expected = out.read_bytes()
    chunks = tmp_path / "test.kd.en.chunks"
    first = chunks / "000001.txt"
    first.write_text("".join(first.read_text().splitlines(keepends=True)[:3]))  # 3 of its 10 lines
    second = chunks / "000002.txt"
    second.write_text(second.read_text().replace("\u2581", "\u2581x", 1))  # same lines, other text
    out.unlink()
    rc, err = relabel(capsys, *args)
    assert rc == 0, err
    assert f"chunk 1 of {chunks} is damaged (3 lines where the chunk has 10): redoing it" in err
    assert f"chunk 2 of {chunks} is damaged (its output differs from the sha256 its stats recorded)" in err
    assert "resuming: 4/6 chunks" in err
    assert out.read_bytes() == expected  # 60 aligned lines, not 53 misaligned from line 14 on


# --- checkpoints: trust only what the user named; truncated files are one line; atomic copies --
class _Plant:
    """A pickle that creates a file when unpickled with weights_only=False."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _train(data_bin, cwd, *extra):
    from helpers import TINY_ARCH, TRAIN_COMMON, run

    return run([tool("kd-nmt"), "train", data_bin, "--task", "translation", *TINY_ARCH, *TRAIN_COMMON,
                "--max-update", "2", *extra], check=False, cwd=cwd)


def test_the_implicit_restore_file_is_never_unpickled(data_bin, tmp_path):
    import torch

    marker = tmp_path / "PWNED"
    (tmp_path / "checkpoints").mkdir()
    torch.save(_Plant(marker), tmp_path / "checkpoints" / "checkpoint_last.pt")
    proc = _train(data_bin, tmp_path)  # no --save-dir, no --restore-file: fairseq's defaults
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert not marker.exists(), "the planted pickle ran"
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == ["kd-nmt: error: checkpoints/checkpoint_last.pt: fairseq's default --restore-file, a path "
                      "you did not name, is not loaded (a checkpoint is a pickle: loading it runs its code). To "
                      "resume from it, name it: --restore-file checkpoints/checkpoint_last.pt (or --save-dir "
                      "checkpoints); to start afresh, move it away or train with another --save-dir"], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_truncated_restore_file_is_one_line(data_bin, tmp_path):
    done = _train(data_bin, tmp_path, "--save-dir", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    last = tmp_path / "run" / "checkpoint_last.pt"
    last.write_bytes(last.read_bytes()[:10000])
    proc = _train(data_bin, tmp_path, "--save-dir", tmp_path / "run", "--max-update", "4")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"kd-nmt: error: cannot read checkpoint '{last}' (")
    assert "delete it to start over" in errors[0]


def test_checkpoint_copies_are_atomic(tmp_path, monkeypatch):
    from fairseq import checkpoint_utils

    from kd_nmt.checkpoint import install_fairseq_patches
    from kd_nmt.common import atomic

    install_fairseq_patches()
    src, dst = tmp_path / "checkpoint_3_30.pt", tmp_path / "checkpoint_last.pt"
    src.write_bytes(b"new" * 1000)
    dst.write_bytes(b"old")
    # the disk fills up 100 bytes into the copy (fairseq's in-place copy left those 100 bytes)
    monkeypatch.setattr(atomic, "open", _DiskBudget(100, only="checkpoint_last.pt"), raising=False)
    with pytest.raises(OSError):
        checkpoint_utils.PathManager.copy(str(src), str(dst), overwrite=True)
    assert dst.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == [src.name, dst.name]
    monkeypatch.undo()
    assert checkpoint_utils.PathManager.copy(str(src), str(dst), overwrite=True)
    assert dst.read_bytes() == src.read_bytes()


# --- outputs whole or absent on a full disk ----------------------------------------------------
class _DiskBudget:
    """``open`` for kd_nmt.common.atomic whose writes to files named ``*only*`` fail with ENOSPC
    once ``left`` bytes are written (the bytes that still fit are written first, as a real full
    disk does): the disk fills up in the middle of a group of outputs."""

    def __init__(self, left, only):
        self.left, self.only = left, only

    def __call__(self, path, mode="r", *args, **kwargs):
        import builtins

        f = builtins.open(path, mode, *args, **kwargs)
        return f if "w" not in mode or self.only not in str(path) else _Budgeted(f, self)


class _Budgeted:
    def __init__(self, f, budget):
        self.f, self.budget = f, budget

    def write(self, data):
        import errno

        size = len(data.encode("utf-8") if isinstance(data, str) else data)
        if size > self.budget.left:
            self.f.write(data[:self.budget.left])
            self.budget.left = 0
            raise OSError(errno.ENOSPC, "No space left on device", self.f.name)
        self.budget.left -= size
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_filter_on_a_full_disk_changes_nothing(corpus, tmp_path, monkeypatch, capsys):  # noqa: F811
    from kd_nmt.common import atomic
    from test_filter import _filter, _outputs

    out = _outputs(tmp_path, "kept")
    assert _filter(corpus, out, "--drop-empty") == 0
    before = _snapshot(tmp_path)
    monkeypatch.setattr(atomic, "open", _DiskBudget(100, only=".decisions.tsv"), raising=False)
    capsys.readouterr()
    assert _filter(corpus, out, "--drop-empty", "--dedup", "--max-repeats", "3") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("kd-nmt: error: ") and "No space left on device (no space left: free some" in err
    # before: the new --output-source (all lines) beside the old --output-target and a stray .tmp
    assert _snapshot(tmp_path) == before
    monkeypatch.undo()
    assert _filter(corpus, out, "--drop-empty", "--dedup", "--max-repeats", "3") == 0
    clean = _outputs(tmp_path / "clean", "kept")
    (tmp_path / "clean").mkdir()
    assert _filter(corpus, clean, "--drop-empty", "--dedup", "--max-repeats", "3") == 0
    assert out["src"].read_bytes() == clean["src"].read_bytes() != before["kept.de"]


def test_bench_on_a_full_disk_leaves_no_complete_looking_table(data_bin, teacher_checkpoint, tmp_path,
                                                               monkeypatch, capsys):
    from kd_nmt.cli import main
    from kd_nmt.common import atomic
    from test_bench import REFERENCE

    argv = ["bench", "--checkpoint", str(teacher_checkpoint), "--data-bin", str(data_bin), "--split", "test",
            "--reference", str(REFERENCE), "--beam", "2", "--no-greedy", "--bootstrap", "0",
            "--out", str(tmp_path / "out"), "--no-progress"]
    monkeypatch.setattr(atomic, "open", _DiskBudget(100, only="bench.json"), raising=False)
    assert main(argv) == 2
    assert "No space left on device" in capsys.readouterr().err
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert not {"bench.csv", "bench.md", "bench.json"} & set(left) and not any(".tmp" in n for n in left), left
    monkeypatch.undo()
    assert main(argv) == 0
    assert {"bench.csv", "bench.md", "bench.json"} <= {p.name for p in (tmp_path / "out").iterdir()}
