"""The cheap filters: pure functions of one (source, hypothesis[, reference]) line.

Every function returns the line's *score* for its filter; ``cli`` compares it with the
threshold the user chose. Lines are token strings (the dictionaries' token space, e.g.
sentencepiece pieces); lengths are counted in those tokens.
"""


def is_empty(source, hypothesis):
    """1 when either side has no token (an empty pair teaches nothing, or teaches silence)."""
    return int(not source.split() or not hypothesis.split())


def max_repeats(tokens, max_n=4):
    """Most consecutive copies of any 1- to ``max_n``-gram in ``tokens`` (1 = no repetition).

    A degenerate beam output loops: ``▁the ▁the ▁the`` (unigram, 3 copies) or ``a b a b a b``
    (bigram, 3 copies). Natural text rarely repeats an n-gram three times in a row.
    """
    tokens = tokens.split() if isinstance(tokens, str) else list(tokens)
    best = 1 if tokens else 0
    for n in range(1, max_n + 1):
        for start in range(n):  # every phase of the n-gram grid
            run, prev = 1, None
            for i in range(start, len(tokens) - n + 1, n):
                gram = tokens[i:i + n]
                run = run + 1 if gram == prev else 1
                prev = gram
                best = max(best, run)
    return best


def length_ratio(source, hypothesis):
    """Hypothesis tokens / source tokens (0 for an empty hypothesis; inf for an empty source)."""
    s, h = len(source.split()), len(hypothesis.split())
    if s == 0:
        return float("inf") if h else 0.0
    return h / s


def duplicates(sources, hypotheses):
    """For each line, the earlier line number (0-based) with the same (source, hypothesis), or None.

    The first occurrence is kept; its later exact copies point at it.
    """
    first, result = {}, []
    for i, pair in enumerate(zip(sources, hypotheses)):
        result.append(first.get(pair))
        first.setdefault(pair, i)
    return result


class ChrfScorer:
    """Sentence chrF (sacreBLEU) of a hypothesis against the gold reference, on detokenized text."""

    def __init__(self, remove_bpe="sentencepiece"):
        from sacrebleu.metrics import CHRF

        from kd_nmt.common.detokenize import detokenize

        self._chrf = CHRF()
        self._detok = lambda text: detokenize(text, remove_bpe)

    def __call__(self, hypothesis, reference):
        return self._chrf.sentence_score(self._detok(hypothesis), [self._detok(reference)]).score
