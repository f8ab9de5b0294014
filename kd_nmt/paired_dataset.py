"""Training examples that carry the gold target *and* the teacher's translation of the source.

``kd_translation --sentence-kd-data DIR``: ``DIR`` is a fairseq data-bin whose train split is
line-aligned with the gold one: line ``i`` of ``DIR/train.SRC-TGT.TGT`` is the teacher's output for
line ``i`` of the gold source (``kd-nmt relabel --binarize-to DIR``, or ``fairseq-preprocess
--srcdict/--tgtdict`` of any aligned text, without a length filter). Loading checks, with one
KDNMTError each, that the two splits have the same number of lines, the same source lines (when
``DIR`` holds its source side) and the same target dictionary.

A batch of :class:`PairedTeacherDataset` is the usual ``LanguagePairDataset`` batch (gold
``target``, ``net_input.prev_output_tokens``, ``ntokens``, ``id``) plus

* ``teacher_target``: ``[B, T']`` the teacher's outputs, padded like the gold targets, row ``r``
  belonging to the same example as row ``r`` of the gold batch (collated in the order of
  ``sample["id"]``, which the gold collater sorts by source length);
* ``teacher_prev_output_tokens``: the same shifted right (``</s>`` first), for teacher forcing;
* ``teacher_ntokens``: the number of non-pad teacher target tokens.

Batching (``--max-tokens``) and ``--max-positions`` filtering use, per example, the longer of the
two targets. Only the train split is paired; validation batches are gold only.
"""
import logging
import os

import numpy as np
import torch
from fairseq.data import ConcatDataset, FairseqDataset, data_utils, indexed_dataset

from kd_nmt.common.data_bin import dictionary_path, split_prefixes
from kd_nmt.common.dictionaries import describe_difference, load_dictionary
from kd_nmt.errors import KDNMTError

logger = logging.getLogger(__name__)


class PairedTeacherDataset(FairseqDataset):
    """A ``LanguagePairDataset`` (gold) whose examples also carry the teacher's target."""

    def __init__(self, gold, teacher, teacher_sizes):
        if len(gold) != len(teacher):
            raise KDNMTError(
                f"teacher targets have {len(teacher)} lines, the gold split {len(gold)}: "
                "they must be line-aligned"
            )
        if getattr(gold, "buckets", None) is not None:
            raise KDNMTError("--sentence-kd-data does not support --num-batch-buckets")
        self.gold = gold
        self.teacher = teacher
        self.teacher_sizes = np.asarray(teacher_sizes)
        tgt = gold.tgt_sizes if gold.tgt_sizes is not None else np.zeros_like(self.teacher_sizes)
        # per example: the longer of the gold and teacher targets (batching, position filters)
        self.max_tgt_sizes = np.maximum(tgt, self.teacher_sizes)

    def __getitem__(self, index):
        example = self.gold[index]
        example["teacher_target"] = self.teacher[index]
        return example

    def __len__(self):
        return len(self.gold)

    def collater(self, samples, pad_to_length=None):
        batch = self.gold.collater(samples, pad_to_length=pad_to_length)
        if not batch:
            return batch
        by_id = {s["id"]: s["teacher_target"] for s in samples}
        targets = [by_id[int(i)] for i in batch["id"]]  # the gold batch's (sorted) row order
        pad, eos = self.gold.tgt_dict.pad(), self.gold.eos

        def merge(move_eos_to_beginning):
            return data_utils.collate_tokens(
                targets, pad, eos, self.gold.left_pad_target, move_eos_to_beginning,
                pad_to_multiple=self.gold.pad_to_multiple,
            )

        batch["teacher_target"] = merge(False)
        batch["teacher_prev_output_tokens"] = merge(True)
        batch["teacher_ntokens"] = int(batch["teacher_target"].ne(pad).sum())
        return batch

    # sizes: the longer target stands for the target side
    @property
    def sizes(self):
        return np.vstack((self.gold.src_sizes, self.max_tgt_sizes)).T

    def num_tokens(self, index):
        return max(self.gold.src_sizes[index], self.max_tgt_sizes[index])

    def num_tokens_vec(self, indices):
        return np.maximum(self.gold.src_sizes[indices], self.max_tgt_sizes[indices])

    def size(self, index):
        return (self.gold.src_sizes[index], self.max_tgt_sizes[index])

    def ordered_indices(self):
        """Like ``LanguagePairDataset``: shuffled, then by the longer target, then by source."""
        if self.gold.shuffle:
            indices = np.random.permutation(len(self)).astype(np.int64)
        else:
            indices = np.arange(len(self), dtype=np.int64)
        indices = indices[np.argsort(self.max_tgt_sizes[indices], kind="mergesort")]
        return indices[np.argsort(self.gold.src_sizes[indices], kind="mergesort")]

    def filter_indices_by_size(self, indices, max_sizes):
        return data_utils.filter_paired_dataset_indices_by_size(
            self.gold.src_sizes, self.max_tgt_sizes, indices, max_sizes
        )

    @property
    def supports_prefetch(self):
        return self.gold.supports_prefetch and getattr(self.teacher, "supports_prefetch", False)

    def prefetch(self, indices):
        self.gold.prefetch(indices)
        self.teacher.prefetch(indices)

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return self.gold.can_reuse_epoch_itr_across_epochs

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.gold.set_epoch(epoch)


