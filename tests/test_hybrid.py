"""Criterion hybrid_kd + paired data (--sentence-kd-data): exact losses and gate gradients on one
fixed batch, resume of the learned gate, stock fairseq loading a hybrid student, misalignment."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from helpers import PLUGIN, TINY_ARCH, TRAIN_COMMON, first_batch, run, setup_in_process, tool
from kd_nmt.errors import KDNMTError
from kd_nmt.gates import GATE_EMA_MOMENTUM, InputGate, LearnedGate


def teacher_like(pieces, i):
    """A deterministic stand-in for a teacher translation: longer, shorter or reordered."""
    if i % 3 == 0:
        return pieces + pieces[:3]
    if i % 3 == 1:
        return pieces[::2]
    return pieces[::-1]


@pytest.fixture(scope="module")
def kd_bin(data_bin, tokenized, tmp_path_factory):
    """A --sentence-kd-data dir: the fixture's train source + line-aligned 'teacher' targets,
    binarized with the gold dictionaries (as `kd-nmt relabel --binarize-to` does)."""
    work = tmp_path_factory.mktemp("kd-text")
    lines = (tokenized / "train.en").read_text(encoding="utf-8").splitlines()
    (work / "train.en").write_text(
        "".join(" ".join(teacher_like(line.split(), i)) + "\n" for i, line in enumerate(lines)),
        encoding="utf-8",
    )
    (work / "train.de").write_text((tokenized / "train.de").read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path_factory.mktemp("kd-bin")
    run([
        tool("fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
        "--trainpref", work / "train", "--destdir", out, "--workers", "1",
        "--srcdict", data_bin / "dict.de.txt", "--tgtdict", data_bin / "dict.en.txt",
    ])
    return out


def hybrid_args(teacher, kd_bin, *extra, criterion="hybrid_kd"):
    return [
        "--task", "kd_translation", "--teacher-path", teacher, "--sentence-kd-data", kd_bin,
        "--criterion", criterion, "--label-smoothing", "0.1", "--max-update", "100", *extra,
    ]


def setup(data_bin, teacher, kd_bin, *extra, **kw):
    cfg, task, model, criterion = setup_in_process(data_bin, hybrid_args(teacher, kd_bin, *extra, **kw))
    model.train()
    return task, model, criterion, first_batch(task, "train")


def ls_ce_sum(logits, target, eps, pad):
    """fairseq's label-smoothed CE written out, summed over non-pad positions."""
    lprobs = F.log_softmax(logits, -1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    eps_i = eps / (lprobs.size(-1) - 1)
    return (((1 - eps - eps_i) * nll + eps_i * -lprobs.sum(-1)) * target.ne(pad)).sum()


def student_logits(model, sample, prev):
    net_input = dict(sample["net_input"], prev_output_tokens=prev)
    return model(**net_input)[0].detach()


# ---------------------------------------------------------------------------------- paired data
def test_train_batches_carry_aligned_teacher_targets(data_bin, teacher_checkpoint, kd_bin):
    task, _, _, sample = setup(data_bin, teacher_checkpoint, kd_bin)
    teacher_ds = task.datasets["train"].teacher
    pad, eos = task.target_dictionary.pad(), task.target_dictionary.eos()
    tt, tprev = sample["teacher_target"], sample["teacher_prev_output_tokens"]
    assert tt.size(0) == sample["target"].size(0) == len(sample["id"])
    for row, i in enumerate(sample["id"].tolist()):  # rows follow the (sorted) gold batch
        expected = teacher_ds[i]
        assert torch.equal(tt[row, : len(expected)], expected)
        assert tt[row, len(expected):].eq(pad).all()
        assert tprev[row, 0] == eos and torch.equal(tprev[row, 1: len(expected)], expected[:-1])
        assert torch.equal(sample["target"][row][sample["target"][row].ne(pad)], task.datasets["train"].gold.tgt[i])
    assert sample["teacher_ntokens"] == int(tt.ne(pad).sum())
    # batching sees the longer target of each example
    paired = task.datasets["train"]
    i = int(paired.teacher_sizes.argmax())
    assert paired.num_tokens(i) == max(paired.gold.src_sizes[i], paired.gold.tgt_sizes[i], paired.teacher_sizes[i])
    assert (paired.teacher_sizes > paired.gold.tgt_sizes).any() and (paired.teacher_sizes < paired.gold.tgt_sizes).any()
    assert "teacher_target" not in first_batch(task, "valid")  # validation: gold only


def test_misaligned_teacher_data_is_one_clear_error(data_bin, teacher_checkpoint, kd_bin, tmp_path):
    # different line counts: the 60-line valid split posing as train
    short = tmp_path / "short"
    short.mkdir()
    for ext in ("bin", "idx"):
        for lang in ("de", "en"):
            (short / f"train.de-en.{lang}.{ext}").symlink_to(data_bin / f"valid.de-en.{lang}.{ext}")
    with pytest.raises(KDNMTError, match=r"teacher's train split has 60 lines, the gold train split .* has 400"):
        setup(data_bin, teacher_checkpoint, short)
    # same count, other source lines: the English side posing as the German source
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for ext in ("bin", "idx"):
        (swapped / f"train.de-en.de.{ext}").symlink_to(data_bin / f"train.de-en.en.{ext}")
        (swapped / f"train.de-en.en.{ext}").symlink_to(kd_bin / f"train.de-en.en.{ext}")
    with pytest.raises(KDNMTError, match=r"source lines differ from the gold ones .*\(first at line 1\)"):
        setup(data_bin, teacher_checkpoint, swapped)
    with pytest.raises(KDNMTError, match="needs the teacher's translations"):
        setup_in_process(data_bin, ["--task", "kd_translation", "--teacher-path", teacher_checkpoint,
                                    "--criterion", "hybrid_kd"])


# ------------------------------------------------------------------------------ exact losses
def test_gate_one_is_word_kd(data_bin, teacher_checkpoint, kd_bin):
    _, model, word, sample = setup(data_bin, teacher_checkpoint, kd_bin, criterion="word_kd")
    expected, size, word_log = word(model, sample)
    _, model, hybrid, sample = setup(data_bin, teacher_checkpoint, kd_bin, "--gate", "fixed", "--gate-init", "1")
    loss, sample_size, log = hybrid(model, sample)
    assert sample_size == size == sample["ntokens"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert log["token_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert log["kd_loss"].item() == pytest.approx(word_log["kd_loss"].item(), rel=1e-5)
    assert log["gate"] == pytest.approx(sample["target"].size(0))  # summed: mean G = 1


@pytest.mark.parametrize("gate", [["--gate", "fixed", "--gate-init", "1"], ["--gate", "input"]], ids=["fixed", "input"])
def test_selection_applies_to_the_token_term(data_bin, teacher_checkpoint, kd_bin, gate):
    # --kd-select batch: hybrid's token term selects the tokens word_kd selects, on both paths
    # (the batch objective, and the per-sentence one of --gate input)
    select = ["--kd-select", "batch", "--kd-select-rate", "0.4"]
    _, model, word, sample = setup(data_bin, teacher_checkpoint, kd_bin, *select, criterion="word_kd")
    expected, _, word_log = word(model, sample)
    _, model, hybrid, sample = setup(data_bin, teacher_checkpoint, kd_bin, *gate, *select)
    loss, _, log = hybrid(model, sample)
    assert log["kd_selected_tokens"] == word_log["kd_selected_tokens"] == math.ceil(0.4 * sample["ntokens"])
    assert log["kd_loss"].item() == pytest.approx(word_log["kd_loss"].item(), rel=1e-5)
    assert log["token_loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_gate_zero_is_label_smoothed_ce_on_teacher_target(data_bin, teacher_checkpoint, kd_bin):
    task, model, criterion, sample = setup(data_bin, teacher_checkpoint, kd_bin, "--gate", "fixed", "--gate-init", "0")
    loss, sample_size, log = criterion(model, sample)
    logits = student_logits(model, sample, sample["teacher_prev_output_tokens"])
    ce = ls_ce_sum(logits, sample["teacher_target"], 0.1, task.target_dictionary.pad())
    assert log["sentence_loss"].item() == pytest.approx(ce.item(), rel=1e-5)
    # per-token means: loss / sample_size is the teacher-target CE per teacher token
    assert (loss / sample_size).item() == pytest.approx(ce.item() / sample["teacher_ntokens"], rel=1e-5)
    assert sample["teacher_ntokens"] != sample["ntokens"]  # the normalisation matters here


def test_learned_gate_gradient_is_g1mg_times_loss_difference(data_bin, teacher_checkpoint, kd_bin):
    _, model, criterion, sample = setup(data_bin, teacher_checkpoint, kd_bin, "--gate-init", "0.3")
    gate = criterion.gate
    assert [n for n, _ in criterion.named_parameters()] == ["gate.logit"]
    assert gate.logit.shape == (1,)  # not 0-dim: fairseq's legacy_ddp all-reduce slices grads
    assert torch.sigmoid(gate.logit).item() == pytest.approx(0.3)
    loss, sample_size, log = criterion(model, sample)
    loss.backward()
    g = 0.3
    l_token = log["token_loss"].item() / sample["ntokens"]
    l_sentence = log["sentence_loss"].item() / sample["teacher_ntokens"]
    assert loss.item() / sample_size == pytest.approx(g * l_token + (1 - g) * l_sentence, rel=1e-5)
    # the trainer divides by sample_size: dL/dg of the per-token objective
    grad = gate.logit.grad.item() / sample_size
    assert grad == pytest.approx(g * (1 - g) * (l_token - l_sentence), rel=1e-4)
    # gradient descent moves G towards the smaller loss
    assert math.copysign(1, -grad) == math.copysign(1, l_sentence - l_token)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_gate_normalize_and_reg_change_only_the_gate_gradient(data_bin, teacher_checkpoint, kd_bin):
    _, model, plain, sample = setup(data_bin, teacher_checkpoint, kd_bin)
    loss0, _, _ = plain(model, sample)
    loss0.backward()
    student_grad = [p.grad.clone() for p in model.parameters()]

    _, model, crit, sample = setup(data_bin, teacher_checkpoint, kd_bin, "--gate-normalize", "--gate-reg", "0.5")
    with torch.no_grad():
        crit.gate.logit.fill_(0.4)  # away from the init (logit 0.5 = 0): the L2 pull acts
        crit.gate.loss_means.copy_(torch.tensor([3.0, 2.0]))
        crit.gate.loss_steps.fill_(10)
    loss, sample_size, log = crit(model, sample)
    loss.backward()
    g = torch.sigmoid(torch.tensor(0.4)).item()
    a = log["token_loss"].item() / sample["ntokens"]
    b = log["sentence_loss"].item() / sample["teacher_ntokens"]
    m = 0.99 * torch.tensor([3.0, 2.0]) + 0.01 * torch.tensor([a, b])
    assert torch.allclose(crit.gate.loss_means, m)
    expected = g * (1 - g) * (a / m[0].item() - b / m[1].item()) + 0.5 * 0.4
    assert crit.gate.logit.grad.item() / sample_size == pytest.approx(expected, rel=1e-4)
    assert loss.item() / sample_size == pytest.approx(g * a + (1 - g) * b + 0.25 * 0.4 ** 2, rel=1e-5)
    # the student's gradient is the plain G-weighted one (G differs: compare with G = sigmoid(0.4))
    _, model2, fixed, sample2 = setup(data_bin, teacher_checkpoint, kd_bin, "--gate", "fixed", "--gate-init", str(g))
    fixed(model2, sample2)[0].backward()
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7)
    assert not all(torch.allclose(p.grad, s) for p, s in zip(model.parameters(), student_grad))


@pytest.mark.parametrize("gate_class", [LearnedGate, InputGate])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gate_normalize_statistics_stay_float32_under_fp16_and_bf16(gate_class, dtype):
    # fairseq's Trainer casts the criterion with --fp16 (criterion.half()) and --bf16
    # (criterion.to(dtype=torch.bfloat16)); the running means must still see 1 % EMA steps
    def new_gate():
        gate = gate_class(0.5, 8) if gate_class is InputGate else gate_class(0.5)
        return gate.half() if dtype == torch.float16 else gate.to(dtype=dtype)

    gate = new_gate()
    assert next(gate.parameters()).dtype == dtype  # the parameters are cast (fairseq keeps masters)
    assert gate.loss_steps.dtype == torch.long
    means = torch.tensor([4.06, 2.5], dtype=torch.float64)  # the exact EMA
    gate.update_loss_means(*means.float(), GATE_EMA_MOMENTUM)
    for step in range(300):  # the token loss falls to 3.33, the sentence loss rises a little
        x = torch.tensor([3.33, 2.5 + step / 1000], dtype=torch.float64)
        means = GATE_EMA_MOMENTUM * means + (1 - GATE_EMA_MOMENTUM) * x
        gate.update_loss_means(*x.float(), GATE_EMA_MOMENTUM)
    assert means[0] < 3.4  # (in bfloat16 the mean stayed at 4.06)
    assert torch.allclose(gate.loss_means.double(), means, rtol=1e-5)
    assert gate.loss_means.dtype == torch.float32
    assert int(gate.loss_steps) == 301
    # saved and restored exactly (a checkpoint of a --fp16 run, resumed in --bf16)
    state = gate.state_dict()
    assert state["loss_means"].dtype == torch.float32
    resumed = gate_class(0.5, 8) if gate_class is InputGate else gate_class(0.5)
    resumed = resumed.to(dtype=torch.bfloat16)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.loss_means, gate.loss_means) and int(resumed.loss_steps) == 301


def test_schedule_and_input_gates(data_bin, teacher_checkpoint, kd_bin):
    task, model, crit, sample = setup(data_bin, teacher_checkpoint, kd_bin, "--gate", "schedule",
                                   "--gate-init", "0.2", "--gate-final", "0.8")
    assert not list(crit.parameters())
    for update, expected in ((0, 0.2), (50, 0.5), (100, 0.8), (150, 0.8)):
        crit.set_num_updates(update)
        log = crit(model, sample)[2]
        assert log["gate"] / sample["target"].size(0) == pytest.approx(expected)

    class Optimizer:  # what fairseq's task.train_step needs of one
        def backward(self, loss):
            loss.backward()

    # the trainer's update count reaches the criterion through kd_translation.train_step
    log = task.train_step(sample, model, crit, Optimizer(), update_num=25)[2]
    assert log["gate"] / sample["target"].size(0) == pytest.approx(0.35)

    _, model, fixed, sample = setup(data_bin, teacher_checkpoint, kd_bin, "--gate", "fixed", "--gate-init", "0.5")
    expected = fixed(model, sample)[0]
    _, model, crit, sample = setup(data_bin, teacher_checkpoint, kd_bin, "--gate", "input")
    assert sorted(n for n, _ in crit.named_parameters()) == ["gate.head.bias", "gate.head.weight"]
    assert crit.gate.head.weight.shape == (1, 64)  # the student's --encoder-embed-dim
    loss, _, log = crit(model, sample)  # w = 0: every sentence starts at G = init
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert crit.gate.head.weight.grad.abs().sum() > 0
    # detached input: the head's parameters steer G only; with w != 0, G varies per sentence
    with torch.no_grad():
        crit.gate.head.weight.normal_()
    model.zero_grad()
    loss, _, log = crit(model, sample)
    assert 0 < log["gate"] / sample["target"].size(0) < 1


def test_validation_reports_gold_ce(data_bin, teacher_checkpoint, kd_bin):
    task, model, crit, _ = setup(data_bin, teacher_checkpoint, kd_bin)
    sample = first_batch(task, "valid")
    model.eval()
    with torch.no_grad():
        loss, _, log = crit(model, sample)
        logits = model(**sample["net_input"])[0]
    assert loss.item() == pytest.approx(
        ls_ce_sum(logits, sample["target"], 0.1, task.target_dictionary.pad()).item(), rel=1e-5)
    assert "gate" not in log


# ------------------------------------------------------------------------------- end to end
def test_learned_gate_resumes_and_stock_fairseq_loads_the_student(
    data_bin, teacher_checkpoint, kd_bin, tmp_path
):
    from kd_nmt.checkpoint import load_checkpoint

    def train(updates):
        proc = run([
            tool("fairseq-train"), "--user-dir", PLUGIN, data_bin, *TINY_ARCH, *TRAIN_COMMON,
            *hybrid_args(teacher_checkpoint, kd_bin, "--gate-lr-scale", "100"),
            "--max-update", str(updates), "--save-dir", tmp_path,
        ])
        log = proc.stdout + proc.stderr
        gates = [float(re.search(r"\bgate=([-0-9.]+)", line).group(1)) for line in log.splitlines()
                 if "| train_inner |" in line and "gate=" in line]
        return log, gates

    log, gates = train(3)
    assert len(gates) == 3 and gates[0] == 0.5 and "token_loss" in log and "sentence_loss" in log
    state = load_checkpoint(str(tmp_path / "checkpoint_last.pt"))
    saved = torch.sigmoid(100 * state["criterion"]["gate.logit"]).item()
    assert abs(saved - 0.5) > 0.02  # the gate moved (lr-scale 100)
    assert state["cfg"]["task"]["_name"] == "translation"
    assert state["extra_state"]["kd_nmt"]["sentence_kd_data"] == str(kd_bin)

    log, gates = train(5)
    assert "Loaded checkpoint" in log and len(gates) == 2
    assert gates[0] == pytest.approx(saved, abs=6e-5)  # update 4 starts from the saved gate

    stock = run(
        [tool("fairseq-generate"), data_bin, "--path", tmp_path / "checkpoint_last.pt", "--beam", "1",
         "--cpu", "--gen-subset", "valid", "--max-len-b", "5"],
        env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
    )
    # loads and decodes without the plugin (fairseq's batched search of a 5-update student may
    # drop a few degenerate sentences, so not exactly all 60)
    assert sum(line.startswith("H-") for line in stock.stdout.splitlines()) >= 50
    assert "kd_nmt" not in stock.stderr


@pytest.mark.parametrize("criterion_name,topk", [("word_kd", "0"), ("hybrid_kd", "0"), ("word_kd", "7")])
def test_one_pass_objective_gives_the_model_the_same_gradient(data_bin, teacher_checkpoint, kd_bin, criterion_name,
                                                              topk):
    # training normally takes kd_objective's single pass (CE + KD, gradient in the forward); the
    # separate CE and KD computations must give the same loss and the same gradient everywhere
    grads, losses = [], []
    for one_pass in (True, False):
        _, model, criterion, sample = setup(data_bin, teacher_checkpoint, kd_bin, "--kd-temperature", "2",
                                            "--kd-topk", topk, criterion=criterion_name)
        assert criterion.uses_one_pass(model, model(**sample["net_input"])[0])
        if not one_pass:
            criterion.uses_one_pass = lambda *args: False
        loss, _, log = criterion(model, sample)
        loss.backward()
        losses.append((loss.item(), log["nll_loss"].item(), log["kd_loss"].item(), log["teacher_nll_loss"].item()))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    assert grads[0].abs().sum() > 0
