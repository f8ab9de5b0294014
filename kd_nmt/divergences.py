"""Token-level divergences between a teacher and a student distribution.

Pure tensor functions (no fairseq), in the style of torchtune's
``modules/loss/kd_losses.py``: one small documented function per divergence,
shapes stated, and no reduction over positions.

Conventions
-----------
* ``p`` is the **teacher** distribution, ``q`` the **student** distribution,
  both over the last dimension (the vocabulary, size ``V``).
* Inputs have shape ``[..., V]``; every divergence returns shape ``[...]``:
  the divergence at each position, summed over ``V``.  Nothing is averaged
  over positions and **no padding mask is applied here: masking positions
  (and any reduction over them) belongs to the caller**.  The ``tau**2``
  gradient-scale factor of temperature distillation also belongs to the
  caller.
* Values are true divergences (``>= 0`` up to rounding, and exactly ``0``
  when the two distributions are equal), not cross-entropy forms.
* ``divergence(name, student_logits, teacher_logits, temperature)`` takes
  unnormalised logits *or* log-probabilities (both sides go through
  ``log_softmax(x / temperature)``, which is shift invariant).
  ``divergence_from_log_probs(name, student_lprobs, teacher_lprobs)`` and the
  functions in ``DIVERGENCES`` take already-normalised log-probabilities
  (e.g. a cached or renormalised top-k teacher) and skip that step.
* Gradients flow to both arguments (usually only the student needs them).
  The AKL and ToDi weights are detached: constants for the gradient.
* Log-probabilities of ``-inf`` are accepted and mean probability 0
  (``0 * log 0 = 0``); they are clamped to ``finfo.min / 8``, so nothing
  produces NaN.  A divergence that is mathematically infinite (e.g. ``rkl``
  when the student puts mass where the teacher has exactly zero probability)
  then comes out astronomically large but finite.  With finite inputs
  (including ``-1e9``-style masked logits and one-hot teachers) values and
  gradients are finite.  NaN inputs propagate.
* Computation happens in the promoted input dtype, at least float32
  (half/bfloat16 inputs are upcast); values come out in that dtype,
  gradients in the inputs' dtypes.
* Mixtures (``js``, ``skl``, ``srkl``) are computed in log space relative to
  each side (``log(m/p)``, ``log(m/q)``), never as ``log(p + q)``: no
  ``log 0``, no cancellation, exactly 0 at ``p == q``; where the mixture is
  far below one side, as a log-sum-exp of log-probabilities, so ``skew = 0``
  gives fkl / rkl to rounding even for log-ratios far below float32's
  ``log(tiny)`` (about -104).
* Memory: each divergence is one ``torch.autograd.Function`` with a
  hand-written backward (checked against numerical gradients in the tests).
  It saves only its two inputs (alive anyway) and recomputes in the
  backward, so no ``[..., V]`` intermediate outlives the forward.  Not twice
  differentiable.

Formulas (sums over the vocabulary ``v``)
-----------------------------------------
=====  ===============================================================  ==========
name   divergence                                                       params
=====  ===============================================================  ==========
fkl    KL(p||q)  = sum p log(p/q)                                       -
rkl    KL(q||p)  = sum q log(q/p)                                       -
js     1/2 KL(p||m) + 1/2 KL(q||m),  m = (p+q)/2                        -
tvd    1/2 sum |p - q|                                                  -
skl    KL(p || a p + (1-a) q)                                           skew=a=0.1
srkl   KL(q || (1-a) p + a q)                                           skew=a=0.1
akl    w_h fkl + w_t rkl,  w_h = g_h/(g_h+g_t), w_t = g_t/(g_h+g_t)     mu=0.5
       g_h / g_t = sum |p - q| over the head / tail (detached); head =
       the teacher's most probable tokens whose cumulative mass <= mu,
       the top-1 token always included
todi   sum w p log(p/q) + (1-w) q log(q/p),                             beta=1.0
       w = sigmoid(beta (log p - log q))  (detached)
abkd   -1/(a b) sum (p^a q^b - a/(a+b) p^(a+b) - b/(a+b) q^(a+b))       ab_alpha=a
       (Cichocki et al. 2011's alpha-beta divergence, ABKD: Wang et     =0.2,
       al. 2025); b = 0: 1/a^2 sum (p^a log(p^a/q^a) - p^a + q^a),      ab_beta=b
       a = 0: 1/b^2 sum (q^b log(q^b/p^b) - q^b + p^b); a, b >= 0       =0.7
=====  ===============================================================  ==========

``skew = 0`` turns skl into fkl and srkl into rkl; ``beta = 0`` turns todi
into ``(fkl + rkl) / 2``; ``(ab_alpha, ab_beta) = (1, 0)`` turns abkd into fkl,
``(0, 1)`` into rkl, ``(0.5, 0.5)`` into 4 x the squared Hellinger distance
``2 sum (sqrt p - sqrt q)^2``. ABKD's defaults are its public code's GPT-2
scripts' (alpha 0.2, alpha + beta 0.9).
"""

