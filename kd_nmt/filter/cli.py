"""``kd-nmt filter``: drop bad pairs from a relabeled (Seq-KD) corpus, on both sides at once.

Everything is checked before any work starts (files, line counts, options, the backward model
against the data-bin); a user error is one ``KDNMTError`` line and nothing is written. Then the
enabled filters run in a fixed order, cheapest first, each on the lines the earlier ones kept:

    empty  repeat  length_ratio  dedup  chrf  backward

A dropped line is attributed to the first filter that dropped it. Outputs (all written through
a temporary file renamed into place, so a rerun is byte-identical and a crash leaves no half
file): the kept source and hypothesis lines (and reference lines, if asked), the decision file
(one row per input line, every score computed for it) and the counts as JSON.
"""
import json
import math
import os
import sys

from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.detokenize import REMOVE_BPE
from kd_nmt.common.atomic import atomic_write, publish_group
from kd_nmt.common.lines import TextFile
from kd_nmt.common.logging_setup import quiet_logging, status
from kd_nmt.errors import KDNMTError, unwritable
from kd_nmt.filter import checks

FILTERS = ("empty", "repeat", "length_ratio", "dedup", "chrf", "backward")

EXAMPLES = """
All text is in the dictionaries' token space (what `kd-nmt relabel` reads and writes). Line i
of every output is line i of the kept input lines: a dropped pair is dropped from both sides.

examples:
  # the cheap checks: empty pairs, looping outputs, odd length ratios, exact duplicates
  kd-nmt filter --source tok/train.de --hypothesis kd/train.en \\
      --output-source kd/filtered.de --output-target kd/filtered.en \\
      --drop-empty --max-repeats 3 --length-ratio 0.5 2.5 --dedup

  # plus agreement with the gold target and a backward (en->de) model; then a data-bin
  kd-nmt filter --source tok/train.de --hypothesis kd/train.en --reference tok/train.en \\
      --output-source kd/filtered.de --output-target kd/filtered.en --min-chrf 20 \\
      --backward-model backward/checkpoint_best.pt --data-bin data-bin --drop-fraction 0.05 \\
      --binarize-to data-bin-kd-filtered

Every decision is in OUT_TARGET.decisions.tsv (line, kept/dropped, filter, score, then one
column per computed score); the counts per filter in OUT_TARGET.counts.json.
"""


