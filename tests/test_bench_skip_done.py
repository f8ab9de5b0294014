"""kd-nmt bench --skip-done: a finished bench of the same command is skipped; a changed command
or a checkpoint newer than the bench is benched again (kd_nmt/bench/done.py)."""
import json
import os
import shutil

import pytest

from kd_nmt.bench.done import finished, recorded_command


def write_bench(out, command):
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps({"command": command}), encoding="utf-8")
    (out / "bench.md").write_text("| table |\n", encoding="utf-8")


def test_recorded_command_leaves_out_the_flag():
    assert recorded_command(["--checkpoint", "a.pt", "--skip-done", "--out", "o"]) == \
        ["kd-nmt", "bench", "--checkpoint", "a.pt", "--out", "o"]


def test_same_command_and_older_checkpoints_is_done(tmp_path):
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"x")
    os.utime(ckpt, (1_000_000, 1_000_000))
    command = recorded_command(["--checkpoint", str(ckpt)])
    write_bench(tmp_path / "out", command)
    assert finished(str(tmp_path / "out"), command, [str(ckpt)]) == "the same command, no checkpoint changed since"


def test_another_command_a_newer_checkpoint_or_a_partial_bench_is_not_done(tmp_path):
    ckpt, out = tmp_path / "a.pt", tmp_path / "out"
    ckpt.write_bytes(b"x")
    command = recorded_command(["--checkpoint", str(ckpt), "--names", "baseline"])
    write_bench(out, command)
    os.utime(ckpt, (1_000_000, 1_000_000))
    assert finished(str(out), command, [str(ckpt)])
    # the grid gained a method: another command
    assert finished(str(out), command + ["seq_kd"], [str(ckpt)]) is None
    # the student trained on after its bench
    later = os.path.getmtime(out / "bench.json") + 10
    os.utime(ckpt, (later, later))
    assert finished(str(out), command, [str(ckpt)]) is None
    os.utime(ckpt, (1_000_000, 1_000_000))
    # no bench.md (published last: the bench did not finish) or a bench.json cut short
    (out / "bench.md").unlink()
    assert finished(str(out), command, [str(ckpt)]) is None
    write_bench(out, command)
    (out / "bench.json").write_text('{"command": ["kd-nmt", "be', encoding="utf-8")
    assert finished(str(out), command, [str(ckpt)]) is None


@pytest.mark.slow
def test_bench_twice_benches_once_and_a_new_checkpoint_again(capsys, teacher_checkpoint, data_bin, tmp_path):
    from kd_nmt.cli import main

    ckpt = tmp_path / "teacher.pt"
    shutil.copy(teacher_checkpoint, ckpt)
    out = tmp_path / "bench"
    argv = ["bench", "--checkpoint", str(ckpt), "--data-bin", str(data_bin), "--split", "test", "--beam", "2",
            "--no-greedy", "--bootstrap", "0", "--buckets", "none", "--no-progress", "--max-len-b", "40",
            "--out", str(out), "--skip-done"]
    assert main(argv) == 0
    written = os.path.getmtime(out / "bench.json")
    assert json.loads((out / "bench.json").read_text())["command"] == ["kd-nmt", *argv[:-1]]
    capsys.readouterr()
    assert main(argv) == 0
    assert f"kd-nmt bench: skip {out} (done: the same command" in capsys.readouterr().err
    assert os.path.getmtime(out / "bench.json") == written
    os.utime(ckpt, (written + 10, written + 10))  # the checkpoint changed after the bench
    assert main(argv) == 0
    assert "skip" not in capsys.readouterr().err and os.path.getmtime(out / "bench.json") > written
