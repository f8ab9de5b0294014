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

    @property
    def has_teacher(self):
        return self.teacher is not None
