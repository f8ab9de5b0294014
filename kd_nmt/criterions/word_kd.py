"""Criterion ``word_kd``: word-level knowledge distillation (Hinton et al. 2015; Kim & Rush 2016).

    loss = (1 - alpha) * label_smoothed_CE(student, gold) + alpha * tau^2 * sum_t D(p_T^tau || p_S^tau)

summed over the non-pad target tokens of the batch (fairseq's convention; the trainer divides
by ``sample_size`` = number of target tokens). The teacher scores the *gold* prefix, the same
``prev_output_tokens`` the student sees. ``D`` is any divergence of ``kd_nmt.divergences``.

``--kd-topk k`` keeps, per position, the teacher's ``k`` most probable tokens and renormalises
*both* distributions over that set before ``D`` (reverse divergences are undefined where a
truncated teacher is 0). The student's probability mass outside the set is then ignored by the
KD term; the gold CE term still sees the whole vocabulary. ``k = 0`` (default) or ``k >= V`` is
the exact full-vocabulary loss.

Validation reports the student's label-smoothed CE on gold as ``loss`` (so
``--best-checkpoint-metric loss`` means what it means for a plain student); ``kd_loss`` and the
teacher's gold NLL are logged beside it. All losses are logged in base 2, like fairseq's.
"""
import inspect
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

from kd_nmt.criterions.kd_objective import kd_objective
from kd_nmt.divergences import DIVERGENCES, divergence
from kd_nmt.errors import KDNMTError


@dataclass
class WordKDConfig(LabelSmoothedCrossEntropyCriterionConfig):
    kd_alpha: float = field(default=0.5, metadata={"help": "weight of the KD term (1 - alpha weighs gold CE)"})
    kd_temperature: float = field(default=1.0, metadata={"help": "softmax temperature tau of both distributions"})
    kd_divergence: ChoiceEnum(list(DIVERGENCES)) = field(
        default="fkl", metadata={"help": "divergence D(p_teacher || p_student)"}
    )
    kd_topk: int = field(
        default=0, metadata={"help": "keep the teacher's k most probable tokens, renormalise both (0 = all)"}
    )
    kd_beta: float = field(default=1.0, metadata={"help": "ToDi: sharpness of the FKL/RKL weight"})
    kd_skew: float = field(default=0.1, metadata={"help": "skl/srkl: skew of the mixture"})
    kd_mu: float = field(default=0.5, metadata={"help": "akl: teacher mass that defines the head"})


def divergence_params(name, **candidates):
    """The subset of ``candidates`` (skew, mu, beta) that divergence ``name`` takes."""
    accepted = inspect.signature(DIVERGENCES[name]).parameters
    return {k: v for k, v in candidates.items() if k in accepted}


def top_k_support(teacher, topk):
    """A dense teacher ``[..., V]`` cut to its ``topk`` best tokens as a sparse ``(ids, scores)``
    teacher (``[..., k]`` each); a sparse teacher, or ``topk`` 0 or >= V, is returned as it is."""
    if not isinstance(teacher, tuple) and 0 < topk < teacher.size(-1):
        scores, ids = teacher.topk(topk, dim=-1)
        return ids, scores
    return teacher


def token_kd_loss(student_logits, teacher, target, padding_idx, name, temperature=1.0, topk=0, **params):
    """Divergence per target token, summed over non-pad tokens (a scalar).

    student_logits: ``[B, T, V]``.
    teacher: ``[B, T, V]`` logits or log-probs whose softmax is the teacher distribution, or a
        sparse teacher ``(ids [B, T, k], log_probs [B, T, k])`` (e.g. from a cache).
    target: ``[B, T]`` gold ids; positions equal to ``padding_idx`` contribute nothing.
    With ``topk`` > 0 (dense teacher) or a sparse teacher, both sides are renormalised over the
    teacher's ids before the divergence (``[B, T, k]`` tensors: small). A dense full-vocabulary
    teacher in training goes through ``kd_objective`` (memory-lean, same value and gradient).
    """
    teacher = top_k_support(teacher, topk)
    if isinstance(teacher, tuple):
        ids, teacher_scores = teacher
        student_scores = student_logits.gather(-1, ids)
    elif student_logits.requires_grad and torch.is_grad_enabled():
        # dense teacher in training: the memory-lean path (one [tokens x V] kept for backward)
        return kd_objective(
            student_logits, teacher, target, padding_idx, kd_weight=1.0, name=name,
            temperature=temperature, params=params,
        )[0]
    else:
        teacher_scores, student_scores = teacher, student_logits
    per_token = divergence(name, student_scores, teacher_scores, temperature=temperature, **params)
    return per_token.masked_fill(target.eq(padding_idx), 0.0).sum()


