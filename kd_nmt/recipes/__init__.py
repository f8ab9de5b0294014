"""What the names in the recipes mean, in tested Python; ``recipes/lib.sh`` only chains commands.

``recipes/lib.sh`` asks ``scripts/recipe_plan.py`` (the command line of this package) what to run
and runs it: the training options of a student method, the Seq-KD data variant a method trains
on, the paths of a grid. Each module holds one vocabulary:

* ``methods``: the student methods (``baseline``, ``word_kd``, ``seq_kd+nbest4``, ``hybrid_kd_lr50``,
  ...): the data-bin each trains on, its ``fairseq-train`` options and its teacher (none, the live
  ``--teacher-path``, or a ``--teacher-cache`` of the data-bin it trains on);
* ``variants``: the Seq-KD data variants (``+nbestN``, ``+mbrchrf``/``+mbrbleu``, ``+monoN``,
  ``+filter``): how the teacher decodes, what is appended or filtered, the files and the data-bin;
  and the variant the knobs ``NBEST``, ``MBR``, ``MONO``, ``FILTER`` ask for;
* ``grid``: a grid of (size, method) students: their folders, the shrunk-teacher start of the
  ``_dN`` sizes, the bench's names and baseline.

The knobs (environment variables) each module reads are its ``KNOBS`` table (name -> (default,
meaning)); ``scripts/check_knobs.py`` counts them among the knobs the recipes read, so a mistyped
one stops a recipe. Standard library only (no torch, no fairseq): ``scripts/recipe_plan.py`` loads
this package without the plugin and answers in milliseconds. A name or knob value that means
nothing is a ``KDNMTError`` naming what is known (the tool's one error line, exit status 2).
"""
import os

from kd_nmt.errors import KDNMTError


def knob(knobs, name, environ=None):
    """The knob ``name`` of the table ``knobs``: the environment's value, or its default when unset
    or empty (as bash's ``${NAME:-default}``)."""
    environ = os.environ if environ is None else environ
    return environ.get(name) or knobs[name][0]


def count_knob(knobs, name, environ=None):
    """A knob that is a count (0, 1, 2, ...), as an int; anything else is one error."""
    value = knob(knobs, name, environ)
    if not value.isdigit() or not value.isascii():
        raise KDNMTError(f"{name} must be a whole number >= 0, got {value!r} ({knobs[name][1]})")
    return int(value)


def choice_knob(knobs, name, choices, environ=None):
    """A knob that is one of ``choices``; anything else is one error naming them."""
    value = knob(knobs, name, environ)
    if value not in choices:
        shown = ", ".join(repr(c) if c == "" else c for c in choices)
        raise KDNMTError(f"{name} must be one of {shown}, got {value!r} ({knobs[name][1]})")
    return value
