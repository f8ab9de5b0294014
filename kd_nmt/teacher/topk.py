"""``TopKTargets``: the teacher's k most probable ids; the ``topk`` cache mode, and ``--kd-topk``.

Both distributions are renormalised over the k ids before the divergence (``ScoredTargets``): a
different, smaller objective than full KD (``benchmarks/topk_error.py``, docs/cost.md), defined
for any divergence and any temperature, since the softmax of temperature-1 log-probs over the
ids at tau is the tempered teacher restricted to them. With k = V it is the full-vocabulary loss.
A live teacher cut by ``--kd-topk k`` gives these targets too; a ``topk`` cache of k' ids serves
``--kd-topk k <= k'`` (the top k of its ids).
"""
from dataclasses import dataclass

import torch

from kd_nmt.errors import KDNMTError
from kd_nmt.teacher.scored import ScoredTargets


@dataclass(frozen=True, eq=False)
class TopKTargets(ScoredTargets):
    """ids ``[..., k]`` long, scores ``[..., k]`` their scores (most probable first in a cache)."""

    ids: torch.Tensor

    mode = "topk"  # the cache mode (``kd_nmt.cache.store.MODES``)
    interpolable = True  # scores: TAID mixes the student's over the same ids with them

    def over_support(self, student):
        return student.gather(-1, self.ids)

    def onto_vocabulary(self, grad, student):
        return torch.zeros_like(student).scatter_add_(-1, self.ids, grad)

    def check_matches(self, student_logits, nll_of_teacher):
        ids, scores = self.ids, self.scores
        if ids.shape != scores.shape or ids.shape[:-1] != student_logits.shape[:-1]:
            raise ValueError(
                f"sparse teacher ids {tuple(ids.shape)} / scores {tuple(scores.shape)} do not match "
                f"student logits {tuple(student_logits.shape)} (expected [..., k] beside [..., V])"
            )
        if nll_of_teacher:
            raise ValueError("nll_of_teacher needs a dense teacher (a sparse one lacks the full distribution)")

    def top_k(self, k):
        if not 0 < k < self.scores.size(-1):
            return self
        top, where = self.scores.topk(k, dim=-1)
        return TopKTargets(ids=self.ids.gather(-1, where), scores=top)

    # --- the cache mode: what `kd-nmt cache-teacher` stores, what a cached batch becomes ---------
    @staticmethod
    def stored_rows(lprobs, k, temperature, draws=None, generator=None):
        """What a cache keeps of ``lprobs`` ``[N, V]`` (float32, temperature 1): ``{name: [N, ...]}``,
        the k most probable ids and their log-probs, most probable first."""
        logp, ids = lprobs.topk(k, dim=-1)
        return {"ids": ids, "logp": logp}

    @classmethod
    def from_cache(cls, ids, logp, arrays, temperature):
        """A cached batch: ids ``[B, T, k]``, their log-probs ``[B, T, k]`` (``arrays``: none more)."""
        return cls(ids=ids, scores=logp)

    @staticmethod
    def check_use(where, cache_temperature, k, vocab_size, divergence, temperature, topk):
        """Renormalised over its ids: any divergence and temperature, and ``--kd-topk`` up to k."""
        if topk and k < min(topk, vocab_size):  # (k >= V: the full distribution, which it lacks)
            raise KDNMTError(
                f"--kd-topk {topk} asks for more of the teacher than the {where} holds (its top {k}): "
                f"use --kd-topk {k} or less (0 = every cached id), or rebuild the cache with "
                f"`kd-nmt cache-teacher --topk {topk}`"
            )
