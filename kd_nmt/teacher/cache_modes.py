"""The teacher cache's modes (``kd-nmt cache-teacher --mode``, meta "mode") and their classes.

Each class holds both sides of its mode: ``stored_rows`` (what the cache keeps of the teacher's
log-probs), ``from_cache`` (the targets of a cached batch), ``check_use`` (the runs it refuses).
"""
from kd_nmt.teacher.sampled import SampledTargets
from kd_nmt.teacher.tail import TailTargets
from kd_nmt.teacher.topk import TopKTargets

CACHE_MODES = {cls.mode: cls for cls in (TopKTargets, TailTargets, SampledTargets)}
