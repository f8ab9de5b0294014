"""kd_objective: CE + KD in one chunked pass, gradient computed in the forward.

Checked against the plain computation (fairseq's label-smoothed CE written out, the divergence
through autograd) in value and gradient, for every divergence, across chunk boundaries and
padding; and the in-place variant that writes the gradient over the teacher's scores.
"""
import pytest
import torch
import torch.nn.functional as F

from kd_nmt.criterions.kd_objective import KD_CHUNK_ROWS, kd_objective
from kd_nmt.criterions.word_kd import token_kd_loss, top_k_support
from kd_nmt.divergences import DIVERGENCES, divergence

PAD = 1


def plain(student, teacher, target, ce_weight, eps, kd_weight, name, tau):
    """(objective, ce, nll, kd, teacher_nll) the straightforward way (autograd everywhere)."""
    mask = target.ne(PAD)
    lprobs = F.log_softmax(student, -1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask
    smooth = -lprobs.sum(-1) * mask
    eps_i = eps / (student.size(-1) - 1)
    ce = ((1 - eps - eps_i) * nll + eps_i * smooth).sum()
    kd = divergence(name, student, teacher, temperature=tau).masked_fill(~mask, 0.0).sum()
    t_nll = -(F.log_softmax(teacher, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask).sum()
    return ce_weight * ce + kd_weight * kd, ce, nll.sum(), kd, t_nll


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
    got = kd_objective(student, teacher, target, PAD, ce_weight=ce_w, epsilon=eps, kd_weight=kd_w,
                       name=name, temperature=tau, nll_of_teacher=True)
    (got[0] * 2.5).backward()  # an upstream gradient other than 1 (hybrid_kd's gate)
    grad = student.grad.clone()
    student.grad = None
    want = plain(student, teacher, target, ce_w, eps, kd_w, name, tau)
    (want[0] * 2.5).backward()
    for g, w in zip(got, want):
        assert g.item() == pytest.approx(w.item(), rel=1e-10, abs=1e-12)
    assert torch.allclose(grad, student.grad, rtol=1e-8, atol=1e-12)
    assert grad[0, -9:].abs().max() == 0 and grad[2, -3:].abs().max() == 0  # padding: no gradient
    assert not got[1].requires_grad and not got[3].requires_grad  # parts are for logging only


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_sparse_teacher_renormalises_over_its_ids_like_token_kd_loss(name):
    # a cache or --kd-topk: (ids, scores) [..., k]; the KD term compares both sides renormalised
    # over the teacher's ids (token_kd_loss's definition), the CE term sees the whole vocabulary
    student, teacher, target = batch()
    sparse = top_k_support(teacher, 4)
    assert sparse[0].shape == (*target.shape, 4)
    got = kd_objective(student, sparse, target, PAD, ce_weight=0.4, epsilon=0.1, kd_weight=0.6 * 4,
                       name=name, temperature=2.0)
    got[0].backward()
    grad = student.grad.clone()
    student.grad = None
    ce = plain(student, teacher, target, 0.4, 0.1, 0.0, name, 2.0)[1]
    kd = token_kd_loss(student, sparse, target, PAD, name, temperature=2.0)
    (0.4 * ce + 0.6 * 4 * kd).backward()
    assert got[1].item() == pytest.approx(ce.item(), rel=1e-10)
    assert got[3].item() == pytest.approx(kd.item(), rel=1e-10)
    assert torch.allclose(grad, student.grad, rtol=1e-8, atol=1e-12)


def test_sparse_teacher_cannot_give_the_teacher_nll():
    student, teacher, target = batch()
    with pytest.raises(ValueError, match="dense teacher"):
        kd_objective(student, top_k_support(teacher, 3), target, PAD, kd_weight=1.0, name="fkl", nll_of_teacher=True)


def test_without_ce_it_is_the_masked_divergence_sum():
    student, teacher, target = batch()
    objective, ce, nll, kd, t_nll = kd_objective(student, teacher, target, PAD, kd_weight=1.0, name="fkl")
    assert objective.item() == pytest.approx(kd.item(), rel=1e-12)
    assert ce.item() == 0 and nll.item() == 0 and t_nll.item() == 0  # not asked for
    kd_plain = divergence("fkl", student, teacher).masked_fill(target.eq(PAD), 0.0).sum()
    assert kd.item() == pytest.approx(kd_plain.item(), rel=1e-10)


def test_consume_teacher_writes_the_gradient_over_the_teacher_scores():
    student, teacher, target = batch(torch.float32, V=50)
    kept = teacher.clone()
    ref = kd_objective(student, kept.clone(), target, PAD, ce_weight=0.5, epsilon=0.1, kd_weight=0.5, name="todi")
    ref[0].backward()
    ref_grad = student.grad.clone()
    student.grad = None
    got = kd_objective(student, teacher, target, PAD, ce_weight=0.5, epsilon=0.1, kd_weight=0.5, name="todi",
                       consume_teacher=True)
    assert got[0].item() == pytest.approx(ref[0].item(), rel=1e-6)
    assert not torch.equal(teacher, kept)  # the teacher's buffer now holds the gradient
    assert torch.allclose(teacher, ref_grad, atol=1e-7)
    got[0].backward()
    assert torch.allclose(student.grad, ref_grad, atol=1e-7)


def test_consume_teacher_of_another_dtype_leaves_it_alone():
    student, teacher, target = batch(torch.float32, V=50)
    teacher64 = teacher.double()
    before = teacher64.clone()
    kd_objective(student, teacher64, target, PAD, kd_weight=1.0, name="fkl", consume_teacher=True)[0].backward()
    assert torch.equal(teacher64, before)  # no buffer to reuse: a new one was made
    assert torch.isfinite(student.grad).all()


def test_half_precision_logits_get_a_half_gradient_computed_in_float32():
    student, teacher, target = batch(torch.float32, V=50)
    half = student.detach().half().requires_grad_(True)
    got = kd_objective(half, teacher.half(), target, PAD, ce_weight=0.5, epsilon=0.1, kd_weight=0.5, name="fkl")
    got[0].backward()
    assert half.grad.dtype == torch.float16 and got[0].dtype == torch.float32
    want = plain(half.detach().float().requires_grad_(True), teacher.half().float(), target, 0.5, 0.1, 0.5, "fkl", 1.0)
    assert got[0].item() == pytest.approx(want[0].item(), rel=1e-5)


def test_shape_mismatch_is_one_clear_error():
    student, teacher, target = batch()
    with pytest.raises(ValueError, match=r"differ in shape"):
        kd_objective(student, teacher[:, :-1], target, PAD, kd_weight=1.0, name="fkl")
    ids, scores = top_k_support(teacher, 3)
    with pytest.raises(ValueError, match=r"do not match student logits"):
        kd_objective(student, (ids[:, :-1], scores[:, :-1]), target, PAD, kd_weight=1.0, name="fkl")
