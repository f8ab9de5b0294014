"""End to end on the real de-en fixture: fairseq-train / kd-nmt train with the plugin, the
student checkpoints stock fairseq and CTranslate2 load, and two-process distributed training."""
import math
import os
import re

import pytest
import torch

from helpers import PLUGIN, TINY_ARCH, TRAIN_COMMON, run, setup_in_process, tool, train_losses
from kd_nmt.divergences import DIVERGENCES

STUDENT_UPDATES = "30"


def train_student(data_bin, teacher, save_dir, *extra, launcher=None, trainer=None):
    cmd = trainer or [tool("fairseq-train"), "--user-dir", PLUGIN]
    return run([
        *(launcher or []), *cmd, data_bin, *TINY_ARCH, *TRAIN_COMMON,
        "--task", "kd_translation", "--teacher-path", teacher,
        "--criterion", "word_kd", "--label-smoothing", "0.1",
        "--max-update", STUDENT_UPDATES, "--save-dir", save_dir, *map(str, extra),
    ])


@pytest.fixture(scope="module")
def fkl_student(data_bin, teacher_checkpoint, tmp_path_factory):
    save = tmp_path_factory.mktemp("student-fkl")
    proc = train_student(data_bin, teacher_checkpoint, save, "--kd-divergence", "fkl")
    return save, proc


def test_fairseq_train_with_plugin_lowers_the_loss(fkl_student):
    log = fkl_student[1].stdout + fkl_student[1].stderr
    losses = train_losses(log)
    assert len(losses) == int(STUDENT_UPDATES)
    assert all(math.isfinite(x) for x in losses)
    # noisy per-batch losses: compare the means of the first and last five updates
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses
    assert len(train_losses(log, key="kd_loss")) == int(STUDENT_UPDATES)
    assert train_losses(log, key="teacher_nll_loss")


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_every_divergence_trains_a_student(data_bin, teacher_checkpoint, name):
    """The real model, task, criterion and batches, trained in-process (fast) for 20 updates."""
    _, task, model, criterion = setup_in_process(
        data_bin, ["--task", "kd_translation", "--teacher-path", teacher_checkpoint,
                   "--criterion", "word_kd", "--kd-divergence", name, "--kd-temperature", "2",
                   "--kd-alpha", "0.7", "--label-smoothing", "0.1", "--max-tokens", "2000"],
    )
    task.load_dataset("train")
    batches = list(task.get_batch_iterator(task.dataset("train"), max_tokens=2000, seed=1)
                   .next_epoch_itr(shuffle=True))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses, kd_losses = [], []
    for step in range(20):
        sample = batches[step % len(batches)]
        loss, sample_size, log = criterion(model, sample)
        optimizer.zero_grad()
        (loss / sample_size).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert all(torch.isfinite(g).all() for g in grads)
        optimizer.step()
        losses.append(loss.item() / sample_size)
        kd_losses.append(log["kd_loss"].item() / sample_size)
    assert all(math.isfinite(x) for x in losses + kd_losses)
    assert sum(losses[-4:]) < sum(losses[:4]), losses
    assert sum(kd_losses[-4:]) < sum(kd_losses[:4]), kd_losses


def test_student_checkpoint_is_plain_translation(fkl_student, teacher_checkpoint):
    from kd_nmt.checkpoint import load_checkpoint

    state = load_checkpoint(str(fkl_student[0] / "checkpoint_last.pt"))
    assert state["cfg"]["task"]["_name"] == "translation"
    assert "teacher_path" not in state["cfg"]["task"]
    assert state["cfg"]["model"].task == "translation"
    assert not hasattr(state["cfg"]["model"], "teacher_path")
    assert state["extra_state"]["kd_nmt"]["teacher_path"] == str(teacher_checkpoint)
    # only the student's own weights: same keys and shapes as a fresh tiny transformer
    teacher_state = load_checkpoint(str(teacher_checkpoint))
    assert state["model"].keys() == teacher_state["model"].keys()
    assert not any("teacher" in k for k in state["model"])
    n_student = sum(v.numel() for v in state["model"].values())
    n_teacher = sum(v.numel() for v in teacher_state["model"].values())
    assert n_student == n_teacher  # same tiny arch: nothing extra was saved
    assert state["criterion"] is None


