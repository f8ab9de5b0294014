"""The teacher as a KD criterion sees it: ``KDTeacher`` gives ``TeacherTargets`` for a batch.

A criterion (``word_kd``, ``hybrid_kd``) holds no knowledge of what kind its teacher is. It asks
``task.teacher`` (a ``KDTeacher``: the live model or ensemble, ``kd_nmt.teacher.live``, or a
teacher cache, ``kd_nmt.cache.cached_teacher``) for the targets of a batch, and hands them to the
KD term (``word_kd.kd_term``) or to the one-pass objective (``criterions/kd_objective.py``),
which call their methods: what a divergence compares, and how its gradient reaches the
student's logits, is the targets' own math. There is one ``TeacherTargets`` class per kind of
distribution a teacher gives:

* ``DenseTargets`` (``dense.py``): scores over the whole vocabulary (a live teacher);
* ``TopKTargets`` (``topk.py``): the teacher's k most probable ids and their scores, both sides
  renormalised over them (a ``topk`` cache, or a live teacher cut by ``--kd-topk``);
* ``TailTargets`` (``tail.py``) and ``SampledTargets`` (``sampled.py``): a ``topk-tail`` and a
  ``sample`` cache, whose KD terms stand for the full-vocabulary one (``full_term.py``).

A cache mode's class holds both sides of that mode: what ``kd-nmt cache-teacher`` stores of the
teacher's log-probs (``stored_rows``), what a cached batch becomes (``from_cache``) and which
runs the mode cannot serve (``check_use``); ``cache_modes.py`` names them.

Where a criterion must refuse a combination, it reads a capability of its teacher
(``training_split_only``, ``any_prefix``, ``interpolable``) and refuses in one line.
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Optional, Tuple

import torch


@dataclass(frozen=True, eq=False)
class TeacherTargets(ABC):
    """The teacher's side of the KD term on a batch: tensors sharing leading position dims
    (``[B, T]``, or ``[rows]`` inside the one pass), each followed by its own dims (``[V]``,
    ``[k]`` or none). Indexing and reshaping apply to every tensor alike."""

    #: the targets hold the whole distribution: the teacher's gold NLL can be computed from them,
    #: and the KD term in training takes the memory-lean one pass (``kd_term``)
    full_vocabulary: ClassVar[bool] = False

    @property
    @abstractmethod
    def position_shape(self) -> torch.Size:
        """The leading position dims ``[...]``."""

    def _map(self, fn):
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self)
                                if torch.is_tensor(getattr(self, f.name))})

    def __getitem__(self, index) -> "TeacherTargets":  # e.g. [:, n:] (--ignore-prefix-size), rows of a chunk
        return self._map(lambda x: x[index])

    def reshape_positions(self, *shape) -> "TeacherTargets":
        n = len(self.position_shape)
        return self._map(lambda x: x.reshape(*shape, *x.shape[n:]))

    @abstractmethod
    def check_matches(self, student_logits, nll_of_teacher):
        """A ValueError unless these targets sit beside ``student_logits`` ``[..., V]`` (and can
        give the teacher's gold NLL, if ``nll_of_teacher``)."""

    @abstractmethod
    def top_k(self, k) -> "TeacherTargets":
        """The targets cut to the teacher's ``k`` most probable ids (0, or not below their size:
        themselves); a ValueError where they cannot be cut."""

    @abstractmethod
    def rescored(self, student_scores, mix) -> "TeacherTargets":
        """The same support with scores ``mix(student's scores over it, teacher's scores)``
        (TAID); ``student_scores`` ``[..., V]``. A ValueError for targets without scores."""

    @abstractmethod
    def kd_per_token(self, student_logits, name, temperature, **params) -> torch.Tensor:
        """The KD term at every position ``[...]`` of ``student_logits`` ``[..., V]`` (differentiable)."""

    @abstractmethod
    def kd_chunk(self, student, kd_keep, name, temperature, params, kd_weight):
        """One chunk of the one pass: ``(kd, grad, q)``.

        ``student`` ``[r, V]`` logits (float32 or float64), ``kd_keep`` ``[r]`` (1.0 where the KD
        term counts); ``kd`` the sum of ``kd_keep * kd_per_token``, ``grad`` ``[r, V]``
        ``kd_weight`` times its gradient with respect to ``student`` (a new tensor), ``q`` the
        student's softmax at temperature 1 if it was computed on the way, else None.
        """

    def gold_nll(self, target, dtype) -> torch.Tensor:
        """The teacher's NLL of ``target`` ``[...]`` at temperature 1, in ``dtype`` (full
        vocabulary only)."""
        raise ValueError(f"{type(self).__name__} holds no full distribution: no teacher gold NLL")

    def reusable_gradient_buffer(self, rows, dtype) -> Optional[torch.Tensor]:
        """``rows`` (these targets reshaped to ``[N, ...]``) as a tensor the one pass may write
        its ``[N, V]`` gradient of ``dtype`` over (``consume_teacher``), or None."""
        return None


class KDTeacher(ABC):
    """The teacher a KD criterion distils from (``task.teacher``)."""

    #: what it is, in messages ("live teacher", "sample cache")
    name: str
    #: it has targets for the batches of one split only (a cache): no KD term in validation
    training_split_only: bool = False
    #: it scores any prefix, the student's own outputs too (a model): on-policy KD can use it
    any_prefix: bool = False
    #: its targets hold scores that TAID can interpolate with the student's
    interpolable: bool = False

    def check_use(self, divergence, temperature, topk):
        """One KDNMTError if a run with these ``--kd-*`` options cannot use this teacher."""

    @abstractmethod
    def targets(self, sample, like, with_nll=True) -> Tuple[TeacherTargets, Optional[torch.Tensor]]:
        """``(targets, gold_nll)`` of ``sample``'s gold prefix, next to ``like`` (the student's logits).

        ``gold_nll`` ``[B, T]``: the teacher's NLL of ``sample["target"]`` at temperature 1.
        ``with_nll`` False: the caller takes it from the targets in the one pass (they go there
        uncut and hold the whole distribution), so a teacher that would compute it returns None;
        one that has it stored returns it all the same.
        """
