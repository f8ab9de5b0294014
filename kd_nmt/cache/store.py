"""On-disk format of a teacher cache: top-k teacher log-probabilities per target token.

Layout of a cache directory (``kd-nmt cache-teacher --out CACHE``)::

    CACHE/meta.json              what was cached (see below); "complete": true once every chunk exists
    CACHE/offsets.npy            int64 [N + 1]: sentence i owns global token rows offsets[i]:offsets[i+1]
    CACHE/dict.src.txt           the source / target dictionaries the cache was built with
    CACHE/dict.tgt.txt           (copies, to name the first differing symbol in errors)
    CACHE/chunks/00000/          sentences [0, S) of the split, S = meta["chunk_sentences"]
        target.npy  [n, ]        gold target token of each row (int16 if V < 32768 else int32)
        ids.npy     [n, k]       the teacher's k most probable token ids, most probable first (same dtype)
        logp.npy    [n, k]       their log-probabilities, float16 (default) or float32 (meta "logp_dtype")
        nll.npy     [n, ]        the teacher's NLL of the gold token, float32
        rest.npy    [n, ]        --mode topk-tail only: the rest class, float32 (see below)
        count.npy   [n, k]       --mode sample only: how often each id was drawn (int16 if the number
        entropy.npy [n, ]        of draws < 32768, else int32), and the tempered teacher's entropy
    CACHE/chunks/00001/ ...

Modes (meta "mode"; a cache without the key, from before modes existed, is ``topk``):

* ``topk``: the k most probable ids, most probable first. ``word_kd`` renormalises both sides
  over them (any divergence, any temperature).
* ``topk-tail``: the same ids and log-probs plus ``rest = tau * log sum_{v not in the k ids}
  exp(logp_v / tau)`` at the cache's temperature tau (meta "temperature"): at tau = 1 the log of
  the teacher's mass outside the ids, -inf if there is none. The KD term compares k + 1 classes,
  no renormalisation (``kd_nmt.sparse_teacher.TailTeacher``).
* ``sample``: meta "draws" ids drawn with replacement from the tempered teacher (seeded by meta
  "seed" and the chunk index, so a resumed chunk draws the same), stored as the k = min(draws, V)
  most drawn distinct ids (slots never drawn: count 0), their temperature-1 log-probs and their
  counts, plus the tempered teacher's entropy: an unbiased fkl estimate
  (``kd_nmt.sparse_teacher.SampledTeacher``).

``topk-tail`` and ``sample`` caches serve only their own temperature (``--kd-temperature`` must
equal it): the tempered normaliser is a sum over the whole vocabulary.

Rows are the target tokens of the binarized split (EOS included), in dataset order: sentence
``i`` of the split (``sample["id"]``) owns rows ``offsets[i] : offsets[i+1]`` (its target length
from the LanguagePairDataset's ``tgt_sizes``). Every ``.npy`` is memory-mapped when read, so any
batch order, any epoch and any number of processes read only the rows they need.

Log-probabilities are at temperature 1, normalised over the *full* vocabulary (an ensemble
averages probabilities), and only then truncated to the top k: they are not renormalised over
the k kept ids. A KD criterion renormalises over the ids itself (at its own temperature:
``softmax(logp / tau)`` over the k ids is the tempered teacher restricted to them).

float16 rounds each log-prob by up to 2^-11 of its size (up to 0.01 for a tail log-prob of
-20, i.e. 1 % of that probability): a k = V float16 cache gives the live teacher's KD term only
to ~1e-5 relative on a batch (akl ~5e-5), not exactly. A float32 cache (``logp_dtype
"float32"``, 2 more bytes per kept id) stores the teacher's float32 log-probs as computed: with
k = V the loss equals the live one to float32 rounding (~1e-7; ``tests/test_cache.py``).

A chunk is written into ``chunks/NNNNN.tmp/`` and renamed to ``chunks/NNNNN/`` when all four
arrays are flushed (an atomic directory rename): a chunk directory is always complete, and an
interrupted build resumes by computing only the missing chunks.

Hashes recorded in ``meta.json`` (all sha256, hex):

* ``teacher.sha256``: of each teacher checkpoint file, whole (computed once, at build time).
* ``dictionaries.*.sha256``: of the dictionary's symbols, ``"\\n".join(symbols)``, specials
  included: the id -> symbol mapping the ids depend on (the counts in ``dict.*.txt`` do not).
* ``data.sha256``: of the binarized split, source and target ``.idx`` and ``.bin`` files
  (file names and bytes), whole. Checked every time a cache is opened for training; hashing
  reads the split once (about a second per GB).
"""
import hashlib
import json
import os
import shutil

