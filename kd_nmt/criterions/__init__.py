"""fairseq criterions registered by kd_nmt."""
from kd_nmt.criterions import word_kd  # noqa: F401
from kd_nmt.criterions import hybrid_kd  # noqa: F401  (after word_kd: it subclasses it)
