"""Filtering a relabeled corpus (``kd-nmt filter``): drop bad teacher outputs, keep alignment.

* ``checks``: the cheap per-line filters (empty, repeated n-grams, length ratio, exact
  duplicates, sentence chrF against the gold target), pure functions;
* ``backward``: a target->source model's length-normalised log P(source | hypothesis);
* ``cli``: the command, its checks, the decision file and the counts.

See docs/filter.md.
"""
