"""The word-KD training objective in one pass, its gradient computed during the forward.

    objective = ce_weight * label_smoothed_CE(student, gold) + kd_weight * sum_t D(p_T^tau || p_S^tau)

summed over the non-pad target tokens, with fairseq's label smoothing
(``label_smoothed_nll_loss``: ``(1 - eps - eps_i) * nll + eps_i * sum_v -log q_v``,
``eps_i = eps / (V - 1)``).

Why one pass: the teacher is a constant, so the gradient of the whole objective with respect to
the student's logits is known as soon as the forward runs. Computing it there,
``KD_CHUNK_ROWS`` rows at a time, keeps exactly one ``[tokens x V]`` tensor (that gradient)
alive until backward, instead of the autograd graphs of the CE (fairseq keeps the log-probs)
and of the divergence (log-softmaxes and probabilities of both sides), and reads the student's
logits and the teacher's distribution once, chunk by chunk, while each chunk is in cache. With
``consume_teacher=True`` the gradient is written over the teacher's ``[tokens x V]`` scores
(row by row, after they are read), so not even that buffer is new.

Precision: every chunk is computed in float32 (float64 for float64 logits) and the gradient is
kept in that dtype until backward, where it is multiplied by the incoming gradient (fairseq's
fp16 loss scale) *before* it is cast to the logits' dtype. Written in float16 before the scale,
the many small entries of a 32k-vocabulary gradient would flush to zero; this way the logits'
float16/bfloat16 gradient is the exact one rounded once, as on fairseq's own CE path (which
also keeps a float32 ``[tokens x V]``, its log-probs). The teacher buffer is reused only when it
has that dtype.

What the KD term compares, and its gradient over a chunk, is the teacher targets' own math
(``TeacherTargets.kd_chunk``, ``kd_nmt/teacher/``): this module is the chunking, the gold CE
and the autograd plumbing, the same for every kind of teacher. The gold CE and NLL (also when
``ce_weight`` is 0, for logging) and the teacher's gold NLL come out of the same pass.
First-order only; the graph is backpropagated once (as fairseq's trainer does). Same values and
gradients as the plain computation (``tests/test_kd_objective.py``).
"""
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

# Rows per chunk. Measured (V = 32k, 2,048 tokens, fkl, 2 cores): 256 rows (33 MB per chunk
# tensor) 0.30 s, 32 rows (4 MB: the chunk's temporaries stay in the 32 MB L3) 0.21 s.
KD_CHUNK_ROWS = 32


class ObjectiveParts(NamedTuple):
    """The objective and its parts: scalar sums over the non-pad target tokens (natural log).

    Only ``objective`` carries a gradient; the parts are for logging.
    """

    objective: torch.Tensor  # ce_weight * ce + kd_weight * kd
    ce: torch.Tensor  # label-smoothed CE of the gold tokens
    nll: torch.Tensor  # NLL of the gold tokens
    kd: torch.Tensor  # sum_t D(p_T^tau || p_S^tau)
    teacher_nll: torch.Tensor  # the teacher's NLL of the gold tokens, at temperature 1


@dataclass(frozen=True)
class _Settings:
    padding_idx: int
    ce_weight: float
    epsilon: float
    kd_weight: float
    name: str
    temperature: float
    params: dict
    consume_teacher: bool
    nll_of_teacher: bool


def _gold_nll(scores, target):
    """``-log softmax(scores)[target]`` ``[r]`` without a ``[r, V]`` log-softmax, and the logsumexp."""
    lse = torch.logsumexp(scores, dim=-1)
    return lse - scores.gather(-1, target[:, None]).squeeze(-1), lse


def _chunk(s, t, target, keep, kd_keep, cfg):
    """One chunk: (d objective / d logits ``[r, V]``, its ``ObjectiveParts``), >= float32.

    s: ``[r, V]`` student logits; t: the chunk's rows of the ``TeacherTargets`` (``[r, ...]``);
    target ``[r]``; keep ``[r]`` (1.0 where the CE term, its NLL and the teacher's NLL count,
    0.0 elsewhere); kd_keep ``[r]`` (the same for the KD term).
    """
    dtype = torch.float64 if s.dtype == torch.float64 else torch.float32  # at least float32
    s, keep, kd_keep = s.to(dtype), keep.to(dtype), kd_keep.to(dtype)
    kd, grad, q = t.kd_chunk(s, kd_keep, cfg.name, float(cfg.temperature), cfg.params, cfg.kd_weight)
    teacher_nll = (t.gold_nll(target, dtype) * keep).sum() if cfg.nll_of_teacher else s.new_zeros(())
    return _with_ce(s, target, keep, cfg, grad, kd, q, teacher_nll)