def test_stock_fairseq_generate_and_ct2_load_the_student(fkl_student, data_bin, tmp_path):
    ckpt = fkl_student[0] / "checkpoint_last.pt"
    # stock fairseq 0.12 on torch >= 2.6 needs this variable for ANY checkpoint (its own too);
    # no --user-dir: the plugin is not imported, the checkpoint must be plain fairseq.
    stock = run(
        [tool("fairseq-generate"), data_bin, "--path", ckpt, "--beam", "2", "--cpu", "--gen-subset", "valid"],
        env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
    )
    assert "Translated" in stock.stderr and stock.stdout.count("\nH-") + stock.stdout.startswith("H-") > 0
    assert "kd_nmt" not in stock.stderr
    out = tmp_path / "ct2"
    run([
        tool("ct2-fairseq-converter"), "--model_path", ckpt, "--data_dir", data_bin,
        "--output_dir", out, "--unsafe_deserialization",
    ])
    assert (out / "model.bin").stat().st_size > 0


def test_generate_with_plugin_needs_no_env_variable(fkl_student, data_bin):
    ckpt = fkl_student[0] / "checkpoint_last.pt"
    proc = run([tool("fairseq-generate"), data_bin, "--path", ckpt, "--beam", "2", "--cpu",
                "--gen-subset", "valid", "--user-dir", PLUGIN])
    n_hyps = sum(line.startswith("H-") for line in proc.stdout.splitlines())
    # stock fairseq-generate itself skips a few long fixture sentences (that is why kd-nmt
    # relabel/bench exist); here we only check the checkpoint loads and decodes
    assert n_hyps >= 50 and f"Translated {n_hyps} sentences" in proc.stderr
    proc = run([tool("kd-nmt"), "generate", data_bin, "--path", ckpt, "--beam", "1", "--cpu", "--gen-subset", "valid"])
    assert sum(line.startswith("H-") for line in proc.stdout.splitlines()) == n_hyps


