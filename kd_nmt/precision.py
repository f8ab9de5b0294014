"""bf16 on the CPU: autocast for training and decoding, float32 everywhere it matters.

fairseq 0.12's ``--bf16`` is a TPU feature: it casts the model *and* its master weights to
bfloat16 and, on a CPU, crashes looking for an XLA device. Modern x86 CPUs (AVX-512 BF16, AMX)
multiply bfloat16 matrices about twice as fast as float32 ones, so on the CPU the plugin gives
``--bf16`` (and ``--amp``) another meaning, the one mixed-precision training has on GPUs:

* the parameters, the optimizer state and the checkpoints stay float32 (stock fairseq-generate
  and ct2-fairseq-converter load them as any other checkpoint);
* the forward (student and teacher) runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``:
  matrix products in bfloat16, everything autocast keeps in float32 in float32; the backward
  follows the forward's dtypes; attention uses the math kernel (see ``cpu_autocast``);
* losses are computed in float32: fairseq's criteria and ours cast logits up before any
  log-softmax (``kd_objective`` works in float32 chunk by chunk);
* no loss scaling: bfloat16 has float32's exponent range, so gradients do not underflow.

``install_bf16_patches()`` (called when the plugin is imported) wires this into fairseq's
``Trainer``. Validation stays in float32, so the valid loss and ``checkpoint_best.pt`` do not
depend on the precision training ran in. Decoding tools take ``--bf16`` and call
``cpu_autocast(args.bf16)`` around the model forward.
"""
import contextlib
import functools
import logging

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

logger = logging.getLogger(__name__)


def bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 matrix instructions (AVX-512 BF16 or AMX).

    Without them autocast still works (oneDNN emulates bfloat16) but is slower than float32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_autocast(enabled: bool):
    """A context manager: bfloat16 autocast on the CPU when ``enabled``, else nothing.

    Inside it attention runs on PyTorch's math kernel instead of the fused (flash) one: on the
    CPU the flash kernel's backward is about 4x *slower* in bfloat16 than in float32 (4 teacher
    updates: 519 ms vs 121 ms), while the math kernel's batched matmuls get bfloat16's speed-up
    like every other product. benchmarks/bf16_train.py, teacher architecture, AVX-512 BF16 CPU:
    1.48x float32's tokens/s with the flash kernel, 1.90x with the math one.
    """
    if not enabled:
        return contextlib.nullcontext()
    return _bf16_region()


@contextlib.contextmanager
def _bf16_region():
    with torch.autocast("cpu", dtype=torch.bfloat16), sdpa_kernel([SDPBackend.MATH]):
        yield


def _have_xla() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch_xla") is not None


def wants_cpu_bf16(common_cfg) -> bool:
    """``--bf16`` or ``--amp`` asked for on a machine that will train on the CPU (not a TPU)."""
    on_cpu = bool(getattr(common_cfg, "cpu", False)) or not torch.cuda.is_available()
    tpu = bool(getattr(common_cfg, "tpu", False)) and _have_xla()
    asked = bool(getattr(common_cfg, "bf16", False)) or bool(getattr(common_cfg, "amp", False))
    return on_cpu and asked and not tpu


def take_over_cpu_bf16(cfg) -> bool:
    """Turn fairseq's own ``--bf16``/``--amp`` off in ``cfg`` when the plugin handles them.

    Returns True when training should run under ``cpu_autocast``. fairseq's flags would cast
    the model to bfloat16 (``--bf16``, and then crash on ``xla_device``) or build a CUDA grad
    scaler (``--amp``); with them off the trainer builds a plain float32 model and optimizer.
    """
    from omegaconf import open_dict

    common = cfg.common
    if not wants_cpu_bf16(common):
        return False
    with open_dict(cfg):
        if getattr(common, "memory_efficient_bf16", False):
            common.memory_efficient_bf16 = False
        common.bf16 = False
        common.amp = False
        common.tpu = False
    if not bf16_supported():
        logger.warning("this CPU has no native bfloat16 instructions: bf16 autocast may be slower than float32")
    logger.info("bf16 on the CPU: autocast forward, float32 weights, optimizer state, losses and checkpoints")
    return True


def install_bf16_patches():
    """Idempotently make fairseq's Trainer train under CPU bf16 autocast for ``--bf16/--amp --cpu``."""
    from fairseq import trainer as trainer_module

    from fairseq import options

    Trainer = trainer_module.Trainer
    if getattr(Trainer, "_kd_nmt_bf16_patched", False):
        return
    original_parse = options.parse_args_and_arch

    @functools.wraps(original_parse)
    def parse_args_and_arch(*args, **kwargs):
        # fairseq's parser turns --bf16 into --tpu; without torch_xla that can only crash
        # (``xla_device`` of None): on a CPU the flag means CPU bf16 autocast instead, on a CUDA
        # GPU fairseq's own bf16 training (a bfloat16 model, fp32 master weights)
        parsed = original_parse(*args, **kwargs)
        if getattr(parsed, "tpu", False) and getattr(parsed, "bf16", False) and not _have_xla():
            parsed.tpu = False
        return parsed

    options.parse_args_and_arch = parse_args_and_arch
    original_init = Trainer.__init__
    original_train_step = Trainer.train_step

    @functools.wraps(original_init)
    def __init__(self, cfg, *args, **kwargs):
        self.kd_nmt_cpu_bf16 = take_over_cpu_bf16(cfg)
        original_init(self, cfg, *args, **kwargs)

    @functools.wraps(original_train_step)
    def train_step(self, *args, **kwargs):
        # one autocast region per step: bfloat16 copies of the weights are made once and
        # reused by every forward of the step (autocast's weight cache)
        with cpu_autocast(getattr(self, "kd_nmt_cpu_bf16", False)):
            return original_train_step(self, *args, **kwargs)

    Trainer.__init__ = __init__
    Trainer.train_step = train_step
    Trainer._kd_nmt_bf16_patched = True
