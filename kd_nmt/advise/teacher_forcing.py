"""The teacher's per-token entropy and top-1 mass under teacher forcing on the gold targets.

Word-level KD hands the student the teacher's whole distribution at every gold-prefix
position; how much that distribution says beyond the gold token is its entropy (nats) and,
from the other end, the probability of its most likely token (top-1 mass: near 1, the soft
targets are almost one-hot and word-level KD is close to training on the teacher's argmax).
Both are averaged over the target positions of the sample (EOS included, padding not), with the
teacher at temperature 1 and in eval mode (no dropout).
"""
import sys

import torch

from kd_nmt.common.batches import make_batches


def entropy_and_top1(log_probs, mask):
    """``(Σ entropy, Σ top-1 probability, positions)`` over the ``mask``ed positions.

    ``log_probs``: ``[..., V]`` log-probabilities; ``mask``: ``[...]`` booleans (True = a real
    target position). Sums, so batches add up; divide by the positions for the means.
    """
    probs = log_probs.exp()
    entropy = -(probs * log_probs).sum(-1)  # 0 · log 0 = 0: exp(-inf) * -inf is nan, so mask below
    entropy = torch.where(torch.isfinite(entropy), entropy, torch.zeros_like(entropy))
    top1 = probs.max(-1).values
    mask = mask.to(entropy.dtype)
    return float((entropy * mask).sum()), float((top1 * mask).sum()), int(mask.sum())


def teacher_forcing_stats(model, dataset, max_tokens=4000, progress=True):
    """``{"entropy", "top1", "gold_nll", "positions", "skipped"}``: the teacher's mean per-token
    entropy and top-1 mass, and its mean negative log-likelihood of the gold token, over the pairs
    of ``dataset`` that fit the model's positions (``skipped``: those that do not)."""
    from tqdm import tqdm

    pad = dataset.tgt_dict.pad()
    max_source, max_target = model.max_positions()
    fits = [i for i in range(len(dataset))
            if dataset.src_sizes[i] <= max_source and dataset.tgt_sizes[i] <= max_target]
    sizes = [max(int(dataset.src_sizes[i]), int(dataset.tgt_sizes[i])) for i in fits]
    total_entropy = total_top1 = total_nll = 0.0
    positions = 0
    with tqdm(total=len(fits), desc="teacher forcing", unit="sent", disable=not progress,
              file=sys.stderr, dynamic_ncols=True) as bar, torch.no_grad():
        for batch in make_batches(sizes, max_tokens, 0):
            indices = [fits[k] for k in batch]
            sample = dataset.collater([dataset[i] for i in indices])
            net_output = model(**sample["net_input"])
            log_probs = model.get_normalized_probs(net_output, log_probs=True).float()
            target = sample["target"]
            mask = target.ne(pad)
            entropy, top1, n = entropy_and_top1(log_probs, mask)
            gold = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            total_nll -= float((gold * mask).sum())
            total_entropy += entropy
            total_top1 += top1
            positions += n
            bar.update(len(indices))
    return {"entropy": total_entropy / positions, "top1": total_top1 / positions,
            "gold_nll": total_nll / positions, "positions": positions, "skipped": len(dataset) - len(fits)}
