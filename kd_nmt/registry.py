"""Everything the plugin registers with fairseq, imported once by ``kd_nmt/__init__``.

Registrations: the task ``kd_translation``, the criteria ``word_kd`` / ``hybrid_kd`` and the
``transformer_kd_*`` architectures.

The fairseq functions the plugin patches on import — all of them needed on fairseq 0.12.x
(0.12.2 and the fairseq-fixed 0.12.3.x fork; later fairseq releases do not exist), each patch
idempotent and scoped to the module named:

* ``fairseq.checkpoint_utils.torch`` (its ``torch.load``) — ``checkpoint.install_fairseq_patches``:
  torch >= 2.6 loads with ``weights_only=True``; fairseq checkpoints hold Namespaces and
  omegaconf objects.
* ``fairseq.checkpoint_utils.torch_persistent_save`` — ``checkpoint.install_fairseq_patches``:
  students are saved as plain ``translation`` checkpoints (stock fairseq-generate and
  CTranslate2 load them).
* ``fairseq.trainer.Trainer.state_dict`` and ``load_checkpoint`` —
  ``checkpoint.install_criterion_state_patch``: fairseq saves a criterion's state only if it has
  parameters; ``--kd-select global``'s queue is saved in ``extra_state`` and restored on resume.
* ``fairseq.distributed.utils._infer_torch_distributed_launch_init`` —
  ``distributed.install_distributed_patches``: on a CPU-only machine fairseq computes
  ``rank % torch.cuda.device_count()`` (ZeroDivisionError) and ignores torchrun's WORLD_SIZE.
* ``fairseq.distributed.utils.call_main`` — ``distributed.install_distributed_patches``: without
  CUDA fairseq spawns ``min(0, world_size)`` processes; nccl becomes gloo.
* ``fairseq.models.distributed_fairseq_model.DistributedDataParallel`` —
  ``distributed.install_distributed_patches``: DDP of a CPU module must not get ``device_ids``.
* ``fairseq.options.parse_args_and_arch`` — ``precision.install_bf16_patches``: fairseq turns
  ``--bf16`` into ``--tpu``, which crashes on ``xla_device`` without torch_xla.
* ``fairseq.trainer.Trainer.__init__`` and ``train_step`` — ``precision.install_bf16_patches``:
  ``--bf16``/``--amp`` with ``--cpu`` train under autocast with float32 weights (fairseq would
  cast the model itself to bf16).

* ``fairseq.data.indexed_dataset.MMapIndexedDataset._do_init`` and ``__del__`` —
  ``common.data_bin.install_indexed_dataset_check``: a cut-short ``.bin`` or ``.idx`` was read
  until a traceback mid-run; it is one error naming the file when the split is opened.

With CUDA available and no ``--cpu``, the distributed and bf16 patches change nothing.
``sys.excepthook`` is wrapped so that a ``KDNMTError`` raised inside fairseq-train/-generate prints
one line.
"""
import sys

from kd_nmt.checkpoint import install_criterion_state_patch, install_fairseq_patches
from kd_nmt.common.data_bin import install_indexed_dataset_check
from kd_nmt.distributed import install_distributed_patches
from kd_nmt.errors import KDNMTError
from kd_nmt.precision import install_bf16_patches

install_fairseq_patches()
install_criterion_state_patch()
install_distributed_patches()
install_bf16_patches()
install_indexed_dataset_check()

from kd_nmt import architectures, criterions, tasks  # noqa: F401,E402  (fairseq registrations)


def _excepthook(exc_type, exc, tb, _previous=sys.excepthook):
    """Print a KDNMTError raised inside fairseq-train/-generate as one line, not a traceback."""
    if issubclass(exc_type, KDNMTError):
        print(f"kd_nmt: error: {exc}", file=sys.stderr)
        return
    _previous(exc_type, exc, tb)


sys.excepthook = _excepthook
