"""The gate G of ``hybrid_kd``: how much of the loss is token-level KD (G) vs sentence-level (1 - G).

Each gate is a small ``nn.Module`` held by the criterion. Learnable ones (``learned``, ``input``)
have parameters there, so fairseq's Trainer optimizes them with the student (same optimizer,
learning rate schedule, clipping and weight decay), saves them in ``checkpoint["criterion"]`` and
restores them on ``--restore-file`` / resume. None of it reaches the student's ``model`` weights.

* ``fixed``    G = init.
* ``schedule`` G = init + (final - init) * min(1, num_updates / max_update) (linear).
* ``learned``  G = sigmoid(s * theta), one scalar ``theta`` (``gate.logit``, shape [1]), initialised so that
               G = init (Wei et al. 2024). ``s`` = ``--gate-lr-scale``: with Adam every update moves
               ``theta`` by about lr whatever the gradient's size, so ``s`` scales how fast G moves.
* ``input``    G_i = sigmoid(s * (w . h_i + b)) per sentence, ``h_i`` the mean over the non-pad
               source positions of the student's final encoder output, *detached* (the gate reads
               the encoder, it does not train it). ``w`` starts at 0 and ``b`` at logit(init), so every
               sentence starts at G = init. Cost: ``d + 1`` parameters (d = encoder output size), a
               masked mean and a dot product per sentence.

Learnable gates also keep the running means of the two losses (buffers ``gate.loss_means``,
``gate.loss_steps``) used by ``--gate-normalize``; they are saved and restored with the gate.
They stay float32 when fairseq's trainer casts the criterion to float16/bfloat16 (``--fp16``,
``--bf16``): in half precision an EMA step of 1 % of the mean is rounded away. Under DDP they are
per rank: each rank's EMA of its own batches, not all-reduced (with ``--ddp-backend c10d
--broadcast-buffers`` DDP copies rank 0's to every rank before each forward). The gate's
gradient is averaged over the ranks as usual, so its parameters stay identical; a checkpoint
stores rank 0's means.

``build_gate`` checks the ``--gate*`` options and builds the gate.
"""
import math

import torch
import torch.nn as nn

from kd_nmt.errors import KDNMTError

GATE_KINDS = ("learned", "fixed", "schedule", "input")
GATE_EMA_MOMENTUM = 0.99  # running means of --gate-normalize


def logit(p):
    return math.log(p) - math.log1p(-p)


class Gate(nn.Module):
    """Base: ``forward(features)`` returns G, a 0-dim tensor or ``[B]`` (one per sentence)."""

    kind = None
    learnable = False
    per_sentence = False

    def __init__(self, init):
        super().__init__()
        self.init = float(init)
        self.num_updates = 0

    def set_num_updates(self, num_updates):
        self.num_updates = num_updates

    def forward(self, features=None):
        raise NotImplementedError

    def distance_from_init(self):
        """Squared distance of the effective gate parameters from their initial values."""
        return torch.zeros(())


class FixedGate(Gate):
    kind = "fixed"

    def forward(self, features=None):
        return torch.tensor(self.init)


class ScheduleGate(Gate):
    kind = "schedule"

    def __init__(self, init, final, max_update):
        super().__init__(init)
        self.final = float(final)
        self.max_update = int(max_update)

    def value(self, num_updates):
        progress = min(1.0, max(0, num_updates) / self.max_update)
        return self.init + (self.final - self.init) * progress

    def forward(self, features=None):
        return torch.tensor(self.value(self.num_updates))


class _LearnableGate(Gate):
    learnable = True

    def __init__(self, init, lr_scale):
        super().__init__(init)
        self.lr_scale = float(lr_scale)
        self.init_logit = logit(init)
        # running means of the per-token token-level / sentence-level losses (--gate-normalize)
        self.register_buffer("loss_means", torch.ones(2))
        self.register_buffer("loss_steps", torch.zeros((), dtype=torch.long))

    def _apply(self, fn, *args, **kwargs):
        # .half() / .to(bfloat16) / .cuda() of the criterion: the running means follow the
        # device but stay float32 (parameters are cast: fairseq's fp16 optimizers keep float32
        # master copies of them, nothing does so for buffers)
        means = self.loss_means
        super()._apply(fn, *args, **kwargs)
        self.loss_means = means.to(device=self.loss_means.device, dtype=torch.float32)
        return self

    @torch.no_grad()
    def update_loss_means(self, token_loss, sentence_loss, momentum=GATE_EMA_MOMENTUM):
        """EMA of the two losses in float32 (the first call sets them); returns the updated means.

        Per rank under DDP (see the module docstring).
        """
        x = torch.stack([token_loss.float(), sentence_loss.float()]).to(self.loss_means)
        if int(self.loss_steps) == 0:
            self.loss_means.copy_(x)
        else:
            self.loss_means.mul_(momentum).add_((1.0 - momentum) * x)
        self.loss_steps.add_(1)
        return self.loss_means.clone()


