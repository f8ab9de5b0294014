"""The sample of a training split that ``kd-nmt advise`` measures: dictionary ids and words.

A seeded random subset of the split's sentence pairs (all of them when the split is smaller),
in corpus order, as a ``LanguagePairDataset`` (what the teacher reads, gold target included) and
as whitespace words per side (what the aligner reads: the pieces joined back into words, so
the data complexity is about words, as in Zhou et al., not about the sentencepiece vocabulary).
"""
from dataclasses import dataclass

import numpy as np

from kd_nmt.common.detokenize import detokenize
from kd_nmt.errors import KDNMTError


@dataclass
class Sample:
    task: object  # fairseq TranslationTask on the data-bin
    dataset: object  # LanguagePairDataset of the sampled pairs (source and gold target)
    indices: list  # their line numbers in the split
    split_size: int  # sentences in the whole split
    source_words: list  # per pair: the source's words
    target_words: list  # per pair: the gold target's words
    references: list  # per pair: the gold target as text (the teacher's output is scored on it)

    def __len__(self):
        return len(self.indices)


def sample_indices(n, size, seed):
    """``size`` line numbers of ``n`` drawn without replacement (seeded), sorted; all if ``size >= n``."""
    if size >= n:
        return list(range(n))
    return sorted(int(i) for i in np.random.RandomState(seed).choice(n, size, replace=False))


def load_sample(data_bin, split, size, seed, source_lang=None, target_lang=None):
    """The ``Sample`` of ``split`` in ``data_bin``; one clear error when the split lacks a target."""
    from fairseq.data import LanguagePairDataset

    from kd_nmt.common.data_bin import split_languages
    from kd_nmt.common.task_setup import load_split, translation_task

    src, tgt, has_target = split_languages(data_bin, split, source_lang, target_lang)
    if not has_target:
        raise KDNMTError(f"split {split!r} in {data_bin!r} has no target side ({tgt}): advise measures the "
                         "teacher on the gold targets of the training data")
    task = translation_task(data_bin, src, tgt)
    full = load_split(task, split)
    if len(full) == 0:
        raise KDNMTError(f"split {split!r} in {data_bin!r} is empty")
    indices = sample_indices(len(full), size, seed)
    sources = [full.src[i] for i in indices]
    targets = [full.tgt[i] for i in indices]
    dataset = LanguagePairDataset(
        sources, [len(s) for s in sources], task.source_dictionary,
        targets, [len(t) for t in targets], task.target_dictionary,
        left_pad_source=full.left_pad_source, left_pad_target=full.left_pad_target,
    )
    source_text = [detokenize(task.source_dictionary.string(s), "sentencepiece") for s in sources]
    target_text = [detokenize(task.target_dictionary.string(t), "sentencepiece") for t in targets]
    return Sample(task=task, dataset=dataset, indices=indices, split_size=len(full),
                  source_words=[s.split() for s in source_text], target_words=[t.split() for t in target_text],
                  references=target_text)
