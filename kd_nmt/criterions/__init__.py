"""fairseq criterions registered by kd_nmt."""
from kd_nmt.criterions import word_kd  # noqa: F401
