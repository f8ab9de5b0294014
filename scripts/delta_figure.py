#!/usr/bin/env python3
"""The claims as a figure: Δ score over a baseline with its 95 % interval over training seeds.

    python scripts/delta_figure.py --panel test_2016=docs/multi30k/kim_rush/test_2016_flickr \\
        --panel test_2017=docs/multi30k/kim_rush/test_2017_flickr --baseline baseline \\
        --decode beam5 --out docs/img/multi30k_delta.png

One panel per ``LABEL=FOLDER`` (a folder of per-seed bench CSVs, as scripts/seed_table.py reads
them: ``seedS/bench.csv`` or flat ``seedS[_TAG].csv``), one point per (size, method) other than
``--baseline``: the mean over seeds of the method's score minus the same seed's baseline
student's (same size, ``--decode``), and the Student-t 95 % interval over those per-seed
differences (kd_nmt.common.seed_stats, as the seed-level tables). A point with one seed has no
interval and is drawn hollow: a pilot. The numbers go to OUT with .csv beside the figure.
"""
import csv
import io
import os

import seed_table  # scripts/: the per-seed bench rows, read as the seed-level tables read them
import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common import seed_stats
from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_write
from kd_nmt.errors import KDNMTError

COLUMNS = ["panel", "size", "method", "decode", "metric", "seeds", "mean", "low", "high"]


def deltas(label, folder, baseline, decode, metric):
    """The rows of one panel: per (size, method), the seed-level summary against ``baseline``."""
    rows = [r for r in seed_table.read_rows(folder) if r["decode"] == decode]
    if not rows:
        raise KDNMTError(f"{folder}: no rows decoded {decode!r} (see its bench.csv's decode column)")
    out = []
    for size, method in dict.fromkeys((r.get("size", ""), r["method"]) for r in rows):
        if method == baseline:
            continue

        def scores(m):
            return {r["seed"]: float(r[metric]) for r in rows if r.get("size", "") == size and r["method"] == m}

        s = seed_stats.paired_seed_difference(scores(method), scores(baseline))
        if s["n"]:
            out.append({"panel": label, "size": size, "method": method, "decode": decode, "metric": metric,
                        "seeds": s["n"], "mean": round(s["mean"], 4),
                        "low": "" if s["low"] is None else round(s["low"], 4),
                        "high": "" if s["high"] is None else round(s["high"], 4)})
    if not out:
        raise KDNMTError(f"{folder}: no method shares a seed with the baseline {baseline!r}")
    return out


def draw(points, path, metric, decode, baseline, title=None):
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its import and font search log at DEBUG
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(p["panel"] for p in points))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1, 3.6), sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        mine = [p for p in points if p["panel"] == panel]
        labels = [f"{p['method']}\n({p['size']})" if p["size"] else p["method"] for p in mine]
        for i, p in enumerate(mine):
            if p["low"] == "":
                ax.plot(i, p["mean"], "o", mfc="none", color="C0")
            else:
                ax.errorbar(i, p["mean"], yerr=[[p["mean"] - p["low"]], [p["high"] - p["mean"]]],
                            fmt="o", color="C0" if p["low"] > 0 or p["high"] < 0 else "C7", capsize=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(mine)), labels, rotation=40, ha="right", fontsize=8)
        ax.set_title(f"{panel} (seeds: {'/'.join(str(p['seeds']) for p in mine)})", fontsize=9)
    axes[0][0].set_ylabel(f"Δ {metric.upper() if metric == 'bleu' else 'chrF'} vs {baseline}, {decode}")
    fig.suptitle(title or "mean over seeds, 95 % t interval (blue: the interval excludes 0, before Holm; "
                 "hollow: one seed)", fontsize=9)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def main(argv):
    p = ArgumentParser(prog="delta_figure", description=__doc__.split("\n\n")[0])
    p.add_argument("--panel", action="append", required=True, metavar="LABEL=FOLDER",
                   help="a panel: its title and a folder of per-seed bench CSVs (repeat)")
    p.add_argument("--baseline", default="baseline", help="the method every difference is against (default baseline)")
    p.add_argument("--decode", default="beam5", help="the decoding compared (a bench.csv decode: greedy, beam5, ...)")
    p.add_argument("--metric", default="bleu", choices=["bleu", "chrf"])
    p.add_argument("--title", default=None)
    p.add_argument("--out", required=True, help="the figure (.png); the numbers beside it as .csv")
    a = p.parse_args(argv)
    points = []
    for spec in a.panel:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            raise KDNMTError(f"--panel takes LABEL=FOLDER, got {spec!r}")
        points += deltas(label, folder, a.baseline, a.decode, a.metric)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(points)
    atomic_write(os.path.splitext(a.out)[0] + ".csv", buf.getvalue())
    draw(points, a.out, a.metric, a.decode, a.baseline, a.title)
    print(buf.getvalue(), end="")
    print(f"wrote {a.out} and {os.path.splitext(a.out)[0]}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool("delta_figure", main))
