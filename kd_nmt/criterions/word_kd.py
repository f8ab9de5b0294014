"""Criterion ``word_kd``: word-level knowledge distillation (Hinton et al. 2015; Kim & Rush 2016).

The training objective (one noun, "the objective", for this sum; its two terms are "the CE
term" and "the KD term"):

    objective = (1 - alpha) * label_smoothed_CE(student, gold) + alpha * tau^2 * sum_t D(p_T^tau || p_S^tau)

summed over the non-pad target tokens of the batch (fairseq's convention; the trainer divides
by ``sample_size`` = number of target tokens). The teacher scores the *gold* prefix, the same
``prev_output_tokens`` the student sees. ``D`` is any divergence of ``kd_nmt.divergences``.
Both terms see the same positions: with ``--ignore-prefix-size n`` the first n target
positions are dropped from the KD term as fairseq drops them from the CE term.

``--kd-topk k`` keeps, per position, the teacher's ``k`` most probable tokens and renormalises
*both* distributions over that set before ``D`` (reverse divergences are undefined where a
truncated teacher is 0). The student's probability mass outside the set is then ignored by the
KD term; the gold CE term still sees the whole vocabulary. ``k = 0`` (default) or ``k >= V`` is
the full-vocabulary loss. With ``--teacher-cache`` the teacher is the cache's top k' already;
``--kd-topk k`` then keeps the top ``k <= k'`` of the cached ids (``k > k'`` is an error).

Validation reports the student's label-smoothed CE on gold as ``loss`` (so
``--best-checkpoint-metric loss`` means what it means for a plain student); ``kd_loss`` and the
teacher's gold NLL are logged beside it. All losses are logged in base 2, like fairseq's.
"""
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
    DEFAULT_BETA,
    DEFAULT_MU,
    DEFAULT_SKEW,
    DIVERGENCES,
    divergence,
    divergence_params,
)
from kd_nmt.errors import KDNMTError
from kd_nmt.sparse_teacher import EstimatedTeacher


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


def top_k_support(teacher, topk):
    """The teacher cut to its ``topk`` most probable tokens, as a sparse ``(ids, scores)`` teacher.

    teacher: dense ``[..., V]`` scores, or sparse ``(ids, scores)`` ``[..., k]`` (a cache): then the
    ``topk`` best of its ids. ``topk`` 0, or not below the teacher's size (V or k): returned as it is.
    """
    sparse = isinstance(teacher, tuple)
    scores = teacher[1] if sparse else teacher
    if not 0 < topk < scores.size(-1):
        return teacher
    top, where = scores.topk(topk, dim=-1)
    return (teacher[0].gather(-1, where) if sparse else where), top


