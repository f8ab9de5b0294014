"""Selective KD (--kd-select) and on-policy KD (--kd-on-policy) on word_kd: the selected sets and
the global queue by hand, the objectives against hand computations on the real fixture, the
reductions to word_kd (r = 1, lambda = 0), the student's decoding against fairseq's own
SequenceGenerator, the queue across a checkpoint resume, and the one-line errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import PLUGIN, TINY_ARCH, TRAIN_COMMON, first_batch, run, setup_in_process, tool, train_losses
from kd_nmt.cache import cli as cache_cli
from kd_nmt.criterions.on_policy import as_prefix, pick_rows, student_outputs
from kd_nmt.criterions.selection import CEQueue, select_in_batch
from kd_nmt.divergences import divergence
from kd_nmt.errors import KDNMTError

PAD = 1


def kd_args(teacher, *extra):
    return ["--task", "kd_translation", "--teacher-path", teacher, "--criterion", "word_kd",
            "--label-smoothing", "0.1", *map(str, extra)]


def hand_ls_ce(logits, target, eps, pad):
    """fairseq's label-smoothed CE, summed over the non-pad tokens."""
    lprobs = F.log_softmax(logits, -1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    eps_i = eps / (lprobs.size(-1) - 1)
    return (((1 - eps - eps_i) * nll - eps_i * lprobs.sum(-1)) * target.ne(pad)).sum()


def loss_and_grads(criterion, model, sample):
    model.zero_grad()
    loss, sample_size, log = criterion(model, sample)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()], log


def assert_grads_close(got, want, rtol):
    """Entrywise, with float32 summation noise allowed relative to the largest gradient entry
    (some gradients are 0 up to rounding, e.g. of attention key biases)."""
    scale = max(float(y.abs().max()) for y in want)
    for x, y in zip(got, want):
        assert torch.allclose(x, y, rtol=rtol, atol=rtol * scale), (x - y).abs().max()


def assert_same(a, b):
    (loss_a, grads_a, _), (loss_b, grads_b, _) = a, b
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-5)
    assert_grads_close(grads_a, grads_b, 1e-5)


# --- selection by hand ---------------------------------------------------------------------------
def test_batch_selection_is_the_top_fraction_by_hand():
    ce = torch.tensor([[0.5, 3.0, 1.0, 2.0],
                       [2.0, 0.1, 9.0, 7.0]])
    real = torch.tensor([[True, True, True, True],
                         [True, True, False, False]])  # 9.0 and 7.0 are padding
    # 6 real tokens; r = 0.5 -> 3: CE 3.0, then the tie 2.0 / 2.0 (both taken), never padding
    got = select_in_batch(ce, real, 0.5)
    assert got.tolist() == [[False, True, False, True], [True, False, False, False]]
    # r = 0.4 -> ceil(2.4) = 3 as well; r = 0.3 -> ceil(1.8) = 2: 3.0 and the *earlier* 2.0
    assert torch.equal(select_in_batch(ce, real, 0.4), got)
    assert select_in_batch(ce, real, 0.3).tolist() == [[False, True, False, True], [False, False, False, False]]
    assert torch.equal(select_in_batch(ce, real, 1.0), real)
    assert int(select_in_batch(ce, real, 1e-6).sum()) == 1  # at least one token