def _with_ce(s, target, keep, cfg, grad, kd, q, teacher_nll):
    """Add the gold CE's gradient to the KD term's ``grad`` ``[r, V]``: (grad, ``ObjectiveParts``).

    ``q``: the student's softmax of ``s`` if already computed, else None.
    """
    # gold CE and NLL: always (logged even when ce_weight is 0); a logsumexp and two sums
    eps, V = cfg.epsilon, s.size(-1)
    eps_i = eps / (V - 1)
    gold_nll, lse = _gold_nll(s, target)
    nll = (gold_nll * keep).sum()
    smooth = ((lse * V - s.sum(-1)) * keep).sum()  # sum_v -log q_v
    ce = (1.0 - eps - eps_i) * nll + eps_i * smooth
    if cfg.ce_weight:
        q = q if q is not None else s.sub(lse[:, None]).exp_()
        # d CE / d logits = q - eps_i - (1 - eps - eps_i) * onehot(target), on real tokens
        w = (cfg.ce_weight * keep)[:, None]
        grad.add_(q.sub(eps_i).mul_(w))
        grad.scatter_add_(-1, target[:, None], -(1.0 - eps - eps_i) * w)
    objective = cfg.ce_weight * ce + cfg.kd_weight * kd
    return grad, ObjectiveParts(objective, ce, nll, kd, teacher_nll)


class _KDObjective(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, teacher, target, ce_mask, kd_mask, cfg):
        V = logits.size(-1)
        student = logits.detach().reshape(-1, V)
        rows = teacher.reshape_positions(-1)  # [N, ...], sliced like the student's rows
        target = target.reshape(-1)
        real = target.ne(cfg.padding_idx)
        keep = (real if ce_mask is None else ce_mask.reshape(-1) & real).to(torch.float32)
        kd_keep = (real if kd_mask is None else kd_mask.reshape(-1) & real).to(torch.float32)
        grad_dtype = torch.promote_types(student.dtype, torch.float32)  # see the module docstring
        grad = teacher.reusable_gradient_buffer(rows, grad_dtype) if cfg.consume_teacher else None
        if grad is None:
            grad = torch.empty(student.shape, dtype=grad_dtype, device=student.device)
        totals = ObjectiveParts(*(torch.zeros((), dtype=torch.float64, device=student.device),) * 5)
        for start in range(0, student.size(0), KD_CHUNK_ROWS):
            chunk = slice(start, start + KD_CHUNK_ROWS)
            g, parts = _chunk(student[chunk], rows[chunk], target[chunk], keep[chunk], kd_keep[chunk], cfg)
            grad[chunk] = g  # (over the teacher rows just read, when reused)
            totals = ObjectiveParts(*(total + part.double() for total, part in zip(totals, parts)))
        ctx.save_for_backward(grad)
        ctx.shape, ctx.dtype = logits.shape, logits.dtype
        totals = ObjectiveParts(*(total.to(grad_dtype) for total in totals))
        ctx.mark_non_differentiable(*totals[1:])
        return tuple(totals)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_objective, *_grad_parts):
        (grad,) = ctx.saved_tensors
        # the incoming gradient (fp16 loss scale) applied before the cast: see the module docstring
        grad = grad.mul_(grad_objective.to(grad.dtype)).to(ctx.dtype).view(ctx.shape)
        return grad, None, None, None, None, None


def kd_objective(student_logits, teacher, target, padding_idx, *, kd_weight, name, temperature=1.0,
                 params=None, ce_weight=0.0, epsilon=0.0, consume_teacher=False,
                 nll_of_teacher=False, ce_mask=None, kd_mask=None) -> ObjectiveParts:
    """``ce_weight * CE + kd_weight * KD`` over the non-pad tokens, and its parts.

    student_logits: ``[B, T, V]`` (requires grad). teacher: the ``TeacherTargets`` of those
    positions (``kd_nmt/teacher/``): the KD term is theirs, as ``word_kd.kd_term`` computes it
    (dense scores; a sparse top k, both sides renormalised over the teacher's ids; a topk-tail
    or sample cache's own term). target: ``[B, T]`` gold ids; positions equal to
    ``padding_idx`` contribute nothing. ``epsilon``: label smoothing of the CE term.
    ``consume_teacher``: write the gradient over a dense ``teacher``'s scores (the caller must not
    read them again). ``ce_mask`` / ``kd_mask``: ``[B, T]`` bool, the positions the CE term (with
    the logged NLL and teacher NLL) / the KD term cover, within the non-pad ones (None: all of
    them); selective KD passes a ``kd_mask``, on-policy KD both.

    Returns ``ObjectiveParts(objective, ce, nll, kd, teacher_nll)``; ``teacher_nll`` (teachers of
    the full vocabulary only) is 0 unless ``nll_of_teacher``.
    """
    teacher.check_matches(student_logits, nll_of_teacher)
    cfg = _Settings(
        padding_idx, float(ce_weight), float(epsilon), float(kd_weight), name, temperature,
        dict(params or {}), consume_teacher, nll_of_teacher,
    )
    return ObjectiveParts(*_KDObjective.apply(student_logits, teacher, target, ce_mask, kd_mask, cfg))
