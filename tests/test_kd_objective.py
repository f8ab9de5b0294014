"""kd_objective: CE + KD in one chunked pass, gradient computed in the forward.

Checked against the plain computation (fairseq's label-smoothed CE written out, the divergence
through autograd) in value and gradient, for every divergence, across chunk boundaries and
padding; and the in-place variant that writes the gradient over the teacher's scores. The teacher
is a ``TeacherTargets`` (kd_nmt/teacher/): dense scores, or their top k.
"""
import pytest
import torch
import torch.nn.functional as F

from kd_nmt.criterions.kd_objective import KD_CHUNK_ROWS, ObjectiveParts, kd_objective
from kd_nmt.criterions.word_kd import kd_term
from kd_nmt.divergences import DIVERGENCES, divergence
from kd_nmt.teacher.dense import DenseTargets
from kd_nmt.teacher.topk import TopKTargets

PAD = 1


def plain(student, teacher, target, ce_weight, eps, kd_weight, name, tau):
    """ObjectiveParts the straightforward way (autograd everywhere)."""
    mask = target.ne(PAD)
    lprobs = F.log_softmax(student, -1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask
    smooth = -lprobs.sum(-1) * mask
    eps_i = eps / (student.size(-1) - 1)
    ce = ((1 - eps - eps_i) * nll + eps_i * smooth).sum()
    kd = divergence(name, student, teacher, temperature=tau).masked_fill(~mask, 0.0).sum()
    t_nll = -(F.log_softmax(teacher, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask).sum()
    return ObjectiveParts(ce_weight * ce + kd_weight * kd, ce, nll.sum(), kd, t_nll)


def top_k_support(teacher, k):
    """Dense teacher scores ``[..., V]`` cut to their top ``k`` (0: all of them), as targets."""
    return DenseTargets(scores=teacher).top_k(k)


def batch(dtype=torch.float64, V=13):
    torch.manual_seed(0)
    B, T = 3, KD_CHUNK_ROWS // 2 + 7  # 3 * (KD_CHUNK_ROWS / 2 + 7) rows: 2 chunks and a remainder
    student = (3 * torch.randn(B, T, V, dtype=dtype)).requires_grad_(True)
    teacher = 3 * torch.randn(B, T, V, dtype=dtype)
    target = torch.randint(4, V, (B, T))
    target[0, -9:] = PAD
    target[2, -3:] = PAD
    return student, teacher, target


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_value_and_gradient_equal_the_plain_computation(name, tau):
    student, teacher, target = batch()
    ce_w, eps, kd_w = 0.3, 0.1, 0.7 * tau ** 2
    got = kd_objective(student, DenseTargets(scores=teacher), target, PAD, ce_weight=ce_w, epsilon=eps,
                       kd_weight=kd_w, name=name, temperature=tau, nll_of_teacher=True)
    (got.objective * 2.5).backward()  # an upstream gradient other than 1 (hybrid_kd's gate)
    grad = student.grad.clone()
    student.grad = None
    want = plain(student, teacher, target, ce_w, eps, kd_w, name, tau)
    (want.objective * 2.5).backward()
    for field, g, w in zip(ObjectiveParts._fields, got, want):
        assert g.item() == pytest.approx(w.item(), rel=1e-10, abs=1e-12), field
    assert torch.allclose(grad, student.grad, rtol=1e-8, atol=1e-12)
    assert grad[0, -9:].abs().max() == 0 and grad[2, -3:].abs().max() == 0  # padding: no gradient
    assert not any(part.requires_grad for part in got[1:])  # parts are for logging only


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_sparse_teacher_renormalises_over_its_ids_like_kd_term(name):
    # a cache or --kd-topk: (ids, scores) [..., k]; the KD term compares both sides renormalised
    # over the teacher's ids (kd_term's definition), the CE term sees the whole vocabulary
    student, teacher, target = batch()
    sparse = top_k_support(teacher, 4)
    assert sparse.ids.shape == (*target.shape, 4)
    got = kd_objective(student, sparse, target, PAD, ce_weight=0.4, epsilon=0.1, kd_weight=0.6 * 4,
                       name=name, temperature=2.0)
    got.objective.backward()
    grad = student.grad.clone()
    student.grad = None
    ce = plain(student, teacher, target, 0.4, 0.1, 0.0, name, 2.0).ce
    kd = kd_term(student, sparse, target, PAD, name, temperature=2.0)
    (0.4 * ce + 0.6 * 4 * kd).backward()
    assert got.ce.item() == pytest.approx(ce.item(), rel=1e-10)
    assert got.kd.item() == pytest.approx(kd.item(), rel=1e-10)
    assert torch.allclose(grad, student.grad, rtol=1e-8, atol=1e-12)


def test_sparse_teacher_cannot_give_the_teacher_nll():
    student, teacher, target = batch()
    with pytest.raises(ValueError, match="dense teacher"):
        kd_objective(student, top_k_support(teacher, 3), target, PAD, kd_weight=1.0, name="fkl", nll_of_teacher=True)


@pytest.mark.parametrize("tau,topk", [(1.0, 0), (2.0, 0), (1.0, 5)])
def test_without_ce_weight_the_gold_ce_and_nll_are_still_reported(tau, topk):
    # --kd-alpha 1: the objective is the KD term alone, but the student's NLL on gold is still
    # what training logs (nll_loss, ppl), not 0
    student, teacher, target = batch()
    got = kd_objective(student, top_k_support(teacher, topk), target, PAD, kd_weight=1.0, name="fkl",
                       temperature=tau, epsilon=0.1)
    want = plain(student, teacher, target, 0.0, 0.1, 1.0, "fkl", tau)
    assert got.nll.item() == pytest.approx(want.nll.item(), rel=1e-10) and got.nll.item() > 0
    assert got.ce.item() == pytest.approx(want.ce.item(), rel=1e-10)
    assert got.objective.item() == pytest.approx(got.kd.item(), rel=1e-12)
    assert got.teacher_nll.item() == 0  # not asked for
    if not topk:
        assert got.kd.item() == pytest.approx(want.kd.item(), rel=1e-10)
    got.objective.backward()  # and the CE term adds nothing to the gradient
    grad = student.grad.clone()
    student.grad = None
    kd_term(student, top_k_support(teacher, topk), target, PAD, "fkl", temperature=tau).backward()
    assert torch.allclose(grad, student.grad, rtol=1e-8, atol=1e-12)


def test_consume_teacher_writes_the_gradient_over_the_teacher_scores():
    student, teacher, target = batch(torch.float32, V=50)
    kept = teacher.clone()
    ref = kd_objective(student, DenseTargets(scores=kept.clone()), target, PAD, ce_weight=0.5, epsilon=0.1,
                       kd_weight=0.5, name="todi")
    ref.objective.backward()
    ref_grad = student.grad.clone()
    student.grad = None
    got = kd_objective(student, DenseTargets(scores=teacher), target, PAD, ce_weight=0.5, epsilon=0.1,
                       kd_weight=0.5, name="todi", consume_teacher=True)
    assert got.objective.item() == pytest.approx(ref.objective.item(), rel=1e-6)
    assert not torch.equal(teacher, kept)  # the teacher's buffer now holds the gradient
    assert torch.allclose(teacher, ref_grad, atol=1e-7)
    got.objective.backward()
    assert torch.allclose(student.grad, ref_grad, atol=1e-7)


def test_consume_teacher_of_another_dtype_leaves_it_alone():
    student, teacher, target = batch(torch.float32, V=50)
    teacher64 = teacher.double()
    before = teacher64.clone()
    kd_objective(student, DenseTargets(scores=teacher64), target, PAD, kd_weight=1.0, name="fkl",
                 consume_teacher=True).objective.backward()
    assert torch.equal(teacher64, before)  # no buffer to reuse: a new one was made
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("dtype,upstream", [(torch.float16, 128.0), (torch.bfloat16, 0.37)])
def test_half_precision_gradient_is_the_exact_one_rounded_once(dtype, upstream):
    # fairseq's fp16 optimizer multiplies the loss by a scale (128 here) before backward; bf16
    # trains unscaled, but hybrid_kd's gate weighs the objective (0.37 here). The logits'
    # gradient must be the exact (float64) one times that factor, rounded once to the logits'
    # dtype, as on fairseq's own CE path (float32 log-softmax). At V = 32k most entries are tiny:
    # written in float16 *before* the scale, they flushed to zero or kept a few bits.
    torch.manual_seed(0)
    N, V = 40, 32000
    logits = (3 * torch.randn(1, N, V)).to(dtype).requires_grad_(True)
    teacher = (3 * torch.randn(1, N, V)).to(dtype)
    target = torch.randint(4, V, (1, N))
    # bf16 logits come from CPU autocast training (kd_nmt.precision): the pass runs inside it
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        got = kd_objective(logits, DenseTargets(scores=teacher), target, PAD, ce_weight=0.5, epsilon=0.1,
                           kd_weight=0.5, name="fkl")
    assert got.objective.dtype == torch.float32
    (got.objective * upstream).backward()
    exact = logits.detach().double().requires_grad_(True)
    want = plain(exact, teacher.double(), target, 0.5, 0.1, 0.5, "fkl", 1.0)
    assert got.objective.item() == pytest.approx(want.objective.item(), rel=1e-5)
    (want.objective * upstream).backward()
    grad, exact_grad = logits.grad, exact.grad
    assert grad.dtype == dtype
    kept = exact_grad.to(dtype) != 0  # what one rounding of the exact gradient keeps
    assert kept.double().mean() > 0.99
    flushed = ((grad == 0) & kept).double().mean().item()
    assert flushed < 1e-5, f"{flushed:.2%} of the entries flushed to 0"
    # entrywise: half an ulp (subnormals: half their spacing), +10 % and a 1e-9-of-the-row
    # allowance for the float32 arithmetic before the rounding
    finfo = torch.finfo(dtype)
    spacing = finfo.smallest_normal * finfo.eps  # of the subnormals (float16: 2^-24)
    rounding = 0.55 * finfo.eps * exact_grad.abs() + 0.5 * spacing
    tolerance = rounding + 1e-9 * exact_grad.abs().amax(-1, keepdim=True)
    assert ((grad.double() - exact_grad).abs() <= tolerance).all()


def test_shape_mismatch_is_one_clear_error():
    student, teacher, target = batch()
    with pytest.raises(ValueError, match=r"differ in shape"):
        kd_objective(student, DenseTargets(scores=teacher[:, :-1]), target, PAD, kd_weight=1.0, name="fkl")
    sparse = top_k_support(teacher, 3)
    with pytest.raises(ValueError, match=r"do not match student logits"):
        kd_objective(student, TopKTargets(ids=sparse.ids[:, :-1], scores=sparse.scores[:, :-1]), target, PAD,
                     kd_weight=1.0, name="fkl")


def test_top_k_of_a_sparse_teacher_is_the_top_k_of_its_ids():
    # --kd-topk with a teacher cache: the cache's top 8 cut to its top 3 is the dense top 3
    _, teacher, _ = batch()
    cached = top_k_support(teacher, 8)
    shuffled = torch.randperm(8)  # the order of the cached ids does not matter
    cut = TopKTargets(ids=cached.ids[..., shuffled], scores=cached.scores[..., shuffled]).top_k(3)
    want = top_k_support(teacher, 3)
    assert torch.equal(cut.ids, want.ids) and torch.equal(cut.scores, want.scores)
    assert cached.top_k(8) is cached and cached.top_k(0) is cached
