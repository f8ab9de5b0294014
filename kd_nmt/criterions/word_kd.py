"""Criterion ``word_kd``: word-level knowledge distillation (Hinton et al. 2015; Kim & Rush 2016).

The training objective (one noun, "the objective", for this sum; its two terms are "the CE
term" and "the KD term"):

    objective = (1 - alpha) * label_smoothed_CE(student, gold) + alpha * tau^2 * sum_t D(p_T^tau || p_S^tau)

summed over the non-pad target tokens of the batch (fairseq's convention; the trainer divides
by ``sample_size`` = number of target tokens). The teacher scores the *gold* prefix, the same
``prev_output_tokens`` the student sees. ``D`` is any divergence of ``kd_nmt.divergences``.
Both terms see the same positions: with ``--ignore-prefix-size n`` the first n target
positions are dropped from the KD term as fairseq drops them from the CE term.

The teacher is ``task.teacher``, a ``kd_nmt.teacher.protocol.KDTeacher`` (a live model or
ensemble, or a teacher cache): the criterion asks it for the ``TeacherTargets`` of a batch and
hands them to the KD term, never asking which kind it is; where a run needs what a teacher lacks
(on-policy KD a live one, TAID scores), it reads the teacher's capability and refuses in one line.

``--kd-topk k`` keeps, per position, the teacher's ``k`` most probable tokens and renormalises
*both* distributions over that set before ``D`` (reverse divergences are undefined where a
truncated teacher is 0). The student's probability mass outside the set is then ignored by the
KD term; the gold CE term still sees the whole vocabulary. ``k = 0`` (default) or ``k >= V`` is
the full-vocabulary loss. With ``--teacher-cache`` the teacher is the cache's top k' already;
``--kd-topk k`` then keeps the top ``k <= k'`` of the cached ids (``k > k'`` is an error).

``--kd-select {batch,global}`` (selective KD, ``kd_nmt/criterions/selection.py``) restricts the KD
term to the tokens with the highest student CE on gold; ``--kd-on-policy lambda`` (on-policy KD,
``kd_nmt/criterions/on_policy.py``) takes the KD term of a fraction lambda of the sentences on the
student's own output, scored by the live teacher. In both the gold CE term covers every gold token.

Validation reports the student's label-smoothed CE on gold as ``loss`` (so
``--best-checkpoint-metric loss`` means what it means for a plain student); ``kd_loss`` and the
teacher's gold NLL are logged beside it. All losses are logged in base 2, like fairseq's.
"""
import dataclasses
import functools
import math
from dataclasses import dataclass, field

import torch
from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from kd_nmt.criterions.kd_objective import ObjectiveParts, kd_objective
from kd_nmt.divergences import (
    DEFAULT_AB_ALPHA,
    DEFAULT_AB_BETA,
    DEFAULT_BETA,
    DEFAULT_MU,
    DEFAULT_SKEW,
    DIVERGENCES,
    divergence_params,
)
from kd_nmt.criterions.on_policy import (
    STUDENT_SAMPLING,
    check_on_policy,
    joint_batch,
    pick_rows,
    student_outputs,
)
from kd_nmt.criterions.selection import SELECT_KINDS, CEQueue, check_selection, select_in_batch, student_gold_ce
from kd_nmt.errors import KDNMTError
from kd_nmt.criterions.taid import TAIDSchedule, interpolated_target