def test_global_queue_by_hand():
    queue = CEQueue(5)
    real = torch.tensor([[True, True, True, False]])
    # batch 1: 3 values -> queue [1, 4, 2]; r = 0.5: 0.5-quantile ("lower") of sorted [1, 2, 4]
    # is the floor(0.5 * 2) = 1st -> 2: tokens with CE >= 2 are selected
    got = queue.select(torch.tensor([[1.0, 4.0, 2.0, 8.0]]), real, 0.5)
    assert queue.values.tolist() == [1.0, 4.0, 2.0]
    assert got.tolist() == [[False, True, True, False]]
    # batch 2: pushed first (FIFO of 5: the oldest, 1.0, is dropped) -> [4, 2, 3, 0.5, 6];
    # sorted [0.5, 2, 3, 4, 6], floor(0.5 * 4) = 2nd -> 3
    got = queue.select(torch.tensor([[3.0, 0.5, 6.0, 0.0]]), real, 0.5)
    assert queue.values.tolist() == [4.0, 2.0, 3.0, 0.5, 6.0]
    assert got.tolist() == [[True, False, True, False]]
    # r = 0.2: floor(0.8 * 4) = 3rd -> 4 (after the push of [5, 1, 2]: [3, 0.5, 6, 5, 1, 2][-5:])
    got = queue.select(torch.tensor([[5.0, 1.0, 2.0, 0.0]]), real, 0.2)
    assert queue.values.tolist() == [0.5, 6.0, 5.0, 1.0, 2.0]
    assert queue.threshold(0.2).item() == 5.0
    assert got.tolist() == [[True, False, False, False]]
    # r = 1: the minimum of the queue, which holds the batch itself: every real token
    assert torch.equal(queue.select(torch.tensor([[7.0, 0.0, 3.0, 0.0]]), real, 1.0), real)
    # checkpointed state: the values, newest kept if the queue shrinks
    other = CEQueue(3)
    other.load_state_dict(queue.state_dict())
    assert other.values.tolist() == queue.values.tolist()[-3:]


# --- selective KD on the fixture -----------------------------------------------------------------
@pytest.fixture(scope="module")
def cache8(data_bin, teacher_checkpoint, tmp_path_factory):
    """A top-8 teacher cache of the train split (`kd-nmt cache-teacher`'s own entry point)."""
    out = tmp_path_factory.mktemp("cache") / "top8"
    argv = ["--teacher", str(teacher_checkpoint), "--data-bin", str(data_bin), "--topk", "8",
            "--out", str(out), "--no-progress-bar"]
    assert cache_cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def ensemble(teacher_checkpoint, tmp_path_factory):
    """Two teachers: the fixture's and a perturbed copy."""
    from kd_nmt.checkpoint import load_checkpoint

    state = load_checkpoint(str(teacher_checkpoint))
    torch.manual_seed(0)
    for value in state["model"].values():
        if value.is_floating_point():
            value.add_(0.3 * torch.randn_like(value))
    other = tmp_path_factory.mktemp("ensemble") / "other.pt"
    torch.save(state, other)
    return f"{teacher_checkpoint}:{other}"


def train_batch(task):
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=800, seed=3).next_epoch_itr(shuffle=True)
    return next(iter(itr))


@pytest.mark.parametrize("teacher", ["dense", "ensemble", "cache", "topk"])
def test_batch_selection_kd_term_covers_the_selected_tokens_only(data_bin, teacher_checkpoint, ensemble,
                                                                 cache8, teacher):
    source = {"dense": ["--teacher-path", teacher_checkpoint], "ensemble": ["--teacher-path", ensemble],
              "cache": ["--teacher-cache", cache8],
              "topk": ["--teacher-path", teacher_checkpoint, "--kd-topk", "5"]}[teacher]
    alpha, rate, tau = 0.6, 0.3, 2.0
    _, task, model, criterion = setup_in_process(data_bin, [
        "--task", "kd_translation", *source, "--criterion", "word_kd", "--label-smoothing", "0.1",
        "--kd-alpha", alpha, "--kd-temperature", tau, "--kd-select", "batch", "--kd-select-rate", rate,
    ])
    sample = train_batch(task)
    model.train()
    loss, grads, log = loss_and_grads(criterion, model, sample)

    target = sample["target"]
    real = target.ne(task.target_dictionary.pad())
    s = model(**sample["net_input"])[0]
    with torch.no_grad():
        targets, _ = task.teacher.targets(sample, like=s)
    dist = (targets.ids, targets.scores) if teacher == "cache" else targets.scores
    if teacher == "topk":
        top, ids = dist.topk(5, -1)
        dist = (ids, top)
    # the selection by hand: the ceil(r * n) real tokens of highest student CE on gold
    ce = (torch.logsumexp(s.detach(), -1) - s.detach().gather(-1, target.unsqueeze(-1)).squeeze(-1))
    flat = [(ce[b, t].item(), b, t) for b in range(ce.size(0)) for t in range(ce.size(1)) if real[b, t]]
    k = math.ceil(rate * len(flat))
    chosen = torch.zeros_like(real)
    for _, b, t in sorted(flat, key=lambda x: -x[0])[:k]:
        chosen[b, t] = True
    if isinstance(dist, tuple):
        per_token = divergence("fkl", s.gather(-1, dist[0]), dist[1], temperature=tau)
    else:
        per_token = divergence("fkl", s, dist, temperature=tau)
    expected = (1 - alpha) * hand_ls_ce(s, target, 0.1, PAD) + alpha * tau ** 2 * per_token[chosen].sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert log["kd_selected_tokens"] == k < int(real.sum())
    assert log["kd_loss"].item() == pytest.approx(per_token[chosen].sum().item(), rel=1e-5)
    model.zero_grad()
    expected.backward()
    assert_grads_close(grads, [p.grad for p in model.parameters()], 1e-5)


