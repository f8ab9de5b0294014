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

The gold CE and the teacher's gold NLL come out of the same pass (for logging). First-order
only; the graph is backpropagated once (as fairseq's trainer does). Same values and gradients
as the plain computation (``tests/test_kd_objective.py``).
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from kd_nmt.divergences import divergence_from_log_probs

# Rows per chunk. Measured (V = 32k, 2,048 tokens, fkl, 2 cores): 256 rows (33 MB per chunk
# tensor) 0.30 s, 32 rows (4 MB: the chunk's temporaries stay in the 32 MB L3) 0.21 s.
KD_CHUNK_ROWS = 32


def _chunk(s, t, ids, target, keep, ce_weight, epsilon, kd_weight, name, temperature, params, nll_of_teacher):
    """One chunk: (d objective / d logits [r, V], stats [ce, nll, kd, teacher_nll]), >= float32.

    s: ``[r, V]`` student logits; t: ``[r, V]`` teacher scores, or ``[r, k]`` scores of the
    teacher's tokens ``ids`` ``[r, k]`` (a sparse teacher; ``ids`` None for a dense one);
    target ``[r]``; keep ``[r]`` (1.0 for real tokens, 0.0 for padding).
    """
    dtype = torch.float64 if s.dtype == torch.float64 else torch.float32  # at least float32
    s, t, keep = s.to(dtype), t.to(dtype), keep.to(dtype)
    tau = float(temperature)
    s_kd = s if ids is None else s.gather(-1, ids)  # the student over the teacher's support
    lq = F.log_softmax(s_kd if tau == 1.0 else s_kd / tau, dim=-1)  # student log-probs at tau
    lp = F.log_softmax(t if tau == 1.0 else t / tau, dim=-1)  # teacher log-probs at tau
    stats = s.new_zeros(4)
    if nll_of_teacher:
        lp1 = lp if tau == 1.0 else F.log_softmax(t, dim=-1)
        stats[3] = -(lp1.gather(-1, target[:, None]).squeeze(-1) * keep).sum()
    with torch.enable_grad():  # the divergence's own hand-written backward, w.r.t. log q
        lq_leaf = lq.detach().requires_grad_(True)
        kd = (divergence_from_log_probs(name, lq_leaf, lp, **params) * keep).sum()
        (g_lq,) = torch.autograd.grad(kd, lq_leaf)
    stats[2] = kd.detach()
    del lp
    # back through log_softmax(s_kd / tau): d/ds_kd = (g - q_tau * sum g) / tau
    q_tau = lq.exp()
    g_kd = q_tau.mul(g_lq.sum(-1, keepdim=True)).neg_().add_(g_lq).mul_(kd_weight / tau)
    del g_lq
    if ids is None:
        grad = g_kd
    else:
        grad = torch.zeros_like(s).scatter_add_(-1, ids, g_kd)
    if ce_weight:
        if tau == 1.0 and ids is None:
            ls, q = lq, q_tau
        else:
            ls = F.log_softmax(s, dim=-1)
            q = ls.exp()
        eps_i = epsilon / (s.size(-1) - 1)
        nll = -ls.gather(-1, target[:, None]).squeeze(-1) * keep
        smooth = -ls.sum(-1) * keep
        stats[0] = ((1.0 - epsilon - eps_i) * nll + eps_i * smooth).sum()
        stats[1] = nll.sum()
        # d CE / d logits = q - eps_i - (1 - eps - eps_i) * onehot(target), on real tokens
        w = (ce_weight * keep)[:, None]
        grad.add_(q.sub(eps_i).mul_(w))
        grad.scatter_add_(-1, target[:, None], -(1.0 - epsilon - eps_i) * w)
    return grad, stats


class _KDObjective(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, teacher, target, padding_idx, ce_weight, epsilon, kd_weight, name,
                temperature, params, consume_teacher, nll_of_teacher):
        V = logits.size(-1)
        student = logits.detach().reshape(-1, V)
        if isinstance(teacher, tuple):  # sparse: (ids [B, T, k], scores [B, T, k])
            ids, scores = (x.reshape(-1, x.size(-1)) for x in teacher)
        else:
            ids, scores = None, teacher.detach().reshape(-1, V)
        target = target.reshape(-1)
        keep = target.ne(padding_idx).to(torch.float32)
        reuse = (
            consume_teacher
            and ids is None
            and scores.dtype == student.dtype
            and scores.data_ptr() == teacher.data_ptr()
            and teacher.is_contiguous()
        )
        grad = scores if reuse else torch.empty_like(student)
        stats = torch.zeros(4, dtype=torch.float64, device=student.device)
        for start in range(0, student.size(0), KD_CHUNK_ROWS):
            rows = slice(start, start + KD_CHUNK_ROWS)
            g, st = _chunk(
                student[rows], scores[rows], None if ids is None else ids[rows], target[rows],
                keep[rows], ce_weight, epsilon, kd_weight, name, temperature, params, nll_of_teacher,
            )
            grad[rows] = g  # (over the teacher rows just read, when reuse)
            stats += st.double()
        ctx.save_for_backward(grad)
        ctx.shape = logits.shape
        stats = stats.to(torch.promote_types(student.dtype, torch.float32))
        objective = ce_weight * stats[0] + kd_weight * stats[2]
        ctx.mark_non_differentiable(stats)
        return objective, stats

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_objective, _grad_stats):
        (grad,) = ctx.saved_tensors
        return (grad.mul_(grad_objective).view(ctx.shape),) + (None,) * 11