import math
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = [
    "DIVERGENCES",
    "DIVERGENCE_PARAMS",
    "DEFAULT_SKEW",
    "DEFAULT_MU",
    "DEFAULT_BETA",
    "DEFAULT_AB_ALPHA",
    "DEFAULT_AB_BETA",
    "divergence_params",
    "divergence",
    "divergence_from_log_probs",
    "log_probs",
    "akl_head_mask",
    "fkl",
    "rkl",
    "js",
    "tvd",
    "skl",
    "srkl",
    "akl",
    "todi",
    "abkd",
]

# Rows of [N, V] processed at once by the (no-grad) AKL head/tail weights, so that
# the sort temporaries stay bounded (~16M elements) whatever the batch size.
_AKL_CHUNK_ELEMS = 1 << 24

#: Parameter defaults, here only (the criteria's ``--kd-skew/--kd-mu/--kd-beta`` reuse them).
DEFAULT_SKEW = 0.1
DEFAULT_MU = 0.5
DEFAULT_BETA = 1.0
DEFAULT_AB_ALPHA = 0.2
DEFAULT_AB_BETA = 0.7

Tensor = torch.Tensor
Grads = Tuple[Optional[Tensor], Optional[Tensor]]


# --------------------------------------------------------------------------- helpers


def _compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    dtype = dtypes[0]
    for other in dtypes[1:]:
        dtype = torch.promote_types(dtype, other)
    if not dtype.is_floating_point:
        raise TypeError(f"divergences need floating-point inputs, got {dtype}")
    if torch.finfo(dtype).bits < 32:
        dtype = torch.float32
    return dtype


