"""Task ``kd_translation``: fairseq's ``translation`` plus a frozen teacher for distillation.

The teacher lives here, on the task, and not in the criterion or the model, so fairseq's
Trainer never optimizes it, never wraps it in DDP and never saves it in a student checkpoint.
Student checkpoints stay plain ``translation`` checkpoints (see ``kd_nmt.checkpoint``).
"""
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from kd_nmt.errors import KDNMTError
from kd_nmt.teacher import Teacher

logger = logging.getLogger(__name__)


@dataclass
class KDTranslationConfig(TranslationConfig):
    teacher_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "teacher checkpoint(s), colon separated (an ensemble averages probabilities); "
            "its dictionaries must equal the student's"
        },
    )
    teacher_cache: Optional[str] = field(
        default=None,
        metadata={
            "help": "teacher cache DIR from `kd-nmt cache-teacher` (top-k log-probs of the train "
            "split): KD without a teacher in memory; excludes --teacher-path"
        },
    )
    keep_pruned: bool = field(
        default=False,
        metadata={
            "help": "retrain a pruned model (scripts/prune.py; with --finetune-from-model): the weight "
            "matrices' zeros when training starts stay 0 after every step (kd_nmt/pruning.py)"
        },
    )
    sentence_kd_data: Optional[str] = field(
        default=None,
        metadata={
            "help": "data-bin DIR whose train split holds the teacher's translations, line-aligned "
            "with the gold train split (kd-nmt relabel --binarize-to); train batches then carry "
            "both targets (criterion hybrid_kd). See kd_nmt/paired_dataset.py"
        },
    )


@register_task("kd_translation", dataclass=KDTranslationConfig)
class KDTranslationTask(TranslationTask):
    """Translation with a teacher ensemble available to KD criterions via ``task.teacher``."""

    cfg: KDTranslationConfig

    def __init__(self, cfg: KDTranslationConfig, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self.teacher = None
        if cfg.teacher_path and cfg.teacher_cache:
            raise KDNMTError(
                "--teacher-path and --teacher-cache both given: use one (a live teacher, or the "
                "cache built from it with `kd-nmt cache-teacher`)"
            )
        if cfg.teacher_cache:  # kd_nmt.cache: validates the cache against these dicts and data
            from kd_nmt.cache.cached_teacher import CachedTeacher

            self.teacher = CachedTeacher.open(cfg.teacher_cache, self)
        elif cfg.teacher_path:
            self.teacher = Teacher.from_paths(cfg.teacher_path, self)
            n_params = sum(p.numel() for m in self.teacher.models for p in m.parameters())
            logger.info(
                "teacher: %d model(s), %d parameters, from %s",
                len(self.teacher), n_params, cfg.teacher_path,
            )

    def optimizer_step(self, optimizer, model, update_num):
        masked = getattr(self, "_masked_weights", None)
        if self.cfg.keep_pruned and masked is None:
            from kd_nmt.pruning import MaskedWeights

            masked = self._masked_weights = MaskedWeights()
        if masked is not None:
            masked.before_step(model)
        super().optimizer_step(optimizer, model, update_num)
        if masked is not None:
            masked.after_step(model)

    @property
    def has_teacher(self):
        return self.teacher is not None

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        if self.cfg.sentence_kd_data and split == self.cfg.train_subset:
            # kd_nmt.paired_dataset: gold + teacher targets, checked line-aligned (hybrid_kd)
            from kd_nmt.paired_dataset import load_teacher_targets

            self.datasets[split] = load_teacher_targets(self, split, self.datasets[split], epoch, combine)

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if not from_checkpoint:  # the student (teachers are loaded from their checkpoints)
            self.student_model_cfg = cfg  # sizes criterion heads (hybrid_kd --gate input)
        return model

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        # fairseq hands the update count to the model only; criterions that follow it
        # (hybrid_kd --gate schedule) get it here
        if hasattr(criterion, "set_num_updates"):
            criterion.set_num_updates(update_num)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad, **kwargs)
