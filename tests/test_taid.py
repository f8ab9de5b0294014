"""TAID (kd_nmt/criterions/taid.py): the schedule by hand, the target, and the criterion's use of it."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_ARCH, TRAIN_COMMON, first_batch, run, setup_in_process, tool, train_losses
from kd_nmt.criterions.taid import TAIDSchedule, interpolated_target
from kd_nmt.errors import KDNMTError
from test_selective_on_policy import assert_same, loss_and_grads


def test_the_schedule_by_hand():
    s = TAIDSchedule(steps=100, t_start=0.4, t_end=1.0, alpha=0.5, beta=0.99)
    assert s.update(10.0, step=1) == 0.4  # the first step records the loss only
    # loss 10 -> 9: relative change 0.1, momentum 0.01 * 0.1 = 0.001, sigmoid 0.50025;
    # t + alpha * 0.50025 * (1 - 0.4) = 0.550075 beats the floor 0.4 + 0.6 * 2/100 = 0.412
    m = 0.01 * 0.1
    assert s.update(9.0, step=2) == pytest.approx(0.4 + 0.5 / (1 + math.exp(-m)) * 0.6, abs=1e-12)
    slow = TAIDSchedule(steps=100, alpha=5e-4)  # the paper's alpha: the linear floor rules
    slow.update(10.0, 1)
    assert slow.update(9.0, 50) == pytest.approx(0.4 + 0.6 * 0.5)
    assert slow.update(9.0, 200) == 1.0  # capped at t_end
    resumed = TAIDSchedule(steps=100, alpha=0.5)
    resumed.load_state_dict(s.state_dict())
    assert resumed.update(8.0, 3) == s.update(8.0, 3)


def test_the_target_interpolates_in_logit_space_without_student_gradient():
    student = torch.randn(2, 3, 7, requires_grad=True)
    teacher = torch.randn(2, 3, 7).log_softmax(-1)
    assert torch.equal(interpolated_target(student, teacher, 1.0), teacher)
    assert torch.equal(interpolated_target(student, teacher, 0.0), student.detach())
    mid = interpolated_target(student, teacher, 0.4)
    assert not mid.requires_grad
    assert torch.allclose(mid, 0.6 * student.detach() + 0.4 * teacher, atol=1e-6)


def kd_args(teacher, *extra):
    return ["--task", "kd_translation", "--teacher-path", teacher, "--criterion", "word_kd",
            "--label-smoothing", "0.1", "--kd-alpha", "0.5", *map(str, extra)]


def test_at_t_1_taid_is_word_kd_and_below_it_the_target_moves(data_bin, teacher_checkpoint):
    _, task, model, plain = setup_in_process(data_bin, kd_args(teacher_checkpoint))
    _, taid_task, _, taid = setup_in_process(data_bin, kd_args(teacher_checkpoint, "--kd-taid", "--kd-taid-steps", 10))
    sample = first_batch(task, "train")
    model.train()
    taid.taid.t = 1.0
    assert_same(loss_and_grads(taid, model, sample), loss_and_grads(plain, model, sample))
    # t = 0.4: the KD term is FKL(softmax(0.6 s + 0.4 t) || softmax(s)), by autograd here
    taid.taid.t, taid.taid.prev_loss = 0.4, math.inf
    loss, _, log = taid(model, sample)
    logits = model(**sample["net_input"])[0].detach()
    teacher, _ = taid_task.teacher.targets(sample, like=logits)
    target = sample["target"]
    real = target.ne(task.target_dictionary.pad())
    p = F.softmax(0.6 * logits + 0.4 * teacher.scores, -1)
    hand = (p * (p.log() - F.log_softmax(logits, -1))).sum(-1)[real].sum()
    assert log["kd_loss"].item() == pytest.approx(hand.item(), rel=1e-4)
    assert taid.taid.prev_loss == pytest.approx(hand.item() / int(sample["ntokens"]), rel=1e-4)
    assert log["taid_t_sum"] == 0.4 and log["taid_n"] == 1


def test_taid_needs_its_steps_and_a_teacher_with_scores(data_bin, teacher_checkpoint):
    with pytest.raises(KDNMTError, match="--kd-taid needs --kd-taid-steps N"):
        setup_in_process(data_bin, kd_args(teacher_checkpoint, "--kd-taid"))
    with pytest.raises(KDNMTError, match=r"--kd-taid-start 1.0 must be in \[0, 1\)"):
        setup_in_process(data_bin, kd_args(teacher_checkpoint, "--kd-taid", "--kd-taid-steps", 5,
                                           "--kd-taid-start", 1.0))


def test_taid_trains_logs_t_and_resumes_its_schedule(data_bin, teacher_checkpoint, tmp_path):
    def train(save, updates):
        return run([tool("kd-nmt"), "train", data_bin, *TINY_ARCH, *TRAIN_COMMON,
                    *kd_args(teacher_checkpoint, "--kd-taid", "--kd-taid-steps", 6, "--kd-taid-alpha", 0.3),
                    "--max-update", updates, "--save-dir", save])

    straight = train(tmp_path / "straight", 6)
    ts = train_losses(straight.stdout + straight.stderr, key="taid_t")
    assert len(ts) == 6 and ts[0] == pytest.approx(0.4) and all(b >= a for a, b in zip(ts, ts[1:]))
    assert ts[-1] > 0.4 + 0.6 * 4 / 6 - 1e-4  # at least the linear floor
    train(tmp_path / "resumed", 3)
    resumed = train(tmp_path / "resumed", 6)
    assert train_losses(resumed.stdout + resumed.stderr, key="taid_t") == pytest.approx(ts[3:], abs=2e-4)