@pytest.mark.parametrize("kind", ["batch", "global"])
def test_rate_one_is_word_kd(data_bin, teacher_checkpoint, kind):
    _, task, model, plain = setup_in_process(data_bin, kd_args(teacher_checkpoint, "--kd-alpha", 0.5))
    *_, selective = setup_in_process(data_bin, kd_args(
        teacher_checkpoint, "--kd-alpha", 0.5, "--kd-select", kind, "--kd-select-rate", 1, "--kd-select-queue", 50))
    sample = first_batch(task, "train")
    model.train()
    for _ in range(2):  # the second batch sees a full (and overflowing) global queue
        want = loss_and_grads(plain, model, sample)
        got = loss_and_grads(selective, model, sample)
        assert_same(got, want)
        assert got[2]["kd_selected_tokens"] == sample["ntokens"]
        assert got[2]["kd_loss"].item() == pytest.approx(want[2]["kd_loss"].item(), rel=1e-5)
    if kind == "global":
        assert selective.select_queue.values.numel() == 50


def test_global_queue_continues_after_resume(data_bin, teacher_checkpoint, tmp_path):
    # a real fairseq-train run: 3 updates, then resumed to 5, against 5 updates in one go. The
    # queue (large enough to keep every token) is saved in the checkpoint and restored: the
    # resumed run ends with the same queue, so it selected the same tokens
    def train(save, updates):
        return run([
            tool("fairseq-train"), "--user-dir", PLUGIN, data_bin, *TINY_ARCH, *TRAIN_COMMON,
            *kd_args(teacher_checkpoint, "--kd-select", "global", "--kd-select-rate", "0.5",
                     "--kd-select-queue", "100000"),
            "--max-update", updates, "--save-dir", save, "--max-tokens", "500", "--disable-validation",
        ], env={"OMP_NUM_THREADS": "1"})

    def queue(save):
        state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        return state["extra_state"]["kd_nmt_criterion"]["select_queue"]["values"]

    train(tmp_path / "resumed", 3)
    after3 = queue(tmp_path / "resumed")
    proc = train(tmp_path / "resumed", 5)
    assert "@ 3 updates" in proc.stdout + proc.stderr
    straight = train(tmp_path / "straight", 5)
    resumed, whole = queue(tmp_path / "resumed"), queue(tmp_path / "straight")
    assert resumed.numel() > after3.numel() and torch.equal(resumed[:after3.numel()], after3)
    assert resumed.numel() == whole.numel()
    assert torch.allclose(resumed, whole, rtol=1e-4, atol=1e-5)
    fractions = train_losses(straight.stdout + straight.stderr, key="kd_selected")
    assert len(fractions) == 5 and all(0.3 < f < 0.8 for f in fractions), fractions
    assert train_losses(proc.stdout + proc.stderr, key="kd_selected") == pytest.approx(fractions[3:], abs=2e-4)


