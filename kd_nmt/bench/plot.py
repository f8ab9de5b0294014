"""``kd-nmt plot``: figures from ``kd-nmt bench`` results and fairseq training logs.

* ``bleu_vs_params.png`` — BLEU (or chrF) against the student's parameter count, one line per
  method (the ``method`` column; the row name where there is none).
* ``bleu_vs_noise.png``  — BLEU against the ``noise`` column, one line per method (and size,
  where one method was run at several sizes); a method run at one noise rate only (say, the
  teacher) is a dashed reference line. Skipped with fewer than two numeric noise values.
* ``deploy_speed_quality.png`` — BLEU against target words/s, one point per model and engine
  (written by ``kd-nmt bench --deploy``, from its rows; ``plot_speed_quality``).
* ``gate.png``           — the hybrid_kd gate over training updates, from fairseq logs
  (``--log-format simple`` / ``json`` / ``tqdm``: ``gate=0.42``, ``| gate 0.42``, ``"gate": "0.42"``).

Columns come from ``kd-nmt bench --names method=...,size=...,noise=...`` or ``--tag KEY=VALUE``
(see docs/bench.md); any CSV with the columns ``bleu``/``chrf``, ``params`` and optionally
``method``, ``size``, ``noise``, ``decode`` works.
"""
import csv
import math
import os
import re
import sys
from collections import OrderedDict

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.logging_setup import quiet_logging
from kd_nmt.errors import KDNMTError

EXAMPLES = """
examples:
  # BLEU vs size and vs noise from several bench runs (directories or CSV files)
  kd-nmt plot --results results/bench results/noise0.1/bench.csv results/noise0.3 \\
      --out results/figures

  # chrF of the greedy rows only
  kd-nmt plot --results results/bench --metric chrf --decode greedy --out figs

  # the hybrid_kd gate trajectory of two runs (fairseq-train logs)
  kd-nmt plot --gate-log runs/hybrid_learned/train.log runs/hybrid_input/train.log \\
      --gate-labels learned input --out figs

columns read from bench.csv: bleu / chrf (y), params (x of bleu_vs_params), noise (x of
bleu_vs_noise), method (one line per method; default: the row name), size (point labels),
decode (filtered by --decode). Rows of several CSV files are combined.
"""


def build_parser():
    parser = ArgumentParser(
        prog="kd-nmt plot",
        description="Figures (PNG, matplotlib) from kd-nmt bench CSVs and fairseq training logs: "
        "BLEU vs student size, BLEU vs noise rate, hybrid_kd gate trajectory.",
        epilog=EXAMPLES,
    )
    parser.add_argument("--results", nargs="+", default=[], metavar="CSV_OR_DIR",
                        help="bench.csv files, or directories holding one")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the PNG files")
    parser.add_argument("--metric", default="bleu", choices=["bleu", "chrf"], help="y axis (default: bleu)")
    parser.add_argument("--decode", default="beam",
                        help="rows to plot: beam (any beamN, default), greedy, an exact value like "
                        "beam5, or all (one line per method and decoding)")
    parser.add_argument("--gate-log", nargs="+", default=[], metavar="LOG",
                        help="fairseq training logs with a logged gate (hybrid_kd)")
    parser.add_argument("--gate-labels", nargs="+", default=None, metavar="LABEL",
                        help="legend labels of the --gate-log files (default: their directory names)")
    parser.add_argument("--title", default=None, help="a title prefix for the figures")
    parser.add_argument("--dpi", type=int, default=120)
    return parser


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def read_results(paths):
    """All rows of the given bench CSVs (a directory means its bench.csv)."""
    rows = []
    for path in paths:
        csv_path = os.path.join(path, "bench.csv") if os.path.isdir(path) else path
        if not os.path.isfile(csv_path):
            raise KDNMTError(f"results not found: {csv_path!r} (give a bench.csv or a kd-nmt bench --out directory)")
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if "bleu" not in fields and "chrf" not in fields:
                raise KDNMTError(f"{csv_path!r} has no bleu/chrf column; is it a kd-nmt bench CSV?")
            for row in reader:
                row["_file"] = csv_path
                rows.append(row)
    return rows


def number(value):
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def select_decode(rows, decode):
    if decode == "all":
        return rows
    if decode == "beam":
        return [r for r in rows if str(r.get("decode", "beam")).startswith("beam")]
    return [r for r in rows if r.get("decode") == decode]


def method_of(row):
    return row.get("method") or row.get("name") or "?"


NUM = r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


