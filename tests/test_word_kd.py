"""Task kd_translation + criterion word_kd: exact loss values, gradients, teacher handling."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import first_batch, setup_in_process
from kd_nmt.criterions.kd_objective import KD_CHUNK_ROWS, kd_objective
from kd_nmt.criterions.word_kd import kd_term
from kd_nmt.divergences import DIVERGENCES, divergence
from kd_nmt.errors import KDNMTError
from kd_nmt.teacher.dense import DenseTargets
from kd_nmt.teacher.topk import TopKTargets


def kd_args(teacher, *extra):
    return ["--task", "kd_translation", "--teacher-path", teacher, "--criterion", "word_kd", *extra]


def hand_label_smoothed_ce(lprobs, target, eps, pad):
    """fairseq's label-smoothed CE, written out: (1-eps-eps_i)*nll + eps_i*sum_v(-log q)."""
    mask = target.ne(pad)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.sum(-1)
    eps_i = eps / (lprobs.size(-1) - 1)
    return (((1 - eps - eps_i) * nll + eps_i * smooth) * mask).sum()


@pytest.mark.parametrize("alpha,tau,ls", [(0.5, 1.0, 0.1), (0.7, 2.0, 0.0), (1.0, 1.5, 0.1)])
def test_word_kd_loss_equals_hand_computation(data_bin, teacher_checkpoint, alpha, tau, ls):
    _, task, model, criterion = setup_in_process(
        data_bin,
        kd_args(teacher_checkpoint, "--kd-alpha", alpha, "--kd-temperature", tau, "--label-smoothing", ls),
    )
    sample = first_batch(task)
    model.train()
    torch.manual_seed(0)
    # dropout is 0 in TINY_ARCH, so two forwards give the same logits
    loss, sample_size, log = criterion(model, sample)

    target = sample["target"]
    pad = task.target_dictionary.pad()
    mask = target.ne(pad)
    s_logits = model(**sample["net_input"])[0].detach()
    t_logits = task.teacher.models[0](**sample["net_input"])[0].detach()
    lprobs = F.log_softmax(s_logits, -1)
    ce = hand_label_smoothed_ce(lprobs, target, ls, pad)
    nll = -(lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask).sum()
    p = F.softmax(t_logits / tau, -1)
    kl = (p * (F.log_softmax(t_logits / tau, -1) - F.log_softmax(s_logits / tau, -1))).sum(-1)
    kd = (kl * mask).sum()
    expected = (1 - alpha) * ce + alpha * tau ** 2 * kd
    assert sample_size == int(mask.sum())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert log["kd_loss"].item() == pytest.approx(kd.item(), rel=1e-5)
    t_nll = -(F.log_softmax(t_logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask).sum()
    assert log["teacher_nll_loss"].item() == pytest.approx(t_nll.item(), rel=1e-5)
    # the student's gold NLL and CE are logged also with --kd-alpha 1 (no CE in the objective)
    assert log["nll_loss"].item() == pytest.approx(nll.item(), rel=1e-5)
    assert log["ce_loss"].item() == pytest.approx(ce.item(), rel=1e-5)


def test_report_accuracy_counts_the_students_argmax_on_gold(data_bin, teacher_checkpoint):
    _, task, model, criterion = setup_in_process(data_bin, kd_args(teacher_checkpoint, "--report-accuracy"))
    sample = first_batch(task)
    model.eval()
    with torch.no_grad():
        _, _, log = criterion(model, sample)
        s_logits = model(**sample["net_input"])[0]
    mask = sample["target"].ne(task.target_dictionary.pad())
    assert log["total"] == int(mask.sum())
    assert log["n_correct"] == int((s_logits.argmax(-1).eq(sample["target"]) & mask).sum())


def test_validation_loss_is_student_ce_on_gold(data_bin, teacher_checkpoint):
    _, task, model, criterion = setup_in_process(
        data_bin, kd_args(teacher_checkpoint, "--kd-alpha", "0.9", "--label-smoothing", "0.1")
    )
    sample = first_batch(task)
    model.eval()
    with torch.no_grad():
        loss, _, log = criterion(model, sample)
        s_logits = model(**sample["net_input"])[0]
    ce = hand_label_smoothed_ce(F.log_softmax(s_logits, -1), sample["target"], 0.1, task.target_dictionary.pad())
    assert loss.item() == pytest.approx(ce.item(), rel=1e-5)
    # the logged KD term is FKL(teacher || student) over the non-pad tokens, by hand
    with torch.no_grad():
        teacher, _ = task.teacher.targets(sample, like=s_logits)
    p, log_q = F.softmax(teacher.scores, -1), F.log_softmax(s_logits, -1)
    real = sample["target"].ne(task.target_dictionary.pad())
    hand_kd = (p * (p.log() - log_q)).sum(-1)[real].sum()
    assert log["kd_loss"].item() == pytest.approx(hand_kd.item(), rel=1e-4)


def test_topk_renormalises_both_sides_over_the_teacher_top_k(data_bin, teacher_checkpoint):
    _, task, model, criterion = setup_in_process(
        data_bin, kd_args(teacher_checkpoint, "--kd-alpha", "1.0", "--kd-topk", "5")
    )
    sample = first_batch(task)
    model.train()
    kd = criterion(model, sample)[2]["kd_loss"].item()
    # hand: restrict both distributions to the teacher's top-5 and renormalise
    target, pad = sample["target"], task.target_dictionary.pad()
    s = model(**sample["net_input"])[0].detach()
    t = task.teacher.models[0](**sample["net_input"])[0].detach()
    top, ids = t.topk(5, -1)
    p = F.log_softmax(top, -1)
    q = F.log_softmax(s.gather(-1, ids), -1)
    expected = ((p.exp() * (p - q)).sum(-1) * target.ne(pad)).sum()
    assert kd == pytest.approx(expected.item(), rel=1e-5)
    full = ((F.softmax(t, -1) * (F.log_softmax(t, -1) - F.log_softmax(s, -1))).sum(-1) * target.ne(pad)).sum()
    assert kd != pytest.approx(full.item(), rel=1e-3)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_a_sparse_teacher_of_every_id_is_the_full_vocabulary_loss(name):
    # k = V (a full teacher cache, or every id of a live teacher): the sparse path (gather the
    # student over the ids, renormalise, scatter the gradient back) must give the dense loss
    # and gradient, whatever the order of the ids
    torch.manual_seed(0)
    B, T, V = 2, KD_CHUNK_ROWS // 2 + 5, 11
    student = torch.randn(B, T, V, dtype=torch.float64, requires_grad=True)
    teacher = F.log_softmax(2 * torch.randn(B, T, V, dtype=torch.float64), -1)
    target = torch.randint(4, V, (B, T))
    target[1, -4:] = 1
    ids = torch.stack([torch.randperm(V) for _ in range(B * T)]).view(B, T, V)
    dense = DenseTargets(scores=teacher)
    sparse = TopKTargets(ids=ids, scores=teacher.gather(-1, ids))
    assert sparse.top_k(V) is sparse and dense.top_k(V) is dense
    results = []
    for dist in (dense, sparse):
        objective = kd_objective(student, dist, target, 1, ce_weight=0.3, epsilon=0.1, kd_weight=0.7 * 4,
                                 name=name, temperature=2.0)
        (objective.objective * 1.5).backward()
        with torch.no_grad():  # the plain (no-gradient) KD term of both paths, too
            results.append((objective, kd_term(student, dist, target, 1, name, temperature=2.0), student.grad))
        student.grad = None
    (dense, dense_kd, dense_grad), (cut, cut_kd, cut_grad) = results
    for a, b in zip(dense, cut):
        assert a.item() == pytest.approx(b.item(), rel=1e-10, abs=1e-12)
    assert dense_kd.item() == pytest.approx(cut_kd.item(), rel=1e-10) == pytest.approx(dense.kd.item(), rel=1e-10)
    assert torch.allclose(dense_grad, cut_grad, rtol=1e-8, atol=1e-12)


def test_ignore_prefix_size_drops_the_same_positions_from_both_terms(data_bin, teacher_checkpoint):
    # --ignore-prefix-size 2: fairseq's CE term skips the first 2 target positions; the KD term
    # (and the logged teacher NLL) must skip the same ones, on every path
    _, task, model, criterion = setup_in_process(
        data_bin, kd_args(teacher_checkpoint, "--kd-alpha", "0.5", "--label-smoothing", "0.1",
                          "--ignore-prefix-size", "2"),
    )
    sample = first_batch(task)
    pad = task.target_dictionary.pad()
    target = sample["target"][:, 2:]
    mask = target.ne(pad)
    with torch.no_grad():
        s = model(**sample["net_input"])[0][:, 2:]
        t = task.teacher.models[0](**sample["net_input"])[0][:, 2:]
    lp, lq = F.log_softmax(t, -1), F.log_softmax(s, -1)
    kd = ((lp.exp() * (lp - lq)).sum(-1) * mask).sum()
    ce = hand_label_smoothed_ce(lq, target, 0.1, pad)
    t_nll = -(lp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask).sum()
    model.train()
    loss, _, log = criterion(model, sample)  # the one-pass objective
    loss.backward()
    grad = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    criterion.uses_one_pass = lambda *args: False  # CE and KD computed apart
    loss2, _, log2 = criterion(model, sample)
    loss2.backward()
    for out in (log, log2):
        assert out["kd_loss"].item() == pytest.approx(kd.item(), rel=1e-5)
        assert out["ce_loss"].item() == pytest.approx(ce.item(), rel=1e-5)
        assert out["teacher_nll_loss"].item() == pytest.approx(t_nll.item(), rel=1e-5)
    assert loss.item() == pytest.approx((0.5 * ce + 0.5 * kd).item(), rel=1e-5)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-5)
    for a, p in zip(grad, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-4, atol=1e-6)
    model.eval()
    with torch.no_grad():
        log = criterion(model, sample)[2]
    assert log["kd_loss"].item() == pytest.approx(kd.item(), rel=1e-5)


