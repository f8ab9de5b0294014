"""``TailTargets``: the k ids plus one "rest" class, the ``topk-tail`` cache mode.

``kd-nmt cache-teacher --mode topk-tail`` (DistillKit keeps the missing mass the same way): the
k ids plus one "rest" class holding the teacher's mass outside them. The student's rest is its
own mass outside the k ids, computed as a log-sum-exp over the *other* ids (never
``log(1 - sum)``: no cancellation when the k ids hold nearly all the mass, no NaN when they hold
all of it). Any divergence then compares two (k + 1)-class distributions: a coarse-graining of
the full ones, so fkl, rkl, js, tvd, skl and srkl are lower bounds of their full-vocabulary
values (data-processing inequality) and equal them when the tail is a single id or empty.
Biased still, but it keeps the tail's total mass in the objective. Built at one temperature
(``full_term.py``).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kd_nmt.divergences import divergence_from_log_probs
from kd_nmt.teacher.full_term import FullTermTargets, compute_dtype


@dataclass(frozen=True, eq=False)
class TailTargets(FullTermTargets):
    """The teacher's k ids and one rest class.

    ids ``[..., k]`` long; scores ``[..., k]`` their temperature-1 log-probs; rest ``[...]`` the
    rest class in the same units: ``tau * log sum_{v not in ids} exp(logp_v / tau)`` at the
    cache's tau (at tau = 1 the log of the mass outside the ids; -inf when there is none), so
    that ``log_softmax([scores, rest] / tau)`` is the tempered teacher over the k + 1 classes.
    """

    scores: torch.Tensor = None
    rest: torch.Tensor = None

    mode = "topk-tail"

    def kd_per_token(self, student_logits, name, temperature, **params):
        self._check(name, temperature)
        dtype = compute_dtype(student_logits)
        tau = float(temperature)
        z = student_logits.to(dtype) / tau
        lse = torch.logsumexp(z, -1, keepdim=True)
        # the student's rest: a log-sum-exp over the other ids. The ids get finfo.min / 8 (not
        # -inf): with every id covered the sum stays finite and its gradient 0, not NaN
        floor = torch.finfo(dtype).min / 8
        tail = torch.logsumexp(z.scatter(-1, self.ids, floor), -1, keepdim=True)
        student = torch.cat([z.gather(-1, self.ids), tail], -1) - lse
        teacher = torch.cat([self.scores.to(dtype), self.rest.to(dtype)[..., None]], -1)
        return divergence_from_log_probs(name, student, F.log_softmax(teacher / tau, -1), **params)

    # --- the cache mode: what `kd-nmt cache-teacher` stores, what a cached batch becomes ---------
    @staticmethod
    def stored_rows(lprobs, k, temperature, draws=None, generator=None):
        """What a cache keeps of ``lprobs`` ``[N, V]`` (float32, temperature 1): the k most
        probable ids, their log-probs and the rest class at ``temperature``."""
        logp, ids = lprobs.topk(k, dim=-1)
        tau = temperature  # tau * logsumexp of the others at tau; -inf when k = V
        rest = torch.logsumexp(lprobs.scatter(-1, ids, float("-inf")) / tau, -1) * tau
        return {"ids": ids, "logp": logp, "rest": rest}

    @classmethod
    def from_cache(cls, ids, logp, arrays, temperature):
        """A cached batch: ids and log-probs ``[B, T, k]``, ``arrays["rest"]`` ``[B, T]``."""
        return cls(temperature=temperature, ids=ids, scores=logp, rest=arrays["rest"])
