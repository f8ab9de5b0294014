"""``CachedTeacher``: the teacher's sparse distributions read from a cache, no model in memory.

It is a ``kd_nmt.teacher.protocol.KDTeacher`` like the live ``kd_nmt.teacher.Teacher``: its
``targets(sample, like)`` are those of the cache's mode (``kd_nmt.teacher.cache_modes``). A
``topk`` cache gives ``TopKTargets`` (ids ``[B, T, k]``, log-probs ``[B, T, k]``), over which the
KD term renormalises teacher and student. With k = V that is the full-vocabulary loss, to the
precision of the stored log-probs: ~1e-5 relative for a float16 cache (the default), float32
rounding for a float32 one (``kd_nmt.cache.store``). A ``topk-tail`` cache gives ``TailTargets``,
a ``sample`` cache ``SampledTargets``: the KD term without renormalisation. ``check_use``
refuses, in one line, a run that the cache's mode cannot serve (another temperature; a
divergence a sample cache does not estimate; ``--kd-topk`` beyond its k, or at all).

This module is the cache's I/O: the mode's class holds the math of what is stored and read.

A cache holds one split (``train``). Opening it checks, with one clear KDNMTError each, that it
is complete and whole and that it was built on this task's source/target dictionaries and on
the very same binarized split (sha256 of its .idx/.bin). Every batch is checked too: the gold
target tokens of each sentence must equal the cached ones for its ``sample["id"]`` — a batch of
another split (or data that changed) is an error, never a silently wrong loss. Validation
batches have no cached teacher: KD criterions skip the KD term outside training when
``task.teacher.training_split_only`` is true (see ``WordKDCriterion.forward``).
"""
import logging
import os

import numpy as np
import torch

from kd_nmt.cache.store import ARRAYS, TeacherCache, data_hash, describe, dictionary_hash
from kd_nmt.common.dictionaries import describe_difference, load_dictionary
from kd_nmt.errors import KDNMTError
from kd_nmt.teacher.cache_modes import CACHE_MODES
from kd_nmt.teacher.protocol import KDTeacher

logger = logging.getLogger(__name__)


def _check_dictionary(cache, side, dictionary):
    meta = cache.meta["dictionaries"][side]
    if dictionary_hash(dictionary) == meta["sha256"]:
        return
    detail = ""
    copy = os.path.join(cache.path, f"dict.{'src' if side == 'source' else 'tgt'}.txt")
    if os.path.isfile(copy):
        note = describe_difference(dictionary, load_dictionary(copy), ("data", "cache"))
        detail = f"; {note}" if note else ""
    raise KDNMTError(
        f"teacher cache {cache.path!r} was built with a different {side} dictionary: the data has "
        f"{len(dictionary)} symbols, the cache {meta['size']}{detail}. Rebuild the cache on this "
        "data-bin (kd-nmt cache-teacher) or train on the data-bin it was built for "
        f"({cache.meta['data']['dir']!r})"
    )


