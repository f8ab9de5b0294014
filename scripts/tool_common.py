"""What the tools in ``scripts/`` share: the repository on ``sys.path`` and the error line.

A tool is run as ``python scripts/NAME.py`` from anywhere: Python then puts ``scripts/`` (not the
repository) on ``sys.path``, so ``data.prepare`` would not import. ``REPO`` is added here, once.

``run_tool`` gives every tool the ``kd-nmt`` contract: a user error (``KDNMTError``, including a
bad option through ``kd_nmt.common.args.ArgumentParser``) prints one line ``NAME: error: ...``
and exits with status 2, and so does an OSError (full disk, read-only folder, a file where a
folder is expected: ``NAME: error: <path>: <what> (<what to do>)``); Ctrl-C is one line and
status 130. Anything else is a bug and keeps its traceback.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from kd_nmt.errors import report_errors  # noqa: E402


def run_tool(prog, main, argv=None):
    """``main(argv)``'s exit status (0 for None), errors as one line (``kd_nmt.errors.report_errors``)."""
    return report_errors(prog, main, sys.argv[1:] if argv is None else argv)