def test_gradient_reaches_student_not_teacher(data_bin, teacher_checkpoint):
    _, task, model, criterion = setup_in_process(data_bin, kd_args(teacher_checkpoint, "--kd-alpha", "1.0"))
    sample = first_batch(task)
    model.train()
    loss, _, _ = criterion(model, sample)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    teacher = task.teacher.models[0]
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    # the teacher is held by the task: nothing of it in the criterion or the student
    assert not list(criterion.parameters())
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    assert not any("teacher" in name for name, _ in criterion.named_modules())


def test_ensemble_averages_probabilities(data_bin, teacher_checkpoint, tmp_path):
    # a second, different teacher: the same weights, perturbed
    from kd_nmt.checkpoint import load_checkpoint

    state = load_checkpoint(str(teacher_checkpoint))
    torch.manual_seed(0)
    for key, value in state["model"].items():
        if value.is_floating_point():
            value.add_(0.3 * torch.randn_like(value))
    other = tmp_path / "other.pt"
    torch.save(state, other)

    _, task, model, criterion = setup_in_process(
        data_bin, kd_args(f"{teacher_checkpoint}:{other}", "--kd-alpha", "1.0")
    )
    assert len(task.teacher) == 2
    sample = first_batch(task)
    model.train()
    kd = criterion(model, sample)[2]["kd_loss"].item()

    s = F.log_softmax(model(**sample["net_input"])[0].detach(), -1)
    probs = [F.softmax(m(**sample["net_input"])[0].detach(), -1) for m in task.teacher.models]
    assert not torch.allclose(probs[0], probs[1], atol=1e-3)
    p = (probs[0] + probs[1]) / 2
    mask = sample["target"].ne(task.target_dictionary.pad())
    expected = ((p * (p.log() - s)).sum(-1) * mask).sum()
    assert kd == pytest.approx(expected.item(), rel=1e-4)