def kd_objective(student_logits, teacher, target, padding_idx, *, kd_weight, name, temperature=1.0,
                 params=None, ce_weight=0.0, epsilon=0.0, consume_teacher=False, nll_of_teacher=False):
    """``ce_weight * CE + kd_weight * KD`` over the non-pad tokens, and its parts.

    student_logits: ``[B, T, V]`` (requires grad). teacher: ``[B, T, V]`` scores whose softmax
    is the teacher distribution (logits or log-probs), or a sparse teacher ``(ids [B, T, k],
    scores [B, T, k])`` (a cache, or a dense teacher's top k): then both sides are renormalised
    over the teacher's ids for the KD term, as ``token_kd_loss`` does. target: ``[B, T]`` gold
    ids; positions equal to ``padding_idx`` contribute nothing. ``epsilon``: label smoothing of
    the CE term. ``consume_teacher``: write the gradient over a dense ``teacher`` (the caller
    must not read it again).

    Returns ``(objective, ce, nll, kd, teacher_nll)``: scalar sums; only ``objective`` carries a
    gradient (to ``student_logits``). ``ce``/``nll`` are 0 when ``ce_weight`` is 0;
    ``teacher_nll`` (the teacher's gold NLL at temperature 1; dense teachers only) is 0 unless
    ``nll_of_teacher``.
    """
    if isinstance(teacher, tuple):
        ids, scores = teacher
        if ids.shape != scores.shape or ids.shape[:-1] != student_logits.shape[:-1]:
            raise ValueError(
                f"sparse teacher ids {tuple(ids.shape)} / scores {tuple(scores.shape)} do not match "
                f"student logits {tuple(student_logits.shape)} (expected [..., k] beside [..., V])"
            )
        if nll_of_teacher:
            raise ValueError("nll_of_teacher needs a dense teacher (a sparse one lacks the full distribution)")
    elif teacher.shape != student_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher {tuple(teacher.shape)} differ in shape"
        )
    objective, stats = _KDObjective.apply(
        student_logits, teacher, target, padding_idx, float(ce_weight), float(epsilon), float(kd_weight),
        name, temperature, dict(params or {}), consume_teacher, nll_of_teacher,
    )
    ce, nll, kd, teacher_nll = stats.unbind()
    return objective, ce, nll, kd, teacher_nll
