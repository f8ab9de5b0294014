#!/usr/bin/env python3
"""Stop a recipe on a mistyped knob: recipes/lib.sh runs this before any work.

    python scripts/check_knobs.py              # reads the environment and recipes/*.sh

The recipes are configured by environment variables (their "knobs": SEEDS, STUDENT_UPDATES, ...).
A mistyped one (``STUDENT_UPDATE=300``) used to be ignored silently: the recipe ran with its
default. Here every variable of the environment that is *not* a knob but reads like one — close
to a knob's name (difflib ratio >= 0.8) — is one error line naming it, the knob it is probably
meant as, and the knobs the recipes read; exit status 2. The knobs are the upper-case variables
any recipe in recipes/ reads (``${NAME...}`` or ``$NAME``), so a knob of one recipe passes through
another (multi30k.sh runs multi30k_teacher.sh), and those kd_nmt/recipes/ reads for them (the keys
of each module's ``KNOBS`` table: DIVERGENCE, CACHE_TOPK, NBEST, ...). Standard library only, and
kd_nmt/recipes/ is read, not imported: it runs in a blink.
"""
import ast
import difflib
import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(REPO, "recipes")
PLAN = os.path.join(REPO, "kd_nmt", "recipes")
VARIABLE = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")
CUTOFF = 0.8


def planned_knobs(folder=PLAN):
    """The keys of the module-level ``KNOBS = {...}`` table of every module in ``folder``."""
    names = set()
    for path in glob.glob(os.path.join(folder, "*.py")):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in tree.body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                    and any(isinstance(t, ast.Name) and t.id == "KNOBS" for t in node.targets)):
                names.update(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    return names


def known_knobs(recipes=RECIPES, plan=PLAN):
    """Every upper-case variable a recipe reads, and every knob kd_nmt/recipes reads."""
    names = planned_knobs(plan)
    for path in glob.glob(os.path.join(recipes, "*.sh")):
        with open(path, encoding="utf-8") as f:
            names.update(VARIABLE.findall(f.read()))
    return names


def mistyped(environ, known):
    """``[(variable, the knob it is close to)]`` for environment variables that look like a knob."""
    found = []
    for name in sorted(environ):
        if name in known or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=CUTOFF)
        if close:
            found.append((name, close[0]))
    return found


def main(argv=None):
    known = known_knobs()
    bad = mistyped(os.environ, known)
    if bad:
        name, meant = bad[0]
        print(f"recipe: error: unknown knob {name}={os.environ[name]!r} (did you mean {meant}?); the recipes "
              f"read: {' '.join(sorted(known))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
