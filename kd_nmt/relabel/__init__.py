"""Sequence-level KD data: a teacher's beam-search translations of a corpus (``kd-nmt relabel``).

* ``cli``: the command, its checks and the chunked, resumable, shardable driver;
* ``fairseq_backend``: fairseq's SequenceGenerator (1-best identical to ``fairseq-generate``);
* ``ct2_backend``: CTranslate2 (teacher converted once, int8 by default, cached);
* ``chunks``: the atomic, manifest-checked work directory ``OUT.chunks/``;
* ``select``: Seq-Inter (n-best hypothesis with the best sentence BLEU/chrF against the gold);
* ``mbr``: the n-best hypothesis the others agree with most (``--select-by-mbr``);
* ``keep_nbest``: the top N hypotheses per source, each source N times (``--keep-nbest N``);
* ``binarize``: relabeled text → a data-bin line-aligned with the gold one.

See docs/relabel.md.
"""
