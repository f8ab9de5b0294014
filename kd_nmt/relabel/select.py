"""Seq-Inter: pick, among the teacher's n-best, the hypothesis closest to the reference.

Kim & Rush (2016)'s sequence-level interpolation keeps the beam hypothesis with the highest
similarity to the gold target. Similarity is sacreBLEU's smoothed sentence BLEU
(``smooth_method="exp"``, effective order) or sentence chrF, computed on detokenized text:
hypothesis and reference (both in the dictionaries' token space) are detokenized the same
way (``--remove-bpe``, default sentencepiece: pieces joined, ``▁`` → space). Ties go to the
hypothesis the teacher scored higher (earlier in the n-best list).
"""
from kd_nmt.errors import KDNMTError
from kd_nmt.common.detokenize import detokenize

METRICS = ("bleu", "chrf")


class Selector:
    def __init__(self, metric="bleu", remove_bpe="sentencepiece"):
        from sacrebleu.metrics import BLEU, CHRF

        if metric not in METRICS:
            raise KDNMTError(f"unknown --select-by-reference {metric!r}; choose from {', '.join(METRICS)}")
        self.metric = metric
        self.remove_bpe = remove_bpe
        self._scorer = BLEU(effective_order=True, smooth_method="exp") if metric == "bleu" else CHRF()

    def scores(self, hypotheses, reference):
        """Metric score of each hypothesis (token strings) against ``reference`` (token string)."""
        ref = detokenize(reference, self.remove_bpe)
        return [
            self._scorer.sentence_score(detokenize(h, self.remove_bpe), [ref]).score
            for h in hypotheses
        ]

    @staticmethod
    def best(scores):
        """Index of the highest score; the first one on ties (the teacher's preference)."""
        return max(range(len(scores)), key=lambda i: (scores[i], -i))