@pytest.mark.parametrize("option,value,message", [
    ("--kd-select-rate", "0", "--kd-select-rate must be in (0, 1], got 0.0"),
    ("--kd-select-rate", "1.5", "--kd-select-rate must be in (0, 1], got 1.5"),
    ("--kd-select-queue", "0", "--kd-select-queue must be >= 1, got 0"),
    ("--kd-on-policy", "-0.1", "--kd-on-policy must be in [0, 1]"),
    ("--kd-sampling-temperature", "0", "--kd-sampling-temperature must be > 0"),
])
def test_bad_values_are_clear_errors(data_bin, teacher_checkpoint, option, value, message):
    with pytest.raises(KDNMTError) as err:
        setup_in_process(data_bin, kd_args(teacher_checkpoint, "--kd-select", "global", option, value))
    assert message in str(err.value)


def test_bad_select_rate_fails_before_training_in_one_line(data_bin, teacher_checkpoint, tmp_path):
    proc = run([tool("kd-nmt"), "train", data_bin, *TINY_ARCH, *TRAIN_COMMON,
                *kd_args(teacher_checkpoint, "--kd-select", "batch", "--kd-select-rate", "2"),
                "--save-dir", tmp_path], check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == ["kd-nmt: error: --kd-select-rate must be in (0, 1], got 2.0 (the fraction of tokens the "
                      "KD term keeps)"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "checkpoint_last.pt").exists()


# --- on-policy KD ----------------------------------------------------------------------------------
def test_lambda_zero_is_word_kd(data_bin, teacher_checkpoint):
    _, task, model, plain = setup_in_process(data_bin, kd_args(teacher_checkpoint, "--kd-alpha", 0.7))
    *_, zero = setup_in_process(data_bin, kd_args(teacher_checkpoint, "--kd-alpha", 0.7, "--kd-on-policy", 0))
    sample = first_batch(task, "train")
    model.train()
    assert_same(loss_and_grads(zero, model, sample), loss_and_grads(plain, model, sample))


@pytest.mark.parametrize("which,a,b", [("student", 0.5, 3), ("teacher", 1.2, 10)])
def test_greedy_output_is_sequence_generator_beam_one(data_bin, teacher_checkpoint, which, a, b):
    # the untrained student (long outputs, cut at the bound) and the trained teacher (stops at EOS)
    from fairseq.sequence_generator import SequenceGenerator

    _, task, model, _ = setup_in_process(data_bin, kd_args(teacher_checkpoint))
    model = model if which == "student" else task.teacher.models[0]
    sample = first_batch(task, "valid", max_sentences=6)
    model.train()  # decoding must switch to eval mode itself, and back
    tgt = task.target_dictionary
    src, lengths = sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"]
    got = student_outputs(model, src, lengths, pad=tgt.pad(), eos=tgt.eos(), max_len_a=a, max_len_b=b)
    assert model.training
    model.eval()
    generator = SequenceGenerator([model], tgt, beam_size=1, max_len_a=a, max_len_b=b)
    with torch.no_grad():
        hypos = generator.forward(sample)
    for row, hypo in zip(got.tolist(), hypos):
        want = hypo[0]["tokens"].tolist()
        assert row[:len(want)] == want and set(row[len(want):]) <= {tgt.pad()}
    lengths = got.ne(tgt.pad()).sum(1)
    assert int(lengths.max()) <= int(a * src.size(1) + b) + 1
    assert (got.eq(tgt.eos()).sum(1) == 1).all()  # each row: one EOS, at its end
    if which == "teacher":
        assert int(lengths.min()) < int(lengths.max())  # some stopped at EOS, padded after it


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_on_policy_objective_by_hand(data_bin, teacher_checkpoint, fraction):
    alpha, tau = 0.6, 2.0
    _, task, model, criterion = setup_in_process(data_bin, kd_args(
        teacher_checkpoint, "--kd-alpha", alpha, "--kd-temperature", tau, "--kd-divergence", "js",
        "--kd-on-policy", fraction))
    sample = first_batch(task, "train")
    model.train()
    torch.manual_seed(5)
    loss, grads, log = loss_and_grads(criterion, model, sample)

    pad, eos = task.target_dictionary.pad(), task.target_dictionary.eos()
    torch.manual_seed(5)
    rows = pick_rows(sample["target"].size(0), fraction)
    assert log["on_policy_sentences"] == rows.numel() > 0
    if fraction == 1.0:
        assert rows.tolist() == list(range(sample["target"].size(0)))
    net_input = sample["net_input"]
    src, lengths = net_input["src_tokens"][rows], net_input["src_lengths"][rows]
    outputs = student_outputs(model, src, lengths, pad=pad, eos=eos)
    on_input = {"src_tokens": src, "src_lengths": lengths, "prev_output_tokens": as_prefix(outputs, pad, eos)}
    teacher = task.teacher.models[0]
    with torch.no_grad():
        t_gold = teacher(**net_input)[0]
        t_on = teacher(**on_input)[0]
    s_gold = model(**net_input)[0]
    s_on = model(**on_input)[0]
    off = torch.ones(sample["target"].size(0), dtype=torch.bool)
    off[rows] = False
    gold_kd = divergence("js", s_gold, t_gold, temperature=tau) * sample["target"].ne(pad)
    on_kd = divergence("js", s_on, t_on, temperature=tau) * outputs.ne(pad)
    kd = gold_kd[off].sum() + on_kd.sum()
    expected = (1 - alpha) * hand_ls_ce(s_gold, sample["target"], 0.1, pad) + alpha * tau ** 2 * kd
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert log["kd_loss"].item() == pytest.approx(kd.item(), rel=1e-5)
    t_nll = -(F.log_softmax(t_gold, -1).gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)
              * sample["target"].ne(pad)).sum()
    assert log["teacher_nll_loss"].item() == pytest.approx(t_nll.item(), rel=1e-5)
    model.zero_grad()
    expected.backward()
    assert_grads_close(grads, [p.grad for p in model.parameters()], 1e-5)


