"""Text-complexity noise for the study: pure, seeded, deterministic per line.

Words are whitespace tokens (``line.split()``); noised lines are re-joined with single spaces.
Three kinds (each takes a ``random.Random``; none mutates its input):

* ``word_dropout(words, rate, rng)``: every word is dropped independently with probability
  ``rate``; if all would go, one word (chosen by ``rng``) is kept, so no line becomes empty.
* ``local_shuffle(words, rate, window=3, rng)``: the local permutation of Lample et al. (2018,
  "Unsupervised MT using monolingual corpora only"): word ``i`` gets the sort key
  ``i + U(0, window)`` and the words are stably sorted by key, so every word moves at most
  ``window - 1`` positions.  ``rate`` is applied **per position**: each word independently gets
  the random offset with probability ``rate`` (the others keep key ``i``), so ``rate=1`` is
  exactly Lample's noise (``window=3`` <=> their k=3, alpha=3), ``rate=0`` is the identity, and
  the constraint ``|new_pos - old_pos| <= window - 1`` holds for any rate (keys stay in
  ``[i, i + window)``).
* ``word_replace(words, rate, rng, vocab)``: every word is replaced independently with
  probability ``rate`` by a word drawn from ``vocab``.  ``vocab`` is either a sequence (drawn
  uniformly, so a list with repetitions is frequency-weighted) or a :class:`Vocab`, which draws
  by unigram frequency. A draw equal to the original word is retried (up to 10 times).

Per-line determinism: line ``i`` of a file uses ``random.Random(line_seed(seed, kind, i))``
where ``line_seed`` is an md5 of ``"{seed}\\t{kind}\\t{i}"``, so a line's noise does not depend on
the other lines, the platform or ``PYTHONHASHSEED``.  ``noise_file`` never changes the line
count, leaves empty / whitespace-only lines untouched, copies lines unchanged when ``rate`` is 0
and never outputs an empty line for a non-empty input.

CLI::

    python -m data.noise --kind dropout --rate 0.1 --seed 1 IN OUT
    python -m data.noise --kind shuffle --rate 1.0 --window 3 --seed 1 IN OUT
    python -m data.noise --kind replace --rate 0.1 --seed 1 [--vocab-from FILE] IN OUT

For ``replace`` the vocabulary (unigram counts) comes from ``--vocab-from`` (default: IN).
"""
from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
import random
import sys
from collections import Counter
from typing import Iterable, List, Optional, Sequence, Union

from data.kd_nmt_stdlib import atomic_write, report_errors

KINDS = ("dropout", "shuffle", "replace")


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")


def word_dropout(words: Sequence[str], rate: float, rng: random.Random) -> List[str]:
    """Drop each word with probability ``rate``; keep at least one word of a non-empty input."""
    _check_rate(rate)
    words = list(words)
    if rate == 0 or not words:
        return words
    keep = [w for w in words if rng.random() >= rate]
    if not keep:
        keep = [words[rng.randrange(len(words))]]
    return keep


def local_shuffle(words: Sequence[str], rate: float = 1.0, window: int = 3,
                  rng: Optional[random.Random] = None) -> List[str]:
    """Lample et al. (2018) local shuffle: keys ``i + U(0, window)`` for a ``rate`` fraction of
    positions (chosen independently), stable sort; each word moves at most ``window - 1``."""
    _check_rate(rate)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if rng is None:
        raise ValueError("local_shuffle needs an rng")
    words = list(words)
    if rate == 0 or window == 1 or len(words) < 2:
        return words
    keys = []
    for i in range(len(words)):
        off = rng.uniform(0, window) if rng.random() < rate else 0.0
        if off >= window:  # uniform(a, b) may return b; keep keys in [i, i + window)
            off = window - 1e-9
        keys.append((i + off, i))
    return [words[i] for _, i in sorted(keys)]


class Vocab:
    """Unigram vocabulary for :func:`word_replace`: sorted types with cumulative counts."""

    def __init__(self, counts: Union[Counter, dict]):
        items = sorted((w, c) for w, c in counts.items() if c > 0)
        if not items:
            raise ValueError("empty vocabulary")
        self.words = [w for w, _ in items]
        self.cum = list(itertools.accumulate(c for _, c in items))

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> "Vocab":
        c: Counter = Counter()
        for line in lines:
            c.update(line.split())
        return cls(c)

    @classmethod
    def from_file(cls, path: str) -> "Vocab":
        with open(path, encoding="utf-8") as f:
            return cls.from_lines(f)

    def __len__(self) -> int:
        return len(self.words)

    def sample(self, rng: random.Random) -> str:
        x = rng.random() * self.cum[-1]
        return self.words[bisect.bisect_right(self.cum, x)]