import numpy as np

from kd_nmt.common.atomic import atomic_file, atomic_write
from kd_nmt.common.hashing import sha256_file  # noqa: F401  (store.sha256_file: the cache CLI uses it)
from kd_nmt.errors import KDNMTError

FORMAT = "kd_nmt.teacher_cache"
VERSION = 1
ARRAYS = ("target", "ids", "logp", "nll")  # per chunk, in this order, in every mode
MODES = ("topk", "topk-tail", "sample")  # meta "mode"; the first is the default
MODE_ARRAYS = {"topk": ARRAYS, "topk-tail": ARRAYS + ("rest",), "sample": ARRAYS + ("count", "entropy")}
LOGP_DTYPES = ("float16", "float32")  # meta "logp_dtype"; the first is the default
LOGP_DTYPE = np.float16  # the default, as a numpy dtype
NLL_DTYPE = np.float32
# TeacherCache.check_contents: rows checked per chunk on open, and the slack of a log-prob (and of
# the log of a kept mass) above 0 that float16 rounding allows (2^-11 of a value near 0 is tiny;
# a sum of k float16-rounded probabilities drifts by ~k 2^-12)
SAMPLE_ROWS = 64
LOGP_TOLERANCE = 1e-2
# float16 covers +-65504; a log-prob below this (never seen in practice) is clamped to it
LOGP_MIN = -60000.0
LOG_PROBS_NOTE = (
    "natural log, temperature 1, normalised over the full vocabulary (an ensemble averages "
    "probabilities), then the k largest kept, most probable first; not renormalised over the k"
)
# meta fields that must agree for a rerun to resume into an existing --out directory
BUILD_KEYS = (
    "format", "version", "teacher", "k", "vocab_size", "ids_dtype", "logp_dtype", "split", "source_lang",
    "target_lang", "dictionaries", "data", "n_sentences", "n_tokens", "chunk_sentences",
    "mode", "temperature", "draws", "seed",
)
# the value of a build key that caches written before the key existed hold implicitly
BUILD_DEFAULTS = {"mode": "topk", "temperature": 1.0}


def cache_mode(meta):
    """The cache's mode (``MODES``); a KDNMTError naming the readable ones for any other."""
    mode = meta.get("mode", MODES[0])
    if mode not in MODES:
        raise KDNMTError(
            f"teacher cache mode {mode!r} is unknown to this kd_nmt (it reads {', '.join(MODES)}): "
            "rebuild the cache with this kd_nmt's `kd-nmt cache-teacher`"
        )
    return mode


def describe(meta):
    """"top-16 of 608" (topk, as before modes), "top-16 + rest of 608 at temperature 2", ..."""
    mode, k, vocab = cache_mode(meta), meta["k"], meta["vocab_size"]
    if mode == "topk":
        return f"top-{k} of {vocab}"
    at = f"at temperature {float(meta['temperature']):g}"
    if mode == "topk-tail":
        return f"top-{k} + rest of {vocab} {at}"
    return f"{meta['draws']} draws of {vocab} {at} (seed {meta['seed']})"


def ids_dtype(vocab_size):
    """int16 when every id fits (V < 32768), else int32."""
    return np.int16 if vocab_size < 32768 else np.int32


