"""The teacher a KD criterion distils from, as one protocol (``protocol.py``).

* ``live.py``: ``Teacher``, the frozen model or ensemble (``--teacher-path``), and the check
  that its dictionaries are the student's;
* ``dense.py``, ``topk.py``, ``tail.py``, ``sampled.py``: the targets a teacher gives for a
  batch, one class per kind of distribution (the last three: the cache modes, ``cache_modes.py``);
* the cached teacher (``--teacher-cache``) is ``kd_nmt.cache.cached_teacher.CachedTeacher``.
"""
from kd_nmt.teacher.live import Teacher, check_teacher_dictionaries  # noqa: F401  (kd_nmt.teacher.Teacher)
