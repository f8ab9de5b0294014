"""``FullTermTargets``: sparse targets whose KD term keeps the full-vocabulary one in view.

A ``topk`` cache makes the KD term renormalise both distributions over the k ids: a different,
smaller objective. The ``topk-tail`` (``tail.py``) and ``sample`` (``sampled.py``) caches do not
renormalise: each computes its own KD term (``kd_per_token``), a coarse-graining or an unbiased
estimate of the full one, differentiated by autograd on each chunk of the one pass.

Temperature: both are built at one temperature, the cache's (``--temperature``). The rest mass
and the sampling distribution depend on tau through the tempered normaliser
``sum_v p_v^(1/tau)``, a sum over the whole vocabulary that the cache does not hold, so neither
can be re-derived at another tau: a run must use ``--kd-temperature`` equal to the cache's
(``check_use`` refuses any other in one line; ``kd_per_token`` raises). A ``topk`` cache stores
temperature-1 log-probs and works at any tau, because it renormalises over its ids anyway.
"""
from dataclasses import dataclass

import torch

from kd_nmt.errors import KDNMTError
from kd_nmt.teacher.protocol import TeacherTargets


def compute_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32  # at least float32


@dataclass(frozen=True, eq=False)
class FullTermTargets(TeacherTargets):
    """Targets with their own KD term, at ``temperature`` (the cache's, the only one accepted);
    ``ids`` ``[..., k]`` the teacher's ids they keep."""

    temperature: float
    ids: torch.Tensor = None

    mode = None  # the cache mode (``kd_nmt.cache.store.MODES``)
    interpolable = False  # an estimate of the divergence, no scores TAID could mix

    @property
    def position_shape(self):
        return self.ids.shape[:-1]

    def _check(self, name, temperature):
        if float(temperature) != float(self.temperature):
            raise ValueError(
                f"this teacher cache was built at temperature {self.temperature:g} and serves only "
                f"that one, got {float(temperature):g}"
            )

    def check_matches(self, student_logits, nll_of_teacher):
        if self.position_shape != student_logits.shape[:-1] or nll_of_teacher:
            raise ValueError(
                f"{type(self).__name__} positions {tuple(self.position_shape)} do not match student "
                f"logits {tuple(student_logits.shape)}, or nll_of_teacher asked of a sparse teacher"
            )

    def top_k(self, k):
        if k:
            raise ValueError(f"topk {k}: only a topk teacher can be cut to its top k")
        return self

    def rescored(self, student_scores, mix):
        raise ValueError(f"{type(self).__name__} holds an estimate of the divergence, no scores to mix")

    def kd_chunk(self, student, kd_keep, name, temperature, params, kd_weight):
        with torch.enable_grad():  # autograd on the chunk: its own KD term's gradient
            leaf = student.detach().requires_grad_(True)
            kd = (self.kd_per_token(leaf, name, temperature, **params) * kd_keep).sum()
            (grad,) = torch.autograd.grad(kd, leaf)
        return kd.detach(), grad.mul_(kd_weight), None

    @classmethod
    def check_use(cls, where, cache_temperature, k, vocab_size, divergence, temperature, topk):
        """One KDNMTError for a run this mode cannot serve: ``--kd-topk``, another temperature."""
        rebuild = "rebuild the cache (kd-nmt cache-teacher --mode ...)"
        if topk:
            raise KDNMTError(
                f"--kd-topk {topk} cuts a topk cache; {where} is a {cls.mode} cache: drop --kd-topk "
                f"or {rebuild.replace('...', 'topk')}"
            )
        if float(temperature) != cache_temperature:
            raise KDNMTError(
                f"{where} ({cls.mode}) was built at temperature {cache_temperature:g} and serves only that "
                f"one, the run asks for --kd-temperature {float(temperature):g}: use --kd-temperature "
                f"{cache_temperature:g} or rebuild the cache with --temperature {float(temperature):g}"
            )
