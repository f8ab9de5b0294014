"""Magnitude pruning of a translation model, as Kim & Rush (2016) pruned their distilled student.

Kim & Rush prune a Seq-KD student by weight magnitude and retrain it: "class-blind" (See et al.
2016), one threshold over every weight matrix of the model, the smallest ``1 - keep`` of them set
to 0. Here:

* ``prunable(weights)``: the names of the weight *matrices* (2-D ``*.weight``: every linear layer
  and the embeddings), one name per tensor (the shared source/target/output embedding is one
  matrix under three names: it is pruned once). Biases and layer norms stay dense (they are
  <1 % of the parameters and pruning them hurts; See et al. keep them too).
* ``magnitude_masks(weights, keep)``: the class-blind masks keeping the ``keep`` fraction of those
  entries with the largest |w| (ties at the threshold broken by position, so exactly
  ``round(keep * total)`` entries survive).
* ``sparse_bytes(weights)``: what the pruned model costs on disk in a sparse layout — a bitmap of
  the kept positions (1 bit an entry) and the kept values in float16 — beside float16 dense.

Retraining keeps the pruned weights at 0: ``--keep-pruned`` (``kd_translation``) re-applies the
masks read off the starting checkpoint's zeros after every optimizer step
(``MaskedWeights``). CTranslate2 has no sparse kernels: pruning buys disk size and download, not
decoding speed on CPU.
"""
import torch


def tensor_key(tensor):
    """What makes two state-dict entries one tensor (tied embeddings: one matrix, several names)."""
    return tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape)


def prunable(weights):
    """Names of the 2-D ``*.weight`` tensors of a state dict, one per distinct tensor."""
    seen, names = set(), []
    for name, tensor in weights.items():
        if not (name.endswith(".weight") and tensor.dim() == 2):
            continue
        key = tensor_key(tensor)
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


def magnitude_masks(weights, keep):
    """``{name: bool mask}`` keeping the ``keep`` fraction (0 < keep <= 1) of the prunable entries
    with the largest magnitude, one threshold over all of them (class-blind)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    names = prunable(weights)
    flat = torch.cat([weights[n].detach().float().abs().flatten() for n in names])
    n_keep = int(round(keep * flat.numel()))
    order = torch.argsort(flat, descending=True, stable=True)
    kept = torch.zeros(flat.numel(), dtype=torch.bool)
    kept[order[:n_keep]] = True
    masks, start = {}, 0
    for n in names:
        size = weights[n].numel()
        masks[n] = kept[start:start + size].view_as(weights[n])
        start += size
    return masks


def apply_masks(weights, masks):
    """Zero the entries of ``weights`` (in place) where ``masks`` is False; returns ``weights``."""
    with torch.no_grad():
        for name, mask in masks.items():
            weights[name].mul_(mask.to(weights[name].dtype))
    return weights


def sparse_bytes(weights):
    """``{"dense_fp16": ..., "sparse_fp16": ...}`` bytes of the model's distinct tensors: float16
    dense, and with every prunable matrix as a 1-bit-an-entry bitmap plus float16 nonzeros."""
    names = set(prunable(weights))
    seen, dense, sparse = set(), 0, 0
    for name, tensor in weights.items():
        key = tensor_key(tensor)
        if key in seen:
            continue
        seen.add(key)
        dense += tensor.numel() * 2
        if name in names:
            sparse += (tensor.numel() + 7) // 8 + int(tensor.count_nonzero()) * 2
        else:
            sparse += tensor.numel() * 2
    return {"dense_fp16": dense, "sparse_fp16": sparse}


class MaskedWeights:
    """Keeps a model's pruned weights at 0 through training (``--keep-pruned``): the masks are the
    nonzero pattern of its weight matrices when first seen, re-applied after each step."""

    def __init__(self):
        self.masks = None

    def before_step(self, model):
        """Read the masks off the weights before the first step changes them."""
        if self.masks is None:
            params = dict(model.named_parameters())
            self.masks = {n: params[n].detach().ne(0) for n in prunable(params)}

    def after_step(self, model):
        self.before_step(model)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, mask in self.masks.items():
                params[name].mul_(mask.to(params[name].dtype))

    def kept_fraction(self):
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total if total else 1.0
