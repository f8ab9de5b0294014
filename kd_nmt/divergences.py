"""Token-level divergences between a teacher distribution p and a student distribution q.

Pure torch, no fairseq. Every function here takes *log-probabilities* ``[..., V]`` and returns
the divergence per position ``[...]``, summed over the vocabulary V. ``divergence()`` is the
entry point for logits: both sides go through ``log_softmax(x / temperature)`` first.

Conventions
- p = teacher, q = student; the student is the argument gradients flow to.
- True divergences: >= 0 and exactly 0 when p == q (not cross-entropy forms).
- 0 * log 0 = 0 (``torch.xlogy``-style): one-hot and -1e9-masked teachers give finite values and
  gradients. Mixtures m are formed in log space (``logaddexp``), never as log(p + q).
- The tau^2 factor and padding masks belong to the caller (the criterion).

    fkl   sum p log(p/q)
    rkl   sum q log(q/p)
    js    1/2 KL(p||m) + 1/2 KL(q||m),          m = (p + q) / 2
    tvd   1/2 sum |p - q|
    skl   KL(p || skew p + (1 - skew) q)         (DistiLLM skew KL)
    srkl  KL(q || (1 - skew) p + skew q)         (DistiLLM skew reverse KL)
    akl   g_h/(g_h+g_t) fkl + g_t/(g_h+g_t) rkl  (adaptive KL; head = teacher's top tokens with
          cumulative mass <= mu, top-1 always in; g = sum |p - q| over head / tail; detached)
    todi  sum_v w p log(p/q) + (1 - w) q log(q/p), w = sigmoid(beta (log p - log q)), detached
"""
import math

import torch
import torch.nn.functional as F

_LOG_HALF = math.log(0.5)


def _plogratio(log_a, log_b):
    """Elementwise a * (log a - log b) with a = exp(log_a), and 0 where a == 0."""
    a = log_a.exp()
    # where a underflows to 0 the product is 0; masking the ratio keeps inf - inf out of it
    return a * torch.where(a > 0, log_a - log_b, torch.zeros_like(log_a))


def fkl(student_lprobs, teacher_lprobs):
    """Forward KL(p || q), ``[..., V] -> [...]``. Mode-covering: the classic word-KD loss."""
    return _plogratio(teacher_lprobs, student_lprobs).sum(-1)


def rkl(student_lprobs, teacher_lprobs):
    """Reverse KL(q || p), ``[..., V] -> [...]``. Mode-seeking."""
    return _plogratio(student_lprobs, teacher_lprobs).sum(-1)


def js(student_lprobs, teacher_lprobs):
    """Jensen-Shannon divergence, ``[..., V] -> [...]``; bounded by log 2."""
    log_m = torch.logaddexp(student_lprobs, teacher_lprobs) + _LOG_HALF
    return 0.5 * (_plogratio(teacher_lprobs, log_m) + _plogratio(student_lprobs, log_m)).sum(-1)


def tvd(student_lprobs, teacher_lprobs):
    """Total variation distance 1/2 sum |p - q|, ``[..., V] -> [...]``; bounded by 1."""
    return 0.5 * (teacher_lprobs.exp() - student_lprobs.exp()).abs().sum(-1)


def _log_mix(log_a, log_b, weight_a):
    """log(weight_a * a + (1 - weight_a) * b), computed in log space."""
    if weight_a <= 0.0:
        return log_b
    if weight_a >= 1.0:
        return log_a
    return torch.logaddexp(log_a + math.log(weight_a), log_b + math.log1p(-weight_a))


def skl(student_lprobs, teacher_lprobs, skew=0.1):
    """Skew KL: KL(p || skew p + (1 - skew) q), ``[..., V] -> [...]`` (DistiLLM)."""
    _check_unit("skew", skew)
    return _plogratio(teacher_lprobs, _log_mix(teacher_lprobs, student_lprobs, skew)).sum(-1)


