"""The command-line parser every ``kd-nmt`` command builds on.

argparse prints a usage block and exits on a bad option; here a bad option is a ``KDNMTError``
like every other user error, so ``kd-nmt`` prints it as its one line ``kd-nmt: error: ...``
(exit status 2) and the message names the ``--help`` to read.
"""
import argparse
import math

from kd_nmt.errors import KDNMTError


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are KDNMTErrors; ``--help`` keeps the epilog's layout."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise KDNMTError(f"{message} (see `{self.prog} --help`)")

    def _get_value(self, action, arg_string):
        # float('nan') and float('inf') parse: a NaN length penalty made every n-best score NaN
        # and the n-best JSONL invalid JSON. No option of ours means anything at NaN or infinity.
        value = super()._get_value(action, arg_string)
        if isinstance(value, float) and not math.isfinite(value):
            option = action.option_strings[-1] if action.option_strings else action.dest
            raise KDNMTError(f"{option} must be a finite number, got {arg_string!r} (see `{self.prog} --help`)")
        return value


def check_minimums(*checks):
    """One KDNMTError for the first ``(option, value, lowest allowed)`` below its bound."""
    for option, value, low in checks:
        if value is not None and value < low:
            raise KDNMTError(f"{option} must be at least {low}, got {value}")
