"""Criterion ``hybrid_kd``: token-level and sentence-level KD mixed by a gate (Wei et al., IJCAI 2024,
"Sentence-Level or Token-Level? A Comprehensive Study on Knowledge Distillation").

Per training batch (fairseq's sum convention: the trainer divides the returned loss by
``sample_size`` = the number of gold target tokens, or sentences with ``--sentence-avg``):

    loss = sample_size * sum_i [ G_i * tok_i / N_tok  +  (1 - G_i) * sent_i / N_sent ]

* ``tok_i``  the word_kd loss of sentence i on the *gold* target, exactly ``WordKDCriterion``'s
  ``(1 - alpha) * label_smoothed_CE(gold) + alpha * tau^2 * sum_t D(p_T || p_S)`` (same ``--kd-*``
  options, the teacher scoring the gold prefix), summed over its gold tokens;
* ``sent_i`` the label-smoothed CE of sentence i on the *teacher's* target (``--sentence-kd-data``,
  the relabeled corpus), summed over its teacher tokens;
* ``N_tok`` / ``N_sent`` the batch's gold / teacher target token counts (both = the number of
  sentences with ``--sentence-avg``). So each term is a per-token mean over its own target, and
  with a scalar gate the optimized objective is ``G * L_token + (1 - G) * L_sentence``, both
  per-token means; ``G = 1`` gives word_kd's loss exactly and ``G = 0`` the per-token label-smoothed
  CE on the teacher's outputs.

The gate (``kd_nmt.gates``): ``learned`` (default, the paper: G = sigmoid(g), g trained with the
student, dL/dg = G (1 - G) (L_token - L_sentence)), ``fixed``, ``schedule`` (linear from
``--gate-init`` to ``--gate-final`` over ``--max-update``), ``input`` (per sentence, from the
detached, mean-pooled encoder output). Remedies for a learned gate that drifts to whichever loss
is smaller (off by default):

* ``--gate-normalize``: the gate's gradient sees each loss divided by its running mean (EMA,
  momentum ``kd_nmt.gates.GATE_EMA_MOMENTUM``, float32, per rank under DDP),
  dL/dg = G (1 - G) (L_token / m_token - L_sentence / m_sentence); the student's gradient and
  the loss value are unchanged (straight-through: the normalized losses enter only through
  ``G - G.detach()``, which is 0);
* ``--gate-reg lam``: adds ``lam / 2 * |gate params - init|^2`` to the objective (an L2 pull of
  the gate logit back to logit(--gate-init));
* ``--gate-lr-scale s``: G = sigmoid(s * theta); with Adam the gate then moves ~s times as fast.

The student runs *one* forward over ``2B`` rows: the B gold prefixes and the B teacher prefixes
(sources repeated, prefixes padded to the longer), so a DDP-wrapped student sees a single
forward per batch. Validation (gold only) is word_kd's: ``loss`` is the student's
label-smoothed CE on gold. Logs ``gate`` (mean G over the sentences), ``token_loss`` (per gold
token), ``sentence_loss`` and ``sentence_nll_loss`` (per teacher token) besides word_kd's
``nll_loss ce_loss kd_loss teacher_nll_loss``, all in base 2.
"""
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics
from omegaconf import II

from kd_nmt.criterions.kd_objective import ObjectiveParts
from kd_nmt.criterions.word_kd import WordKDConfig, WordKDCriterion, kd_term
from kd_nmt.errors import KDNMTError
from kd_nmt.gates import GATE_KINDS, build_gate, pooled_encoder_states


@dataclass
class HybridKDConfig(WordKDConfig):
    gate: ChoiceEnum(list(GATE_KINDS)) = field(
        default="learned",
        metadata={"help": "G in G*token_kd + (1-G)*sentence_kd: learned scalar (paper), fixed, "
                  "linear schedule, or per-sentence from the encoder output (input)"},
    )
    gate_init: float = field(default=0.5, metadata={"help": "initial (fixed: constant) gate value G"})
    gate_final: Optional[float] = field(
        default=None, metadata={"help": "--gate schedule: G at --max-update (linear from --gate-init)"}
    )
    gate_normalize: bool = field(
        default=False,
        metadata={"help": "learned gates: the gate's gradient uses each loss divided by its running "
                  "mean, so G does not just drift to the smaller loss (student gradient unchanged)"},
    )
    gate_reg: float = field(
        default=0.0, metadata={"help": "learned gates: L2 pull (lam/2)*|params - init|^2 of the gate"}
    )
    gate_lr_scale: float = field(
        default=1.0, metadata={"help": "learned gates: G = sigmoid(s*theta): s scales how fast G moves"}
    )
    gate_input_dim: int = field(
        default=0, metadata={"help": "--gate input: encoder output size (0 = the student's "
                             "--encoder-embed-dim)"},
    )
    max_update: int = II("optimization.max_update")