def _draw(vocab, rng: random.Random) -> str:
    if isinstance(vocab, Vocab):
        return vocab.sample(rng)
    return vocab[rng.randrange(len(vocab))]


def word_replace(words: Sequence[str], rate: float, rng: random.Random,
                 vocab: Union[Vocab, Sequence[str]]) -> List[str]:
    """Replace each word with probability ``rate`` by a random vocabulary word."""
    _check_rate(rate)
    words = list(words)
    if rate == 0 or not words:
        return words
    if vocab is None or len(vocab) == 0:
        raise ValueError("word_replace needs a non-empty vocab")
    out = []
    for w in words:
        if rng.random() < rate:
            new = _draw(vocab, rng)
            tries = 0
            while new == w and tries < 10 and len(vocab) > 1:
                new = _draw(vocab, rng)
                tries += 1
            out.append(new)
        else:
            out.append(w)
    return out


def line_seed(seed: int, kind: str, index: int) -> int:
    """Seed for line ``index`` (0-based): md5 of ``"{seed}\\t{kind}\\t{index}"``."""
    return int(hashlib.md5(f"{seed}\t{kind}\t{index}".encode("utf-8")).hexdigest()[:16], 16)


def noise_line(line: str, kind: str, rate: float, rng: random.Random,
               vocab=None, window: int = 3) -> str:
    """Noise one line (no trailing newline). Empty/blank lines and ``rate == 0`` pass unchanged."""
    if kind not in KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {KINDS}")
    words = line.split()
    if not words or rate == 0:
        return line
    if kind == "dropout":
        new = word_dropout(words, rate, rng)
    elif kind == "shuffle":
        new = local_shuffle(words, rate, window, rng)
    else:
        new = word_replace(words, rate, rng, vocab)
    return " ".join(new)


def noise_lines(lines: Iterable[str], kind: str, rate: float, seed: int,
                vocab=None, window: int = 3) -> List[str]:
    """Noise a list of lines (without newlines); line ``i`` uses ``line_seed(seed, kind, i)``.

    For ``replace`` without a ``vocab`` the replacements are drawn from the unigram distribution
    of ``lines`` themselves.
    """
    _check_rate(rate)
    if kind == "replace" and rate > 0 and vocab is None:
        lines = list(lines)
        vocab = Vocab.from_lines(lines)
    out = []
    for i, line in enumerate(lines):
        rng = random.Random(line_seed(seed, kind, i))
        out.append(noise_line(line, kind, rate, rng, vocab, window))
    return out


def noise_file(in_path: str, out_path: str, kind: str, rate: float, seed: int,
               window: int = 3, vocab_from: Optional[str] = None) -> int:
    """Write a noised copy of ``in_path`` to ``out_path``; returns the line count (unchanged).

    For ``replace`` the vocabulary is the unigram distribution of ``vocab_from`` (default
    ``in_path``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {KINDS}")
    _check_rate(rate)
    with open(in_path, encoding="utf-8", newline="") as f:
        raw = f.read()
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
        trailing = True
    else:
        trailing = False
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    vocab = Vocab.from_file(vocab_from) if kind == "replace" and rate > 0 and vocab_from else None
    out = noise_lines(lines, kind, rate, seed, vocab, window)  # (default vocab: these lines)
    atomic_write(out_path, "\n".join(out) + ("\n" if trailing else ""))  # whole or absent
    return len(out)


def main(argv=None) -> int:
    """``python -m data.noise``: its status; an OSError (full disk, read-only) is one line."""
    return report_errors("noise", _main, argv)


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.noise",
                                 description="Add seeded word-level noise to a text file, line by line.")
    ap.add_argument("--kind", required=True, choices=KINDS)
    ap.add_argument("--rate", type=float, required=True,
                    help="per-word probability (dropout, replace) / per-position probability (shuffle)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--window", type=int, default=3, help="shuffle window: words move < window positions")
    ap.add_argument("--vocab-from", default=None, help="replace: vocabulary file (default: IN)")
    ap.add_argument("input", metavar="IN")
    ap.add_argument("output", metavar="OUT")
    a = ap.parse_args(argv)
    try:
        n = noise_file(a.input, a.output, a.kind, a.rate, a.seed, a.window, a.vocab_from)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.kind} rate={a.rate} seed={a.seed}: {n} lines -> {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