def test_dictionary_mismatch_is_one_clear_error(data_bin, teacher_checkpoint, tmp_path):
    # a data-bin whose dictionary lacks the last symbols of the teacher's
    other = tmp_path / "bin"
    other.mkdir()
    for f in data_bin.iterdir():
        if not f.name.startswith("dict."):
            (other / f.name).symlink_to(f)
    lines = (data_bin / "dict.en.txt").read_text(encoding="utf-8").splitlines()
    swapped = [lines[1], lines[0]] + lines[2:-3]
    for lang in ("de", "en"):
        (other / f"dict.{lang}.txt").write_text("\n".join(swapped) + "\n", encoding="utf-8")
    with pytest.raises(KDNMTError) as err:
        setup_in_process(other, kd_args(teacher_checkpoint))
    msg = str(err.value)
    n_teacher = len(lines) + 4  # + <s> <pad> </s> <unk>
    assert str(teacher_checkpoint) in msg
    assert f"student has {n_teacher - 3} symbols, teacher {n_teacher}" in msg
    assert f"first difference at index 4: student {lines[1].split()[0]!r} vs teacher {lines[0].split()[0]!r}" in msg


def test_missing_and_corrupt_teacher_errors_name_the_path(data_bin, teacher_checkpoint, tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(KDNMTError, match=f"checkpoint not found: '{missing}'"):
        setup_in_process(data_bin, kd_args(missing))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(teacher_checkpoint.read_bytes()[:5000])
    with pytest.raises(KDNMTError, match=f"cannot read checkpoint '{corrupt}'"):
        setup_in_process(data_bin, kd_args(corrupt))


def test_word_kd_without_teacher_is_a_clear_error(data_bin):
    with pytest.raises(KDNMTError, match="needs a teacher"):
        setup_in_process(data_bin, ["--task", "kd_translation", "--criterion", "word_kd"])


def test_teacher_follows_student_dtype(data_bin, teacher_checkpoint):
    _, task, model, criterion = setup_in_process(data_bin, kd_args(teacher_checkpoint))
    model = model.double()
    sample = first_batch(task)
    loss, _, _ = criterion(model, sample)
    assert next(task.teacher.models[0].parameters()).dtype == torch.float64
    assert math.isfinite(loss.item())


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_memory_lean_path_has_the_plain_value_and_gradient(name):
    # training goes through kd_objective (gradient computed chunk-wise in the forward);
    # it must equal autograd through the plain masked sum, across several chunks
    torch.manual_seed(0)
    B, T, V = 3, KD_CHUNK_ROWS // 2 + 7, 11  # 3 * (KD_CHUNK_ROWS / 2 + 7) rows: 2 chunks and a remainder
    student = torch.randn(B, T, V, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(B, T, V, dtype=torch.float64)
    target = torch.randint(4, V, (B, T))
    target[0, -20:] = 1  # padding
    lean = kd_term(student, DenseTargets(scores=teacher), target, 1, name, temperature=2.0)
    (lean * 3.0).backward()
    lean_grad = student.grad.clone()
    student.grad = None
    plain = divergence(name, student, teacher, temperature=2.0).masked_fill(target.eq(1), 0.0).sum()
    (plain * 3.0).backward()
    assert torch.allclose(lean, plain.detach(), rtol=1e-10, atol=1e-10)
    assert torch.allclose(lean_grad, student.grad, rtol=1e-8, atol=1e-12)
    assert lean_grad[0, -20:].abs().max() == 0  # padded positions get no gradient
