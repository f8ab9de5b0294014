#!/usr/bin/env python3
"""What recipes/lib.sh runs, from kd_nmt/recipes: lib.sh asks, then only chains the commands.

Each sub-command prints its answer on stdout; an unknown method, variant part or knob value is
one line ``recipe_plan: error: ...`` naming the known ones, exit status 2 (lib.sh then stops).
Argument lists are printed one argument per line (``mapfile -t args <<<"$plan"``); the answers
with several fields (``variant``, ``init``, ``bench-grid``) are bash assignments, every value
quoted (``eval "$plan"`` into the calling function's locals). The knobs come from the
environment (kd_nmt/recipes/*.py: each module's KNOBS). It imports no torch and no fairseq
(kd_nmt's plugin registrations are skipped): milliseconds a call.

  student METHOD --save S --data D --arch A --updates N --teacher T --seqkd B
                      train's arguments: S, the data-bin, A, N, the method's options
  teacher-cache METHOD --data D --teacher T --seqkd B
                      kd-nmt cache-teacher's arguments (CACHE_TOPK > 0 and a word-level
                      method), or nothing
  variant +PARTS --seqkd B --data D
                      the files and options of one Seq-KD data variant (seqkd_data)
  relabel-output OUT_BIN
                      the 1-best text relabel binarizes into OUT_BIN (BASE.train.en)
  variants "METHODS"  the +PARTS of every variant among METHODS, once each
  suffix              the +PARTS the knobs NBEST, MBR, MONO, FILTER ask for
  with-knobs "METHODS"
                      METHODS, seq_kd and word_seq turned into the knobs' variant
  size ARCH           the size name (the arch without transformer_kd_)
  init ARCH --root R  how a student of ARCH starts (layers, init, options)
  bench-grid --root R --teacher T --archs "ARCHS" --methods "METHODS" [--tag KEY=VALUE]
                      names, checkpoints and baseline of a grid's bench
  knobs               the knobs kd_nmt/recipes reads, one per line

example:
  python scripts/recipe_plan.py student word_seq+nbest4 --save work/s --data work/data \\
      --arch transformer_kd_tiny --updates 60 --teacher models/teacher-deen/model.pt \\
      --seqkd work/seqkd-bin
  NBEST=4 python scripts/recipe_plan.py with-knobs "baseline seq_kd hybrid_kd"
"""
import os
import shlex
import sys
import types

if __name__ == "__main__" and "kd_nmt" not in sys.modules:
    # kd_nmt/__init__ imports fairseq to register the plugin (seconds); this tool reads only the
    # standard-library modules kd_nmt.errors, kd_nmt.common.args and kd_nmt.recipes, and lib.sh
    # runs it for every student: the package is entered without running its __init__
    _package = types.ModuleType("kd_nmt")
    _package.__path__ = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kd_nmt")]
    sys.modules["kd_nmt"] = _package

from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.recipes import grid, methods, variants


def shell_assignments(values):
    """``name=value`` lines for bash's ``eval``, lists as arrays, every value quoted."""
    lines = []
    for name, value in values.items():
        if isinstance(value, (list, tuple)):
            lines.append(f"{name}=({' '.join(shlex.quote(str(v)) for v in value)})")
        else:
            lines.append(f"{name}={shlex.quote(str(value))}")
    return lines


def variant_parts(names):
    """The +PARTS of each variant among the method names, once each, in order (all checked)."""
    out = []
    for name in names:
        resolved = methods.resolve(name)
        if resolved.variant is not None and resolved.variant.suffix not in out:
            out.append(resolved.variant.suffix)
    return out


def parser():
    p = ArgumentParser(prog="recipe_plan", description=__doc__.split("\n\n")[0],
                       epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ("student", "teacher-cache"):
        s = sub.add_parser(name, help=f"the {name} plan of one method")
        s.add_argument("method")
        for option in ("--save", "--arch", "--updates"):
            s.add_argument(option, required=name == "student")
        for option in ("--data", "--teacher", "--seqkd"):
            s.add_argument(option, required=True)
    s = sub.add_parser("variant", help="one Seq-KD data variant's files and options")
    s.add_argument("parts")
    s.add_argument("--seqkd", required=True)
    s.add_argument("--data", required=True)
    sub.add_parser("relabel-output").add_argument("out_bin")
    for name in ("variants", "with-knobs"):
        sub.add_parser(name).add_argument("methods", help="space-separated method names")
    sub.add_parser("suffix")
    sub.add_parser("size").add_argument("arch")
    s = sub.add_parser("init")
    s.add_argument("arch")
    s.add_argument("--root", required=True)
    s = sub.add_parser("bench-grid")
    for option in ("--root", "--teacher", "--archs", "--methods"):
        s.add_argument(option, required=True)
    s.add_argument("--tag", default="")
    sub.add_parser("knobs")
    return p


def plan(a):
    """The lines of the answer to the parsed command ``a``."""
    if a.command == "student":
        return methods.train_args(a.method, a.save, a.data, a.arch, a.updates, a.teacher, a.seqkd)
    if a.command == "teacher-cache":
        return methods.cache_plan(a.method, a.data, a.teacher, a.seqkd)
    if a.command == "variant":
        return shell_assignments(variants.data_plan(variants.parse(a.parts), a.seqkd, a.data))
    if a.command == "relabel-output":
        return [variants.relabel_output(a.out_bin)]
    if a.command == "variants":
        return variant_parts(a.methods.split())
    if a.command == "suffix":
        return [variants.knob_suffix()]
    if a.command == "with-knobs":
        names = a.methods.split()
        for name in names:
            methods.resolve(name)
        return [" ".join(variants.with_knobs(names))]
    if a.command == "size":
        return [grid.size(a.arch)]
    if a.command == "init":
        return shell_assignments(grid.init_plan(a.root, a.arch))
    if a.command == "bench-grid":
        return shell_assignments(grid.bench_plan(a.root, a.teacher, a.archs.split(), a.methods.split(), a.tag))
    return sorted({*methods.KNOBS, *variants.KNOBS, *grid.KNOBS})


def main(argv):
    lines = plan(parser().parse_args(argv))
    if lines:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool("recipe_plan", main))
