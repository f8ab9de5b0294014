"""The one exception type kd_nmt raises for user errors (bad input, missing files, mismatches).

The CLI prints its message alone, without a traceback: it names the problem and what to do.
"""


class KDNMTError(Exception):
    """A user-facing error with a complete, actionable message."""