class CachedTeacher(KDTeacher):
    """Offline teacher: per-token top-k log-probs of one split, read by ``sample["id"]``."""

    # no teacher for batches of other splits: KD criterions skip the KD term in validation
    training_split_only = True

    def __init__(self, cache, padding_idx):
        self.cache = cache
        self.padding_idx = padding_idx
        self.paths = list(cache.meta["teacher"]["paths"])
        self.targets_type = CACHE_MODES[cache.mode]  # the mode's math, both sides

    def __len__(self):
        return len(self.paths)

    @property
    def k(self):
        return self.cache.k

    @property
    def split(self):
        return self.cache.meta["split"]

    @property
    def mode(self):
        return self.cache.mode

    @property
    def name(self):
        return f"{self.mode} cache"

    @property
    def interpolable(self):
        return self.targets_type.interpolable

    def check_use(self, divergence, temperature, topk):
        """One KDNMTError if a run with these ``--kd-*`` options cannot use this cache's mode."""
        self.targets_type.check_use(f"teacher cache {self.cache.path!r}", self.cache.temperature, self.cache.k,
                                    self.cache.vocab_size, divergence, temperature, topk)

    @classmethod
    def open(cls, path, task):
        """Open the cache in ``path`` for ``task``, checking it matches the task's data."""
        cache = TeacherCache(path)
        meta = cache.meta
        src, tgt = task.cfg.source_lang, task.cfg.target_lang
        if (meta["source_lang"], meta["target_lang"]) != (src, tgt):
            raise KDNMTError(
                f"teacher cache {cache.path!r} is for {meta['source_lang']}-{meta['target_lang']}, "
                f"the task translates {src}-{tgt}"
            )
        try:
            train_subset = getattr(task.cfg, "train_subset", None)
            train_subset = str(train_subset) if train_subset is not None else None
        except Exception:  # noqa: BLE001  (an unresolvable ${dataset.train_subset} outside fairseq-train)
            train_subset = None
        if train_subset is not None and train_subset != meta["split"]:
            raise KDNMTError(
                f"teacher cache {cache.path!r} holds split {meta['split']!r} but training reads "
                f"--train-subset {train_subset!r}: build a cache of that split "
                f"(kd-nmt cache-teacher --split {train_subset})"
            )
        _check_dictionary(cache, "source", task.source_dictionary)
        _check_dictionary(cache, "target", task.target_dictionary)
        data_dirs = [p for p in str(task.cfg.data).split(os.pathsep) if p]
        if len(data_dirs) != 1:
            raise KDNMTError(
                f"--teacher-cache needs a single data directory, got {task.cfg.data!r} "
                "(sharded data: build one cache per shard and train on one shard per run)"
            )
        split = meta["split"]
        ours = data_hash(data_dirs[0], split, src, tgt)
        if ours != meta["data"]["sha256"]:
            raise KDNMTError(
                f"teacher cache {cache.path!r} was built for other data: the {split!r} split of "
                f"{data_dirs[0]!r} differs from the one cached ({meta['data']['dir']!r}, "
                f"{meta['n_sentences']} sentences, {meta['n_tokens']} target tokens; sha256 of "
                "the .idx/.bin files differs). Rebuild the cache on this data-bin with "
                "`kd-nmt cache-teacher`"
            )
        logger.info(
            "teacher cache %s: %s, split %r, %d sentences, %d tokens, teacher %s",
            cache.path, describe(meta), split, meta["n_sentences"], meta["n_tokens"],
            ":".join(meta["teacher"]["paths"]),
        )
        return cls(cache, task.target_dictionary.pad())

    @torch.no_grad()
    def targets(self, sample, like, with_nll=True):
        """``(targets, gold_nll)`` of a batch of the cached split, next to ``like``.

        The mode's targets (``from_cache``) of ids ``[B, T, k]`` long, their log-probs
        ``[B, T, k]`` (``like``'s dtype; the cached full-vocabulary log-probs at temperature 1)
        and the mode's other arrays (float32 ``[B, T, ...]``: rest, counts, entropy);
        ``gold_nll`` ``[B, T]`` the teacher's NLL of the gold token, stored, so returned whatever
        ``with_nll``. Padding positions hold ids ``0..k-1`` with equal scores, 0 elsewhere.
        """
        target = sample["target"]
        mask = target.ne(self.padding_idx)
        sentence_ids = sample["id"].cpu().numpy()
        lengths = mask.sum(-1).cpu().numpy()
        cached_lengths = self.cache.lengths(sentence_ids) if sentence_ids.size and (
            0 <= sentence_ids.min() and sentence_ids.max() < self.cache.n_sentences
        ) else None
        if cached_lengths is None or (cached_lengths != lengths).any():
            self._mismatch(sentence_ids, lengths, cached_lengths)
        _, rows = self.cache.rows(sentence_ids)
        cpu_mask = mask.cpu()
        gold = target.cpu()[cpu_mask]
        cached_gold = torch.from_numpy(rows["target"].astype(np.int64))
        if not torch.equal(gold, cached_gold):
            self._mismatch(sentence_ids, lengths, cached_lengths, tokens=True)

        B, T = target.shape
        k = self.cache.k
        ids = torch.arange(k).expand(B, T, k).clone()
        ids[cpu_mask] = torch.from_numpy(rows["ids"].astype(np.int64))
        logp = torch.zeros(B, T, k, dtype=torch.float32)
        logp[cpu_mask] = torch.from_numpy(rows["logp"].astype(np.float32))
        nll = torch.zeros(B, T, dtype=torch.float32)
        nll[cpu_mask] = torch.from_numpy(rows["nll"])
        device, dtype = like.device, like.dtype
        ids, logp = ids.to(device, non_blocking=True), logp.to(device, dtype, non_blocking=True)
        nll = nll.to(device, dtype, non_blocking=True)

        def positions(name):  # float32 [B, T, ...], the rows at the non-pad positions
            x = torch.zeros(B, T, *rows[name].shape[1:], dtype=torch.float32)
            x[cpu_mask] = torch.from_numpy(rows[name].astype(np.float32))
            return x.to(device, non_blocking=True)

        arrays = {name: positions(name) for name in self.cache.arrays if name not in ARRAYS}
        return self.targets_type.from_cache(ids, logp, arrays, self.cache.temperature), nll

    def _mismatch(self, sentence_ids, lengths, cached_lengths, tokens=False):
        where = f"teacher cache {self.cache.path!r} (split {self.split!r})"
        if cached_lengths is None:
            problem = f"sentence ids up to {int(sentence_ids.max())} but the cache has {self.cache.n_sentences}"
        elif tokens:
            problem = "the batch's target tokens differ from the cached ones"
        else:
            b = int(np.nonzero(cached_lengths != lengths)[0][0])
            problem = (
                f"sentence {int(sentence_ids[b])} has {int(lengths[b])} target tokens in the batch, "
                f"{int(cached_lengths[b])} in the cache"
            )
        raise KDNMTError(
            f"a training batch does not match {where}: {problem}. A cache covers only the split "
            "it was built on: train on that split (--train-subset) of the same data-bin, or "
            "rebuild the cache"
        )
