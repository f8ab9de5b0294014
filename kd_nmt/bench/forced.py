"""Decoding with the gold target in hand: teacher forcing and a gold prefix (Wei et al.'s decoding axis).

Wei et al. (2024) contrast "easy" decoding — teacher forcing, where every step sees the gold
prefix — with "hard" decoding — beam search, where errors compound. Two engines give a bench the
easy end, for a binarized split (it holds the gold target):

* ``TeacherForcedEngine``: one forward pass of the model over the gold prefix
  (``prev_output_tokens``); the output is the argmax at every target position but the last (the
  gold EOS's), so its BLEU is the BLEU of the argmax sequence; ``token_accuracy`` is the share of
  the positions (EOS included, padding not) where the argmax is the gold token.
* ``PrefixEngine``: fairseq's prefix-constrained search (``SequenceGenerator.generate(...,
  prefix_tokens=...)``): the first ``k`` gold tokens are forced, then the model decodes on its own
  (greedy, or ``beam``). ``k`` is fixed (``prefix_tokens=3``) or a fraction of each reference's
  length (``prefix_fraction=0.5``: ``floor(f * (len - 1))`` tokens, EOS not counted); prefixes of
  different lengths are padded (fairseq forces only the non-pad entries). The output *includes*
  the forced prefix: compare systems at the same prefix, not with free decoding.

Both follow ``kd_nmt.bench.timed_decoding``'s engine contract (``sizes``, ``translate(indices)``).
"""
import math
import time

import torch

from kd_nmt.bench.decode import _items, _synchronize, model_max_source_positions
from kd_nmt.errors import KDNMTError
from kd_nmt.precision import cpu_autocast


def _gold_batch(dataset, indices, max_source, device):
    items, truncated = _items(dataset, indices, max_source)
    if any(item.get("target") is None for item in items):
        raise KDNMTError("teacher-forced and prefix decoding need the split's gold target: bench a binarized "
                         "split (--data-bin with --split), not --input")
    sample = dataset.collater(items)
    net_input = {k: v.to(device) if torch.is_tensor(v) else v for k, v in sample["net_input"].items()}
    return sample, net_input, truncated


class TeacherForcedEngine:
    """Argmax of ``model`` at every gold-prefix position (see the module docstring)."""

    name = "fairseq-teacher-forced"

    def __init__(self, model, task, dataset, device="cpu", bf16=False):
        self.model, self.dataset, self.bf16 = model, dataset, bf16
        self.device = torch.device(device)
        self.tgt_dict = task.target_dictionary
        self.max_source = model_max_source_positions(model)
        self.sizes = [min(int(s), self.max_source) for s in dataset.src_sizes]
        # (correct, total) per sentence id: the untimed warm-up batch is translated twice
        self.counts = {}

    def translate(self, indices):
        sample, net_input, truncated = _gold_batch(self.dataset, indices, self.max_source, self.device)
        target = sample["target"].to(self.device)
        _synchronize(self.device)
        start = time.perf_counter()
        with torch.no_grad(), cpu_autocast(self.bf16):
            logits = self.model(**net_input)[0]
        _synchronize(self.device)
        seconds = time.perf_counter() - start
        argmax = logits.argmax(-1)
        real = target.ne(self.tgt_dict.pad())
        hits = (argmax.eq(target) & real).sum(1).tolist()
        by_id = {}
        for row, i in enumerate(sample["id"].tolist()):
            n = int(real[row].sum())  # right-padded targets: the first n positions, the last is EOS
            self.counts[int(i)] = (int(hits[row]), n)
            by_id[int(i)] = self.tgt_dict.string(argmax[row, : n - 1].cpu())
        return [by_id[i] for i in indices], seconds, truncated

    @property
    def token_accuracy(self):
        total = sum(n for _, n in self.counts.values())
        return sum(c for c, _ in self.counts.values()) / total if total else None


def prefix_lengths(target_lengths, prefix_tokens=0, prefix_fraction=0.0):
    """Forced tokens per sentence from the gold lengths (EOS included): a fixed ``k`` (at most
    ``len - 1``) or ``floor(fraction * (len - 1))``."""
    if prefix_fraction:
        return [int(math.floor(prefix_fraction * (n - 1))) for n in target_lengths]
    return [min(prefix_tokens, n - 1) for n in target_lengths]


class PrefixEngine:
    """fairseq's search with each sentence's first gold tokens forced (see the module docstring)."""

    name = "fairseq-prefix"

    def __init__(self, model, task, dataset, prefix_tokens=0, prefix_fraction=0.0, beam=1, max_len_a=0.0,
                 max_len_b=200, device="cpu", bf16=False):
        from fairseq.sequence_generator import SequenceGenerator

        self.model, self.dataset, self.bf16 = model, dataset, bf16
        self.prefix_tokens, self.prefix_fraction = prefix_tokens, prefix_fraction
        self.device = torch.device(device)
        self.tgt_dict = task.target_dictionary
        self.max_source = model_max_source_positions(model)
        self.generator = SequenceGenerator([model], self.tgt_dict, beam_size=beam, max_len_a=max_len_a,
                                           max_len_b=max_len_b)
        self.sizes = [min(int(s), self.max_source) for s in dataset.src_sizes]

    def prefix(self, target):
        """``[B, k_max]`` forced tokens, padded; None if no sentence gets one."""
        pad = self.tgt_dict.pad()
        lengths = prefix_lengths(target.ne(pad).sum(1).tolist(), self.prefix_tokens, self.prefix_fraction)
        width = max(lengths, default=0)
        if not width:
            return None
        prefix = target.new_full((target.size(0), width), pad)
        for row, k in enumerate(lengths):
            prefix[row, :k] = target[row, :k]
        return prefix

    def translate(self, indices):
        sample, net_input, truncated = _gold_batch(self.dataset, indices, self.max_source, self.device)
        prefix = self.prefix(sample["target"])
        batch = {"id": sample["id"], "net_input": net_input}
        _synchronize(self.device)
        start = time.perf_counter()
        with torch.no_grad(), cpu_autocast(self.bf16):
            hypos = self.generator.generate([self.model], batch,
                                            prefix_tokens=None if prefix is None else prefix.to(self.device))
        _synchronize(self.device)
        seconds = time.perf_counter() - start
        by_id = {int(i): self.tgt_dict.string(nbest[0]["tokens"].cpu())
                 for i, nbest in zip(sample["id"].tolist(), hypos)}
        return [by_id[i] for i in indices], seconds, truncated
