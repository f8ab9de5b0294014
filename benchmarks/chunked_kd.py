"""PROTOTYPE (benchmarks only, not used by kd_nmt): a memory-lean ``token_kd_loss``.

``kd_nmt.criterions.word_kd.token_kd_loss`` runs a divergence over ``[tokens, V]`` through
autograd: at V = 32k that keeps ~5 extra float32 ``[tokens x V]`` tensors alive until backward
(teacher and student log-softmax, exp, ratio, product, their gradients): peak memory 2.3x CE's
(``benchmarks/memory.py``).

The teacher is a constant, so the KD term's gradient with respect to the student logits can be
computed *in the forward pass*, a chunk of rows at a time (forward + ``autograd.grad`` of the
divergence on the chunk only), and stored in one ``[tokens x V]`` buffer; backward just scales
that buffer in place. Temporaries are bounded by the chunk size; the teacher's logits are free
as soon as the forward returns; every divergence of ``kd_nmt.divergences`` works unchanged.
Peak memory: CE + the teacher's logits during the forward, CE + 1 ``[tokens x V]`` in backward.

Limitations: the KD graph can be backpropagated once (``retain_graph`` double use would see the
buffer already scaled); no double backward (higher-order gradients).
"""
import torch
from torch.autograd.function import once_differentiable

from kd_nmt.divergences import divergence


class _PrecomputedGradKD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student_logits, teacher_logits, keep, name, temperature, chunk_rows, params):
        V = student_logits.size(-1)
        s_flat = student_logits.detach().reshape(-1, V)
        t_flat = teacher_logits.reshape(-1, V)
        keep_flat = keep.reshape(-1)
        grad = torch.zeros_like(s_flat)
        total = s_flat.new_zeros(())
        for start in range(0, s_flat.size(0), chunk_rows):
            rows = slice(start, start + chunk_rows)
            with torch.enable_grad():
                s = s_flat[rows].clone().requires_grad_(True)
                per = divergence(name, s, t_flat[rows], temperature=temperature, **params)
                chunk_loss = (per * keep_flat[rows]).sum()
                (g,) = torch.autograd.grad(chunk_loss, s)
            grad[rows] = g
            total += chunk_loss.detach()
        ctx.save_for_backward(grad)
        ctx.shape = student_logits.shape
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_output).view(ctx.shape), None, None, None, None, None, None


def chunked_token_kd_loss(student_logits, teacher, target, padding_idx, name, temperature=1.0,
                          topk=0, chunk_rows=256, **params):
    """Same value and gradient as ``token_kd_loss`` for a dense teacher; sparse goes the usual way."""
    from kd_nmt.criterions.word_kd import token_kd_loss

    if isinstance(teacher, tuple) or 0 < topk < teacher.size(-1):
        return token_kd_loss(student_logits, teacher, target, padding_idx, name, temperature, topk, **params)
    keep = target.ne(padding_idx).to(student_logits.dtype)
    return _PrecomputedGradKD.apply(student_logits, teacher, keep, name, temperature, chunk_rows, params)