@dataclass
class WordKDConfig(LabelSmoothedCrossEntropyCriterionConfig):
    kd_alpha: float = field(default=0.5, metadata={"help": "weight of the KD term (1 - alpha weighs gold CE)"})
    kd_temperature: float = field(default=1.0, metadata={"help": "softmax temperature tau of both distributions"})
    kd_divergence: ChoiceEnum(list(DIVERGENCES)) = field(
        default="fkl", metadata={"help": "divergence D(p_teacher || p_student)"}
    )
    kd_topk: int = field(
        default=0,
        metadata={"help": "keep the teacher's k most probable tokens, renormalise both (0 = all; with "
                  "--teacher-cache: the top k of the cached ids, k <= the cache's k)"},
    )
    kd_beta: float = field(default=DEFAULT_BETA, metadata={"help": "ToDi: sharpness of the FKL/RKL weight"})
    kd_skew: float = field(default=DEFAULT_SKEW, metadata={"help": "skl/srkl: skew of the mixture"})
    kd_mu: float = field(default=DEFAULT_MU, metadata={"help": "akl: teacher mass that defines the head"})
    kd_ab_alpha: float = field(default=DEFAULT_AB_ALPHA, metadata={
        "help": "abkd: alpha (1 with beta 0 = fkl; the teacher's mode-covering pull)"})
    kd_ab_beta: float = field(default=DEFAULT_AB_BETA, metadata={
        "help": "abkd: beta (0 with alpha 1 = fkl, 1 with alpha 0 = rkl; the student's mode seeking)"})
    kd_taid: bool = field(default=False, metadata={
        "help": "TAID (Shing et al. 2025): the KD target interpolates, in logit space, from the student "
                "(detached) to the teacher with an adaptive coefficient t (kd_nmt/criterions/taid.py)"})
    kd_taid_steps: int = field(default=0, metadata={
        "help": "TAID: the updates over which t's floor ramps to --kd-taid-end (set it to --max-update)"})
    kd_taid_start: float = field(default=0.4, metadata={"help": "TAID: t at the start"})
    kd_taid_end: float = field(default=1.0, metadata={"help": "TAID: t's ceiling (1 = the teacher)"})
    kd_taid_alpha: float = field(default=5e-4, metadata={"help": "TAID: step size of t's adaptive rise"})
    kd_taid_momentum: float = field(default=0.99, metadata={
        "help": "TAID: momentum of the KD loss's relative change (the paper's beta)"})
    kd_select: ChoiceEnum(list(SELECT_KINDS)) = field(
        default="none",
        metadata={"help": "selective KD (Wang et al. 2021): the KD term covers only the tokens with the "
                  "highest student CE on gold, the top --kd-select-rate of the batch (batch) or those at "
                  "or above the (1 - rate) quantile of a queue of recent tokens (global)"},
    )
    kd_select_rate: float = field(default=0.5, metadata={"help": "selective KD: fraction r in (0, 1] kept"})
    kd_select_queue: int = field(
        default=30000, metadata={"help": "--kd-select global: tokens in the FIFO queue of recent CE values"}
    )
    kd_on_policy: float = field(
        default=0.0,
        metadata={"help": "on-policy KD (GKD): fraction of each batch's sentences whose KD term is taken on "
                  "the student's own output instead of the gold prefix (0 = off; needs --teacher-path)"},
    )
    kd_student_sampling: ChoiceEnum(list(STUDENT_SAMPLING)) = field(
        default="greedy", metadata={"help": "on-policy KD: how the student decodes its output"}
    )
    kd_sampling_temperature: float = field(
        default=1.0, metadata={"help": "on-policy KD with --kd-student-sampling sample: softmax temperature"}
    )
    kd_on_policy_max_len_a: float = field(
        default=1.2, metadata={"help": "on-policy KD: the student's output has at most a*S+b tokens (S: source length)"}
    )
    kd_on_policy_max_len_b: int = field(default=10, metadata={"help": "on-policy KD: see --kd-on-policy-max-len-a"})


def kd_term(student_logits, teacher, target, padding_idx, name, temperature=1.0, topk=0, kd_mask=None,
            **params):
    """The KD term: the divergence per target token, summed over non-pad tokens (a scalar).

    student_logits: ``[B, T, V]``.
    teacher: the ``TeacherTargets`` of those positions (``kd_nmt/teacher/``), e.g. dense
        ``[B, T, V]`` scores or a sparse top k from a cache.
    target: ``[B, T]`` gold ids; positions equal to ``padding_idx`` contribute nothing, nor do
        those where the optional ``kd_mask`` ``[B, T]`` (bool) is False (selective KD).
    ``topk`` > 0 cuts the teacher to its top k first (``TeacherTargets.top_k``). Each kind of
    targets computes its own term (``kd_per_token``: a sparse top k renormalises both sides over
    its ids, a topk-tail / sample cache does not); full-vocabulary targets in training go
    through ``kd_objective`` instead (memory-lean, same value and gradient).
    """
    teacher = teacher.top_k(topk)
    if teacher.full_vocabulary and student_logits.requires_grad and torch.is_grad_enabled():
        # the memory-lean path (one [tokens x V] kept for backward)
        return kd_objective(
            student_logits, teacher, target, padding_idx, kd_weight=1.0, name=name,
            temperature=temperature, params=params, kd_mask=kd_mask,
        ).objective
    per_token = teacher.kd_per_token(student_logits, name, temperature, **params)
    dropped = target.eq(padding_idx) if kd_mask is None else target.eq(padding_idx) | ~kd_mask
    return per_token.masked_fill(dropped, 0.0).sum()