def _load_split(data_path, split, lang, src, tgt, dictionary, impl, combine):
    """The ``lang`` side of ``split`` (``split``, ``split1``, ... when ``combine``), or None.

    Looked up where the split's target side is (``split.src-tgt.`` or ``tgt-src``, as fairseq
    accepts).
    """
    prefixes = split_prefixes(
        data_path, split, src, tgt, langs=(tgt, lang), combine=combine,
        exists=lambda path: indexed_dataset.dataset_exists(path, impl=impl),
    )
    parts = [data_utils.load_indexed_dataset(prefix + lang, dictionary, impl) for prefix in prefixes]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def _first_different_line(a, b):
    for i in range(min(len(a), len(b))):
        if not torch.equal(a[i], b[i]):
            return i
    return None


def _same_lines(a, b):
    """Whether two token datasets hold the same lines (fast path: the mmap buffers)."""
    if not np.array_equal(np.asarray(a.sizes), np.asarray(b.sizes)):
        return False
    mmap = indexed_dataset.MMapIndexedDataset
    if isinstance(a, mmap) and isinstance(b, mmap) and a._index.dtype == b._index.dtype:
        n = int(np.asarray(a.sizes).sum())
        return np.array_equal(
            np.frombuffer(a._bin_buffer, dtype=a._index.dtype, count=n),
            np.frombuffer(b._bin_buffer, dtype=b._index.dtype, count=n),
        )
    return _first_different_line(a, b) is None


def load_teacher_targets(task, split, gold, epoch=1, combine=False):
    """Wrap the gold ``split`` dataset of ``task`` with the teacher targets of --sentence-kd-data.

    Raises one KDNMTError for a missing directory/split, a different target dictionary, a
    different number of lines or different source lines.
    """
    cfg = task.cfg
    src, tgt, impl = cfg.source_lang, cfg.target_lang, cfg.dataset_impl
    kd_paths = [p for p in cfg.sentence_kd_data.split(":") if p]
    gold_paths = [p for p in cfg.data.split(":") if p]
    if len(kd_paths) not in (1, len(gold_paths)):
        raise KDNMTError(
            f"--sentence-kd-data has {len(kd_paths)} directories, --data {len(gold_paths)} shards: "
            "give one teacher data-bin per gold shard"
        )
    kd_dir = kd_paths[(epoch - 1) % len(kd_paths)]
    gold_dir = gold_paths[(epoch - 1) % len(gold_paths)]
    if not os.path.isdir(kd_dir):
        raise KDNMTError(f"--sentence-kd-data: no such directory {kd_dir!r}")

    dict_file = dictionary_path(kd_dir, tgt)
    if os.path.isfile(dict_file):
        theirs, ours = load_dictionary(dict_file), task.target_dictionary
        detail = describe_difference(theirs, ours, ("teacher data", "data"))
        if detail:
            raise KDNMTError(
                f"--sentence-kd-data {kd_dir!r} was binarized with another target dictionary "
                f"({len(theirs)} symbols, the data {len(ours)}; {detail}): binarize the teacher "
                f"outputs with fairseq-preprocess --tgtdict {dictionary_path(gold_dir, tgt)}"
            )

    teacher = _load_split(kd_dir, split, tgt, src, tgt, task.target_dictionary, impl, combine)
    if teacher is None:
        raise KDNMTError(
            f"--sentence-kd-data {kd_dir!r} has no {split} split ({split}.{src}-{tgt}.{tgt}.bin/.idx): "
            "binarize the teacher outputs there (kd-nmt relabel --binarize-to, or fairseq-preprocess)"
        )
    if len(teacher) != len(gold):
        raise KDNMTError(
            f"--sentence-kd-data {kd_dir!r}: the teacher's {split} split has {len(teacher)} lines, "
            f"the gold {split} split in {gold_dir!r} has {len(gold)}: they must be line-aligned "
            "(the teacher's output for every gold source line, in order, nothing filtered)"
        )
    kd_source = _load_split(kd_dir, split, src, src, tgt, task.source_dictionary, impl, combine)
    if kd_source is None:
        logger.warning(
            "--sentence-kd-data %s holds no %s source side: only the line count was checked", kd_dir, split
        )
    else:
        gold_source = _load_split(gold_dir, split, src, src, tgt, task.source_dictionary, impl, combine)
        if gold_source is not None and not _same_lines(kd_source, gold_source):
            line = _first_different_line(kd_source, gold_source)
            where = f"first at line {line + 1}" if line is not None else "line lengths differ"
            raise KDNMTError(
                f"--sentence-kd-data {kd_dir!r}: its {split} source lines differ from the gold ones "
                f"in {gold_dir!r} ({where}): the teacher targets are not line-aligned with this data"
            )
    logger.info("paired %s: %d gold + teacher targets from %s", split, len(teacher), kd_dir)
    return PairedTeacherDataset(gold, teacher, teacher.sizes)
