"""Decode a binarized split with fairseq's ``SequenceGenerator`` and detokenize the output.

* Every line of the split is translated: sentences are sorted by source length, packed into
  token-budget batches, decoded, and put back in corpus order. Sources longer than the model's
  ``max_source_positions`` are truncated (their final EOS kept) and counted, never dropped.
* Only the ``generate`` calls are timed (no data loading, collation or detokenization), after
  an untimed warm-up on the first batch, so ``sentences/s`` and ``tokens/s`` measure the model.
* ``bf16=True``: the generate calls run under CPU bfloat16 autocast (``kd_nmt.precision``),
  float32 weights; fairseq normalises the logits in float32, so scores are float32 as usual.
* Detokenization mirrors ``fairseq-generate --remove-bpe sentencepiece`` (join the pieces,
  ``▁`` → space) unless a sentencepiece model is given, whose ``decode_pieces`` is then used.
"""
import os
import sys
import time
from dataclasses import dataclass, field

import torch

from kd_nmt.common.batches import make_batches
from kd_nmt.common.detokenize import REMOVE_BPE, detokenize
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
            if not os.path.isfile(spm_model):
                raise KDNMTError(f"sentencepiece model not found: {spm_model!r}")
            import sentencepiece as spm

            try:
                self._sp = spm.SentencePieceProcessor(model_file=spm_model)
            except Exception as exc:
                raise KDNMTError(f"cannot read sentencepiece model {spm_model!r}: {exc}") from None
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


@dataclass
class DecodeResult:
    pieces: list = field(default_factory=list)  # subword output, corpus order
    hypotheses: list = field(default_factory=list)  # detokenized output, corpus order
    n_tokens: int = 0  # generated target tokens, EOS excluded
    seconds: float = 0.0  # wall time of the generate calls only
    n_truncated: int = 0  # sources cut to the model's max_source_positions


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


def decode(model, task, dataset, detok, beam=1, max_tokens=4000, max_sentences=0,
           max_len_a=0.0, max_len_b=200, device="cpu", progress=True, desc=None, bf16=False):
    """Translate every line of ``dataset`` with ``model`` (beam 1 = greedy); corpus order kept."""
    from fairseq.sequence_generator import SequenceGenerator
    from tqdm import tqdm

    device = torch.device(device)
    tgt_dict = task.target_dictionary
    max_source = model_max_source_positions(model)
    generator = SequenceGenerator(
        [model], tgt_dict, beam_size=beam, max_len_a=max_len_a, max_len_b=max_len_b
    )
    sizes = [min(int(s), max_source) for s in dataset.src_sizes]
    batches = make_batches(sizes, max_tokens, max_sentences)
    result = DecodeResult(pieces=[None] * len(dataset), hypotheses=[None] * len(dataset))
    if not len(dataset):
        return result

    def run(indices):
        items, truncated = _items(dataset, indices, max_source)
        sample = dataset.collater(items)
        net_input = {k: v.to(device) if torch.is_tensor(v) else v for k, v in sample["net_input"].items()}
        sample = {"id": sample["id"], "net_input": net_input}
        _synchronize(device)
        start = time.perf_counter()
        with torch.no_grad(), cpu_autocast(bf16):
            hypos = generator.generate([model], sample)
        _synchronize(device)
        return sample["id"].tolist(), hypos, time.perf_counter() - start, truncated

    # warm-up, not timed: the first batch (the longest sentences) once, so one-time costs
    # (allocator growth, kernel selection) are not charged to the first system measured
    run(batches[0])
    with tqdm(total=len(dataset), desc=desc, unit="sent", disable=not progress,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for indices in batches:
            ids, hypos, seconds, truncated = run(indices)
            result.seconds += seconds
            result.n_truncated += truncated
            for sent_id, nbest in zip(ids, hypos):
                tokens = nbest[0]["tokens"].cpu()
                result.n_tokens += int((tokens != tgt_dict.eos()).sum())
                pieces = tgt_dict.string(tokens)
                result.pieces[sent_id] = pieces
                result.hypotheses[sent_id] = detok(pieces)
            bar.update(len(indices))
    assert all(h is not None for h in result.hypotheses), "a line was not decoded"
    return result
