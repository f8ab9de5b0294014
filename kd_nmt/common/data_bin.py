"""A fairseq data-bin (the output of ``fairseq-preprocess``): its splits and language pair.

Binarized files are named ``{split}.{a}-{b}.{lang}.{bin,idx}`` (``a-b`` the pair the split was
preprocessed as; fairseq's translation task reads either direction) next to the dictionaries
``dict.{lang}.txt``. Every question about them is answered here, with one KDNMTError naming
what was found when the answer is missing or ambiguous.
"""
import functools
import itertools
import os
import re
import struct
from dataclasses import dataclass

from kd_nmt.errors import KDNMTError

_NAME = re.compile(r"(?P<split>.+)\.(?P<a>[^.\-]+)-(?P<b>[^.\-]+)\.(?P<lang>[^.]+)\.idx$")


@dataclass(frozen=True)
class Binarized:
    """One side of one split: ``{split}.{a}-{b}.{lang}.idx`` with its ``.bin``."""

    split: str
    a: str
    b: str
    lang: str
    prefix: str  # path without ".idx"/".bin"


def dictionary_path(data_bin, lang):
    return os.path.join(data_bin, f"dict.{lang}.txt")


def check_data_bin(data_bin):
    if not data_bin or not os.path.isdir(data_bin):
        raise KDNMTError(f"data-bin directory not found: {data_bin!r}")


def binarized_files(data_bin):
    """Every binarized side (``.idx`` and ``.bin`` both present) in ``data_bin``, sorted."""
    found = []
    for name in sorted(os.listdir(data_bin)):
        m = _NAME.match(name)
        prefix = os.path.join(data_bin, name[: -len(".idx")])
        if m and os.path.isfile(prefix + ".bin"):
            found.append(Binarized(m["split"], m["a"], m["b"], m["lang"], prefix))
    return found


def available_splits(data_bin):
    """Sorted names of the splits that have a binarized file."""
    return sorted({f.split for f in binarized_files(data_bin)})


def _check_dictionaries(data_bin, langs):
    for lang in langs:
        path = dictionary_path(data_bin, lang)
        if not os.path.isfile(path):
            raise KDNMTError(f"dictionary not found: {path!r}")


def infer_languages(data_bin, source_lang=None, target_lang=None):
    """``(src, tgt)`` of ``data_bin``: as given, else from its binarized files or dictionaries.

    A pair counts where some split has its source side binarized (``{split}.{src}-{tgt}.{src}``);
    with only one language given and exactly two dictionaries, the other dictionary completes
    the pair. Both dictionaries must exist.
    """
    check_data_bin(data_bin)
    if not (source_lang and target_lang):
        pairs = {(f.a, f.b) for f in binarized_files(data_bin) if f.lang == f.a}
        names = os.listdir(data_bin)
        dict_langs = sorted(n[5:-4] for n in names if n.startswith("dict.") and n.endswith(".txt"))
        if len(dict_langs) == 2 and (source_lang or target_lang):
            given = source_lang or target_lang
            if given in dict_langs:
                other = dict_langs[1 - dict_langs.index(given)]
                pairs.add((given, other) if source_lang else (other, given))
        candidates = sorted(
            (a, b) for a, b in pairs
            if (not source_lang or a == source_lang) and (not target_lang or b == target_lang)
        )
        if len(candidates) != 1:
            found = ", ".join(f"{a}-{b}" for a, b in sorted(pairs)) or "none"
            raise KDNMTError(
                f"cannot infer the language pair of {data_bin!r} (binarized pairs found: {found}; "
                f"dictionaries: {', '.join(dict_langs) or 'none'}); "
                "give --source-lang and --target-lang"
            )
        source_lang, target_lang = candidates[0]
    _check_dictionaries(data_bin, (source_lang, target_lang))
    return source_lang, target_lang


def split_languages(data_bin, split, source_lang=None, target_lang=None):
    """``(src, tgt, has_target)`` of ``split`` in ``data_bin``; one clear error if absent/ambiguous.

    Languages come from the file names ``{split}.{a}-{b}.{lang}.idx`` (either direction, as
    fairseq's translation task accepts) unless given; auto-detection follows the file name's
    direction. ``has_target``: whether the target side is binarized too.
    """
    check_data_bin(data_bin)
    files = {}  # (a, b) -> languages binarized
    for f in binarized_files(data_bin):
        if f.split == split:
            files.setdefault((f.a, f.b), set()).add(f.lang)
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
                continue
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
    _check_dictionaries(data_bin, (src, tgt))
    return src, tgt, has_target