def test_kd_nmt_train_needs_no_user_dir_and_resumes(data_bin, teacher_checkpoint, tmp_path):
    # a plugin architecture (registered only with the plugin): resume and stock generate work
    arch = ["--arch", "transformer_kd_mini"]
    proc = train_student(data_bin, teacher_checkpoint, tmp_path, "--max-update", "4", *arch,
                         trainer=[tool("kd-nmt"), "train"])
    assert len(train_losses(proc.stdout + proc.stderr)) == 4
    # resume from checkpoint_last.pt (written by a torch >= 2.6 process, read back without env vars)
    proc = train_student(data_bin, teacher_checkpoint, tmp_path, "--max-update", "6", *arch,
                         trainer=[tool("kd-nmt"), "train"])
    log = proc.stdout + proc.stderr
    assert "Loaded checkpoint" in log and "@ 4 updates" in log
    assert len(train_losses(log)) == 2  # updates 5 and 6 only
    # saved as a plain "transformer" (stock fairseq does not know transformer_kd_mini)
    state = torch.load(tmp_path / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["cfg"]["model"].arch == "transformer"
    assert state["extra_state"]["kd_nmt"]["arch"] == "transformer_kd_mini"
    stock = run([tool("fairseq-generate"), data_bin, "--path", tmp_path / "checkpoint_last.pt",
                 "--beam", "1", "--cpu", "--gen-subset", "valid", "--max-sentences", "8"],
                env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert "Translated" in stock.stderr


@pytest.mark.parametrize("trainer,prefix", [
    (["kd-nmt", "train"], "kd-nmt: error:"),
    (["fairseq-train", "--user-dir", PLUGIN], "kd_nmt: error:"),
])
def test_bad_teacher_is_one_line(data_bin, tmp_path, trainer, prefix):
    proc = run([tool(trainer[0]), *trainer[1:], data_bin, *TINY_ARCH, "--task", "kd_translation",
                "--teacher-path", tmp_path / "missing.pt", "--criterion", "word_kd", "--cpu",
                "--max-tokens", "2000", "--save-dir", tmp_path], check=False)
    assert proc.returncode != 0
    assert f"{prefix} checkpoint not found: '{tmp_path / 'missing.pt'}'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("world_size_flag", [True, False], ids=["world-size-flag", "no-world-size-flag"])
def test_distributed_two_processes_same_loss(data_bin, teacher_checkpoint, tmp_path, world_size_flag):
    # torchrun starts the two ranks and fairseq reads RANK/WORLD_SIZE from its environment
    # (stock fairseq 0.12 dies there with rank % cuda.device_count() == rank % 0; the plugin's
    # kd_nmt.distributed fixes it). Without --distributed-world-size, stock fairseq on a CPU
    # defaults to a world size of 1, ignores torchrun's and trains two independent runs into
    # one --save-dir; the plugin takes the world size from torchrun, as fairseq does on GPUs.
    # ddp_worker.py is the real fairseq-train plus a per-rank report (fairseq itself logs on
    # rank 0 only).
    port = "29533" if world_size_flag else "29534"
    launcher = [tool("torchrun"), "--nproc_per_node", "2", "--master_port", port]
    worker = [os.path.join(os.path.dirname(__file__), "ddp_worker.py"), "--user-dir", PLUGIN]
    flag = ["--distributed-world-size", "2"] if world_size_flag else []
    proc = train_student(
        data_bin, teacher_checkpoint, tmp_path,
        "--max-update", "5", *flag, "--distributed-backend", "gloo",
        launcher=launcher, trainer=worker,
    )
    # the two ranks share stdout: their report lines may interleave
    reports = sorted(re.findall(r"RANK (\d+) LOSS (\S+?) CHECKSUM (-?[0-9.]+\d)", proc.stdout))
    assert [r[0] for r in reports] == ["0", "1"], proc.stdout
    (_, loss0, sum0), (_, loss1, sum1) = reports
    assert loss0 == loss1 and math.isfinite(float(loss0))
    assert sum0 == sum1  # DDP kept the two replicas identical
    log = proc.stdout + proc.stderr
    assert "distributed init (rank 1)" in log
    assert "'distributed_world_size': 2" in log and "'distributed_world_size': 1" not in log


@pytest.mark.parametrize("extra,metric", [
    (["--kd-select", "global", "--kd-select-rate", "0.5", "--kd-select-queue", "3000"], "kd_selected"),
    (["--kd-on-policy", "0.5", "--kd-on-policy-max-len-b", "5"], "on_policy"),
], ids=["select-global", "on-policy"])
def test_distributed_selective_and_on_policy_kd(data_bin, teacher_checkpoint, tmp_path, extra, metric):
    # two torchrun ranks: the global selection queue is per rank (no collective in the forward),
    # on-policy rows are drawn and decoded per rank; DDP still keeps the replicas identical and
    # the logged fraction is over both ranks' tokens / sentences
    port = "29535" if metric == "kd_selected" else "29536"
    launcher = [tool("torchrun"), "--nproc_per_node", "2", "--master_port", port]
    worker = [os.path.join(os.path.dirname(__file__), "ddp_worker.py"), "--user-dir", PLUGIN]
    proc = train_student(
        data_bin, teacher_checkpoint, tmp_path, "--max-update", "3", "--distributed-backend", "gloo",
        *extra, launcher=launcher, trainer=worker,
    )
    reports = sorted(re.findall(r"RANK (\d+) LOSS (\S+?) CHECKSUM (-?[0-9.]+\d)", proc.stdout))
    assert [r[0] for r in reports] == ["0", "1"], proc.stdout
    (_, loss0, sum0), (_, loss1, sum1) = reports
    assert loss0 == loss1 and math.isfinite(float(loss0)) and sum0 == sum1
    fractions = train_losses(proc.stdout + proc.stderr, key=metric)
    assert len(fractions) == 3 and all(0 < f < 1 for f in fractions), fractions
    if metric == "kd_selected":  # rank 0's queue is in the checkpoint
        state = torch.load(tmp_path / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        assert state["extra_state"]["kd_nmt_criterion"]["select_queue"]["values"].numel() > 0


def test_distributed_world_size_spawns_cpu_processes(data_bin, teacher_checkpoint, tmp_path):
    # without a launcher, stock fairseq spawns min(cuda.device_count(), 2) = 0 processes on a
    # CPU machine and exits 0 having trained nothing; with the plugin it spawns two gloo ranks
    proc = train_student(
        data_bin, teacher_checkpoint, tmp_path,
        "--max-update", "5", "--distributed-world-size", "2", "--distributed-backend", "gloo",
    )
    log = proc.stdout + proc.stderr
    assert "spawning 2 CPU processes" in log
    assert "distributed init (rank 1)" in log
    assert len(train_losses(log)) == 5  # rank 0 logged every update
    assert (tmp_path / "checkpoint_last.pt").is_file()