def _field(line, key):
    """Numeric ``key`` of a fairseq stats line: ``key=1``, ``| key 1``, ``"key": "1"``, ``"valid_key": 1``."""
    m = re.search(r"(?:^|[\s,|{])\"?(?:(?:train|valid)_)?" + key + r"\"?(?:=|\s*:\s*\"?|\s+)" + NUM, line)
    return float(m.group(1)) if m else None


def read_gate_log(path):
    """``{"train": [(update, gate)], "valid": [(update, gate)]}`` from a fairseq training log."""
    if not os.path.isfile(path):
        raise KDNMTError(f"gate log not found: {path!r}")
    series = {"train": [], "valid": [], "epoch": []}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "loss" not in line:  # stats lines only (the config dump also says "gate")
                continue
            gate = _field(line, "gate")
            if gate is None:
                continue
            if "| valid |" in line or '"valid_' in line:
                kind = "valid"
            elif "| train |" in line or '"train_' in line:
                kind = "epoch"
            else:
                kind = "train"
            update = _field(line, "num_updates")
            if update is None:
                update = len(series[kind]) + 1
            series[kind].append((update, gate))
    if not series["train"]:
        series["train"] = series.pop("epoch")
    series.pop("epoch", None)
    if not series["train"] and not series["valid"]:
        raise KDNMTError(
            f"no gate values in {path!r} (expected hybrid_kd log lines with gate=X, | gate X or "
            '"gate": "X")')
    return series


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(rows, key):
    groups = OrderedDict()
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


def _line(ax, points, label, marker="o", linestyle="-"):
    """Markers at every point, a line through the per-x means."""
    xs = sorted({x for x, _, _ in points})
    means = [sum(y for x2, y, _ in points if x2 == x) / sum(1 for x2, _, _ in points if x2 == x) for x in xs]
    (line,) = ax.plot(xs, means, marker=marker, linestyle=linestyle, label=label)
    for x, y, note in points:
        ax.plot([x], [y], marker=marker, linestyle="none", color=line.get_color(), alpha=0.5)
        if note:
            ax.annotate(note, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)


def _human(x):
    """Tick label for a parameter count: 800K, 8M, 1.5B."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _title(args, text):
    return f"{args.title}: {text}" if args.title else text


def _save(plt, fig, ax, args, path, xlabel, ylabel, title):
    """Label, grid and legend ``ax``, write ``fig`` to ``path`` (a PNG) and close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_title(args, title))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from kd_nmt.common.atomic import atomic_file

    try:
        with atomic_file(path, binary=True) as f:  # savefig to a path left half a PNG on a full disk
            fig.savefig(f, dpi=args.dpi, format="png")
    finally:
        plt.close(fig)
    return path


def plot_params(rows, args, path):
    plt = _pyplot()
    metric = args.metric
    label = "BLEU" if metric == "bleu" else "chrF"
    points = [r for r in rows if number(r.get("params")) and number(r.get(metric)) is not None]
    if not points:
        return None
    note = ""
    noises = sorted({number(r.get("noise")) for r in points if number(r.get("noise")) is not None})
    if len(noises) > 1:  # a noise sweep: the size plot shows the cleanest runs
        points = [r for r in points if number(r.get("noise")) in (None, noises[0])]
        note = f" (noise = {noises[0]:g})"
    by_decode = args.decode == "all"
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = ["-", "--", ":", "-."]
    decodes = sorted({r.get("decode", "") for r in points})
    for key, group in _series(points, lambda r: (method_of(r), r.get("decode", "") if by_decode else "")).items():
        method, decode = key
        pts = [(number(r["params"]), number(r[metric]), r.get("size") or "") for r in group]
        _line(ax, pts, f"{method} {decode}".strip(),
              linestyle=styles[decodes.index(decode) % len(styles)] if by_decode else "-")
    xs = [number(r["params"]) for r in points]
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if max(xs) / min(xs) > 5:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _human(x)))
    return _save(plt, fig, ax, args, path, "parameters", label, f"{label} vs model size{note}")


