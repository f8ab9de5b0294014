"""``ScoredTargets``: teacher scores over a support of ids, the KD term renormalised over it.

The support is the whole vocabulary (``DenseTargets``) or the teacher's k most probable ids
(``TopKTargets``: a ``topk`` cache, ``--kd-topk``). Both distributions are the softmax of their
scores over the support at temperature tau, so with k < V the student's mass outside the ids
is ignored by the KD term (reverse divergences are undefined where a truncated teacher is 0).
"""
from abc import abstractmethod
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from kd_nmt.divergences import divergence, divergence_from_log_probs
from kd_nmt.teacher.protocol import TeacherTargets


@dataclass(frozen=True, eq=False)
class ScoredTargets(TeacherTargets):
    """scores ``[..., n]``: logits or log-probs whose softmax is the teacher over its support."""

    scores: torch.Tensor

    @property
    def position_shape(self):
        return self.scores.shape[:-1]

    @abstractmethod
    def over_support(self, student):
        """``student`` ``[..., V]`` restricted to the support ``[..., n]``."""

    @abstractmethod
    def onto_vocabulary(self, grad, student):
        """A support's ``grad`` ``[..., n]`` as a gradient ``[..., V]`` like ``student``."""

    def rescored(self, student_scores, mix):
        return replace(self, scores=mix(self.over_support(student_scores), self.scores))

    def kd_per_token(self, student_logits, name, temperature, **params):
        return divergence(name, self.over_support(student_logits), self.scores, temperature=temperature, **params)

    def kd_chunk(self, student, kd_keep, name, temperature, params, kd_weight):
        tau = temperature
        t = self.scores.to(student.dtype)
        s_kd = self.over_support(student)
        lq = F.log_softmax(s_kd if tau == 1.0 else s_kd / tau, dim=-1)  # student log-probs at tau
        lp = F.log_softmax(t if tau == 1.0 else t / tau, dim=-1)  # teacher log-probs at tau
        with torch.enable_grad():  # the divergence's own hand-written backward, w.r.t. log q
            lq_leaf = lq.detach().requires_grad_(True)
            kd = (divergence_from_log_probs(name, lq_leaf, lp, **params) * kd_keep).sum()
            (g_lq,) = torch.autograd.grad(kd, lq_leaf)
        kd = kd.detach()
        del lp
        # back through log_softmax(s_kd / tau): d/ds_kd = (g - q_tau * sum g) / tau
        q_tau = lq.exp()
        g_kd = q_tau.mul(g_lq.sum(-1, keepdim=True)).neg_().add_(g_lq).mul_(kd_weight / tau)
        del g_lq
        q = q_tau if tau == 1.0 and self.full_vocabulary else None  # the CE term's softmax, reused
        return kd, self.onto_vocabulary(g_kd, student), q