def kd_term(student_logits, teacher, target, padding_idx, name, temperature=1.0, topk=0, **params):
    """The KD term: the divergence per target token, summed over non-pad tokens (a scalar).

    student_logits: ``[B, T, V]``.
    teacher: ``[B, T, V]`` logits or log-probs whose softmax is the teacher distribution, or a
        sparse teacher ``(ids [B, T, k], log_probs [B, T, k])`` (e.g. from a cache).
    target: ``[B, T]`` gold ids; positions equal to ``padding_idx`` contribute nothing.
    With ``topk`` > 0 or a sparse teacher, both sides are renormalised over the teacher's ids
    before the divergence (``[B, T, k]`` tensors: small). A dense full-vocabulary teacher in
    training goes through ``kd_objective`` (memory-lean, same value and gradient). A topk-tail /
    sample cache's teacher (``kd_nmt.sparse_teacher``) computes its own term, no renormalising.
    """
    if isinstance(teacher, EstimatedTeacher):
        if topk:
            raise ValueError(f"topk {topk}: only a topk teacher can be cut to its top k")
        per_token = teacher.kd_per_token(student_logits, name, temperature, **params)
        return per_token.masked_fill(target.eq(padding_idx), 0.0).sum()
    teacher = top_k_support(teacher, topk)
    if isinstance(teacher, tuple):
        ids, teacher_scores = teacher
        student_scores = student_logits.gather(-1, ids)
    elif student_logits.requires_grad and torch.is_grad_enabled():
        # dense teacher in training: the memory-lean path (one [tokens x V] kept for backward)
        return kd_objective(
            student_logits, teacher, target, padding_idx, kd_weight=1.0, name=name,
            temperature=temperature, params=params,
        ).objective
    else:
        teacher_scores, student_scores = teacher, student_logits
    per_token = divergence(name, student_scores, teacher_scores, temperature=temperature, **params)
    return per_token.masked_fill(target.eq(padding_idx), 0.0).sum()


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
        if not 0.0 <= cfg.kd_alpha <= 1.0:
            raise KDNMTError(f"--kd-alpha must be in [0, 1], got {cfg.kd_alpha}")
        if cfg.kd_temperature <= 0:
            raise KDNMTError(f"--kd-temperature must be > 0, got {cfg.kd_temperature}")
        if cfg.kd_topk < 0:
            raise KDNMTError(f"--kd-topk must be >= 0, got {cfg.kd_topk}")
        if hasattr(teacher, "check_use"):  # a teacher cache: its mode limits what the run may ask
            teacher.check_use(str(cfg.kd_divergence), cfg.kd_temperature, cfg.kd_topk)
        cached_k = getattr(teacher, "k", None)  # a teacher cache holds the top k of V only
        if cfg.kd_topk and cached_k is not None and cached_k < min(cfg.kd_topk, len(task.target_dictionary)):
            raise KDNMTError(
                f"--kd-topk {cfg.kd_topk} asks for more of the teacher than the teacher cache "
                f"{teacher.cache.path!r} holds (its top {cached_k}): use --kd-topk {cached_k} or less "
                f"(0 = every cached id), or rebuild the cache with `kd-nmt cache-teacher --topk {cfg.kd_topk}`"
            )
        self.kd_alpha = cfg.kd_alpha
        self.kd_temperature = cfg.kd_temperature
        self.kd_divergence = str(cfg.kd_divergence)
        self.kd_topk = cfg.kd_topk
        self.kd_params = divergence_params(self.kd_divergence, skew=cfg.kd_skew, mu=cfg.kd_mu, beta=cfg.kd_beta)

    @classmethod
    def criterion_name(cls):
        return "word_kd"

    def positions(self, x):
        """``x`` ``[B, T, ...]`` (or a sparse teacher's pair) without the first
        ``--ignore-prefix-size`` target positions: the positions fairseq's CE term sees."""
        if isinstance(x, tuple):
            return tuple(self.positions(part) for part in x)
        return x[:, self.ignore_prefix_size:] if self.ignore_prefix_size else x

    def teacher_on(self, sample, like):
        """The teacher on ``sample``'s gold prefix, at the CE term's positions, cut to --kd-topk:
        ``(dist, target, teacher_nll)``; ``teacher_nll`` summed over the non-pad tokens."""
        dist, teacher_nll = self.task.teacher.distribution(sample, like=like)
        target = self.positions(sample["target"])
        teacher_nll = self.positions(teacher_nll).masked_fill(target.eq(self.padding_idx), 0.0).sum()
        return top_k_support(self.positions(dist), self.kd_topk), target, teacher_nll

    def kd_and_teacher_nll(self, student_logits, sample):
        """(KD term, teacher's gold NLL), sums over ``sample``'s tokens, for ``student_logits``."""
        dist, target, teacher_nll = self.teacher_on(sample, like=student_logits)
        kd = kd_term(
            self.positions(student_logits), dist, target, self.padding_idx, self.kd_divergence,
            self.kd_temperature, **self.kd_params,
        )
        return kd, teacher_nll

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

    def training_objective(self, model, net_output, sample) -> ObjectiveParts:
        """The objective and its parts, sums over the batch's gold tokens."""
        logits = net_output[0]
        if not self.uses_one_pass(model, logits):
            ce, nll = self.compute_loss(model, net_output, sample, reduce=True)
            kd, teacher_nll = self.kd_and_teacher_nll(logits, sample)
            return ObjectiveParts(self.objective_from(ce, kd), ce, nll, kd, teacher_nll)
        teacher = self.task.teacher
        if hasattr(teacher, "dense") and not 0 < self.kd_topk < logits.size(-1):
            # a live teacher, full vocabulary: its gold NLL comes out of the same pass
            target = self.positions(sample["target"])
            dist, teacher_nll = self.positions(teacher.dense(sample, like=logits)), None
        else:  # a cache (sparse), or a live teacher cut to --kd-topk
            dist, target, teacher_nll = self.teacher_on(sample, like=logits)
        parts = kd_objective(
            self.positions(logits), dist, target, self.padding_idx,
            ce_weight=1.0 - self.kd_alpha, epsilon=self.eps,
            kd_weight=self.kd_alpha * self.kd_temperature ** 2, name=self.kd_divergence,
            temperature=self.kd_temperature, params=self.kd_params,
            consume_teacher=True, nll_of_teacher=teacher_nll is None,
        )
        return parts if teacher_nll is None else parts._replace(teacher_nll=teacher_nll)

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        kd = teacher_nll = None
        if model.training:
            loss, ce, nll, kd, teacher_nll = self.training_objective(model, net_output, sample)
        else:  # validation: the student's CE on gold is the loss; KD logged beside it
            ce, nll = self.compute_loss(model, net_output, sample, reduce=reduce)
            loss = ce
            # kd_nmt.cache: a teacher cache covers only the split it was built on (train), so
            # validation batches have no teacher: no KD term there
            if not getattr(self.task.teacher, "training_split_only", False):
                kd, teacher_nll = self.kd_and_teacher_nll(net_output[0], sample)
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
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, net_output, sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        for key in ("ce_loss", "kd_loss", "teacher_nll_loss"):
            if not any(key in log for log in logging_outputs):
                continue  # kd_loss / teacher_nll_loss: not computed (validation, teacher cache)
            total = sum(log.get(key, 0) for log in logging_outputs)
            metrics.log_scalar(key, total / max(ntokens, 1) / math.log(2), ntokens, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