def plot_noise(rows, args, path):
    plt = _pyplot()
    metric = args.metric
    label = "BLEU" if metric == "bleu" else "chrF"
    points = [r for r in rows if number(r.get("noise")) is not None and number(r.get(metric)) is not None]
    if len({number(r["noise"]) for r in points}) < 2:  # no sweep, no figure
        return None
    sizes = {}
    for r in points:
        sizes.setdefault(method_of(r), set()).add(r.get("size") or "")
    by_decode = args.decode == "all"

    def key(r):
        parts = [method_of(r)]
        if len(sizes[method_of(r)]) > 1:
            parts.append(f"({r.get('size')})")
        if by_decode:
            parts.append(r.get("decode", ""))
        return " ".join(parts)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    references = []
    for name, group in _series(points, key).items():
        pts = [(number(r["noise"]), number(r[metric]), "") for r in group]
        if len({x for x, _, _ in pts}) == 1:  # not swept (e.g. the teacher): a reference line
            references.append((name, pts[0][0], sum(y for _, y, _ in pts) / len(pts)))
            continue
        _line(ax, pts, name)
    noises = [number(r["noise"]) for r in points]
    span = [min(noises), max(noises)] if max(noises) > min(noises) else [min(noises) - 0.05, min(noises) + 0.05]
    for name, noise, y in references:
        ax.plot(span, [y, y], linestyle="--", linewidth=1, label=f"{name} (noise {noise:g})",
                **({"color": "gray"} if "teacher" in name.lower() else {}))
    return _save(plt, fig, ax, args, path, "noise rate", label, f"{label} vs noise rate")


def plot_speed_quality(rows, path, metric="bleu", title=None, dpi=120):
    """BLEU (``metric``) against words/s of ``kd-nmt bench --deploy`` rows: one marker per engine,
    one colour per model, each point labelled with its model; log-scaled x (engines differ by
    factors)."""
    from types import SimpleNamespace

    plt = _pyplot()
    markers = ["o", "s", "^", "D", "v", "P"]
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    names = list(dict.fromkeys(r["name"] for r in rows))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r in rows:
        x, y = number(r.get("words_per_s")), number(r.get(metric))
        if x is None or y is None:
            continue
        engine, name = engines.index(r["engine"]), names.index(r["name"])
        ax.plot([x], [y], marker=markers[engine % len(markers)], linestyle="none",
                color=colours[name % len(colours)], label=f"{r['name']} ({r['engine']})")
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    label = "BLEU" if metric == "bleu" else "chrF"
    args = SimpleNamespace(title=title, dpi=dpi)
    return _save(plt, fig, ax, args, path, "target words/s (log scale)", label, f"{label} vs decoding speed")


def plot_gate(logs, labels, args, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for log, label in zip(logs, labels):
        series = read_gate_log(log)
        color = None
        if series["train"]:
            xs, ys = zip(*series["train"])
            (line,) = ax.plot(xs, ys, label=f"{label} (train)", linewidth=1.2)
            color = line.get_color()
        if series["valid"]:
            xs, ys = zip(*series["valid"])
            ax.plot(xs, ys, marker="s", linestyle="--", color=color, label=f"{label} (valid)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(plt, fig, ax, args, path, "updates", "gate", "hybrid_kd gate trajectory")


def main(argv=None):
    args = build_parser().parse_args(argv)
    quiet_logging()
    if not args.results and not args.gate_log:
        raise KDNMTError("nothing to plot: give --results (bench CSVs) and/or --gate-log (training logs)")
    if args.gate_labels is not None and len(args.gate_labels) != len(args.gate_log):
        raise KDNMTError(f"--gate-labels has {len(args.gate_labels)} entries for {len(args.gate_log)} --gate-log files")
    rows = read_results(args.results)
    for log in args.gate_log:  # check every input before drawing anything
        read_gate_log(log)
    os.makedirs(args.out, exist_ok=True)
    written, skipped = [], []
    if args.results:
        selected = select_decode(rows, args.decode)
        if not selected:
            found = sorted({r.get("decode", "") for r in rows})
            raise KDNMTError(f"no rows with --decode {args.decode!r} (the results have: {', '.join(found)})")
        for name, fn in (("bleu_vs_params.png", plot_params), ("bleu_vs_noise.png", plot_noise)):
            out = fn(selected, args, os.path.join(args.out, name))
            (written if out else skipped).append(out or name)
    if args.gate_log:
        labels = args.gate_labels or [
            os.path.basename(os.path.dirname(os.path.abspath(p))) or os.path.basename(p) for p in args.gate_log]
        written.append(plot_gate(args.gate_log, labels, args, os.path.join(args.out, "gate.png")))
    for path in written:
        print(f"wrote {path}")
    for name in skipped:
        why = ("fewer than two numeric noise values" if "noise" in name
               else f"no numeric params/{args.metric} values")
        print(f"skipped {name}: {why}", file=sys.stderr)
    return 0