class LearnedGate(_LearnableGate):
    kind = "learned"

    def __init__(self, init, lr_scale=1.0):
        super().__init__(init, lr_scale)
        # shape [1], not a 0-dim tensor: fairseq's legacy_ddp all-reduce slices every gradient
        self.logit = nn.Parameter(torch.full((1,), self.init_logit / self.lr_scale))

    def forward(self, features=None):
        return torch.sigmoid(self.lr_scale * self.logit.float()).squeeze(0)

    def distance_from_init(self):
        return ((self.lr_scale * self.logit.float() - self.init_logit) ** 2).sum()


class InputGate(_LearnableGate):
    kind = "input"
    per_sentence = True

    def __init__(self, init, dim, lr_scale=1.0):
        super().__init__(init, lr_scale)
        self.dim = int(dim)
        self.head = nn.Linear(self.dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, self.init_logit / self.lr_scale)

    def forward(self, features):
        """``features``: ``[B, d]`` pooled (detached) encoder states -> G ``[B]``."""
        z = self.head(features.to(self.head.weight.dtype)).squeeze(-1)
        return torch.sigmoid(self.lr_scale * z.float())

    def distance_from_init(self):
        w = self.lr_scale * self.head.weight.float()
        b = self.lr_scale * self.head.bias.float()
        return (w ** 2).sum() + ((b - self.init_logit) ** 2).sum()


def build_gate(cfg, encoder_dim=None):
    """The gate described by hybrid_kd's ``--gate*`` options ``cfg``, every option checked.

    ``encoder_dim``: the student's encoder output size (``--gate input`` without
    ``--gate-input-dim``). Raises ``KDNMTError`` naming the option to fix.
    """
    kind, init, final = str(cfg.gate), cfg.gate_init, cfg.gate_final
    reg, lr_scale = cfg.gate_reg, cfg.gate_lr_scale
    learnable = kind in ("learned", "input")
    if learnable and not 0.0 < init < 1.0:
        raise KDNMTError(f"--gate {kind}: --gate-init must be in (0, 1) (G = sigmoid(...)), got {init}")
    if not 0.0 <= init <= 1.0:
        raise KDNMTError(f"--gate-init must be in [0, 1], got {init}")
    if not learnable and (cfg.gate_normalize or reg or lr_scale != 1.0):
        raise KDNMTError(
            f"--gate-normalize / --gate-reg / --gate-lr-scale act on a learned gate; --gate {kind} "
            "learns nothing (use --gate learned or --gate input)"
        )
    if reg < 0 or lr_scale <= 0:
        raise KDNMTError(f"--gate-reg must be >= 0 and --gate-lr-scale > 0, got {reg}, {lr_scale}")
    if kind != "schedule" and final is not None:
        raise KDNMTError(f"--gate-final is for --gate schedule, not --gate {kind}")
    if kind == "fixed":
        return FixedGate(init)
    if kind == "schedule":
        if final is None or not 0.0 <= final <= 1.0:
            raise KDNMTError(f"--gate schedule needs --gate-final in [0, 1], got {final}")
        if not cfg.max_update or cfg.max_update <= 0:
            raise KDNMTError("--gate schedule needs --max-update (the schedule's length)")
        return ScheduleGate(init, final, cfg.max_update)
    if kind == "learned":
        return LearnedGate(init, lr_scale)
    dim = cfg.gate_input_dim or encoder_dim
    if not dim:
        raise KDNMTError(
            "--gate input: the student's encoder output size is unknown (build the model with "
            "the kd_translation task first, or give --gate-input-dim)"
        )
    return InputGate(init, dim, lr_scale)


def pooled_encoder_states(encoder_out, rows):
    """Mean over non-pad positions of a fairseq transformer ``encoder_out`` dict, first ``rows``.

    ``encoder_out["encoder_out"][0]`` is ``[T, B, C]``; ``encoder_padding_mask[0]`` ``[B, T]``
    (or absent when nothing is padded). Returns ``[rows, C]``, detached.
    """
    states = encoder_out["encoder_out"][0].detach()[:, :rows]  # T x rows x C
    masks = encoder_out.get("encoder_padding_mask") or []
    keep = states.new_ones(states.shape[:2])  # T x rows
    if masks and masks[0] is not None and masks[0].numel():
        keep = (~masks[0][:rows]).t().to(states.dtype)
    total = (states * keep.unsqueeze(-1)).sum(0)
    return total / keep.sum(0).clamp_min(1.0).unsqueeze(-1)