def _idx_and_bin(prefix):
    return os.path.isfile(prefix + ".idx") and os.path.isfile(prefix + ".bin")


def split_prefixes(data_dir, split, src, tgt, langs=None, combine=True, exists=_idx_and_bin):
    """Prefixes ``DIR/{split}.{a}-{b}.`` holding the ``langs`` sides (default: both) of ``split``.

    Either direction (``src-tgt`` first), as fairseq's translation task reads them; with
    ``combine``, also ``split1``, ``split2``, ... up to the first missing one, as fairseq
    combines them. ``exists(prefix + lang)`` tests one side (default: its .idx and .bin are
    files; pass ``indexed_dataset.dataset_exists`` with an impl for other formats). An empty
    list when the split is absent.
    """
    langs = (src, tgt) if langs is None else tuple(dict.fromkeys(langs))
    prefixes = []
    for k in itertools.count():
        name = split + (str(k) if k else "")
        for a, b in ((src, tgt), (tgt, src)):
            prefix = os.path.join(data_dir, f"{name}.{a}-{b}.")
            if all(exists(prefix + lang) for lang in langs):
                prefixes.append(prefix)
                break
        else:
            break
        if not combine:
            break
    return prefixes


_MMAP_MAGIC = b"MMIDIDX\x00\x00"
_MMAP_HEADER = 26  # magic 9, version 8, dtype code 1, length 8 bytes; then int32 sizes, int64 pointers


def binarized_problem(prefix):
    """None if ``PREFIX.idx`` and ``PREFIX.bin`` (fairseq-preprocess's mmap format) are whole,
    else what is wrong: sizes from the index's header only (a cut-short file keeps its header)."""
    from fairseq.data.indexed_dataset import _code_to_dtype

    idx, data = prefix + ".idx", prefix + ".bin"
    with open(idx, "rb") as f:
        head = f.read(_MMAP_HEADER)
        if len(head) < _MMAP_HEADER or not head.startswith(_MMAP_MAGIC):
            return None  # not this format (or too short to say): fairseq's own reader decides
        dtype = _code_to_dtype.get(head[17])
        (n,) = struct.unpack("<Q", head[18:26])
        size, want = os.fstat(f.fileno()).st_size, _MMAP_HEADER + 12 * n
        if dtype is None or size != want:
            return f"{idx} has {size} bytes where its header says {want} (cut short or damaged)"
        if not n:
            return None
        f.seek(_MMAP_HEADER + 4 * (n - 1))
        (last_size,) = struct.unpack("<i", f.read(4))
        f.seek(_MMAP_HEADER + 4 * n + 8 * (n - 1))
        (last_pointer,) = struct.unpack("<q", f.read(8))
    need = last_pointer + last_size * dtype().itemsize
    have = os.path.getsize(data)
    if have < need:
        return f"{data} has {have} bytes where its index needs {need} (cut short)"
    return None


def install_indexed_dataset_check():
    """Idempotently make fairseq's ``MMapIndexedDataset`` check its two files when it opens them.

    fairseq read a cut-short ``.bin`` until the first sentence past its end (``ValueError:
    buffer is smaller than requested size``, a traceback mid-run) and a cut-short ``.idx`` failed
    in numpy, then again in ``__del__``; now either is one KDNMTError naming the file, before
    anything is read.
    """
    from fairseq.data import indexed_dataset

    cls = indexed_dataset.MMapIndexedDataset
    if getattr(cls, "_kd_nmt_checked", False):
        return
    original_init, original_del = cls._do_init, cls.__del__

    @functools.wraps(original_init)
    def _do_init(self, path):
        problem = binarized_problem(path)
        if problem:
            raise KDNMTError(f"damaged data-bin split: {problem}; rebuild it with fairseq-preprocess "
                             "(or restore it from a copy)")
        original_init(self, path)

    def __del__(self):
        if "_bin_buffer_mmap" in self.__dict__:  # not for an object whose opening failed
            original_del(self)

    cls._do_init, cls.__del__ = _do_init, __del__
    cls._kd_nmt_checked = True
