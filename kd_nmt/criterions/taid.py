"""TAID (Shing et al., ICLR 2025): the KD target moves from the student towards the teacher.

Temporally adaptive interpolated distillation replaces the teacher distribution of the KD term by

    p_t = softmax((1 - t) * stopgrad(student logits) + t * teacher logits)

(interpolation in logit space; teacher log-probabilities serve as logits, softmax being
shift-invariant), so early in training the student is pulled towards a target close to itself,
and towards the teacher as ``t`` grows. ``t`` follows the paper's adaptive schedule (its public
code, src/distil_losses/taid.py), updated after every training step from the KD loss ``L``:

    m <- beta * m + (1 - beta) * (L_prev - L) / L_prev        (momentum of the relative change)
    t <- min(t_end, max(t_start + (t_end - t_start) * step / steps,  t + alpha * sigmoid(m) * (1 - t)))

with the paper's defaults ``t_start`` 0.4, ``t_end`` 1.0, ``alpha`` 5e-4, ``beta`` 0.99: ``t``
never falls below a linear ramp to ``t_end`` over the run's ``steps``, and rises faster while the
loss falls fast. The first step only records ``L``. The state (t, L_prev, m) is saved in the
checkpoint (``word_kd.training_state``), so a resumed run continues the same schedule.
"""
import math

import torch


def interpolated_target(student_scores, teacher_scores, t):
    """``(1 - t) * stopgrad(student) + t * teacher``: scores whose softmax is TAID's target.

    Both ``[..., V]`` (or ``[..., k]`` over a sparse teacher's ids); a new tensor."""
    return torch.lerp(student_scores.detach().to(teacher_scores.dtype), teacher_scores, float(t))


class TAIDSchedule:
    """The interpolation coefficient ``t`` and its adaptive update (see the module docstring)."""

    def __init__(self, steps, t_start=0.4, t_end=1.0, alpha=5e-4, beta=0.99):
        self.steps, self.t_start, self.t_end, self.alpha, self.beta = int(steps), t_start, t_end, alpha, beta
        self.t = float(t_start)
        self.prev_loss = math.inf
        self.momentum = 0.0

    def update(self, loss, step):
        """One training step's KD loss (per token) at update ``step``; returns the new ``t``."""
        loss = float(loss)
        if math.isinf(self.prev_loss):
            self.prev_loss = loss
            return self.t
        relative_change = (self.prev_loss - loss) / (self.prev_loss + 1e-15)
        self.momentum = self.beta * self.momentum + (1.0 - self.beta) * relative_change
        adaptive = 1.0 / (1.0 + math.exp(-self.momentum))
        floor = self.t_start + (self.t_end - self.t_start) * min(1.0, step / max(self.steps, 1))
        self.t = min(self.t_end, max(floor, self.t + self.alpha * adaptive * (1.0 - self.t)))
        self.prev_loss = loss
        return self.t

    def state_dict(self):
        return {"t": self.t, "prev_loss": self.prev_loss, "momentum": self.momentum}

    def load_state_dict(self, state):
        self.t, self.prev_loss, self.momentum = float(state["t"]), float(state["prev_loss"]), float(state["momentum"])
