"""How far the teacher's own translations of the training sources are from the gold targets.

Sequence-level KD replaces each gold target by the teacher's beam output: the further that
output is from the gold (BLEU/chrF of teacher output against the reference, on training
sources the teacher has seen), the more Seq-KD changes the data. The teacher's beam-vs-greedy
gap says how much search adds to it. Decoded with fairseq's SequenceGenerator through the
bench's engine (``kd_nmt.bench.decode``), scored with sacreBLEU (``kd_nmt.bench.metrics``) on
the first ``n`` sentences of the sample, which is already a random draw of the split.
"""
from fairseq.data import LanguagePairDataset

from kd_nmt.bench.decode import Detokenizer, FairseqEngine
from kd_nmt.bench.metrics import corpus_scores
from kd_nmt.bench.timed_decoding import translate_all


def head(dataset, n):
    """The first ``n`` pairs of ``dataset`` as a dataset of their own."""
    n = min(n, len(dataset))
    sources = [dataset.src[i] for i in range(n)]
    targets = [dataset.tgt[i] for i in range(n)]
    return LanguagePairDataset(sources, [len(s) for s in sources], dataset.src_dict,
                               targets, [len(t) for t in targets], dataset.tgt_dict,
                               left_pad_source=dataset.left_pad_source, left_pad_target=dataset.left_pad_target)


def teacher_vs_gold(model, task, dataset, references, beam=5, max_tokens=4000, progress=True):
    """``{"greedy": {"bleu", "chrf"}, "beam": {...}, "beam": beam, "sentences": n}`` of the
    teacher's greedy and beam output against ``references`` (one per pair of ``dataset``)."""
    detok = Detokenizer()
    out = {"beam_size": beam, "sentences": len(dataset)}
    for name, size in (("greedy", 1), ("beam", beam)):
        engine = FairseqEngine(model, task, dataset, beam=size)
        result = translate_all(engine, detok, max_tokens, 0, progress=progress,
                               desc=f"teacher {'greedy' if size == 1 else f'beam {size}'}")
        scores = corpus_scores(result.hypotheses, references[: len(dataset)])
        out[name] = {"bleu": scores["bleu"], "chrf": scores["chrf"]}
    return out
