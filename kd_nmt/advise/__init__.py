"""``kd-nmt advise``: cheap measurements of a distillation setting and a fitted guess of which KD
method gains most (``features``, ``alignment``, ``teacher_forcing``, ``teacher_output``,
``architecture``, ``model``, ``cli``; docs/advise.md)."""
