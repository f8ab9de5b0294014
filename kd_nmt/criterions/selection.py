"""Selective KD (Wang et al., ACL 2021, "Selective Knowledge Distillation for Neural Machine
Translation"): the KD term covers only the tokens the student finds hardest; the gold CE term
still covers all of them.

"Hard" is the student's cross-entropy on the gold token, ``-log q(y_t)`` at temperature 1
(detached: selection is a choice of positions, not part of the gradient).

* ``batch``  (the paper's word-level "batch-level" selection): of the batch's ``n`` non-pad
  tokens, the ``ceil(r * n)`` with the highest CE. Ties at the cut are broken by position:
  ``torch.sort(stable=True)`` on the flattened ``[B, T]`` batch, so among equal CE values the
  earlier token (lower sentence index, then lower position) is taken first. Exactly
  ``ceil(r * n)`` tokens are selected, ``r = 1`` selects all of them.
* ``global`` (the paper's "global-level" selection): a FIFO of the ``N`` most recent token CE
  values across batches (``CEQueue``). The batch's values are pushed first, then the tokens whose
  CE is at or above the queue's ``(1 - r)`` quantile are selected; the quantile is a value of the
  queue (``torch.quantile(..., interpolation="lower")``: the ``floor((1 - r) * (len - 1))``-th
  smallest), so ``r = 1`` gives the queue's minimum and selects every token. Ties at the
  threshold are all selected (a batch may then keep a little more than ``r``).

The queue is training state: the criterion saves it in the checkpoint's ``extra_state``
(``kd_nmt.checkpoint``), so a resumed run continues it. Under DDP the queue is *per rank* (each
rank's own recent tokens, no collective in the forward); a checkpoint stores rank 0's queue and
on resume every rank starts from it (fairseq loads a checkpoint on rank 0 and broadcasts it).
"""
import math

import torch

from kd_nmt.errors import KDNMTError

SELECT_KINDS = ("none", "batch", "global")


def check_selection(kind, rate, queue_size):
    """One clear KDNMTError for a bad ``--kd-select*`` value (checked even when selection is off)."""
    if kind not in SELECT_KINDS:
        raise KDNMTError(f"--kd-select must be one of {', '.join(SELECT_KINDS)}, got {kind!r}")
    if not 0.0 < rate <= 1.0:
        raise KDNMTError(f"--kd-select-rate must be in (0, 1], got {rate} (the fraction of tokens the KD term keeps)")
    if queue_size < 1:
        raise KDNMTError(f"--kd-select-queue must be >= 1, got {queue_size} (tokens in the global CE queue)")


@torch.no_grad()
def student_gold_ce(logits, target):
    """``-log softmax(logits)[target]`` ``[B, T]`` in float32, without a ``[B, T, V]`` log-softmax."""
    logits = logits.detach().float()
    return torch.logsumexp(logits, -1) - logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def select_in_batch(ce, real, rate):
    """``[B, T]`` bool: the ``ceil(rate * n)`` real tokens with the highest ``ce`` (ties: earlier first).

    ce: ``[B, T]`` per-token CE; real: ``[B, T]`` bool, the non-pad tokens (n of them).
    """
    flat = ce.reshape(-1).masked_fill(~real.reshape(-1), -math.inf)  # padding sorts last
    n = int(real.sum())
    k = min(n, math.ceil(rate * n))
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[order] = True
    return chosen.view_as(real)


class CEQueue:
    """FIFO of the ``size`` most recent token CE values (float32, CPU), for ``--kd-select global``."""

    def __init__(self, size):
        self.size = int(size)
        self.values = torch.empty(0, dtype=torch.float32)

    @torch.no_grad()
    def push(self, ce):
        """Append ``ce`` (any shape, flattened in order), dropping the oldest beyond ``size``."""
        ce = ce.detach().reshape(-1).float().cpu()
        self.values = torch.cat([self.values, ce])[-self.size:].clone()

    def threshold(self, rate):
        """The queue's ``(1 - rate)`` quantile, a value of the queue (``interpolation="lower"``)."""
        return torch.quantile(self.values, 1.0 - rate, interpolation="lower")

    @torch.no_grad()
    def select(self, ce, real, rate):
        """Push the batch's real tokens' CE, then ``[B, T]`` bool: real tokens with CE >= threshold."""
        self.push(ce[real])
        return real & (ce >= self.threshold(rate).to(ce))

    def state_dict(self):
        return {"size": self.size, "values": self.values.clone()}

    def load_state_dict(self, state):
        """Restore the values (the newest ``size`` of them if the queue is now shorter)."""
        self.values = state["values"].detach().float().cpu()[-self.size:].clone()
