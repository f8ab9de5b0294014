"""Sparse teachers that keep the full-vocabulary KD term: ``topk-tail`` and ``sample`` caches.

A ``topk`` cache (``(ids, log_probs)``) makes ``word_kd`` renormalise both distributions over the
k ids: a different, smaller objective (``benchmarks/topk_error.py``, docs/cost.md). The two
teachers here do not renormalise. Pure tensor code (no fairseq), used by ``word_kd.kd_term`` and
by the one-pass objective (``criterions/kd_objective.py``) alike, through ``kd_per_token``.

``TailTeacher`` (``kd-nmt cache-teacher --mode topk-tail``; DistillKit keeps the missing mass
the same way): the k ids plus one "rest" class holding the teacher's mass outside them. The
student's rest is its own mass outside the k ids, computed as a log-sum-exp over the *other*
ids (never ``log(1 - sum)``: no cancellation when the k ids hold nearly all the mass, no NaN
when they hold all of it). Any divergence then compares two (k + 1)-class distributions: a
coarse-graining of the full ones, so fkl, rkl, js, tvd, skl and srkl are lower bounds of their
full-vocabulary values (data-processing inequality) and equal them when the tail is a single
id or empty. Biased still, but it keeps the tail's total mass in the objective.

``SampledTeacher`` (``--mode sample``; Anshumann et al., ACL 2025, "random sampling KD"): k ids
drawn with replacement from the tau-tempered teacher ``p`` itself (the proposal is the target,
so every importance weight is 1) and stored with their counts ``c``. With ``w = c / k``

    E_draws[ sum_j w_j * (-log q_j) ] = sum_v p_v * (-log q_v)        (q: the student at tau)

exactly, so ``sum_j w_j (-log q_j) - H(p)`` (the teacher's entropy, stored per token) is an
unbiased estimate of ``fkl = KL(p || q)``, and its gradient with respect to the student's
logits, ``(q - w) / tau``, is an unbiased estimate of the full gradient ``(q - p) / tau``. One
draw's value can be below 0 (it is an estimate of a divergence, not a divergence). Only
``fkl`` is offered: rkl, js, tvd, akl and todi are expectations under the student or depend on
the whole of ``p`` non-linearly (no estimator from draws of ``p`` is unbiased); skl would be
(``-H(p) + E_p[-log(a p_v + (1 - a) q_v)]``) but is not implemented. Others are refused.

Temperature: both are built at one temperature, the cache's (``--temperature``). The rest mass
and the sampling distribution depend on tau through the tempered normaliser
``sum_v p_v^(1/tau)``, a sum over the whole vocabulary that the cache does not hold, so neither
can be re-derived at another tau: a run must use ``--kd-temperature`` equal to the cache's
(``kd_per_token`` refuses any other). A ``topk`` cache stores temperature-1 log-probs and works at
any tau, because it renormalises over its ids anyway.
"""
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from kd_nmt.divergences import divergence_from_log_probs

#: divergences a ``sample`` cache estimates without bias
SAMPLE_DIVERGENCES = ("fkl",)


def _compute_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32  # at least float32


@dataclass(frozen=True, eq=False)
class EstimatedTeacher:
    """Tensors sharing the leading position dims ``[...]``; indexing and reshaping apply to all.

    ``temperature``: the cache's, the only one ``kd_per_token`` accepts.
    """

    temperature: float

    def _map(self, fn):
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self) if f.name != "temperature"})

    @property
    def position_shape(self):
        return self.ids.shape[:-1]

    def __getitem__(self, index):  # e.g. [:, n:] (--ignore-prefix-size), rows of a chunk
        return self._map(lambda x: x[index])

    def reshape_positions(self, *shape):
        n = len(self.position_shape)
        return self._map(lambda x: x.reshape(*shape, *x.shape[n:]))

    def to(self, device):
        return self._map(lambda x: x.to(device, non_blocking=True))

    def _check(self, name, temperature):
        if float(temperature) != float(self.temperature):
            raise ValueError(
                f"this teacher cache was built at temperature {self.temperature:g} and serves only "
                f"that one, got {float(temperature):g}"
            )

    def kd_per_token(self, student_logits, name, temperature, **params):
        """The KD term at every position ``[...]`` of ``student_logits`` ``[..., V]`` (differentiable)."""
        raise NotImplementedError

    def kd_and_grad(self, student_logits, keep, name, temperature, params):
        """``(sum of keep * kd_per_token, its gradient w.r.t. student_logits [r, V])``, autograd on one chunk."""
        with torch.enable_grad():
            leaf = student_logits.detach().requires_grad_(True)
            kd = (self.kd_per_token(leaf, name, temperature, **params) * keep).sum()
            (grad,) = torch.autograd.grad(kd, leaf)
        return kd.detach(), grad


@dataclass(frozen=True, eq=False)
class TailTeacher(EstimatedTeacher):
    """The teacher's k ids and one rest class (``--mode topk-tail``).

    ids ``[..., k]`` long; scores ``[..., k]`` their temperature-1 log-probs; rest ``[...]`` the
    rest class in the same units: ``tau * log sum_{v not in ids} exp(logp_v / tau)`` at the
    cache's tau (at tau = 1 the log of the mass outside the ids; -inf when there is none), so
    that ``log_softmax([scores, rest] / tau)`` is the tempered teacher over the k + 1 classes.
    """

    ids: torch.Tensor = None
    scores: torch.Tensor = None
    rest: torch.Tensor = None

    def kd_per_token(self, student_logits, name, temperature, **params):
        self._check(name, temperature)
        dtype = _compute_dtype(student_logits)
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


@dataclass(frozen=True, eq=False)
class SampledTeacher(EstimatedTeacher):
    """k draws from the tempered teacher (``--mode sample``).

    ids ``[..., k]`` the distinct ids drawn, counts ``[..., k]`` how often (0 in unused slots;
    they sum to the number of draws), entropy ``[...]`` the tempered teacher's entropy H(p).
    """

    ids: torch.Tensor = None
    counts: torch.Tensor = None
    entropy: torch.Tensor = None

    def _check(self, name, temperature):
        if name not in SAMPLE_DIVERGENCES:
            raise ValueError(
                f"a sampled teacher cache estimates {', '.join(SAMPLE_DIVERGENCES)} without bias, "
                f"not {name}"
            )
        super()._check(name, temperature)

    def kd_per_token(self, student_logits, name, temperature, **params):
        self._check(name, temperature)
        dtype = _compute_dtype(student_logits)
        lq = F.log_softmax(student_logits.to(dtype) / float(temperature), -1)  # full V: no renormalising
        counts = self.counts.to(dtype)
        w = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)  # c / k; clamp: padding rows hold 0 draws
        return -(w * lq.gather(-1, self.ids)).sum(-1) - self.entropy.to(dtype)
