"""kd_nmt's two stdlib-only helpers for the data/ builders, without the kd_nmt package.

``kd_nmt/__init__`` imports fairseq; the builders here are stdlib-only (data/README.md). Both
files below import nothing but the standard library, so they are loaded from their paths:

* ``report_errors(prog, func, *args)`` (``kd_nmt/errors.py``): an OSError — full disk,
  read-only folder, a file where a folder is expected — is one line ``PROG: error: <path>:
  <what> (<what to do>)`` and status 2, Ctrl-C one line and status 130, as for every kd-nmt
  command; ``os_error_in(text)``: the OSError a Python child process died of.
* ``atomic_write`` / ``atomic_file`` (``kd_nmt/common/atomic.py``): a file written to a
  temporary sibling, fsynced, renamed into place; nothing left of it if the write fails.
"""
import importlib.util
from pathlib import Path

_KD_NMT = Path(__file__).resolve().parents[1] / "kd_nmt"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_errors = _load("data._kd_nmt_errors", _KD_NMT / "errors.py")
_atomic = _load("data._kd_nmt_atomic", _KD_NMT / "common" / "atomic.py")

report_errors = _errors.report_errors
os_error_in = _errors.os_error_in
atomic_write = _atomic.atomic_write
atomic_file = _atomic.atomic_file