@register_criterion("word_kd", dataclass=WordKDConfig)
class WordKDCriterion(LabelSmoothedCrossEntropyCriterion):
    """Label-smoothed CE on gold mixed with a token-level divergence to the task's teacher."""

    def __init__(
        self,
        task,
        sentence_avg,
        label_smoothing,
        ignore_prefix_size=0,
        report_accuracy=False,
        kd_alpha=0.5,
        kd_temperature=1.0,
        kd_divergence="fkl",
        kd_topk=0,
        kd_beta=1.0,
        kd_skew=0.1,
        kd_mu=0.5,
    ):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        if not getattr(task, "has_teacher", False):
            raise KDNMTError(
                f"--criterion {self.__class__.criterion_name()} needs a teacher: use "
                "--task kd_translation with --teacher-path T.pt (or --teacher-cache DIR)"
            )
        if not 0.0 <= kd_alpha <= 1.0:
            raise KDNMTError(f"--kd-alpha must be in [0, 1], got {kd_alpha}")
        if kd_temperature <= 0:
            raise KDNMTError(f"--kd-temperature must be > 0, got {kd_temperature}")
        if kd_topk < 0:
            raise KDNMTError(f"--kd-topk must be >= 0, got {kd_topk}")
        self.kd_alpha = kd_alpha
        self.kd_temperature = kd_temperature
        self.kd_divergence = str(kd_divergence)
        self.kd_topk = kd_topk
        self.kd_params = divergence_params(self.kd_divergence, skew=kd_skew, mu=kd_mu, beta=kd_beta)

    @classmethod
    def criterion_name(cls):
        return "word_kd"

    def kd_loss(self, student_logits, sample):
        """(kd_sum, teacher_nll_sum) of the student's logits against the teacher on ``sample``."""
        dist, teacher_nll = self.task.teacher.distribution(sample, like=student_logits)
        target = sample["target"]
        kd = token_kd_loss(
            student_logits, dist, target, self.padding_idx, self.kd_divergence,
            self.kd_temperature, self.kd_topk, **self.kd_params,
        )
        return kd, teacher_nll.masked_fill(target.eq(self.padding_idx), 0.0).sum()

    def mix(self, ce, kd, training):
        """The word-KD objective in training; the student's CE on gold in validation."""
        if not training:
            return ce
        return (1.0 - self.kd_alpha) * ce + self.kd_alpha * self.kd_temperature ** 2 * kd

    def one_pass(self, model, logits):
        """Whether the training objective can come from ``kd_objective``'s single pass.

        It needs logits whose log-softmax is the model's distribution (no adaptive softmax, no
        ignored prefix); else CE and KD are computed apart (same values).
        """
        decoder = getattr(model, "decoder", None)
        return (
            torch.is_grad_enabled()
            and logits.requires_grad
            and self.ignore_prefix_size == 0
            and getattr(decoder, "adaptive_softmax", None) is None
        )

    def token_objective(self, model, net_output, sample):
        """Training: ``(objective, ce, nll, kd, teacher_nll)``, sums over the batch's gold tokens."""
        logits = net_output[0]
        if not self.one_pass(model, logits):
            ce, nll = self.compute_loss(model, net_output, sample, reduce=True)
            kd, teacher_nll = self.kd_loss(logits, sample)
            return self.mix(ce, kd, True), ce, nll, kd, teacher_nll
        teacher, target = self.task.teacher, sample["target"]
        full_vocab = not 0 < self.kd_topk < logits.size(-1)
        if full_vocab and hasattr(teacher, "dense"):  # live teacher: its gold NLL from the pass
            dist, teacher_nll = teacher.dense(sample, like=logits), None
        else:  # a cache (sparse), or a live teacher cut to --kd-topk
            dist, teacher_nll = teacher.distribution(sample, like=logits)
            dist = top_k_support(dist, self.kd_topk)
            teacher_nll = teacher_nll.masked_fill(target.eq(self.padding_idx), 0.0).sum()
        objective, ce, nll, kd, pass_nll = kd_objective(
            logits, dist, target, self.padding_idx,
            ce_weight=1.0 - self.kd_alpha, epsilon=self.eps,
            kd_weight=self.kd_alpha * self.kd_temperature ** 2, name=self.kd_divergence,
            temperature=self.kd_temperature, params=self.kd_params,
            consume_teacher=True, nll_of_teacher=teacher_nll is None,
        )
        return objective, ce, nll, kd, pass_nll if teacher_nll is None else teacher_nll

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        if model.training:
            loss, ce, nll, kd, teacher_nll = self.token_objective(model, net_output, sample)
        else:  # validation: the student's CE on gold is the loss; KD logged beside it
            ce, nll = self.compute_loss(model, net_output, sample, reduce=reduce)
            loss = ce
            # kd_nmt.cache: a teacher cache covers only the split it was built on (train), so
            # validation batches have no teacher: no KD term there
            kd = teacher_nll = None
            if not getattr(self.task.teacher, "training_split_only", False):
                kd, teacher_nll = self.kd_loss(net_output[0], sample)
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