def build_parser():
    p = ArgumentParser(
        prog="kd-nmt filter",
        description="Filter a relabeled (teacher-translated) corpus; both sides stay aligned.",
        epilog=EXAMPLES,
    )
    g = p.add_argument_group("data")
    g.add_argument("--source", required=True, metavar="SRC", help="source text (token space)")
    g.add_argument("--hypothesis", required=True, metavar="HYP",
                   help="the teacher's output for SRC, line-aligned (kd-nmt relabel's OUT)")
    g.add_argument("--reference", default=None, metavar="REF",
                   help="gold target, line-aligned (needed by --min-chrf)")
    g.add_argument("--output-source", required=True, metavar="FILE", help="kept source lines")
    g.add_argument("--output-target", required=True, metavar="FILE", help="kept hypothesis lines")
    g.add_argument("--output-reference", default=None, metavar="FILE",
                   help="kept reference lines (with --reference)")
    g.add_argument("--decisions", default=None, metavar="TSV",
                   help="decision file (default OUTPUT_TARGET.decisions.tsv)")
    g.add_argument("--counts", default=None, metavar="JSON",
                   help="counts per filter (default OUTPUT_TARGET.counts.json)")
    g.add_argument("--data-bin", default=None, metavar="DIR",
                   help="the gold data-bin: dictionaries for --backward-model and --binarize-to")
    g.add_argument("--source-lang", "-s", default=None, metavar="L", help="default: from --data-bin")
    g.add_argument("--target-lang", "-t", default=None, metavar="L", help="default: from --data-bin")

    g = p.add_argument_group("filters (each optional; they combine)")
    g.add_argument("--drop-empty", action="store_true", help="drop pairs with an empty side")
    g.add_argument("--max-repeats", type=int, default=None, metavar="N",
                   help="drop hypotheses in which a 1-4-gram occurs more than N times in a row")
    g.add_argument("--length-ratio", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="keep hypothesis/source token ratios in [MIN, MAX], e.g. 0.5 2.5")
    g.add_argument("--dedup", action="store_true",
                   help="drop exact repeats of an earlier kept (source, hypothesis) pair")
    g.add_argument("--min-chrf", type=float, default=None, metavar="X",
                   help="drop hypotheses with sentence chrF < X against --reference")
    g.add_argument("--remove-bpe", default="sentencepiece", choices=REMOVE_BPE,
                   help="detokenization before chrF (default sentencepiece)")
    g.add_argument("--backward-model", default=None, metavar="B.pt[:B2.pt]",
                   help="target->source checkpoint(s) on --data-bin's dictionaries: scores "
                        "log P(source | hypothesis) per token")
    g.add_argument("--drop-fraction", type=float, default=0.05, metavar="F",
                   help="with --backward-model: drop the worst-scored F of the lines it scores "
                        "(default 0.05)")
    g.add_argument("--batch-tokens", type=int, default=4000, metavar="N",
                   help="padded tokens per backward-model batch (default 4000)")
    g.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads (default: torch's)")

    g = p.add_argument_group("training data")
    g.add_argument("--binarize-to", default=None, metavar="DIR",
                   help="fairseq-preprocess the kept pair with --data-bin's dictionaries into DIR, "
                        "plus --data-bin's other splits")
    g.add_argument("--binarize-workers", type=int, default=1, metavar="N")
    g.add_argument("--no-progress", "--no-progress-bar", dest="no_progress", action="store_true",
                   help="no progress bar (--no-progress-bar: an alias)")
    return p


def _check_writable(path, what):
    if os.path.isdir(path):
        raise KDNMTError(f"{what} {path!r} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    problem = unwritable(parent)  # (was "is not a writable directory" for a file there too)
    if problem:
        raise KDNMTError(f"cannot write {what} {path!r}: {parent!r} {problem}")


def _lines_text(lines):
    return "".join(line + "\n" for line in lines)


class Job:
    """One validated filter run."""

    def __init__(self, args):
        a = self.args = args
        check_minimums(("--max-repeats", a.max_repeats, 1), ("--batch-tokens", a.batch_tokens, 1),
                       ("--threads", a.threads, 0), ("--binarize-workers", a.binarize_workers, 1))
        if a.length_ratio is not None:
            low, high = a.length_ratio
            if not 0 <= low <= high:
                raise KDNMTError(f"--length-ratio needs 0 <= MIN <= MAX, got {low} {high}")
        if not 0 <= a.drop_fraction < 1:
            raise KDNMTError(f"--drop-fraction must be in [0, 1), got {a.drop_fraction}")
        self.enabled = [name for name, on in (
            ("empty", a.drop_empty), ("repeat", a.max_repeats is not None),
            ("length_ratio", a.length_ratio is not None), ("dedup", a.dedup),
            ("chrf", a.min_chrf is not None), ("backward", a.backward_model is not None),
        ) if on]
        if not self.enabled:
            raise KDNMTError(
                "no filter chosen: give at least one of --drop-empty, --max-repeats, "
                "--length-ratio, --dedup, --min-chrf, --backward-model"
            )
        if a.min_chrf is not None and not a.reference:
            raise KDNMTError("--min-chrf compares with the gold target: give --reference REF")
        if a.output_reference and not a.reference:
            raise KDNMTError("--output-reference needs --reference REF")
        for option, value in (("--backward-model", a.backward_model), ("--binarize-to", a.binarize_to)):
            if value and not a.data_bin:
                raise KDNMTError(f"{option} needs --data-bin DIR (the dictionaries)")

        self.source = TextFile(a.source, "source")
        self.hypothesis = TextFile(a.hypothesis, "hypothesis")
        self.reference = TextFile(a.reference, "reference") if a.reference else None
        n = len(self.source)
        for what, f in (("--hypothesis", self.hypothesis), ("--reference", self.reference)):
            if f is not None and len(f) != n:
                raise KDNMTError(
                    f"{what} {f.path!r} has {len(f)} lines but --source {a.source!r} has {n}; "
                    "they must be line-aligned"
                )

        a.decisions = a.decisions or a.output_target + ".decisions.tsv"
        a.counts = a.counts or a.output_target + ".counts.json"
        self.outputs = [("--output-source", a.output_source), ("--output-target", a.output_target),
                        ("--output-reference", a.output_reference), ("--decisions", a.decisions),
                        ("--counts", a.counts)]
        self.outputs = [(what, path) for what, path in self.outputs if path]
        inputs = {os.path.realpath(p) for p in (a.source, a.hypothesis, a.reference) if p}
        seen = set()
        for what, path in self.outputs:
            real = os.path.realpath(path)
            if real in inputs:
                raise KDNMTError(f"{what} {path!r} would overwrite an input file")
            if real in seen:
                raise KDNMTError(f"{what} {path!r} is also another output")
            seen.add(real)
            _check_writable(path, what)

        self.langs = (None, None)
        if a.data_bin:
            from kd_nmt.common.data_bin import infer_languages

            self.langs = infer_languages(a.data_bin, a.source_lang, a.target_lang)
        if a.binarize_to:
            from kd_nmt.relabel.binarize import check_destdir

            check_destdir(a.binarize_to)
        self.backward = None
        if a.backward_model:
            paths = [p for p in a.backward_model.split(":") if p]
            for path in paths or [a.backward_model]:
                if not os.path.isfile(path):
                    raise KDNMTError(f"--backward-model checkpoint not found: {path!r}")
            if a.threads:
                import torch

                torch.set_num_threads(a.threads)
            from kd_nmt.filter.backward import BackwardScorer

            self.backward = BackwardScorer(paths, a.data_bin, *self.langs, batch_tokens=a.batch_tokens)

    # --------------------------------------------------------------------------------------
    def decide(self):
        """Run the enabled filters: ``(dropped_by, scores)``.

        ``dropped_by[i]``: the filter that dropped line i, or None; ``scores[name][i]``: the
        score filter ``name`` gave line i (absent where it did not look at the line).
        """
        a = self.args
        src, hyp = self.source.lines, self.hypothesis.lines
        n = len(src)
        dropped_by = [None] * n
        scores = {name: {} for name in self.enabled}

        def apply(name, score, drop):
            for i in range(n):
                if dropped_by[i] is None:
                    value = scores[name][i] = score(i)
                    if drop(value):
                        dropped_by[i] = name

        if "empty" in self.enabled:
            apply("empty", lambda i: checks.is_empty(src[i], hyp[i]), lambda v: v == 1)
        if "repeat" in self.enabled:
            apply("repeat", lambda i: checks.max_repeats(hyp[i]), lambda v: v > a.max_repeats)
        if "length_ratio" in self.enabled:
            low, high = a.length_ratio
            apply("length_ratio", lambda i: round(checks.length_ratio(src[i], hyp[i]), 4),
                  lambda v: not low <= v <= high)
        if "dedup" in self.enabled:
            alive = [i for i in range(n) if dropped_by[i] is None]
            earlier = checks.duplicates([src[i] for i in alive], [hyp[i] for i in alive])
            first = {i: (None if e is None else alive[e]) for i, e in zip(alive, earlier)}
            # the score of a duplicate: the (1-based) line it repeats; 0 for a first occurrence
            apply("dedup", lambda i: 0 if first[i] is None else first[i] + 1, lambda v: v > 0)
        if "chrf" in self.enabled:
            chrf = checks.ChrfScorer(a.remove_bpe)
            ref = self.reference.lines
            apply("chrf", lambda i: round(chrf(hyp[i], ref[i]), 4), lambda v: v < a.min_chrf)
        if "backward" in self.enabled:
            self._backward(dropped_by, scores["backward"])
        return dropped_by, scores

    def _backward(self, dropped_by, scores):
        from tqdm import tqdm

        alive = [i for i, d in enumerate(dropped_by) if d is None]
        with tqdm(total=len(alive), unit="sent", desc="backward", file=sys.stderr,
                  disable=self.args.no_progress, dynamic_ncols=True) as bar:
            values = self.backward.scores([self.source.lines[i] for i in alive],
                                          [self.hypothesis.lines[i] for i in alive], bar.update)
        for i, value in zip(alive, values):
            # rounded before ranking, so the decision file shows exactly what was compared
            scores[i] = round(value, 6)
        n_drop = math.floor(self.args.drop_fraction * len(alive) + 1e-9)
        # the worst n_drop; among equal scores the later line goes first
        ranked = sorted(alive, key=lambda i: (scores[i], -i))
        for i in ranked[:n_drop]:
            dropped_by[i] = "backward"
        self.backward_stats = {
            "scored": len(alive), "dropped": n_drop,
            "threshold": scores[ranked[n_drop - 1]] if n_drop else None,
            "truncated": self.backward.truncated,
        }

    # --------------------------------------------------------------------------------------
    def _decision_rows(self, dropped_by, scores):
        def fmt(value):
            return repr(value) if isinstance(value, float) else str(value)  # repr(inf) == "inf"

        header = ["line", "decision", "filter", "score"] + list(self.enabled)
        rows = ["\t".join(header)]
        for i, name in enumerate(dropped_by):
            row = [str(i + 1), "kept" if name is None else "dropped", name or "-",
                   fmt(scores[name][i]) if name else "-"]
            row += [fmt(scores[f][i]) if i in scores[f] else "-" for f in self.enabled]
            rows.append("\t".join(row))
        return rows

    def _counts(self, dropped_by):
        a = self.args
        n = len(dropped_by)
        kept = sum(d is None for d in dropped_by)
        settings = {
            "empty": True, "repeat": {"max_repeats": a.max_repeats},
            "length_ratio": {"min": a.length_ratio[0], "max": a.length_ratio[1]} if a.length_ratio else None,
            "dedup": True, "chrf": {"min_chrf": a.min_chrf, "remove_bpe": a.remove_bpe},
            "backward": None,
        }
        if self.backward is not None:
            settings["backward"] = {"model": a.backward_model, "drop_fraction": a.drop_fraction,
                                    **self.backward_stats}
        files = {"source": self.source, "hypothesis": self.hypothesis, "reference": self.reference}
        return {
            "lines": n, "kept": kept, "dropped": n - kept,
            "dropped_by": {f: sum(d == f for d in dropped_by) for f in self.enabled},
            "filters": {f: settings[f] for f in self.enabled},
            "inputs": {k: {"path": f.path, "sha256": f.sha256} for k, f in files.items() if f},
        }

    def run(self):
        a = self.args
        dropped_by, scores = self.decide()
        keep = [i for i, d in enumerate(dropped_by) if d is None]
        counts = self._counts(dropped_by)
        texts = [(a.output_source, self.source.lines), (a.output_target, self.hypothesis.lines)]
        if a.output_reference:
            texts.append((a.output_reference, self.reference.lines))
        # all or nothing, the counts (what a rerun and the recipes check) last: a full disk or a
        # kill between two renames no longer leaves a new source beside an old target
        publish_group([(path, _lines_text(lines[i] for i in keep)) for path, lines in texts]
                      + [(a.decisions, _lines_text(self._decision_rows(dropped_by, scores))),
                         (a.counts, json.dumps(counts, indent=1) + "\n")])
        by = ", ".join(f"{f} {c}" for f, c in counts["dropped_by"].items())
        _log(f"{counts['lines']} lines: kept {counts['kept']}, dropped {counts['dropped']} ({by}) "
             f"-> {a.output_source}, {a.output_target}; decisions in {a.decisions}")
        if a.binarize_to:
            _binarize(a, self.langs, len(keep), counts)
        return 0


def _binarize(a, langs, n_lines, counts):
    """The kept pair as the train split of a new data-bin, with --data-bin's other splits.

    ``relabel.binarize`` checks the line count against the gold train split, which filtering
    changes on purpose: it is handed a view of the gold data-bin without its train split
    (dictionaries and the other splits, symlinked), then the provenance names the real one.
    """
    import shutil
    import tempfile

    from kd_nmt.common.data_bin import binarized_files, dictionary_path
    from kd_nmt.relabel.binarize import binarize

    parent = os.path.dirname(os.path.abspath(a.binarize_to))
    view = tempfile.mkdtemp(prefix=".filter-view.", dir=parent)
    try:
        for lang in langs:
            os.symlink(os.path.abspath(dictionary_path(a.data_bin, lang)), dictionary_path(view, lang))
        for side in binarized_files(a.data_bin):
            if side.split != "train":
                for ext in (".bin", ".idx"):
                    name = os.path.basename(side.prefix) + ext
                    os.symlink(os.path.abspath(side.prefix + ext), os.path.join(view, name))
        summary = binarize(view, *langs, a.output_source, a.output_target, a.binarize_to,
                           workers=a.binarize_workers, expected_lines=n_lines, log=_log)
    finally:
        shutil.rmtree(view, ignore_errors=True)
    summary.update(gold_data_bin=os.path.abspath(a.data_bin), filter=counts)
    atomic_write(os.path.join(a.binarize_to, "relabel.json"), json.dumps(summary, indent=1))


_log = status("filter")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    quiet_logging()  # fairseq's INFO lines would bury the summary
    return Job(args).run()
