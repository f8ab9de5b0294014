"""``kd-nmt bench`` and ``kd-nmt plot``: score, time and size fairseq checkpoints.

* :mod:`kd_nmt.bench.decode`  — token-batched greedy/beam decoding of a data-bin split with
  fairseq's ``SequenceGenerator`` (order restored, no line dropped), detokenization.
* :mod:`kd_nmt.bench.metrics` — sacreBLEU BLEU/chrF with signatures, length buckets, paired
  bootstrap resampling (sacreBLEU's own ``PairedTest``).
* :mod:`kd_nmt.bench.cli`     — the ``kd-nmt bench`` command: CSV, Markdown and JSON reports.
* :mod:`kd_nmt.bench.plot`    — the ``kd-nmt plot`` command: matplotlib figures from bench CSVs
  and training logs.

See docs/bench.md for the usage and the CSV column convention.
"""
