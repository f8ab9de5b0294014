"""Offline teacher distributions: ``kd-nmt cache-teacher`` and ``--teacher-cache``.

* ``kd_nmt.cache.store``: the on-disk format (memory-mapped top-k ids / log-probs per token).
* ``kd_nmt.cache.cli``: ``kd-nmt cache-teacher``, one resumable teacher pass over a split.
* ``kd_nmt.cache.cached_teacher``: ``CachedTeacher``, the task's teacher read from a cache.
"""