def log_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``log_softmax(logits / temperature)`` over the last dim, at least in float32.

    Args:
        logits: ``[..., V]`` unnormalised logits (or log-probabilities).
        temperature: softmax temperature, ``> 0``.

    Returns:
        ``[..., V]`` log-probabilities (float32, or float64 for float64 input).
    """
    if not isinstance(temperature, torch.Tensor):
        temperature = float(temperature)
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    x = logits.to(_compute_dtype(logits.dtype))
    if not (isinstance(temperature, float) and temperature == 1.0):
        x = x / temperature
    return F.log_softmax(x, dim=-1)


def _check_pair(student_lprobs: Tensor, teacher_lprobs: Tensor) -> None:
    if student_lprobs.shape != teacher_lprobs.shape:
        raise ValueError(
            "student and teacher must have the same shape [..., V], got "
            f"{tuple(student_lprobs.shape)} and {tuple(teacher_lprobs.shape)}"
        )
    if student_lprobs.dim() == 0:
        raise ValueError("inputs must have a vocabulary dimension [..., V]")
    _compute_dtype(student_lprobs.dtype, teacher_lprobs.dtype)


def _prepare(student_lprobs: Tensor, teacher_lprobs: Tensor) -> Tuple[Tensor, Tensor]:
    """``(log q, log p)`` in the compute dtype, ``-inf`` clamped to ``finfo.min / 8``.

    The floor keeps every difference of two log-probs, every probability-weighted
    sum of them and every gradient finite.  Copies are made only when needed.
    """
    dtype = _compute_dtype(student_lprobs.dtype, teacher_lprobs.dtype)
    floor = torch.finfo(dtype).min / 8

    def fix(x: Tensor) -> Tensor:
        x = x.to(dtype)
        if x.numel() and bool(x.min() < floor):  # only -inf (or absurd) entries
            x = x.clamp(min=floor)
        return x

    return fix(student_lprobs), fix(teacher_lprobs)


def _check_unit(name: str, value) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def _log_mix_ratio(d: Tensor, a: float) -> Tensor:
    """``log(a + (1 - a) exp(d))`` elementwise (a new tensor), stable, exactly 0 at ``d = 0``.

    With ``d = log y - log x`` this is ``log(m / x)`` for ``m = a x + (1 - a) y``.
    Split ``d = P + N``, ``P = max(d, 0)``, ``N = d - P <= 0``; then it is
    ``P + log1p((1 - a) expm1(N) + a expm1(-P))`` (one ``expm1`` term is 0),
    which never overflows and is accurate near ``d = 0``. Where the ``log1p``
    argument falls below -1/2 (``m / x`` small: ``a`` small and ``d`` very
    negative, where ``log1p`` would round ``m / x`` to ``a``, or to 0 for
    ``a = 0``), it is ``logaddexp(log a, log(1 - a) + d)`` instead: equal to
    ``d`` for ``a = 0`` (so skl/srkl with skew 0 are fkl/rkl), never ``-inf``.
    """
    if a == 1.0:  # m = x
        return torch.zeros_like(d)
    pos = d.clamp(min=0)
    inner = torch.sub(d, pos).expm1_().mul_(1.0 - a)
    if a != 0.0:
        inner.add_(torch.neg(pos).expm1_(), alpha=a)
    far = torch.add(d, math.log1p(-a))
    if a != 0.0:
        far = torch.logaddexp(far, far.new_tensor(math.log(a)))
    near = inner.ge(-0.5)
    return torch.where(near, inner.log1p_().add_(pos), far)


def _mix_slope(d: Tensor, a: float) -> Tensor:
    """Derivative of :func:`_log_mix_ratio`: ``(1 - a) e^d / (a + (1 - a) e^d)`` (new tensor)."""
    if a == 0.0:
        return torch.ones_like(d)
    return torch.add(d, math.log1p(-a) - math.log(a)).sigmoid_()


# --------------------------------------------------------------------------- the math
# Each divergence is a pair (value, grads) over prepared log-probs lq = log q, lp = log p:
#   value(lq, lp, param) -> ([...] values, extra tensors to save)
#   grads(lq, lp, param, extra, need_q, need_p) -> (d/d lq, d/d lp) of the per-token terms
# The autograd Function below multiplies the grads by the incoming [...] gradient.


def _fkl_value(lq, lp, _param):
    return torch.sub(lp, lq).mul_(lp.exp()).sum(-1), ()


def _fkl_grads(lq, lp, _param, _extra, need_q, need_p) -> Grads:
    # d/dlq p (lp - lq) = -p ;  d/dlp = p (1 + lp - lq)
    p = lp.exp()
    gp = torch.sub(lp, lq).add_(1.0).mul_(p) if need_p else None
    return (p.neg_() if need_q else None), gp


def _rkl_value(lq, lp, _param):
    return _fkl_value(lp, lq, _param)


def _rkl_grads(lq, lp, _param, _extra, need_q, need_p) -> Grads:
    gp, gq = _fkl_grads(lp, lq, _param, _extra, need_p, need_q)
    return gq, gp


def _js_parts(lq, lp):
    """``(log(m/p), log(m/q))`` for ``m = (p + q) / 2``, each accurate (new tensors)."""
    d = torch.sub(lq, lp)
    pos = d.clamp(min=0)
    neg = d.sub_(pos)
    # L = log1p((expm1(N) + expm1(-P)) / 2): log(m/p) = P + L, log(m/q) = L - N
    mix = torch.neg(pos).expm1_().add_(torch.expm1(neg)).mul_(0.5).log1p_()
    return pos.add_(mix), mix.sub_(neg)


def _js_value(lq, lp, _param):
    log_m_p, log_m_q = _js_parts(lq, lp)
    value = log_m_p.mul_(lp.exp()).sum(-1)
    value.add_(log_m_q.mul_(lq.exp()).sum(-1))
    return value.mul_(-0.5), ()


def _js_grads(lq, lp, _param, _extra, need_q, need_p) -> Grads:
    # d/dlq = 1/2 q log(q/m) ; d/dlp = 1/2 p log(p/m)
    log_m_p, log_m_q = _js_parts(lq, lp)
    gq = log_m_q.mul_(lq.exp()).mul_(-0.5) if need_q else None
    gp = log_m_p.mul_(lp.exp()).mul_(-0.5) if need_p else None
    return gq, gp


def _tvd_value(lq, lp, _param):
    return torch.sub(lp.exp(), lq.exp()).abs_().sum(-1).mul_(0.5), ()


def _tvd_grads(lq, lp, _param, _extra, need_q, need_p) -> Grads:
    # d/dlq 1/2 |p - q| = -1/2 sign(p - q) q ; d/dlp = 1/2 sign(p - q) p  (sign(0) = 0)
    q = lq.exp()
    half_sign = lp.exp().sub_(q).sign_().mul_(0.5)
    gp = torch.mul(half_sign, lp.exp()) if need_p else None
    gq = half_sign.mul_(q).neg_() if need_q else None
    return gq, gp


def _skewed_value(lx, ly, a):
    """``KL(x || a x + (1 - a) y) = -sum x log(m/x)``."""
    return _log_mix_ratio(torch.sub(ly, lx), a).mul_(lx.exp()).sum(-1).neg_()


def _skewed_grads(lx, ly, a, need_x, need_y) -> Grads:
    # f = -x G(D), D = ly - lx, G = log(m/x), s = G'(D) = (1 - a) y / m
    # df/dlx = x (s - G) ; df/dly = -x s
    if a == 1.0:
        zero = torch.zeros_like(lx)
        return (zero if need_x else None), (zero.clone() if need_y else None)
    d = torch.sub(ly, lx)
    neg_g = _log_mix_ratio(d, a).neg_() if need_x else None  # before d becomes s
    s = _mix_slope(d, a) if a == 0.0 else d.add_(math.log1p(-a) - math.log(a)).sigmoid_()
    x = lx.exp()
    gx = neg_g.add_(s).mul_(x) if need_x else None
    gy = s.mul_(x).neg_() if need_y else None
    return gx, gy


def _skl_value(lq, lp, skew):
    return _skewed_value(lp, lq, skew), ()


def _skl_grads(lq, lp, skew, _extra, need_q, need_p) -> Grads:
    gp, gq = _skewed_grads(lp, lq, skew, need_p, need_q)
    return gq, gp


def _srkl_value(lq, lp, skew):
    return _skewed_value(lq, lp, skew), ()


def _srkl_grads(lq, lp, skew, _extra, need_q, need_p) -> Grads:
    return _skewed_grads(lq, lp, skew, need_q, need_p)


def _head_mask(p: Tensor, mu: float) -> Tensor:
    """Boolean head mask ``[..., V]`` from teacher probabilities ``p``.

    Head = the largest prefix of the teacher's tokens sorted by probability
    (descending) whose cumulative mass is ``<= mu``, plus the top-1 token(s).
    Implemented as a threshold on ``p``, so it does not depend on how ties are
    ordered: tokens tied with the first token that does not fit all go to the
    tail; tokens tied for the top probability are all in the head.
    """
    V = p.shape[-1]
    sorted_p = p.sort(dim=-1, descending=True).values
    fits = (sorted_p.cumsum(-1) <= mu).sum(-1, keepdim=True)  # prefix length
    first_out = sorted_p.gather(-1, fits.clamp(max=V - 1))
    first_out.masked_fill_(fits >= V, -1.0)  # everything fits: no threshold
    top = sorted_p[..., :1].clone()
    del sorted_p
    return (p > first_out) | (p >= top)


def akl_head_mask(teacher_lprobs: Tensor, mu: float = DEFAULT_MU) -> Tensor:
    """The head used by :func:`akl`: ``[..., V]`` teacher log-probs -> bool ``[..., V]``.

    ``True`` for the teacher's most probable tokens whose cumulative mass is
    ``<= mu`` (the top-1 token always included; ties: see ``_head_mask``).
    """
    mu = _check_unit("mu", mu)
    with torch.no_grad():
        lp = teacher_lprobs.to(_compute_dtype(teacher_lprobs.dtype))
        return _head_mask(lp.exp(), mu)


def _akl_weights(lq: Tensor, lp: Tensor, mu: float) -> Tensor:
    """Detached AKL weights ``[..., 2]``: ``(w_head, w_tail)`` per position."""
    V = lp.shape[-1]
    lq2, lp2 = lq.reshape(-1, V), lp.reshape(-1, V)
    n = lp2.shape[0]
    g = lp2.new_empty(n, 2)  # (g_head, g_tail) per row
    rows = max(1, _AKL_CHUNK_ELEMS // max(V, 1))
    for s in range(0, n, rows):  # bounded sort temporaries; no loop over V
        p = lp2[s : s + rows].exp()
        head = _head_mask(p, mu)
        gap = p.sub_(lq2[s : s + rows].exp()).abs_()  # reuses p's storage
        g[s : s + rows, 0] = gap.masked_fill(~head, 0.0).sum(-1)
        g[s : s + rows, 1] = gap.masked_fill_(head, 0.0).sum(-1)
    total = g.sum(-1, keepdim=True)
    # total == 0 only when p == q, where fkl == rkl == 0: any weights do.
    w = torch.where(total > 0, g / total.clamp(min=torch.finfo(g.dtype).tiny), 0.5)
    return w.reshape(*lp.shape[:-1], 2)


def _akl_value(lq, lp, mu):
    w = _akl_weights(lq, lp, mu)
    w_head, w_tail = w[..., :1], w[..., 1:]
    # w_h p (lp - lq) + w_t q (lq - lp) = (lp - lq) (w_h p - w_t q)
    coef = torch.mul(lq.exp(), w_tail).neg_().add_(torch.mul(lp.exp(), w_head))
    return coef.mul_(torch.sub(lp, lq)).sum(-1), (w,)


def _akl_grads(lq, lp, mu, extra, need_q, need_p) -> Grads:
    # w_h * fkl grads + w_t * rkl grads, weights constant
    (w,) = extra
    w_head, w_tail = w[..., :1], w[..., 1:]
    fq, fp = _fkl_grads(lq, lp, None, (), need_q, need_p)
    rq, rp = _rkl_grads(lq, lp, None, (), need_q, need_p)
    gq = fq.mul_(w_head).add_(rq.mul_(w_tail)) if need_q else None
    gp = fp.mul_(w_head).add_(rp.mul_(w_tail)) if need_p else None
    return gq, gp


def _todi_value(lq, lp, beta):
    diff = torch.sub(lp, lq)
    p, q = lp.exp(), lq.exp()
    w = torch.mul(diff, beta).sigmoid_()
    # w p diff - (1 - w) q diff = diff (w (p + q) - q)
    return w.mul_(p.add_(q)).sub_(q).mul_(diff).sum(-1), ()


def _todi_grads(lq, lp, beta, _extra, need_q, need_p) -> Grads:
    # f = w p diff - (1 - w) q diff, diff = lp - lq, w constant:
    # df/dlq = -w p + (1 - w) q (1 - diff) ; df/dlp = w p (1 + diff) - (1 - w) q
    diff = torch.sub(lp, lq)
    w = torch.mul(diff, beta).sigmoid_()
    wp = lp.exp().mul_(w)  # w p
    wq = lq.exp().mul_(w.neg_().add_(1.0))  # (1 - w) q
    del w
    gq = torch.neg(diff).add_(1.0).mul_(wq).sub_(wp) if need_q else None
    gp = diff.add_(1.0).mul_(wp).sub_(wq) if need_p else None
    return gq, gp


def _abkd_value(lq, lp, ab):
    a, b = ab
    if b == 0.0:  # 1/a^2 sum p^a a (lp - lq) - p^a + q^a
        pa, qa = torch.mul(lp, a).exp_(), torch.mul(lq, a).exp_()
        return torch.sub(lp, lq).mul_(pa).mul_(a).sub_(pa).add_(qa).sum(-1).div_(a * a), ()
    if a == 0.0:  # the same with the roles of p and q (and a, b) swapped
        return _abkd_value(lp, lq, (b, 0.0))
    s = a + b
    # p^a q^b - a/s p^s - b/s q^s with d = lq - lp, factored by the larger side so that no
    # exponent is positive (no overflow where one side is ~0) and, as a/s + b/s = 1, written
    # with expm1: exactly 0 where p == q. d <= 0: p^s (expm1(b d) - b/s expm1(s d));
    # d > 0: q^s (expm1(-a d) - a/s expm1(-s d)).
    d = torch.sub(lq, lp)
    below = d.le(0)
    x = d.clamp(max=0)  # the p-side branch, where q <= p
    low = torch.mul(x, b).expm1_().sub_(torch.mul(x, s).expm1_().mul_(b / s)).mul_(torch.mul(lp, s).exp_())
    x = d.neg_().clamp_(max=0)  # the q-side branch, where q > p
    high = torch.mul(x, a).expm1_().sub_(torch.mul(x, s).expm1_().mul_(a / s)).mul_(torch.mul(lq, s).exp_())
    return torch.where(below, low, high).sum(-1).div_(-a * b), ()


def _abkd_grads(lq, lp, ab, _extra, need_q, need_p) -> Grads:
    a, b = ab
    if b == 0.0:
        # d/dlq = (q^a - p^a) / a ; d/dlp = p^a (lp - lq)
        pa = torch.mul(lp, a).exp_()
        gq = torch.mul(lq, a).exp_().sub_(pa).div_(a) if need_q else None
        gp = torch.sub(lp, lq).mul_(pa) if need_p else None
        return gq, gp
    if a == 0.0:
        gp, gq = _abkd_grads(lp, lq, (b, 0.0), _extra, need_p, need_q)
        return gq, gp
    # d/dlq = -q^b (p^a - q^a) / a ; d/dlp = -p^a (q^b - p^b) / b
    pa, qb = torch.mul(lp, a).exp_(), torch.mul(lq, b).exp_()
    gq = torch.mul(lq, a).exp_().sub_(pa).mul_(qb).div_(a) if need_q else None
    gp = torch.mul(lp, b).exp_().sub_(qb).mul_(pa).div_(b) if need_p else None
    return gq, gp


class _Divergence(torch.autograd.Function):
    """Sum over V of a per-token divergence term, with a hand-written backward.

    Saves only the inputs (no ``[..., V]`` intermediates) and recomputes.
    """

    @staticmethod
    def forward(ctx, student_lprobs, teacher_lprobs, value_fn, grads_fn, param):
        lq, lp = _prepare(student_lprobs, teacher_lprobs)
        value, extra = value_fn(lq, lp, param)
        ctx.grads_fn, ctx.param = grads_fn, param
        ctx.save_for_backward(student_lprobs, teacher_lprobs, *extra)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        student_lprobs, teacher_lprobs, *extra = ctx.saved_tensors
        need_q, need_p = ctx.needs_input_grad[:2]
        lq, lp = _prepare(student_lprobs, teacher_lprobs)
        gq, gp = ctx.grads_fn(lq, lp, ctx.param, tuple(extra), need_q, need_p)
        g = grad.to(lq.dtype).unsqueeze(-1)
        # autograd casts each gradient back to its input's dtype
        return (
            gq.mul_(g) if gq is not None else None,
            gp.mul_(g) if gp is not None else None,
            None,
            None,
            None,
        )


def _apply(value_fn, grads_fn, student_lprobs, teacher_lprobs, param=None) -> Tensor:
    _check_pair(student_lprobs, teacher_lprobs)
    return _Divergence.apply(student_lprobs, teacher_lprobs, value_fn, grads_fn, param)


# --------------------------------------------------------------------------- divergences
# All take log-probabilities (student first), shape [..., V], and return [...].


def fkl(student_lprobs: Tensor, teacher_lprobs: Tensor) -> Tensor:
    """Forward KL ``KL(p || q) = sum_v p (log p - log q)``: mode covering.

    Args:
        student_lprobs: ``[..., V]`` student log-probabilities ``log q``.
        teacher_lprobs: ``[..., V]`` teacher log-probabilities ``log p``.

    Returns:
        ``[...]`` per-position divergence (no masking, no reduction: padding
        masks belong to the caller).
    """
    return _apply(_fkl_value, _fkl_grads, student_lprobs, teacher_lprobs)


def rkl(student_lprobs: Tensor, teacher_lprobs: Tensor) -> Tensor:
    """Reverse KL ``KL(q || p) = sum_v q (log q - log p)``: mode seeking.  Shapes as :func:`fkl`."""
    return _apply(_rkl_value, _rkl_grads, student_lprobs, teacher_lprobs)


def js(student_lprobs: Tensor, teacher_lprobs: Tensor) -> Tensor:
    """Jensen-Shannon ``1/2 KL(p || m) + 1/2 KL(q || m)``, ``m = (p + q) / 2``.

    ``log(m/p)`` and ``log(m/q)`` are each computed directly (accurate even
    where one side has probability 0).  Bounded by ``log 2``.  Shapes as :func:`fkl`.
    """
    return _apply(_js_value, _js_grads, student_lprobs, teacher_lprobs)


def tvd(student_lprobs: Tensor, teacher_lprobs: Tensor) -> Tensor:
    """Total variation distance ``1/2 sum_v |p - q|``; bounded by 1.  Shapes as :func:`fkl`."""
    return _apply(_tvd_value, _tvd_grads, student_lprobs, teacher_lprobs)


def skl(student_lprobs: Tensor, teacher_lprobs: Tensor, *, skew: float = DEFAULT_SKEW) -> Tensor:
    """Skew forward KL ``KL(p || skew p + (1 - skew) q)`` (DistiLLM).

    ``skew`` in ``[0, 1]``: 0 gives :func:`fkl`, 1 gives 0.  Bounded by
    ``-log(skew)``.  Shapes as :func:`fkl`.
    """
    skew = _check_unit("skew", skew)
    return _apply(_skl_value, _skl_grads, student_lprobs, teacher_lprobs, skew)


def srkl(student_lprobs: Tensor, teacher_lprobs: Tensor, *, skew: float = DEFAULT_SKEW) -> Tensor:
    """Skew reverse KL ``KL(q || (1 - skew) p + skew q)`` (DistiLLM).

    ``skew`` in ``[0, 1]``: 0 gives :func:`rkl`, 1 gives 0.  Bounded by
    ``-log(skew)``.  Shapes as :func:`fkl`.
    """
    skew = _check_unit("skew", skew)
    return _apply(_srkl_value, _srkl_grads, student_lprobs, teacher_lprobs, skew)


def akl(student_lprobs: Tensor, teacher_lprobs: Tensor, *, mu: float = DEFAULT_MU) -> Tensor:
    """Adaptive KL (Wu et al., 2024): ``w_h * fkl + w_t * rkl``.

    ``w_h = g_h / (g_h + g_t)``, ``w_t = g_t / (g_h + g_t)``, where ``g_h`` and
    ``g_t`` are ``sum |p - q|`` over the head and the tail of the teacher
    distribution (:func:`akl_head_mask`, ``mu`` in ``[0, 1]``); the weights are
    detached (constants for the gradient).  One sort over ``V`` per position
    (in bounded chunks of positions).  Shapes as :func:`fkl`.
    """
    mu = _check_unit("mu", mu)
    return _apply(_akl_value, _akl_grads, student_lprobs, teacher_lprobs, mu)


def todi(student_lprobs: Tensor, teacher_lprobs: Tensor, *, beta: float = DEFAULT_BETA) -> Tensor:
    """Token-wise divergence interpolation ``sum_v w p log(p/q) + (1 - w) q log(q/p)``.

    ``w = sigmoid(beta * (log p - log q))`` per token, detached (a constant for
    the gradient): forward KL where the teacher dominates, reverse KL where the
    student does.  ``beta = 0`` gives ``(fkl + rkl) / 2``.  Shapes as :func:`fkl`.
    """
    beta = float(beta)
    if not math.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta}")
    return _apply(_todi_value, _todi_grads, student_lprobs, teacher_lprobs, beta)


def abkd(student_lprobs: Tensor, teacher_lprobs: Tensor, *, ab_alpha: float = DEFAULT_AB_ALPHA,
         ab_beta: float = DEFAULT_AB_BETA) -> Tensor:
    """The alpha-beta divergence of ABKD (Wang et al., ICML 2025; Cichocki et al. 2011).

    ``-1/(a b) sum_v (p^a q^b - a/(a+b) p^(a+b) - b/(a+b) q^(a+b))`` with ``a = ab_alpha``,
    ``b = ab_beta``; its limits at ``b = 0`` and ``a = 0`` (see the module table). ``(1, 0)``
    is :func:`fkl`, ``(0, 1)`` is :func:`rkl`; ``a`` trades the teacher's mode-covering pull
    (hardness concentration), ``b`` the student's mode seeking (confidence concentration).
    Both ``>= 0`` and not both 0 (negative powers of near-zero probabilities overflow).
    Shapes as :func:`fkl`.
    """
    a, b = float(ab_alpha), float(ab_beta)
    if not (math.isfinite(a) and math.isfinite(b) and a >= 0 and b >= 0 and a + b > 0):
        raise ValueError(f"ab_alpha and ab_beta must be finite, >= 0 and not both 0, got {a} and {b}")
    return _apply(_abkd_value, _abkd_grads, student_lprobs, teacher_lprobs, (a, b))


# --------------------------------------------------------------------------- registry

DIVERGENCES: Dict[str, Callable[..., Tensor]] = {
    "fkl": fkl,
    "rkl": rkl,
    "js": js,
    "tvd": tvd,
    "skl": skl,
    "srkl": srkl,
    "akl": akl,
    "todi": todi,
    "abkd": abkd,
}

#: name -> {parameter: default} (empty dict: the divergence takes no parameter).
DIVERGENCE_PARAMS: Dict[str, Dict[str, float]] = {
    "fkl": {},
    "rkl": {},
    "js": {},
    "tvd": {},
    "skl": {"skew": DEFAULT_SKEW},
    "srkl": {"skew": DEFAULT_SKEW},
    "akl": {"mu": DEFAULT_MU},
    "todi": {"beta": DEFAULT_BETA},
    "abkd": {"ab_alpha": DEFAULT_AB_ALPHA, "ab_beta": DEFAULT_AB_BETA},
}


def divergence_params(name: str, **candidates) -> Dict[str, float]:
    """The subset of ``candidates`` (e.g. every ``--kd-*`` parameter) that divergence ``name`` takes."""
    return {k: v for k, v in candidates.items() if k in DIVERGENCE_PARAMS[name]}


def _check_name_and_params(name: str, params: dict) -> None:
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; valid names: {', '.join(DIVERGENCES)}")
    allowed = DIVERGENCE_PARAMS[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no parameters"
        raise TypeError(f"divergence {name!r} got unexpected parameter(s) {unknown}; it takes {takes}")


def divergence_from_log_probs(
    name: str, student_lprobs: Tensor, teacher_lprobs: Tensor, **params
) -> Tensor:
    """Divergence ``name`` between already-normalised log-probabilities.

    Args:
        name: one of ``DIVERGENCES`` (``fkl rkl js tvd skl srkl akl todi abkd``).
        student_lprobs: ``[..., V]`` student log-probabilities (``log q``).
        teacher_lprobs: ``[..., V]`` teacher log-probabilities (``log p``);
            ``-inf`` entries mean probability 0.
        **params: the divergence's parameters (``DIVERGENCE_PARAMS[name]``).

    Returns:
        ``[...]`` per-position divergence; padding masks belong to the caller.

    Raises:
        ValueError: unknown ``name``, a parameter value out of range, or
            mismatched shapes.
        TypeError: a parameter that ``name`` does not take.
    """
    _check_name_and_params(name, params)
    return DIVERGENCES[name](student_lprobs, teacher_lprobs, **params)


def divergence(
    name: str,
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    **params,
) -> Tensor:
    """Divergence ``name`` between ``softmax(student / T)`` and ``softmax(teacher / T)``.

    Args:
        name: one of ``DIVERGENCES`` (``fkl rkl js tvd skl srkl akl todi abkd``).
        student_logits: ``[..., V]`` student logits or log-probabilities.
        teacher_logits: ``[..., V]`` teacher logits or log-probabilities.
        temperature: ``T > 0`` applied to both sides (the ``T**2`` factor is
            the caller's business).
        **params: ``skew`` (skl, srkl), ``mu`` (akl), ``beta`` (todi), ``ab_alpha`` and
            ``ab_beta`` (abkd).

    Returns:
        ``[...]`` per-position divergence, summed over ``V``; padding masks
        belong to the caller.
    """
    _check_name_and_params(name, params)  # fail before any work
    _check_pair(student_logits, teacher_logits)
    return divergence_from_log_probs(
        name,
        log_probs(student_logits, temperature),
        log_probs(teacher_logits, temperature),
        **params,
    )