def dictionary_hash(dictionary):
    """sha256 of a fairseq Dictionary's symbols (the id -> symbol mapping)."""
    return hashlib.sha256("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()


def split_files(data_dir, split, src, tgt):
    """The binarized files of ``split`` (``split``, ``split1``, ... as fairseq combines them).

    Returns ``[(prefix, [src.idx, src.bin, tgt.idx, tgt.bin])]``; a KDNMTError if none exist.
    """
    found = []
    k = 0
    while True:
        split_k = split + (str(k) if k > 0 else "")
        prefix = None
        for a, b in ((src, tgt), (tgt, src)):
            candidate = os.path.join(data_dir, f"{split_k}.{a}-{b}.")
            if all(os.path.isfile(candidate + f"{lang}.{ext}") for lang in (src, tgt) for ext in ("idx", "bin")):
                prefix = candidate
                break
        if prefix is None:
            break
        found.append((prefix, [prefix + f"{lang}.{ext}" for lang in (src, tgt) for ext in ("idx", "bin")]))
        k += 1
    if not found:
        raise KDNMTError(
            f"no binarized {split!r} split for {src}-{tgt} in {data_dir!r} "
            f"(expected {split}.{src}-{tgt}.{src}.bin/.idx and .{tgt}.bin/.idx)"
        )
    return found


def data_hash(data_dir, split, src, tgt):
    """sha256 over the names and bytes of the split's source and target .idx/.bin files."""
    h = hashlib.sha256()
    for _, files in split_files(data_dir, split, src, tgt):
        for path in files:
            h.update(os.path.basename(path).encode("utf-8") + b"\0")
            sha256_file(path, h)
    return h.hexdigest()


def write_json_atomic(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npy_atomic(path, array):
    with atomic_file(path, binary=True) as f:
        np.save(f, array)


def chunk_dir(cache_dir, index):
    return os.path.join(cache_dir, "chunks", f"{index:05d}")


def chunk_ranges(n_sentences, chunk_sentences):
    """[(first_sentence, end_sentence)] of every chunk."""
    return [(s, min(s + chunk_sentences, n_sentences)) for s in range(0, n_sentences, chunk_sentences)]


def expected_shapes(n_rows, k, mode="topk"):
    per_id, per_row = (n_rows, k), (n_rows,)
    shapes = {"target": per_row, "ids": per_id, "logp": per_id, "nll": per_row,
              "rest": per_row, "count": per_id, "entropy": per_row}
    return {name: shapes[name] for name in MODE_ARRAYS[mode]}


def logp_dtype(name=None):
    """The numpy dtype of the stored log-probs: ``name`` one of ``LOGP_DTYPES`` (None: the default)."""
    if name is None:
        return np.dtype(LOGP_DTYPE)
    if str(name) not in LOGP_DTYPES:
        raise KDNMTError(f"teacher cache log-probs must be one of {', '.join(LOGP_DTYPES)}, got {name!r}")
    return np.dtype(str(name))


def expected_dtypes(vocab_size, logp=None, mode="topk", draws=None):
    """dtype of every chunk array; ``logp``: the log-probs' dtype name (None: the default);
    ``draws``: a sample cache's number of draws (its counts' range)."""
    i, f = np.dtype(ids_dtype(vocab_size)), np.dtype(NLL_DTYPE)
    dtypes = {"target": i, "ids": i, "logp": logp_dtype(logp), "nll": f, "rest": f, "entropy": f}
    if mode == "sample":
        dtypes["count"] = np.dtype(ids_dtype(int(draws) + 1))
    return {name: dtypes[name] for name in MODE_ARRAYS[mode]}


def npy_problem(path, shape, dtype):
    """None if ``path`` is a complete .npy of ``shape``/``dtype``, else what is wrong with it.

    Reads the header only: a file cut short keeps its header, so its size gives it away.
    """
    if not os.path.isfile(path):
        return "missing"
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(f)
            else:
                got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(f)
            header_end = f.tell()
    except Exception as exc:  # noqa: BLE001  (a truncated or foreign header)
        return f"unreadable .npy header ({type(exc).__name__}: {exc})"
    if tuple(got_shape) != tuple(shape) or np.dtype(got_dtype) != np.dtype(dtype) or fortran:
        return f"holds {np.dtype(got_dtype)} {tuple(got_shape)}, expected {np.dtype(dtype)} {tuple(shape)}"
    size = os.path.getsize(path)
    want = header_end + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if size != want:
        return f"{size} bytes, expected {want} (truncated or padded)"
    return None


def _allocate(path):
    """Reserve the disk blocks of the (sparse) file ``path``: a memory-mapped write into a full
    disk is a SIGBUS that kills the process; a full disk is an OSError here instead."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)  # (its OSError is named by the caller)
    finally:
        os.close(fd)


class ChunkWriter:
    """Memory-mapped arrays of one chunk in ``NNNNN.tmp/``; ``commit()`` renames it into place."""

    def __init__(self, cache_dir, index, n_rows, k, vocab_size, logp=None, mode="topk", draws=None):
        self.final = chunk_dir(cache_dir, index)
        self.tmp = self.final + ".tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        dtypes = expected_dtypes(vocab_size, logp, mode, draws)
        self.arrays = {}
        try:
            for name, shape in expected_shapes(n_rows, k, mode).items():
                path = os.path.join(self.tmp, f"{name}.npy")
                self.arrays[name] = np.lib.format.open_memmap(path, mode="w+", dtype=dtypes[name], shape=shape)
                _allocate(path)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError) and exc.filename is None:  # numpy's header write: ENOSPC
                exc.filename = os.path.join(self.final, f"{name}.npy")
            raise

    def abort(self):
        """Drop the chunk's temporary folder (a failed or interrupted chunk leaves nothing)."""
        self.arrays = {}
        shutil.rmtree(self.tmp, ignore_errors=True)

    def commit(self):
        for name, array in self.arrays.items():
            array.flush()
        paths = [array.filename for array in self.arrays.values()]
        self.arrays = {}
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        shutil.rmtree(self.final, ignore_errors=True)
        os.replace(self.tmp, self.final)


class TeacherCache:
    """Read side of a complete cache: memory-mapped, opened lazily in each process.

    ``TeacherCache(path)`` checks the meta data and that every chunk file is whole (headers and
    sizes only); ``rows(sentence_ids)`` returns the cached rows of those sentences.
    """

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.meta = read_meta(self.path)
        meta = self.meta
        if not meta.get("complete"):
            raise KDNMTError(
                f"teacher cache {self.path!r} is incomplete (its build was interrupted): rerun the "
                "same `kd-nmt cache-teacher` command, it resumes where it stopped"
            )
        self.mode = cache_mode(meta)
        self.arrays = MODE_ARRAYS[self.mode]
        self.k = int(meta["k"])
        self.vocab_size = int(meta["vocab_size"])
        self.temperature = float(meta.get("temperature", 1.0))
        self.logp_dtype = meta.get("logp_dtype", np.dtype(LOGP_DTYPE).name)
        self.dtypes = expected_dtypes(self.vocab_size, self.logp_dtype, self.mode, meta.get("draws"))
        offsets_path = os.path.join(self.path, "offsets.npy")
        n = int(meta["n_sentences"])
        problem = npy_problem(offsets_path, (n + 1,), np.int64)
        if problem:
            raise KDNMTError(f"teacher cache {self.path!r} is damaged: offsets.npy {problem}")
        self.offsets = np.load(offsets_path)
        if int(self.offsets[-1]) != int(meta["n_tokens"]) or (np.diff(self.offsets) < 0).any():
            raise KDNMTError(f"teacher cache {self.path!r} is damaged: offsets.npy disagrees with meta.json")
        self.ranges = chunk_ranges(n, int(meta["chunk_sentences"]))
        # first global row of every chunk (+ the end), for row -> chunk lookups
        self.chunk_rows = np.array([self.offsets[s] for s, _ in self.ranges] + [self.offsets[n]], dtype=np.int64)
        for c, (s, e) in enumerate(self.ranges):
            shapes = expected_shapes(int(self.offsets[e] - self.offsets[s]), self.k, self.mode)
            for name in self.arrays:
                path = os.path.join(chunk_dir(self.path, c), f"{name}.npy")
                problem = npy_problem(path, shapes[name], self.dtypes[name])
                if problem:
                    raise KDNMTError(
                        f"teacher cache {self.path!r} is damaged: {os.path.relpath(path, self.path)} "
                        f"{problem}. Delete that chunk directory and rerun `kd-nmt cache-teacher` "
                        "with the same arguments to rebuild it"
                    )
        self._maps = {}
        self.check_contents()

    def check_contents(self, rows_per_chunk=SAMPLE_ROWS):
        """Cheap checks of what the arrays hold, on a few rows of every chunk (its first, last and
        evenly spaced ones): ids and gold targets in ``[0, V)``, finite log-probs ``<= 0`` whose
        kept mass is at most 1 (and 1 where every id is kept, or the rest class completes it), a
        sample cache's counts summing to its draws. Garbage of the right size used to train
        silently against a wrong teacher; an id out of range ended in a traceback."""
        damaged = f"teacher cache {self.path!r} is damaged"
        fix = "delete that chunk directory and rerun `kd-nmt cache-teacher` with the same arguments"
        for c, (s, e) in enumerate(self.ranges):
            n = int(self.offsets[e] - self.offsets[s])
            if not n:
                continue
            picks = np.unique(np.linspace(0, n - 1, num=min(n, rows_per_chunk)).round().astype(np.int64))
            maps = self._chunk(c)
            where = f"{os.path.relpath(chunk_dir(self.path, c), self.path)}"
            for name in ("ids", "target"):
                values = np.asarray(maps[name][picks], dtype=np.int64)
                bad = values[(values < 0) | (values >= self.vocab_size)]
                if bad.size:
                    raise KDNMTError(f"{damaged}: {where}/{name}.npy holds id {int(bad[0])} outside the "
                                     f"{self.vocab_size}-symbol dictionary; {fix}")
            logp = np.asarray(maps["logp"][picks], dtype=np.float64)
            used = np.asarray(maps["count"][picks]) > 0 if self.mode == "sample" else np.ones_like(logp, dtype=bool)
            if not np.isfinite(logp[used]).all() or (logp[used] > LOGP_TOLERANCE).any():
                raise KDNMTError(f"{damaged}: {where}/logp.npy holds values that are not log-probabilities "
                                 f"(NaN, infinite or > 0); {fix}")
            kept = np.where(used, logp, -np.inf)
            mass = np.logaddexp.reduce(kept, axis=-1)
            complete = self.k >= self.vocab_size and self.mode == "topk"
            if self.mode == "topk-tail" and self.temperature == 1.0:
                mass = np.logaddexp(mass, np.asarray(maps["rest"][picks], dtype=np.float64))
                complete = True
            if (mass > LOGP_TOLERANCE).any() or (complete and (np.abs(mass) > LOGP_TOLERANCE).any()):
                raise KDNMTError(f"{damaged}: {where}/logp.npy: the kept probabilities sum to "
                                 f"{float(np.exp(mass).max() if (mass > 0).any() else np.exp(mass).min()):.4g}, "
                                 f"not {'1' if complete else 'at most 1'}; {fix}")
            if self.mode == "sample":
                draws = np.asarray(maps["count"][picks], dtype=np.int64).sum(-1)
                if (draws != int(self.meta["draws"])).any():
                    raise KDNMTError(f"{damaged}: {where}/count.npy: counts sum to {int(draws.min())}, "
                                     f"not the cache's {self.meta['draws']} draws; {fix}")

    def __getstate__(self):  # memory maps are reopened in each process
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    @property
    def n_sentences(self):
        return len(self.offsets) - 1

    def _chunk(self, c):
        maps = self._maps.get(c)
        if maps is None:
            d = chunk_dir(self.path, c)
            maps = {name: np.load(os.path.join(d, f"{name}.npy"), mmap_mode="r") for name in self.arrays}
            self._maps[c] = maps
        return maps

    def lengths(self, sentence_ids):
        sentence_ids = np.asarray(sentence_ids, dtype=np.int64)
        return self.offsets[sentence_ids + 1] - self.offsets[sentence_ids]

    def rows(self, sentence_ids):
        """Cached rows of ``sentence_ids``, concatenated in that order.

        Returns ``(lengths [B], {name: array [sum(lengths), ...]})``, one per array of the mode.
        """
        sentence_ids = np.asarray(sentence_ids, dtype=np.int64)
        if sentence_ids.size and (sentence_ids.min() < 0 or sentence_ids.max() >= self.n_sentences):
            raise KDNMTError(
                f"sentence id {int(sentence_ids.max())} is outside teacher cache {self.path!r} "
                f"({self.n_sentences} sentences of split {self.meta['split']!r})"
            )
        starts = self.offsets[sentence_ids]
        lengths = self.offsets[sentence_ids + 1] - starts
        total = int(lengths.sum())
        # global row of every output row: starts[b] + 0 .. lengths[b]-1
        rows = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        chunks = np.searchsorted(self.chunk_rows, rows, side="right") - 1
        shapes = expected_shapes(total, self.k, self.mode)
        out = {name: np.empty(shapes[name], dtype=self.dtypes[name]) for name in self.arrays}
        for c in np.unique(chunks):
            sel = np.nonzero(chunks == c)[0]
            local = rows[sel] - self.chunk_rows[c]
            maps = self._chunk(int(c))
            for name in self.arrays:
                out[name][sel] = maps[name][local]
        return lengths, out


def read_meta(path):
    meta_path = os.path.join(path, "meta.json")
    if not os.path.isdir(path):
        raise KDNMTError(f"teacher cache not found: {path!r} (build it with `kd-nmt cache-teacher`)")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise KDNMTError(
            f"{path!r} is not a teacher cache: no meta.json (build one with `kd-nmt cache-teacher`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise KDNMTError(f"teacher cache {path!r}: cannot read meta.json ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise KDNMTError(
            f"{path!r} is not a version-{VERSION} teacher cache (format {meta.get('format')!r}, "
            f"version {meta.get('version')!r}); rebuild it with this kd_nmt's `kd-nmt cache-teacher`"
        )
    return meta
