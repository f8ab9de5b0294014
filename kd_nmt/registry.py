"""Everything the plugin registers with fairseq, imported once by ``kd_nmt/__init__``."""
import sys

from kd_nmt.checkpoint import install_fairseq_patches
from kd_nmt.distributed import install_distributed_patches
from kd_nmt.errors import KDNMTError
from kd_nmt.precision import install_bf16_patches

install_fairseq_patches()
install_distributed_patches()
install_bf16_patches()

from kd_nmt import architectures, criterions, tasks  # noqa: F401,E402  (fairseq registrations)


def _excepthook(exc_type, exc, tb, _previous=sys.excepthook):
    """Print a KDNMTError raised inside fairseq-train/-generate as one line, not a traceback."""
    if issubclass(exc_type, KDNMTError):
        print(f"kd_nmt: error: {exc}", file=sys.stderr)
        return
    _previous(exc_type, exc, tb)


sys.excepthook = _excepthook