def srkl(student_lprobs, teacher_lprobs, skew=0.1):
    """Skew reverse KL: KL(q || (1 - skew) p + skew q), ``[..., V] -> [...]`` (DistiLLM)."""
    _check_unit("skew", skew)
    return _plogratio(student_lprobs, _log_mix(student_lprobs, teacher_lprobs, skew)).sum(-1)


def akl(student_lprobs, teacher_lprobs, mu=0.5):
    """Adaptive KL (Wu et al. 2024): FKL and RKL weighted by the head/tail gaps, ``[..., V] -> [...]``.

    The head is the teacher's most probable tokens whose cumulative mass is <= ``mu`` (the top-1
    token always belongs to it); the tail is the rest. g_h, g_t = sum |p - q| over head, tail.
    The weights g_h/(g_h+g_t) and g_t/(g_h+g_t) are detached (constants for the gradient).
    """
    _check_unit("mu", mu)
    with torch.no_grad():
        p = teacher_lprobs.exp()
        gap = (p - student_lprobs.exp()).abs()
        sorted_p, order = p.sort(dim=-1, descending=True)
        # a token is in the head if the cumulative mass up to and including it stays <= mu;
        # the most probable token always is
        cum = sorted_p.cumsum(-1)
        head_sorted = cum <= mu
        head_sorted[..., 0] = True
        head = torch.zeros_like(head_sorted).scatter_(-1, order, head_sorted)
        g_head = (gap * head).sum(-1)
        g_tail = (gap * ~head).sum(-1)
        total = g_head + g_tail
        # equal distributions: both gaps 0, the loss is 0 anyway; avoid 0/0
        w_head = torch.where(total > 0, g_head / total.clamp_min(1e-30), torch.full_like(total, 0.5))
    return w_head * fkl(student_lprobs, teacher_lprobs) + (1 - w_head) * rkl(student_lprobs, teacher_lprobs)


def todi(student_lprobs, teacher_lprobs, beta=1.0):
    """ToDi (2025): per-token mix of FKL and RKL, ``[..., V] -> [...]``.

    w_v = sigmoid(beta (log p_v - log q_v)) (detached): where the teacher puts more mass than the
    student, FKL dominates (pull q up); where less, RKL dominates (push q down).
    """
    with torch.no_grad():
        w = torch.sigmoid(beta * (teacher_lprobs - student_lprobs))
    forward = _plogratio(teacher_lprobs, student_lprobs)
    reverse = _plogratio(student_lprobs, teacher_lprobs)
    return (w * forward + (1 - w) * reverse).sum(-1)


def _check_unit(name, value):
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


DIVERGENCES = {
    "fkl": fkl,
    "rkl": rkl,
    "js": js,
    "tvd": tvd,
    "skl": skl,
    "srkl": srkl,
    "akl": akl,
    "todi": todi,
}


def log_probs(logits, temperature=1.0):
    """``log_softmax(logits / temperature)`` in at least float32."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    x = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    return F.log_softmax(x / temperature if temperature != 1.0 else x, dim=-1)


def divergence_from_log_probs(name, student_lprobs, teacher_lprobs, **params):
    """Divergence ``name`` between already-normalised log-probabilities ``[..., V] -> [...]``."""
    try:
        fn = DIVERGENCES[name]
    except KeyError:
        raise ValueError(f"unknown divergence {name!r}; choose from: {' '.join(DIVERGENCES)}") from None
    try:
        return fn(student_lprobs, teacher_lprobs, **params)
    except TypeError as exc:
        raise TypeError(f"divergence {name!r}: {exc}") from None


def divergence(name, student_logits, teacher_logits, temperature=1.0, **params):
    """Divergence ``name`` of the tempered teacher vs student distributions, ``[..., V] -> [...]``.

    Inputs are logits or log-probabilities (either: both go through log_softmax(x / temperature)).
    params: ``skew`` (skl, srkl; default 0.1), ``mu`` (akl; 0.5), ``beta`` (todi; 1.0).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}"
        )
    return divergence_from_log_probs(
        name, log_probs(student_logits, temperature), log_probs(teacher_logits, temperature), **params
    )
