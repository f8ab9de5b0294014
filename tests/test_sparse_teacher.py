"""topk-tail and sample teachers (kd_nmt/teacher/tail.py, sampled.py), built by the cache's own code.

Synthetic tensors only (fast): every teacher here comes from ``kd_nmt.cache.cli.sparse_rows``,
what ``kd-nmt cache-teacher`` stores per token. The rest class against a hand computation; a
tail of one id or none gives the live loss; the mean over 2,000 independent draw sets of the
sampled fkl and its gradient is the full-vocabulary one, within 5 standard errors estimated
from those same 2,000 draws (a two-sided 5-sigma band: a false failure has probability
~6e-7 per number compared, and the seeds are fixed).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from kd_nmt.cache.cli import sparse_rows
from kd_nmt.criterions.kd_objective import KD_CHUNK_ROWS, kd_objective
from kd_nmt.criterions.word_kd import kd_term
from kd_nmt.divergences import DIVERGENCES, divergence
from kd_nmt.teacher.dense import DenseTargets
from kd_nmt.teacher.sampled import SampledTargets
from kd_nmt.teacher.tail import TailTargets

PAD = 1


def cached(teacher_logits, mode, k, tau=1.0, draws=None, seed=0):
    """What a cache of ``mode`` holds for ``teacher_logits`` ``[..., V]``, as a teacher."""
    shape, V = teacher_logits.shape[:-1], teacher_logits.size(-1)
    meta = {"mode": mode, "k": min(k, V), "temperature": tau, "draws": draws}
    lprobs = F.log_softmax(teacher_logits, -1).reshape(-1, V)
    rows = sparse_rows(lprobs, meta, torch.Generator().manual_seed(seed))
    rows = {name: x.reshape(tuple(shape) + tuple(x.shape[1:])) for name, x in rows.items()}
    if mode == "topk-tail":
        return TailTargets(temperature=tau, ids=rows["ids"], scores=rows["logp"], rest=rows["rest"])
    return SampledTargets(temperature=tau, ids=rows["ids"], counts=rows["count"], entropy=rows["entropy"])


def kd_and_grad(student, teacher, name, tau):
    s = student.detach().clone().requires_grad_(True)
    if isinstance(teacher, (TailTargets, SampledTargets)):
        kd = teacher.kd_per_token(s, name, tau).sum()
    else:
        kd = divergence(name, s, teacher, temperature=tau).sum()
    kd.backward()
    return kd.detach(), s.grad


P5 = [0.5, 0.2, 0.15, 0.1, 0.05]  # teacher; top 2 = ids 0, 1; rest 0.3
Q5 = [0.3, 0.3, 0.2, 0.1, 0.1]  # student; its mass outside ids 0, 1: 0.4


def test_rest_class_by_hand_on_five_words():
    t = torch.tensor(P5, dtype=torch.float64).log()
    s = torch.tensor(Q5, dtype=torch.float64).log() + 3.0  # logits: any shift
    teacher = cached(t, "topk-tail", 2)
    assert teacher.ids.tolist() == [0, 1] and teacher.rest.item() == pytest.approx(math.log(0.3), rel=1e-12)
    kd, grad = kd_and_grad(s, teacher, "fkl", 1.0)
    want = 0.5 * math.log(0.5 / 0.3) + 0.2 * math.log(0.2 / 0.3) + 0.3 * math.log(0.3 / 0.4)
    assert kd.item() == pytest.approx(want, rel=1e-12)
    # d/ds_v: q_v - p_v on the ids; q_v * (1 - P_rest / Q_rest) = q_v / 4 on the others
    assert torch.allclose(grad, torch.tensor([-0.2, 0.1, 0.05, 0.025, 0.025], dtype=torch.float64))
    kd, _ = kd_and_grad(s, teacher, "rkl", 1.0)
    assert kd.item() == pytest.approx(0.3 * math.log(0.3 / 0.5) + 0.3 * math.log(0.3 / 0.2)
                                      + 0.4 * math.log(0.4 / 0.3), rel=1e-12)
    # tau = 2: the classes' tempered masses are sqrt(p) summed, renormalised
    teacher = cached(t, "topk-tail", 2, tau=2.0)
    assert teacher.rest.item() == pytest.approx(2 * math.log(sum(math.sqrt(x) for x in P5[2:])), rel=1e-12)
    p = [math.sqrt(P5[0]), math.sqrt(P5[1]), sum(math.sqrt(x) for x in P5[2:])]
    q = [math.sqrt(Q5[0]), math.sqrt(Q5[1]), sum(math.sqrt(x) for x in Q5[2:])]
    p, q = [x / sum(p) for x in p], [x / sum(q) for x in q]
    kd, _ = kd_and_grad(s, teacher, "fkl", 2.0)
    assert kd.item() == pytest.approx(sum(a * math.log(a / b) for a, b in zip(p, q)), rel=1e-12)


@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_tail_of_one_id_or_none_or_no_mass_is_the_live_loss(name, tau):
    torch.manual_seed(0)
    V = 11
    s, t = 3 * torch.randn(6, V), 3 * torch.randn(6, V)  # float32, as in training
    want, want_grad = kd_and_grad(s, t, name, tau)
    for k in (V - 1, V):  # the rest is one id, or empty (log 0)
        got, grad = kd_and_grad(s, cached(t, "topk-tail", k, tau), name, tau)
        assert got.item() == pytest.approx(want.item(), rel=1e-5), k
        assert torch.allclose(grad, want_grad, rtol=1e-4, atol=1e-6), k
    # all the mass on the top 4 (the others 1e4 nats below) on both sides: the tail holds
    # exp(-1e4) = 0 in float32; no NaN, and the loss is the live one
    s[:, 4:] -= 1e4
    t[:, 4:] -= 1e4
    t[:, :4] += torch.arange(4, 0, -1) * 10.0  # (ids 0..3 the top 4)
    want, want_grad = kd_and_grad(s, t, name, tau)
    got, grad = kd_and_grad(s, cached(t, "topk-tail", 4, tau), name, tau)
    assert torch.isfinite(grad).all()
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    assert torch.allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_sampled_fkl_is_unbiased_in_value_and_gradient(tau):
    torch.manual_seed(0)
    N, V, draws, R = 5, 40, 8, 2000  # R independent draw sets of the same 5 positions
    # every id p > 1/250, drawn > 64 times on average in the R * draws = 16,000 draws of its
    # position: no gradient entry whose sample variance is 0 because its id was never drawn
    s, t = 2 * torch.randn(N, V, dtype=torch.float64), 0.5 * torch.randn(N, V, dtype=torch.float64)
    assert F.softmax(t / tau, -1).min() > 1 / 250
    full, full_grad = kd_and_grad(s, t, "fkl", tau)
    teacher = cached(t.repeat(R, 1), "sample", draws, tau, draws=draws, seed=1)  # [R * N]
    assert (teacher.counts.sum(-1) == draws).all() and teacher.ids.size(-1) == draws
    student = s.repeat(R, 1).requires_grad_(True)
    per_set = teacher.kd_per_token(student, "fkl", tau).view(R, N).sum(1)  # [R] estimates
    per_set.sum().backward()
    grads = student.grad.view(R, N, V)  # each set's own gradient
    se = per_set.std() / math.sqrt(R)
    assert abs(per_set.mean() - full) <= 5 * se, (per_set.mean().item(), full.item(), se.item())
    grad_se = grads.std(0) / math.sqrt(R)
    assert ((grads.mean(0) - full_grad).abs() <= 5 * grad_se + 1e-12).all()
    # the test has the power to see a bias: the top-8 renormalised loss is far outside the band
    top = DenseTargets(scores=t).top_k(draws)
    renormalised = divergence("fkl", s.gather(-1, top.ids), top.scores, temperature=tau).sum()
    assert abs(renormalised - full) > 10 * se


def test_sampled_teacher_refuses_what_it_does_not_estimate():
    torch.manual_seed(0)
    s, t = torch.randn(3, 9), torch.randn(3, 9)
    teacher = cached(t, "sample", 4, 2.0, draws=4)
    with pytest.raises(ValueError, match="estimates fkl without bias, not rkl"):
        teacher.kd_per_token(s, "rkl", 2.0)
    with pytest.raises(ValueError, match="built at temperature 2 and serves only that one, got 1"):
        teacher.kd_per_token(s, "fkl", 1.0)
    with pytest.raises(ValueError, match="built at temperature 1 and serves only that one, got 2"):
        cached(t, "topk-tail", 4).kd_per_token(s, "js", 2.0)


@pytest.mark.parametrize("mode", ["topk-tail", "sample"])
def test_one_pass_objective_equals_kd_term_plus_ce(mode):
    torch.manual_seed(0)
    B, T, V, tau = 3, KD_CHUNK_ROWS // 2 + 7, 13, 2.0  # 2 chunks and a remainder
    student = (3 * torch.randn(B, T, V, dtype=torch.float64)).requires_grad_(True)
    teacher = cached(3 * torch.randn(B, T, V, dtype=torch.float64), mode, 4, tau, draws=6)
    target = torch.randint(4, V, (B, T))
    target[0, -9:] = PAD
    name = "js" if mode == "topk-tail" else "fkl"
    got = kd_objective(student, teacher, target, PAD, ce_weight=0.3, epsilon=0.1, kd_weight=0.7,
                       name=name, temperature=tau)
    (got.objective * 2.5).backward()
    grad, student.grad = student.grad.clone(), None
    kd = kd_term(student, teacher, target, PAD, name, tau)
    mask = target.ne(PAD)
    lprobs = F.log_softmax(student, -1)
    eps_i = 0.1 / (V - 1)
    nll = -lprobs.gather(-1, target[..., None]).squeeze(-1)
    ce = (((1 - 0.1 - eps_i) * nll - eps_i * lprobs.sum(-1)) * mask).sum()
    ((0.3 * ce + 0.7 * kd) * 2.5).backward()
    assert got.kd.item() == pytest.approx(kd.item(), rel=1e-10)
    assert got.ce.item() == pytest.approx(ce.item(), rel=1e-10)
    assert torch.allclose(grad, student.grad, rtol=1e-8, atol=1e-12)
    assert grad[0, -9:].abs().max() == 0  # padding: no gradient
    # positions drop like the logits' (--ignore-prefix-size)
    assert teacher[:, 2:].position_shape == (B, T - 2)
