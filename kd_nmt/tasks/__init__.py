"""fairseq tasks registered by kd_nmt."""
from kd_nmt.tasks import kd_translation  # noqa: F401  (registers kd_translation)