def test_sampled_outputs_follow_the_seed_and_differ_from_greedy(data_bin, teacher_checkpoint):
    _, task, model, _ = setup_in_process(data_bin, kd_args(teacher_checkpoint))
    sample = first_batch(task, "valid", max_sentences=4)
    tgt = task.target_dictionary
    args = (model, sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"])
    greedy = student_outputs(*args, pad=tgt.pad(), eos=tgt.eos())
    torch.manual_seed(0)
    a = student_outputs(*args, pad=tgt.pad(), eos=tgt.eos(), sampling="sample", temperature=1.5)
    torch.manual_seed(0)
    b = student_outputs(*args, pad=tgt.pad(), eos=tgt.eos(), sampling="sample", temperature=1.5)
    assert torch.equal(a, b) and not torch.equal(a[:, :greedy.size(1)], greedy[:, :a.size(1)])


def test_on_policy_with_a_teacher_cache_is_one_clear_error(data_bin, cache8):
    with pytest.raises(KDNMTError, match=r"--kd-on-policy 0.5 needs a live teacher \(--teacher-path\)"):
        setup_in_process(data_bin, ["--task", "kd_translation", "--teacher-cache", cache8,
                                    "--criterion", "word_kd", "--kd-on-policy", "0.5"])


def test_on_policy_and_selection_together_are_refused(data_bin, teacher_checkpoint):
    with pytest.raises(KDNMTError, match="cannot be combined"):
        setup_in_process(data_bin, kd_args(teacher_checkpoint, "--kd-on-policy", 0.5, "--kd-select", "batch"))