def check_finite(cfg):
    """One KDNMTError for a float option at NaN or infinity: ``--kd-temperature inf`` passed the
    range checks below (inf > 0) and ended in a traceback; a NaN passes every comparison."""
    # fairseq hands the criterion an omegaconf DictConfig; tests may build the dataclass itself
    names = list(cfg.keys()) if hasattr(cfg, "keys") else [f.name for f in dataclasses.fields(cfg)]
    for name in names:
        value = getattr(cfg, name, None)
        if isinstance(value, float) and not math.isfinite(value):
            raise KDNMTError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


@register_criterion("word_kd", dataclass=WordKDConfig)
class WordKDCriterion(LabelSmoothedCrossEntropyCriterion):
    """Label-smoothed CE on gold mixed with a token-level divergence to the task's teacher."""

    def __init__(self, cfg: WordKDConfig, task):
        super().__init__(task, cfg.sentence_avg, cfg.label_smoothing, cfg.ignore_prefix_size, cfg.report_accuracy)
        teacher = getattr(task, "teacher", None)
        if teacher is None:
            raise KDNMTError(
                f"--criterion {self.__class__.criterion_name()} needs a teacher: use "
                "--task kd_translation with --teacher-path T.pt (or --teacher-cache DIR)"
            )
        check_finite(cfg)
        if not 0.0 <= cfg.kd_alpha <= 1.0:
            raise KDNMTError(f"--kd-alpha must be in [0, 1], got {cfg.kd_alpha}")
        if cfg.kd_temperature <= 0:
            raise KDNMTError(f"--kd-temperature must be > 0, got {cfg.kd_temperature}")
        if cfg.kd_topk < 0:
            raise KDNMTError(f"--kd-topk must be >= 0, got {cfg.kd_topk}")
        # what the teacher cannot serve (a cache's mode: its temperature, divergences, top k)
        teacher.check_use(str(cfg.kd_divergence), cfg.kd_temperature, cfg.kd_topk)
        self.kd_alpha = cfg.kd_alpha
        self.kd_temperature = cfg.kd_temperature
        self.kd_divergence = str(cfg.kd_divergence)
        self.kd_topk = cfg.kd_topk
        self.kd_params = divergence_params(self.kd_divergence, skew=cfg.kd_skew, mu=cfg.kd_mu, beta=cfg.kd_beta,
                                           ab_alpha=cfg.kd_ab_alpha, ab_beta=cfg.kd_ab_beta)
        self.init_selection(cfg)
        self.init_on_policy(cfg, teacher)
        self.init_taid(cfg, teacher)
        self.num_updates = 0

    def init_taid(self, cfg, teacher):
        """``--kd-taid*`` (kd_nmt.criterions.taid), checked before training."""
        self.taid = None
        if not cfg.kd_taid:
            return
        if cfg.kd_taid_steps < 1:
            raise KDNMTError("--kd-taid needs --kd-taid-steps N (the run's --max-update: t's floor ramps "
                             "linearly to --kd-taid-end over N updates)")
        if not (0.0 <= cfg.kd_taid_start < 1.0 and 0.0 < cfg.kd_taid_end <= 1.0
                and cfg.kd_taid_start <= cfg.kd_taid_end and 0.0 <= cfg.kd_taid_alpha <= 1.0
                and 0.0 <= cfg.kd_taid_momentum < 1.0):
            raise KDNMTError(
                f"--kd-taid-start {cfg.kd_taid_start} must be in [0, 1), --kd-taid-end {cfg.kd_taid_end} in "
                f"(0, 1] and not below it, --kd-taid-alpha {cfg.kd_taid_alpha} in [0, 1], "
                f"--kd-taid-momentum {cfg.kd_taid_momentum} in [0, 1)")
        if not teacher.interpolable:
            raise KDNMTError(
                f"--kd-taid interpolates the teacher's scores with the student's: a live teacher or a topk "
                f"teacher cache has them, a {teacher.name} does not (it holds an estimate of the divergence)")
        self.taid = TAIDSchedule(cfg.kd_taid_steps, cfg.kd_taid_start, cfg.kd_taid_end, cfg.kd_taid_alpha,
                                 cfg.kd_taid_momentum)

    def set_num_updates(self, num_updates):
        """Called by ``kd_translation.train_step`` (fairseq passes the count to the model only)."""
        self.num_updates = num_updates

    def kd_target(self, targets, student_logits):
        """The KD term's teacher side: ``targets`` (at the CE term's positions) themselves, or with
        ``--kd-taid`` TAID's target over the same ids."""
        if self.taid is None:
            return targets
        return targets.rescored(self.positions(student_logits), functools.partial(interpolated_target, t=self.taid.t))

    def init_selection(self, cfg):
        """``--kd-select*`` (kd_nmt.criterions.selection), checked before training."""
        check_selection(str(cfg.kd_select), cfg.kd_select_rate, cfg.kd_select_queue)
        self.kd_select = str(cfg.kd_select)
        self.kd_select_rate = cfg.kd_select_rate
        self.select_queue = CEQueue(cfg.kd_select_queue) if self.kd_select == "global" else None
        self.selected = None  # the last training batch's selection, for logging

    def init_on_policy(self, cfg, teacher):
        """``--kd-on-policy*`` (kd_nmt.criterions.on_policy), checked before training."""
        sampling = str(cfg.kd_student_sampling)
        check_on_policy(cfg.kd_on_policy, sampling, cfg.kd_sampling_temperature,
                        cfg.kd_on_policy_max_len_a, cfg.kd_on_policy_max_len_b)
        self.kd_on_policy = cfg.kd_on_policy
        self.on_policy_decoding = dict(
            sampling=sampling, temperature=cfg.kd_sampling_temperature,
            max_len_a=cfg.kd_on_policy_max_len_a, max_len_b=cfg.kd_on_policy_max_len_b,
        )
        if not self.kd_on_policy:
            return
        flag = f"--kd-on-policy {cfg.kd_on_policy}"
        if not teacher.any_prefix:
            raise KDNMTError(
                f"{flag} needs a live teacher (--teacher-path): a teacher cache holds distributions on "
                "the gold prefixes only, not on the student's own outputs"
            )
        if self.kd_select != "none":
            raise KDNMTError(
                f"{flag} and --kd-select {self.kd_select} cannot be combined: selection ranks tokens by "
                "their gold CE, which the student's own outputs do not have"
            )
        if self.ignore_prefix_size:
            raise KDNMTError(f"{flag} does not support --ignore-prefix-size (the student's outputs have no prefix)")
        if getattr(self.task.cfg, "left_pad_target", False):
            raise KDNMTError(f"{flag} needs right-padded targets (no --left-pad-target)")

    def training_state(self):
        """State to resume with, beside the model's (``kd_nmt.checkpoint`` saves it in the
        checkpoint's ``extra_state``): the ``--kd-select global`` queue."""
        state = {"select_queue": self.select_queue.state_dict()} if self.select_queue is not None else {}
        if self.taid is not None:
            state["taid"] = self.taid.state_dict()
        return state

    def load_training_state(self, state):
        if self.select_queue is not None and "select_queue" in state:
            self.select_queue.load_state_dict(state["select_queue"])
        if self.taid is not None and "taid" in state:
            self.taid.load_state_dict(state["taid"])

    @classmethod
    def criterion_name(cls):
        return "word_kd"

    def positions(self, x):
        """``x`` ``[B, T, ...]`` (a tensor or ``TeacherTargets``) without the first
        ``--ignore-prefix-size`` target positions: the positions fairseq's CE term sees."""
        return x[:, self.ignore_prefix_size:] if self.ignore_prefix_size else x

    def teacher_on(self, sample, like, ce_mask=None, with_nll=True):
        """The teacher on ``sample``'s prefix, at the CE term's positions, cut to --kd-topk:
        ``(targets, target, teacher_nll)``; ``teacher_nll`` summed over the non-pad tokens (within
        ``ce_mask``, the gold rows of an on-policy batch), None where the teacher leaves it to the
        one pass (``with_nll`` False, ``KDTeacher.targets``)."""
        targets, teacher_nll = self.task.teacher.targets(sample, like=like, with_nll=with_nll)
        target = self.positions(sample["target"])
        if teacher_nll is not None:
            dropped = target.eq(self.padding_idx) if ce_mask is None else target.eq(self.padding_idx) | ~ce_mask
            teacher_nll = self.positions(teacher_nll).masked_fill(dropped, 0.0).sum()
        return self.positions(targets).top_k(self.kd_topk), target, teacher_nll

    def kd_and_teacher_nll(self, student_logits, sample, kd_mask=None):
        """(KD term, teacher's gold NLL), sums over ``sample``'s tokens, for ``student_logits``."""
        targets, target, teacher_nll = self.teacher_on(sample, like=student_logits)
        targets = self.kd_target(targets, student_logits)
        kd = kd_term(
            self.positions(student_logits), targets, target, self.padding_idx, self.kd_divergence,
            self.kd_temperature, kd_mask=kd_mask, **self.kd_params,
        )
        return kd, teacher_nll

    def selected_tokens(self, logits, target):
        """``[B, T]`` bool: the tokens the KD term covers under ``--kd-select`` (None: all of them).

        ``logits`` and ``target`` at the CE term's positions; training batches only.
        """
        if self.kd_select == "none":
            return None
        ce = student_gold_ce(logits, target)
        real = target.ne(self.padding_idx)
        if self.kd_select == "batch":
            return select_in_batch(ce, real, self.kd_select_rate)
        return self.select_queue.select(ce, real, self.kd_select_rate)

    def objective_from(self, ce, kd):
        """The objective from its two terms (sums, or ``[B]`` per sentence)."""
        return (1.0 - self.kd_alpha) * ce + self.kd_alpha * self.kd_temperature ** 2 * kd

    def uses_one_pass(self, model, logits):
        """Whether the objective comes from ``kd_objective``'s one pass.

        It needs logits whose log-softmax is the model's distribution (no adaptive softmax) and
        a graph to backpropagate; else the CE and KD terms are computed apart (same values).
        """
        decoder = getattr(model, "decoder", None)
        return (
            torch.is_grad_enabled()
            and logits.requires_grad
            and getattr(decoder, "adaptive_softmax", None) is None
        )

    def training_objective(self, model, net_output, sample, ce_mask=None, kd_mask=None) -> ObjectiveParts:
        """The objective and its parts, sums over the batch's gold tokens.

        ``kd_mask`` None: ``--kd-select`` chooses the KD term's tokens. ``ce_mask`` / ``kd_mask``
        given (an on-policy batch): the rows of each term, see ``kd_objective``.
        """
        logits = net_output[0]
        if kd_mask is None:  # (kept for logging: the fraction selected)
            kd_mask = self.selected = self.selected_tokens(self.positions(logits), self.positions(sample["target"]))
        if not self.uses_one_pass(model, logits):
            if ce_mask is not None:
                raise KDNMTError("--kd-on-policy needs a plain output layer (no adaptive softmax)")
            ce, nll = self.compute_loss(model, net_output, sample, reduce=True)
            kd, teacher_nll = self.kd_and_teacher_nll(logits, sample, kd_mask)
            return ObjectiveParts(self.objective_from(ce, kd), ce, nll, kd, teacher_nll)
        # targets that reach the pass as the teacher gave them (not cut to --kd-topk, no TAID):
        # where they are the whole distribution, the teacher's gold NLL comes out of the same pass
        uncut = not 0 < self.kd_topk < logits.size(-1) and self.taid is None
        targets, target, teacher_nll = self.teacher_on(sample, like=logits, ce_mask=ce_mask, with_nll=not uncut)
        targets = self.kd_target(targets, logits)
        parts = kd_objective(
            self.positions(logits), targets, target, self.padding_idx,
            ce_weight=1.0 - self.kd_alpha, epsilon=self.eps,
            kd_weight=self.kd_alpha * self.kd_temperature ** 2, name=self.kd_divergence,
            temperature=self.kd_temperature, params=self.kd_params,
            consume_teacher=True, nll_of_teacher=teacher_nll is None, ce_mask=ce_mask, kd_mask=kd_mask,
        )
        return parts if teacher_nll is None else parts._replace(teacher_nll=teacher_nll)

    def on_policy_forward(self, model, sample):
        """``(gold net_output, ObjectiveParts, m)`` of a training batch under ``--kd-on-policy``:
        ``m`` sentences' KD term on the student's own output (kd_nmt.criterions.on_policy)."""
        net_input = sample["net_input"]
        rows = pick_rows(sample["target"].size(0), self.kd_on_policy, device=sample["target"].device)
        if not rows.numel():
            net_output = model(**net_input)
            return net_output, self.training_objective(model, net_output, sample), 0
        eos = self.task.target_dictionary.eos()
        outputs = student_outputs(
            model, net_input["src_tokens"][rows], net_input["src_lengths"][rows],
            pad=self.padding_idx, eos=eos, **self.on_policy_decoding,
        )
        joint, target, ce_mask, kd_mask = joint_batch(sample, rows, outputs, self.padding_idx, eos)
        logits, extra = model(**joint)
        parts = self.training_objective(
            model, (logits, extra), {**sample, "net_input": joint, "target": target}, ce_mask, kd_mask
        )
        bsz, t_gold = sample["target"].shape
        return (logits[:bsz, :t_gold], extra), parts, int(rows.numel())

    def forward(self, model, sample, reduce=True):
        kd = teacher_nll = on_policy = self.selected = None
        if model.training and self.kd_on_policy:
            net_output, parts, on_policy = self.on_policy_forward(model, sample)
            loss, ce, nll, kd, teacher_nll = parts
        elif model.training:
            net_output = model(**sample["net_input"])
            loss, ce, nll, kd, teacher_nll = self.training_objective(model, net_output, sample)
        else:  # validation: the student's CE on gold is the loss; KD logged beside it
            net_output = model(**sample["net_input"])
            ce, nll = self.compute_loss(model, net_output, sample, reduce=reduce)
            loss = ce
            # kd_nmt.cache: a teacher cache covers only the split it was built on (train), so
            # validation batches have no teacher: no KD term there
            if not self.task.teacher.training_split_only:
                kd, teacher_nll = self.kd_and_teacher_nll(net_output[0], sample)
        if model.training and self.taid is not None:  # TAID's t follows the KD loss per token
            self.taid.update(kd.item() / max(int(sample["ntokens"]), 1), self.num_updates)
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll.data,
            "ce_loss": ce.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        if kd is not None:  # (None: validation with a teacher cache, see above)
            logging_output.update(kd_loss=kd.data, teacher_nll_loss=teacher_nll.data)
        if self.selected is not None:  # --kd-select: tokens of the KD term
            logging_output["kd_selected_tokens"] = int(self.selected.sum())
        if on_policy is not None:  # --kd-on-policy: sentences of the KD term on the student's output
            logging_output["on_policy_sentences"] = on_policy
        if self.taid is not None:  # summed over workers: t as a sum and a count
            logging_output.update(taid_t_sum=self.taid.t, taid_n=1)
        self.log_accuracy(model, net_output, sample, logging_output)
        return loss, sample_size, logging_output

    def log_accuracy(self, model, net_output, sample, logging_output):
        """``--report-accuracy``: fairseq's counts of the student's argmax on the gold target."""
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, net_output, sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        for key in ("ce_loss", "kd_loss", "teacher_nll_loss"):
            if not any(key in log for log in logging_outputs):
                continue  # kd_loss / teacher_nll_loss: not computed (validation, teacher cache)
            total = sum(log.get(key, 0) for log in logging_outputs)
            metrics.log_scalar(key, total / max(ntokens, 1) / math.log(2), ntokens, round=3)
        # the fraction of the gold tokens the KD term covered (--kd-select), and of the
        # sentences whose KD term was on the student's output (--kd-on-policy)
        if any("kd_selected_tokens" in log for log in logging_outputs):
            selected = sum(log.get("kd_selected_tokens", 0) for log in logging_outputs)
            metrics.log_scalar("kd_selected", selected / max(ntokens, 1), ntokens, round=4)
        if any("on_policy_sentences" in log for log in logging_outputs):
            nsentences = sum(log.get("nsentences", 0) for log in logging_outputs)
            sentences = sum(log.get("on_policy_sentences", 0) for log in logging_outputs)
            metrics.log_scalar("on_policy", sentences / max(nsentences, 1), nsentences, round=4)
        if any("taid_n" in log for log in logging_outputs):  # --kd-taid: the mean t of the interval
            n = sum(log.get("taid_n", 0) for log in logging_outputs)
            metrics.log_scalar("taid_t", sum(log.get("taid_t_sum", 0.0) for log in logging_outputs) / max(n, 1),
                               n, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