@register_criterion("hybrid_kd", dataclass=HybridKDConfig)
class HybridKDCriterion(WordKDCriterion):
    """G * word_kd(gold) + (1 - G) * label-smoothed CE(teacher output), both per-token means."""

    def __init__(self, cfg: HybridKDConfig, task):
        super().__init__(cfg, task)
        if not getattr(task.cfg, "sentence_kd_data", None):
            raise KDNMTError(
                "--criterion hybrid_kd needs the teacher's translations of the train source: "
                "--sentence-kd-data DIR (a data-bin line-aligned with the train split, from "
                "`kd-nmt relabel --binarize-to DIR`)"
            )
        student = getattr(task, "student_model_cfg", None)
        self.gate = build_gate(cfg, encoder_dim=getattr(student, "encoder_embed_dim", None))
        self.gate_normalize = cfg.gate_normalize
        self.gate_reg = cfg.gate_reg
        if self.kd_on_policy:
            raise KDNMTError(
                "--kd-on-policy is a word_kd option: hybrid_kd's token term stays on the gold prefix "
                "(its sentence term is already the teacher's output); use --criterion word_kd"
            )

    @classmethod
    def criterion_name(cls):
        return "hybrid_kd"

    def set_num_updates(self, num_updates):
        """Called by ``kd_translation.train_step`` (fairseq passes the count to the model only)."""
        super().set_num_updates(num_updates)
        self.gate.set_num_updates(num_updates)

    def load_state_dict(self, state_dict, strict=True, *args, **kwargs):
        # a checkpoint from a criterion without parameters (word_kd, CE, a fixed gate) holds
        # ``criterion: None``: keep the gate at its initial value instead of failing
        if not state_dict:
            return
        return super().load_state_dict(state_dict, strict, *args, **kwargs)

    # ------------------------------------------------------------------------------------------
    def student_forward(self, model, sample):
        """One forward over [gold prefixes; teacher prefixes]: (gold_out, teacher_out, features)."""
        net_input = sample["net_input"]
        gold_prev = net_input["prev_output_tokens"]
        teacher_prev = sample["teacher_prev_output_tokens"]
        bsz, t_gold, t_teacher = gold_prev.size(0), gold_prev.size(1), teacher_prev.size(1)
        length = max(t_gold, t_teacher)
        left = bool(getattr(self.task.cfg, "left_pad_target", False))

        def pad(x):
            extra = length - x.size(1)
            return F.pad(x, (extra, 0) if left else (0, extra), value=self.padding_idx)

        joint = {
            key: torch.cat([value, value]) if torch.is_tensor(value) and value.size(0) == bsz else value
            for key, value in net_input.items()
        }
        joint["prev_output_tokens"] = torch.cat([pad(gold_prev), pad(teacher_prev)])

        captured = {}
        hook = None
        if self.gate.per_sentence:
            hook = model.encoder.register_forward_hook(
                lambda module, args, output: captured.setdefault("encoder_out", output)
            )
        try:
            logits, extra = model(**joint)
        finally:
            if hook is not None:
                hook.remove()

        def rows(x, first, t):
            x = x[:bsz] if first else x[bsz:]
            return x[:, length - t:] if left else x[:, :t]

        gold_out = (rows(logits, True, t_gold), extra)
        teacher_out = (rows(logits, False, t_teacher), extra)
        features = None
        if self.gate.per_sentence:
            encoder_out = captured.get("encoder_out")
            if not isinstance(encoder_out, dict) or "encoder_out" not in encoder_out:
                raise KDNMTError("--gate input needs a fairseq transformer encoder (encoder_out dict)")
            features = pooled_encoder_states(encoder_out, bsz)
            if features.size(-1) != self.gate.dim:
                raise KDNMTError(
                    f"--gate input: the encoder output has size {features.size(-1)}, the gate head "
                    f"expects {self.gate.dim} (--gate-input-dim)"
                )
        return gold_out, teacher_out, features

    def objective_per_sentence(self, model, gold_out, sample) -> ObjectiveParts:
        """word_kd's objective of each sentence on its gold target: ``objective`` ``[B]``, the
        parts summed over the batch (the ``--gate input`` path: one G per sentence)."""
        bsz = sample["target"].size(0)
        ce, nll = self.compute_loss(model, gold_out, sample, reduce=False)
        ce, nll = ce.view(bsz, -1).sum(1), nll.view(bsz, -1).sum(1)
        student = self.positions(gold_out[0])
        targets, target, teacher_nll = self.teacher_on(sample, like=gold_out[0])
        targets = self.kd_target(targets, gold_out[0])
        kd_mask = self.selected = self.selected_tokens(student, target)  # --kd-select (None: off)

        def row(i):  # word_kd's own KD term, one sentence at a time
            return kd_term(
                student[i:i + 1], targets[i:i + 1], target[i:i + 1], self.padding_idx, self.kd_divergence,
                self.kd_temperature, kd_mask=None if kd_mask is None else kd_mask[i:i + 1], **self.kd_params,
            )

        kd = torch.stack([row(i) for i in range(bsz)])
        return ObjectiveParts(self.objective_from(ce, kd), ce.sum(), nll.sum(), kd.sum(), teacher_nll)

    def sentence_level(self, model, teacher_out, sample, per_sentence):
        """Label-smoothed CE on the teacher target: (loss, nll); [B] or sums."""
        teacher_sample = {"target": sample["teacher_target"]}
        loss, nll = self.compute_loss(model, teacher_out, teacher_sample, reduce=not per_sentence)
        if per_sentence:
            bsz = sample["teacher_target"].size(0)
            return loss.view(bsz, -1).sum(1), nll.sum()
        return loss, nll

    def forward(self, model, sample, reduce=True):
        if not model.training:
            return super().forward(model, sample, reduce)  # word_kd: gold CE as ``loss``
        if "teacher_target" not in sample:
            raise KDNMTError(
                "hybrid_kd: a training batch has no teacher target: the train split was not paired "
                "with --sentence-kd-data (only --train-subset's split is)"
            )
        per_sentence = self.gate.per_sentence
        self.selected = None
        gold_out, teacher_out, features = self.student_forward(model, sample)
        if per_sentence:
            tok, ce, nll, kd, teacher_nll = self.objective_per_sentence(model, gold_out, sample)
        else:
            tok, ce, nll, kd, teacher_nll = self.training_objective(model, gold_out, sample)
        sent, sent_nll = self.sentence_level(model, teacher_out, sample, per_sentence)
        if self.taid is not None:  # TAID's t follows the token term's KD loss per token
            self.taid.update(kd.item() / max(int(sample["ntokens"]), 1), self.num_updates)

        bsz = sample["target"].size(0)
        n_tok = bsz if self.sentence_avg else sample["ntokens"]
        n_sent = bsz if self.sentence_avg else sample["teacher_ntokens"]
        sample_size = n_tok
        a, b = tok / max(n_tok, 1), sent / max(n_sent, 1)  # per-token (per-sentence) contributions
        gate = self.gate(features).to(a.device)
        if self.gate_normalize:
            means = self.gate.update_loss_means(a.sum().detach(), b.sum().detach())
            fixed = gate.detach()
            signal = a.detach() / means[0].clamp_min(1e-8) - b.detach() / means[1].clamp_min(1e-8)
            objective = (fixed * a + (1 - fixed) * b).sum() + ((gate - fixed) * signal).sum()
        else:
            if self.gate.learnable:  # keep the running means current (logged, restored)
                self.gate.update_loss_means(a.sum().detach(), b.sum().detach())
            objective = (gate * a + (1 - gate) * b).sum()
        if self.gate_reg:
            objective = objective + 0.5 * self.gate_reg * self.gate.distance_from_init().to(objective)
        loss = sample_size * objective

        gate_sum = gate.detach().sum() if per_sentence else gate.detach() * bsz
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll.data,
            "ce_loss": ce.data,
            "kd_loss": kd.data,
            "teacher_nll_loss": teacher_nll.data,
            "token_loss": tok.sum().data,
            "sentence_loss": sent.sum().data,
            "sentence_nll_loss": sent_nll.data,
            "gate": float(gate_sum),
            "ntokens": sample["ntokens"],
            "teacher_ntokens": sample["teacher_ntokens"],
            "nsentences": bsz,
            "sample_size": sample_size,
        }
        if self.selected is not None:  # --kd-select: tokens of the token term's KD part
            logging_output["kd_selected_tokens"] = int(self.selected.sum())
        if self.taid is not None:
            logging_output.update(taid_t_sum=self.taid.t, taid_n=1)
        self.log_accuracy(model, gold_out, sample, logging_output)
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        if not any("gate" in log for log in logging_outputs):
            return  # validation: word_kd's metrics only
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        teacher_ntokens = sum(log.get("teacher_ntokens", 0) for log in logging_outputs)
        nsentences = sum(log.get("nsentences", 0) for log in logging_outputs)
        token_loss = sum(log.get("token_loss", 0) for log in logging_outputs)
        metrics.log_scalar("token_loss", token_loss / max(ntokens, 1) / math.log(2), ntokens, round=3)
        for key in ("sentence_loss", "sentence_nll_loss"):
            total = sum(log.get(key, 0) for log in logging_outputs)
            metrics.log_scalar(key, total / max(teacher_ntokens, 1) / math.log(2), teacher_ntokens, round=3)
        gate = sum(log.get("gate", 0) for log in logging_outputs)
        metrics.log_scalar("gate", gate / max(nsentences, 1), nsentences, round=4)
