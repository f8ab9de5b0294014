"""``SampledTargets``: k draws from the tempered teacher, the ``sample`` cache mode.

``kd-nmt cache-teacher --mode sample`` (Anshumann et al., ACL 2025, "random sampling KD"): k ids
drawn with replacement from the tau-tempered teacher ``p`` itself (the proposal is the target,
so every importance weight is 1) and stored with their counts ``c``. With ``w = c / k``

    E_draws[ sum_j w_j * (-log q_j) ] = sum_v p_v * (-log q_v)        (q: the student at tau)

exactly, so ``sum_j w_j (-log q_j) - H(p)`` (the teacher's entropy, stored per token) is an
unbiased estimate of ``fkl = KL(p || q)``, and its gradient with respect to the student's
logits, ``(q - w) / tau``, is an unbiased estimate of the full gradient ``(q - p) / tau``. One
draw's value can be below 0 (it is an estimate of a divergence, not a divergence). Only
``fkl`` is offered: rkl, js, tvd, akl and todi are expectations under the student or depend on
the whole of ``p`` non-linearly (no estimator from draws of ``p`` is unbiased); skl would be
(``-H(p) + E_p[-log(a p_v + (1 - a) q_v)]``) but is not implemented. Others are refused. Built
at one temperature (``full_term.py``).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kd_nmt.errors import KDNMTError
from kd_nmt.teacher.full_term import FullTermTargets, compute_dtype

#: divergences a ``sample`` cache estimates without bias
SAMPLE_DIVERGENCES = ("fkl",)


@dataclass(frozen=True, eq=False)
class SampledTargets(FullTermTargets):
    """k draws from the tempered teacher.

    ids ``[..., k]`` the distinct ids drawn, counts ``[..., k]`` how often (0 in unused slots;
    they sum to the number of draws), entropy ``[...]`` the tempered teacher's entropy H(p).
    """

    counts: torch.Tensor = None
    entropy: torch.Tensor = None

    mode = "sample"

    def _check(self, name, temperature):
        if name not in SAMPLE_DIVERGENCES:
            raise ValueError(
                f"a sampled teacher cache estimates {', '.join(SAMPLE_DIVERGENCES)} without bias, "
                f"not {name}"
            )
        super()._check(name, temperature)

    def kd_per_token(self, student_logits, name, temperature, **params):
        self._check(name, temperature)
        dtype = compute_dtype(student_logits)
        lq = F.log_softmax(student_logits.to(dtype) / float(temperature), -1)  # full V: no renormalising
        counts = self.counts.to(dtype)
        w = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)  # c / k; clamp: padding rows hold 0 draws
        return -(w * lq.gather(-1, self.ids)).sum(-1) - self.entropy.to(dtype)

    # --- the cache mode: what `kd-nmt cache-teacher` stores, what a cached batch becomes ---------
    @staticmethod
    def stored_rows(lprobs, k, temperature, draws=None, generator=None):
        """What a cache keeps of ``lprobs`` ``[N, V]`` (float32, temperature 1): ``draws`` ids
        drawn from the teacher at ``temperature`` (``generator``), as the k most drawn distinct
        ids (then ids drawn 0 times), their temperature-1 log-probs and counts, and the tempered
        teacher's entropy."""
        tau = temperature
        lp_tau = torch.log_softmax(lprobs / tau, -1)
        p_tau = lp_tau.exp()
        drawn = torch.multinomial(p_tau, draws, replacement=True, generator=generator)
        counts = torch.zeros(lprobs.shape, dtype=torch.int32, device=lprobs.device)
        counts.scatter_add_(1, drawn, torch.ones_like(drawn, dtype=torch.int32))
        count, ids = counts.topk(k, dim=-1)  # the distinct ids drawn (then ids drawn 0 times)
        return {
            "ids": ids, "logp": lprobs.gather(-1, ids), "count": count,
            "entropy": -(p_tau * lp_tau).sum(-1),
        }

    @classmethod
    def from_cache(cls, ids, logp, arrays, temperature):
        """A cached batch: ids ``[B, T, k]``, ``arrays["count"]`` ``[B, T, k]`` and
        ``arrays["entropy"]`` ``[B, T]`` (the log-probs are not part of the estimate)."""
        return cls(temperature=temperature, ids=ids, counts=arrays["count"], entropy=arrays["entropy"])

    @classmethod
    def check_use(cls, where, cache_temperature, k, vocab_size, divergence, temperature, topk):
        """As every fixed-temperature cache; and fkl only."""
        super().check_use(where, cache_temperature, k, vocab_size, divergence, temperature, topk)
        if divergence not in SAMPLE_DIVERGENCES:
            raise KDNMTError(
                f"{where} is a sample cache, an unbiased estimate of {', '.join(SAMPLE_DIVERGENCES)} "
                f"only, not of --kd-divergence {divergence}: use --kd-divergence fkl, or a topk-tail "
                "cache for other divergences"
            )
