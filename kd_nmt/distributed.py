"""fairseq's multi-process training on machines without CUDA.

fairseq 0.12 counts processes and devices with ``torch.cuda.device_count()``, so on a CPU-only
machine:

* under ``torchrun`` every rank dies with ``ZeroDivisionError`` (``rank % device_count()``);
* plain ``fairseq-train --distributed-world-size 2 --cpu`` spawns ``min(0, 2) = 0`` processes and
  exits 0 having trained nothing (or fails an assertion about available devices);
* DDP is always built with ``device_ids=[device_id]``, which torch refuses for a CPU module;
* under ``torchrun`` without ``--distributed-world-size``, the world size defaults to
  ``max(1, device_count()) = 1`` and ``infer_init_method`` returns before it reads torchrun's
  environment: every rank trains alone, all of them into the same ``--save-dir`` (one dies
  renaming ``checkpoint_last.pt.tmp``). On GPUs the default is the number of GPUs, so the
  environment's ``WORLD_SIZE`` is read.

``install_distributed_patches()`` (called when the plugin is imported) makes both work with the
gloo backend: under torchrun each rank uses the CPU and the world size is torchrun's (with or
without the flag); without a launcher, fairseq-train spawns
``--distributed-world-size`` local processes itself. Nothing changes when CUDA is available.
"""
import logging
import os
import random

import torch

logger = logging.getLogger(__name__)

TORCHRUN_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")


def _cpu_only():
    return torch.cuda.device_count() == 0


def _under_torchrun():
    return all(key in os.environ for key in TORCHRUN_ENV)


def install_distributed_patches():
    """Idempotently patch fairseq.distributed.utils for CPU-only multi-process training."""
    from fairseq.distributed import utils as dist_utils

    if getattr(dist_utils, "_kd_nmt_patched", False):
        return
    original_launch_init = dist_utils._infer_torch_distributed_launch_init
    original_call_main = dist_utils.call_main

    def launch_init(cfg):
        if not _cpu_only():
            return original_launch_init(cfg)
        cfg.distributed_init_method = "env://"
        cfg.distributed_world_size = int(os.environ["WORLD_SIZE"])
        cfg.distributed_rank = int(os.environ["RANK"])
        cfg.device_id = 0  # unused on CPU; fairseq computed rank % 0 here
        cfg.distributed_no_spawn = True  # torchrun started the processes

    def call_main(cfg, main, **kwargs):
        dcfg = cfg.distributed_training
        if (
            _cpu_only()
            and _under_torchrun()
            and dcfg.distributed_init_method is None
            and dcfg.distributed_world_size == 1  # the default: fairseq would not look further
            and int(os.environ["WORLD_SIZE"]) > 1
        ):
            # torchrun started WORLD_SIZE processes: they are one run, as on GPUs. Set where
            # --distributed-world-size would have set it (bmuf holds a resolved copy).
            world_size = int(os.environ["WORLD_SIZE"])
            logger.info("no CUDA device: world size %d from torchrun", world_size)
            dcfg.distributed_world_size = world_size
            if getattr(cfg, "bmuf", None) is not None and "distributed_world_size" in cfg.bmuf:
                cfg.bmuf.distributed_world_size = world_size
        spawn_here = (
            _cpu_only()
            and dcfg.distributed_world_size > 1
            and dcfg.distributed_init_method is None
            and not _under_torchrun()
            and not os.environ.get("SLURM_JOB_NODELIST")
        )
        if _cpu_only() and dcfg.distributed_world_size > 1 and dcfg.distributed_backend == "nccl":
            logger.info("no CUDA device: distributed backend nccl -> gloo")
            dcfg.distributed_backend = "gloo"
        if not spawn_here:
            return original_call_main(cfg, main, **kwargs)
        port = dcfg.distributed_port if dcfg.distributed_port > 0 else random.randint(10000, 60000)
        dcfg.distributed_init_method = f"tcp://localhost:{port}"
        kwargs["start_rank"] = dcfg.distributed_rank or 0
        dcfg.distributed_rank = None  # distributed_main assigns start_rank + process index
        logger.info("no CUDA device: spawning %d CPU processes (gloo)", dcfg.distributed_world_size)
        torch.multiprocessing.spawn(
            fn=dist_utils.distributed_main,
            args=(main, cfg, kwargs),
            nprocs=dcfg.distributed_world_size,
            join=True,
        )

    from fairseq.models import distributed_fairseq_model

    class CPUAwareDDP(distributed_fairseq_model.DistributedDataParallel):
        """torch's DDP, without ``device_ids``/``output_device`` for a module on the CPU."""

        def __init__(self, module, *args, **kwargs):
            if next(module.parameters()).device.type == "cpu":
                kwargs.pop("device_ids", None)
                kwargs.pop("output_device", None)
            super().__init__(module, *args, **kwargs)

    distributed_fairseq_model.DistributedDataParallel = CPUAwareDDP
    dist_utils._infer_torch_distributed_launch_init = launch_init
    dist_utils.call_main = call_main
    dist_utils._kd_nmt_patched = True
