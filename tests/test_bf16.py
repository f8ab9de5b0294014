"""bf16 on the CPU (kd_nmt/precision.py): autocast forward, float32 weights, losses, checkpoints.

The tolerances: bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2 %); a tiny
transformer's summed loss accumulates that over a few matrix products, so bf16 and fp32 losses
agree to ~1 % and gradients point the same way (cosine > 0.99), not bit for bit.
"""
import math

import pytest
import torch

from helpers import PLUGIN, TINY_ARCH, TRAIN_COMMON, first_batch, run, setup_in_process, tool, train_losses
from kd_nmt.precision import cpu_autocast, take_over_cpu_bf16, wants_cpu_bf16

LOSS_RTOL = 0.02
GRAD_COSINE = 0.99


def _loss_and_grad(model, criterion, sample, bf16):
    model.zero_grad()
    with cpu_autocast(bf16):
        loss, sample_size, log = criterion(model, sample)
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return loss.detach(), grad, log


@pytest.mark.parametrize("kind", ["ce", "word_kd", "hybrid_kd"])
def test_bf16_loss_equals_fp32_within_tolerance(data_bin, teacher_checkpoint, tmp_path, kind):
    kd = ["--task", "kd_translation", "--teacher-path", teacher_checkpoint, "--kd-alpha", "0.5"]
    extra = {
        "ce": ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"],
        "word_kd": kd + ["--criterion", "word_kd", "--label-smoothing", "0.1"],
        "hybrid_kd": kd + ["--criterion", "hybrid_kd", "--label-smoothing", "0.1",
                           "--sentence-kd-data", data_bin],
    }[kind]
    _, task, model, criterion = setup_in_process(data_bin, extra)
    model.train()
    for m in model.modules():  # dropout off: the same function in both precisions
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    sample = first_batch(task, split="train" if kind == "hybrid_kd" else "valid")
    loss32, grad32, _ = _loss_and_grad(model, criterion, sample, bf16=False)
    loss16, grad16, log16 = _loss_and_grad(model, criterion, sample, bf16=True)
    assert loss16.dtype == torch.float32  # losses stay float32 under autocast
    assert torch.isfinite(grad16).all()
    assert math.isclose(loss16.item(), loss32.item(), rel_tol=LOSS_RTOL), (loss16, loss32)
    cosine = torch.nn.functional.cosine_similarity(grad16.double(), grad32.double(), dim=0).item()
    assert cosine > GRAD_COSINE, cosine
    # and it really ran in bf16: the result is not bit-identical to fp32
    assert loss16.item() != loss32.item()
    # parameters stayed float32 (master weights), the teacher too
    assert all(p.dtype == torch.float32 for p in model.parameters())
    teacher = getattr(task, "teacher", None)
    if teacher is not None:
        assert all(p.dtype == torch.float32 for m in teacher.models for p in m.parameters())


def test_take_over_turns_fairseq_flags_off():
    from fairseq.dataclass.configs import FairseqConfig
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(FairseqConfig)
    cfg.common.cpu, cfg.common.bf16, cfg.common.tpu = True, True, True  # as fairseq's parser sets it
    assert wants_cpu_bf16(cfg.common)
    assert take_over_cpu_bf16(cfg)
    assert (cfg.common.bf16, cfg.common.tpu, cfg.common.amp) == (False, False, False)
    cfg.common.amp = True
    assert take_over_cpu_bf16(cfg) and not cfg.common.amp
    assert not take_over_cpu_bf16(cfg)  # nothing asked any more: plain float32


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--bf16", "--amp"])
def test_bf16_training_on_cpu_saves_a_float32_checkpoint_stock_fairseq_loads(data_bin, tmp_path, flag):
    save = tmp_path / "model"
    proc = run([
        tool("kd-nmt"), "train", data_bin, *TINY_ARCH, *TRAIN_COMMON, flag,
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-update", "6", "--save-dir", save,
    ])
    log = proc.stdout + proc.stderr
    assert "bf16 on the CPU" in log
    assert "xla" not in log.lower()
    losses = train_losses(log)
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert {v.dtype for v in state["model"].values() if v.is_floating_point()} == {torch.float32}
    assert not state["cfg"]["common"]["bf16"] and not state["cfg"]["common"]["tpu"]
    # stock fairseq-generate (no --user-dir) decodes with it
    gen = run([
        tool("fairseq-generate"), data_bin, "--path", save / "checkpoint_last.pt", "--cpu",
        "--beam", "2", "--max-sentences", "8", "--gen-subset", "valid", "--max-len-b", "20",
    ], env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert gen.stdout.count("\nH-") >= 8


@pytest.mark.slow
def test_bf16_word_kd_student_trains(data_bin, teacher_checkpoint, tmp_path):
    def train(save, *precision):
        proc = run([
            tool("fairseq-train"), "--user-dir", PLUGIN, data_bin, *TINY_ARCH, *TRAIN_COMMON, *precision,
            "--task", "kd_translation", "--teacher-path", teacher_checkpoint, "--criterion", "word_kd",
            "--label-smoothing", "0.1", "--max-update", "5", "--save-dir", tmp_path / save,
        ])
        return proc.stdout + proc.stderr

    log = train("bf16", "--bf16")
    # bf16 was really on: the plugin took the flag over, and the losses differ from float32's
    # by bf16 rounding only
    assert "bf16 on the CPU: autocast forward" in log
    kd, kd32 = train_losses(log, key="kd_loss"), train_losses(train("fp32"), key="kd_loss")
    assert len(kd) == len(kd32) == 5 and all(math.isfinite(x) and x >= 0 for x in kd)
    assert kd != kd32 and kd == pytest.approx(kd32, rel=5e-2)


def test_bf16_region_uses_the_math_attention_kernel_and_restores_the_flags():
    # the CPU flash kernel's bf16 backward is ~4x slower than its fp32 one (kd_nmt/precision.py)
    flags = torch.backends.cuda  # the sdp flags are global, CPU included
    assert flags.flash_sdp_enabled()
    with cpu_autocast(True):
        assert not flags.flash_sdp_enabled()
        assert flags.math_sdp_enabled()
        assert torch.is_autocast_enabled("cpu")
    assert flags.flash_sdp_enabled() and not torch.is_autocast_enabled("cpu")
    with cpu_autocast(False):  # fp32 keeps the fused kernel
        assert flags.flash_sdp_enabled()


def test_bf16_attention_gradient_matches_fp32():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 16, requires_grad=True) for _ in range(3))
    mask = torch.ones(7, 7, dtype=torch.bool).tril()

    def grads(bf16):
        for t in (q, k, v):
            t.grad = None
        with cpu_autocast(bf16):
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0)
        out.float().square().sum().backward()
        return torch.cat([t.grad.flatten() for t in (q, k, v)])

    g32, g16 = grads(False), grads(True)
    assert torch.isfinite(g16).all()
    cosine = torch.nn.functional.cosine_similarity(g16.double(), g32.double(), dim=0).item()
    assert cosine > GRAD_COSINE, cosine
    assert not torch.equal(g16, g32)  # it did run in bf16


def test_bf16_on_a_cuda_machine_is_not_turned_into_tpu(monkeypatch):
    """fairseq's parser sets --tpu for --bf16; without torch_xla the trainer then dies on
    ``xla_device`` — on a GPU too, where --bf16 must mean fairseq's CUDA bf16 training."""
    import torch
    from fairseq import options

    from kd_nmt.precision import install_bf16_patches

    install_bf16_patches()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine (parsing only)
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, ["data-bin", "--arch", "transformer", "--bf16"])
    assert args.bf16 and not args.tpu and not args.cpu
