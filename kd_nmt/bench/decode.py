"""Decode a binarized split with fairseq's ``SequenceGenerator`` and detokenize the output.

* Every line of the split is translated: sentences are sorted by source length, packed into
  token-budget batches, decoded, and put back in corpus order. Sources longer than the model's
  ``max_source_positions`` are truncated (their final EOS kept) and counted, never dropped.
* Only the ``generate`` calls are timed (no data loading, collation or detokenization), after
  an untimed warm-up on the first batch, so ``sentences/s`` and ``tokens/s`` measure the model.
* Detokenization mirrors ``fairseq-generate --remove-bpe sentencepiece`` (join the pieces,
  ``▁`` → space) unless a sentencepiece model is given, whose ``decode_pieces`` is then used.
"""
import os
import re
import sys
import time
from dataclasses import dataclass, field

import torch

from kd_nmt.errors import KDNMTError

REMOVE_BPE = ("sentencepiece", "subword_nmt", "none")


# --------------------------------------------------------------------------------------------
# the data-bin split
# --------------------------------------------------------------------------------------------
def available_splits(data_bin):
    """Sorted split names that have a binarized file (``{split}.{src}-{tgt}.{lang}.idx``)."""
    names = set()
    for fname in os.listdir(data_bin):
        m = re.match(r"(.+)\.[^.\-]+-[^.\-]+\.[^.]+\.idx$", fname)
        if m:
            names.add(m.group(1))
    return sorted(names)


def split_languages(data_bin, split, source_lang=None, target_lang=None):
    """``(src, tgt, has_target)`` of ``split`` in ``data_bin``; one clear error if absent/ambiguous.

    Languages come from the file names ``{split}.{a}-{b}.{lang}.idx`` (either direction, as
    fairseq's translation task accepts) unless given.
    """
    if not os.path.isdir(data_bin):
        raise KDNMTError(f"data-bin directory not found: {data_bin!r}")
    pattern = re.compile(re.escape(split) + r"\.([^.\-]+)-([^.\-]+)\.([^.]+)\.idx$")
    files = {}  # (a, b) -> set of languages binarized
    for fname in os.listdir(data_bin):
        m = pattern.match(fname)
        if m and os.path.isfile(os.path.join(data_bin, fname[: -len(".idx")] + ".bin")):
            files.setdefault((m.group(1), m.group(2)), set()).add(m.group(3))
    if not files:
        splits = available_splits(data_bin)
        raise KDNMTError(
            f"split {split!r} not found in {data_bin!r} (no {split}.SRC-TGT.SRC.idx/.bin); "
            f"available splits: {', '.join(splits) if splits else 'none'}"
        )
    candidates = []
    for (a, b), langs in sorted(files.items()):
        for src, tgt in ((a, b), (b, a)):
            if src not in langs:
                continue
            if source_lang and src != source_lang or target_lang and tgt != target_lang:
                continue
            if not source_lang and not target_lang and (src, tgt) != (a, b):
                continue  # auto-detection follows the file name's direction
            candidates.append((src, tgt, tgt in langs))
    if not candidates:
        found = ", ".join(f"{a}-{b}" for a, b in sorted(files))
        raise KDNMTError(
            f"split {split!r} in {data_bin!r} has no source side for "
            f"--source-lang {source_lang} --target-lang {target_lang} (found: {found})"
        )
    if len(candidates) > 1:
        found = ", ".join(f"{s}-{t}" for s, t, _ in candidates)
        raise KDNMTError(
            f"split {split!r} in {data_bin!r} has several language pairs ({found}); "
            "choose one with --source-lang/--target-lang"
        )
    src, tgt, has_target = candidates[0]
    for lang in (src, tgt):
        if not os.path.isfile(os.path.join(data_bin, f"dict.{lang}.txt")):
            raise KDNMTError(f"dictionary not found: {os.path.join(data_bin, f'dict.{lang}.txt')!r}")
    return src, tgt, has_target


def load_split(data_bin, split, source_lang, target_lang):
    """A fairseq ``translation`` task on ``data_bin`` and its loaded ``split`` dataset."""
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    # the II("dataset.*") interpolations of a bare TranslationConfig are set explicitly
    cfg = TranslationConfig(
        data=data_bin, source_lang=source_lang, target_lang=target_lang,
        dataset_impl=None, train_subset="train", required_seq_len_multiple=1,
    )
    task = TranslationTask.setup_task(cfg)
    try:
        task.load_dataset(split)
    except Exception as exc:
        raise KDNMTError(
            f"cannot load split {split!r} from {data_bin!r}: {type(exc).__name__}: {exc}"
        ) from None
    return task, task.dataset(split)


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
        from fairseq.data.data_utils import post_process

        return post_process(pieces, self.remove_bpe).strip()

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
def make_batches(sizes, max_tokens, max_sentences=0):
    """Indices grouped into batches of at most ``max_tokens`` padded source tokens.

    Longest sentences first (an out-of-memory shows up at once); a single sentence longer
    than the budget gets a batch of its own. Every index appears exactly once.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-int(sizes[i]), i))
    batches, current, longest = [], [], 0
    for i in order:
        size = max(int(sizes[i]), 1)
        grown = max(longest, size) * (len(current) + 1)
        full = max_sentences and len(current) >= max_sentences
        if current and (grown > max_tokens or full):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return batches


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
           max_len_a=0.0, max_len_b=200, device="cpu", progress=True, desc=None):
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
        with torch.no_grad():
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
