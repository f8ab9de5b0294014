"""Decode a split with fairseq's ``SequenceGenerator`` and detokenize the output.

* The split is a binarized one (``load_split``) or raw text encoded to pieces (``pieces_dataset``).
* Every line of the split is translated: sentences are sorted by source length, packed into
  token-budget batches, decoded, and put back in corpus order (``kd_nmt.bench.timed_decoding``).
  Sources longer than the model's ``max_source_positions`` are truncated (their final EOS
  kept) and counted, never dropped.
* Only the ``generate`` calls are timed (no data loading, collation or detokenization), after
  an untimed warm-up on the first batch, so ``sentences/s`` and ``tokens/s`` measure the model.
* ``bf16=True``: the generate calls run under CPU bfloat16 autocast (``kd_nmt.precision``),
  float32 weights; fairseq normalises the logits in float32, so scores are float32 as usual.
* Detokenization mirrors ``fairseq-generate --remove-bpe sentencepiece`` (join the pieces,
  ``▁`` → space) unless a sentencepiece model is given, whose ``decode_pieces`` is then used.
"""
import sys
import time

import torch

from kd_nmt.bench.timed_decoding import DecodeResult, translate_all  # noqa: F401  (DecodeResult: decode's result)
from kd_nmt.common.detokenize import REMOVE_BPE, detokenize
from kd_nmt.common.spm_text import load_spm
from kd_nmt.errors import KDNMTError
from kd_nmt.precision import cpu_autocast


# --------------------------------------------------------------------------------------------
# detokenization
# --------------------------------------------------------------------------------------------
class Detokenizer:
    """Subword pieces (a space-separated string) → plain text."""

    def __init__(self, spm_model=None, remove_bpe="sentencepiece"):
        self.spm_model = spm_model
        self.remove_bpe = remove_bpe
        self._sp = None
        if spm_model:
            self._sp = load_spm(spm_model)
        elif remove_bpe not in REMOVE_BPE:
            raise KDNMTError(f"unknown --remove-bpe {remove_bpe!r}; choose from {', '.join(REMOVE_BPE)}")

    def __call__(self, pieces):
        if self._sp is not None:
            return self._sp.decode_pieces(pieces.split()).strip()
        return detokenize(pieces, self.remove_bpe)

    def describe(self):
        if self._sp is not None:
            return f"sentencepiece decode_pieces ({self.spm_model})"
        return {
            "sentencepiece": "remove-bpe sentencepiece (join pieces, '\u2581' -> space)",
            "subword_nmt": "remove-bpe subword_nmt (drop '@@ ')",
            "none": "none (hypotheses scored as produced)",
        }[self.remove_bpe]


def side_texts(dataset_side, dictionary, detok):
    """Detokenized text of every line of one side (``dataset.src`` / ``dataset.tgt``)."""
    return [detok(dictionary.string(dataset_side[i])) for i in range(len(dataset_side))]


# --------------------------------------------------------------------------------------------
# batching and decoding
# --------------------------------------------------------------------------------------------
def model_max_source_positions(model):
    """The longest source (in tokens, EOS included) ``model`` accepts."""
    positions = model.max_positions()
    if isinstance(positions, (tuple, list)):
        positions = positions[0]
    return int(positions) if positions is not None else sys.maxsize


def count_parameters(model):
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def pieces_dataset(task, token_lists):
    """A source-only ``LanguagePairDataset`` of pieces (raw text encoded), like a binarized split's."""
    from fairseq.data import LanguagePairDataset

    src_dict = task.source_dictionary
    tensors = [src_dict.encode_line(" ".join(t), add_if_not_exist=False, append_eos=True).long()
               for t in token_lists]
    sizes = [len(t) for t in tensors]
    return LanguagePairDataset(tensors, sizes, src_dict, tgt_dict=task.target_dictionary)


def _items(dataset, indices, max_source):
    items, truncated = [], 0
    for i in indices:
        item = dataset[i]
        src = item["source"]
        if src.numel() > max_source:
            item = dict(item, source=torch.cat([src[: max_source - 1], src[-1:]]))
            truncated += 1
        items.append(item)
    return items, truncated


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FairseqEngine:
    """``model`` on ``dataset`` with fairseq's ``SequenceGenerator`` (beam 1 = greedy)."""

    name = "fairseq"

    def __init__(self, model, task, dataset, beam=1, max_len_a=0.0, max_len_b=200, device="cpu", bf16=False):
        from fairseq.sequence_generator import SequenceGenerator

        self.model, self.dataset, self.bf16 = model, dataset, bf16
        self.device = torch.device(device)
        self.tgt_dict = task.target_dictionary
        self.max_source = model_max_source_positions(model)
        self.generator = SequenceGenerator(
            [model], self.tgt_dict, beam_size=beam, max_len_a=max_len_a, max_len_b=max_len_b
        )
        self.sizes = [min(int(s), self.max_source) for s in dataset.src_sizes]

    def translate(self, indices):
        items, truncated = _items(self.dataset, indices, self.max_source)
        sample = self.dataset.collater(items)
        net_input = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in sample["net_input"].items()}
        sample = {"id": sample["id"], "net_input": net_input}
        _synchronize(self.device)
        start = time.perf_counter()
        with torch.no_grad(), cpu_autocast(self.bf16):
            hypos = self.generator.generate([self.model], sample)
        _synchronize(self.device)
        seconds = time.perf_counter() - start
        by_id = {int(i): self.tgt_dict.string(nbest[0]["tokens"].cpu())
                 for i, nbest in zip(sample["id"].tolist(), hypos)}
        return [by_id[i] for i in indices], seconds, truncated


def decode(model, task, dataset, detok, beam=1, max_tokens=4000, max_sentences=0,
           max_len_a=0.0, max_len_b=200, device="cpu", progress=True, desc=None, bf16=False):
    """Translate every line of ``dataset`` with ``model`` (beam 1 = greedy); corpus order kept."""
    engine = FairseqEngine(model, task, dataset, beam=beam, max_len_a=max_len_a, max_len_b=max_len_b,
                           device=device, bf16=bf16)
    return translate_all(engine, detok, max_tokens, max_sentences, progress=progress, desc=desc)
