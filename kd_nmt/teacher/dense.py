"""``DenseTargets``: the teacher's scores over the whole vocabulary (a live model or ensemble)."""
from dataclasses import dataclass

import torch

from kd_nmt.teacher.scored import ScoredTargets
from kd_nmt.teacher.topk import TopKTargets


@dataclass(frozen=True, eq=False)
class DenseTargets(ScoredTargets):
    """scores ``[..., V]``: a single model's raw logits or an ensemble's averaged log-probs."""

    full_vocabulary = True

    def over_support(self, student):
        return student

    def onto_vocabulary(self, grad, student):
        return grad

    def check_matches(self, student_logits, nll_of_teacher):
        if self.scores.shape != student_logits.shape:
            raise ValueError(
                f"student logits {tuple(student_logits.shape)} and teacher {tuple(self.scores.shape)} differ in shape"
            )

    def top_k(self, k):
        if not 0 < k < self.scores.size(-1):
            return self
        top, where = self.scores.topk(k, dim=-1)
        return TopKTargets(ids=where, scores=top)

    def gold_nll(self, target, dtype):
        # -log softmax(scores)[target] without a [..., V] log-softmax
        t = self.scores.to(dtype)
        return torch.logsumexp(t, dim=-1) - t.gather(-1, target.unsqueeze(-1)).squeeze(-1)

    def reusable_gradient_buffer(self, rows, dtype):
        # written over only where it is this very memory, whole, and of the gradient's dtype
        scores = rows.scores
        if scores.dtype == dtype and scores.data_ptr() == self.scores.data_ptr() and self.scores.is_contiguous():
            return scores
        return None
