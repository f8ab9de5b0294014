"""Minimum Bayes risk (MBR) selection: the n-best hypothesis the other hypotheses agree with most.

No reference is needed. Each hypothesis ``h_i`` of a source's n-best list is scored by its
expected utility against the *other* hypotheses, used as pseudo-references:

    EU(h_i) = Σ_{j≠i} w_j · U(h_i, h_j) / Σ_{j≠i} w_j

``U`` is sacreBLEU's sentence chrF or smoothed sentence BLEU (``smooth_method="exp"``, effective
order, as Seq-Inter's ``select.py``), with ``h_i`` as the hypothesis and ``h_j`` as the reference.
The weights are uniform, or ``softmax(model scores)`` when scores are given (the teacher's
own belief in each pseudo-reference). A hypothesis is never its own reference: with itself
included every hypothesis would gain a perfect-match term, which favours none but dilutes the
others. Ties go to the hypothesis listed first (the teacher's preference); a one-element list
selects it with expected utility 0.

Pure functions on strings: detokenize before calling (``kd_nmt.common.detokenize``) when the
hypotheses are subword pieces — ``MBRSelector`` does that for ``kd-nmt relabel``.
"""
import math

from kd_nmt.common.detokenize import detokenize
from kd_nmt.errors import KDNMTError

UTILITIES = ("chrf", "bleu")


def _scorer(utility):
    from sacrebleu.metrics import BLEU, CHRF

    if utility == "chrf":
        return CHRF()
    if utility == "bleu":
        return BLEU(effective_order=True, smooth_method="exp")
    raise KDNMTError(f"unknown MBR utility {utility!r}; choose from {', '.join(UTILITIES)}")


def pseudo_reference_weights(n, scores=None):
    """Weights of the ``n`` hypotheses as pseudo-references: uniform, or softmax of ``scores``."""
    if scores is None:
        return [1.0] * n
    if len(scores) != n:
        raise KDNMTError(f"{len(scores)} scores for {n} hypotheses")
    top = max(scores)  # subtracting the maximum keeps exp() from overflowing
    exp = [math.exp(s - top) for s in scores]
    total = sum(exp)
    return [e / total for e in exp]


def expected_utilities(hypotheses, utility="chrf", scores=None, scorer=None):
    """``EU(h_i)`` for every hypothesis (module docstring), in list order; ``[0.0]`` for one."""
    n = len(hypotheses)
    weights = pseudo_reference_weights(n, scores)
    scorer = scorer or _scorer(utility)
    result = []
    for i, hyp in enumerate(hypotheses):
        total = mass = 0.0
        for j, ref in enumerate(hypotheses):
            if j != i:
                total += weights[j] * scorer.sentence_score(hyp, [ref]).score
                mass += weights[j]
        # mass is 0 only for a single hypothesis (or all other weights underflowed to 0)
        result.append(total / mass if mass > 0 else 0.0)
    return result


def best_index(values):
    """Index of the highest value; the first one on ties."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def mbr_select(hypotheses, utility="chrf", scores=None):
    """``(index, expected utilities)`` of the MBR choice among ``hypotheses`` (strings).

    ``scores``: the model's (log-)scores of the hypotheses; given, the pseudo-references are
    weighted by their softmax, else uniformly. An empty list gives ``(None, [])``.
    """
    if not hypotheses:
        return None, []
    values = expected_utilities(hypotheses, utility, scores)
    return best_index(values), values


class MBRSelector:
    """MBR over token-space n-best lists for ``kd-nmt relabel --select-by-mbr``.

    Mirrors ``select.Selector``: ``scores`` gives the expected utility of each hypothesis
    (computed on detokenized text, ``--remove-bpe``), ``best`` the selected index.
    """

    def __init__(self, utility="chrf", remove_bpe="sentencepiece", weighted=False):
        self.metric = utility
        self.remove_bpe = remove_bpe
        self.weighted = weighted
        self._scorer = _scorer(utility)

    def scores(self, hypotheses, model_scores=None):
        texts = [detokenize(h, self.remove_bpe) for h in hypotheses]
        weights_from = model_scores if self.weighted else None
        return expected_utilities(texts, self.metric, weights_from, self._scorer)

    @staticmethod
    def best(values):
        return best_index(values)
