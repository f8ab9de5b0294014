"""Every line translated in token-budget batches and timed; latency of single sentences.

Works with any engine (``kd_nmt.bench.decode.FairseqEngine``, ``kd_nmt.bench.ct2_engine.CT2Engine``)
that has

* ``sizes``: each line's source length in tokens, EOS included, after truncation;
* ``translate(indices) -> (pieces, seconds, n_truncated)``: the output pieces of those lines (a
  space-separated string each, in the order of ``indices``), the wall time of the engine's own
  call (no data preparation, no detokenization) and how many of the sources were truncated.

Throughput: sentences are sorted by length and packed into ``max_tokens`` batches (at most
``max_sentences`` each), after one untimed warm-up on the first batch (allocator growth, kernel
selection), and put back in corpus order. Latency: each of the first lines alone, batch 1, after
one untimed warm-up sentence. No torch import here, so a CTranslate2-only process can use it.
"""
import sys
from dataclasses import dataclass, field

from kd_nmt.common.batches import make_batches


@dataclass
class DecodeResult:
    pieces: list = field(default_factory=list)  # subword output, corpus order
    hypotheses: list = field(default_factory=list)  # detokenized output, corpus order
    n_tokens: int = 0  # generated target tokens, EOS excluded
    seconds: float = 0.0  # wall time of the engine's calls only
    n_truncated: int = 0  # sources cut to the model's max_source_positions


def translate_all(engine, detok, max_tokens=4000, max_sentences=0, progress=True, desc=None):
    """Every line translated (``detok`` turns pieces into text; None keeps the pieces)."""
    from tqdm import tqdm

    n = len(engine.sizes)
    result = DecodeResult(pieces=[None] * n, hypotheses=[None] * n)
    if not n:
        return result
    batches = make_batches(engine.sizes, max_tokens, max_sentences)
    engine.translate(batches[0])  # warm-up, not timed
    with tqdm(total=n, desc=desc, unit="sent", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for indices in batches:
            pieces, seconds, truncated = engine.translate(indices)
            result.seconds += seconds
            result.n_truncated += truncated
            for i, line in zip(indices, pieces):
                result.pieces[i] = line
                result.n_tokens += len(line.split())
                result.hypotheses[i] = detok(line) if detok is not None else line
            bar.update(len(indices))
    assert all(h is not None for h in result.hypotheses), "a line was not decoded"
    return result


def latencies(engine, n_lines):
    """Seconds per sentence translated alone (batch 1), for the first ``n_lines`` lines."""
    n = min(n_lines, len(engine.sizes))
    if not n:
        return []
    engine.translate([0])  # warm-up, not timed
    return [engine.translate([i])[1] for i in range(n)]


def percentile(values, q):
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default), None if empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(xs) - 1)
    return xs[low] + (xs[high] - xs[low]) * (pos - low)
