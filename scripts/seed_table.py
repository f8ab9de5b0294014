#!/usr/bin/env python3
"""One table over seeds: mean ± sd of BLEU/chrF per student, from each seed's ``kd-nmt bench``.

    python scripts/seed_table.py results/kim_rush --baseline baseline

reads every ``RESULTS/seed*/bench.csv`` (or docs/'s flat ``RESULTS/seedS.csv``), one ``kd-nmt
bench`` per seed whose rows carry the ``method`` and ``size`` columns of their ``--names`` (the
teacher row, which has no method, is left out), and prints two Markdown tables:

1. one row per (size, method) in the order they first appear (a size column where the names carry
   one): the number of seeds, BLEU and chrF as mean ± sample sd for each decoding, and per seed the
   BLEU difference (last decoding) to that seed's ``--baseline`` with the bench's paired bootstrap
   p-value — a statement about one trained model each, not about the method;
2. the seed-level table (kd_nmt/common/seed_stats.py): per method and decoding, the mean per-seed
   difference to the baseline with a 95 % t interval over seeds, Holm-adjusted p across the table's
   rows, BLEU and chrF side by side, and the call (gain / loss / no difference shown / pilot).

``--beam-gain`` prints instead, per student, the beam's score minus greedy's over seeds (Kim & Rush:
Seq-KD students need no beam search). ``--train-pairs WORK`` adds the number of training pairs of each Seq-KD data set
(``WORK/seqkd<+parts>-bin/relabel.json``), for the Seq-KD data study.

Several RESULTS folders join into one table (e.g. a second run that added methods, or one that
decoded with beam 10): a (seed, size, method, decoding) found in more than one is taken from the
first folder that has it. ``--buckets`` prints the decoding table instead: per (size, method,
decoding) the BLEU of each source-length bucket (``seed*/bench_buckets.csv``) and of the whole
test set, mean ± sd over seeds.

    python scripts/seed_table.py results/kim_rush results/kim_rush_beam10 --buckets
"""
import csv
import glob
import json
import os
import re
import statistics

from tool_common import run_tool

from kd_nmt.common import seed_stats
from kd_nmt.common.args import ArgumentParser
from kd_nmt.errors import KDNMTError


def read_rows(*folders, file="bench.csv"):
    """The student rows of every ``FOLDER/seed*/FILE``; a row whose (seed, size, method, decoding
    and bucket) an earlier folder already gave is left out."""
    rows, seen = [], set()
    for results in folders:
        paths = sorted(glob.glob(os.path.join(results, "seed*", file)))
        # docs/ keeps each seed's file flat: seedS.csv (bench.csv), seedS_buckets.csv
        # (or seedS_TAG.csv: several benches of one seed, e.g. one per size)
        suffix = file[len("bench"):]
        flat = sorted(glob.glob(os.path.join(results, "seed*" + suffix)))
        flat = [p for p in flat if re.fullmatch(r"seed\d+(_(?!buckets)[A-Za-z0-9]+)?" + re.escape(suffix),
                                                os.path.basename(p))]
        if not paths and not flat:
            raise KDNMTError(f"no {results}/seed*/{file} (nor seed*{file[len('bench'):]}): "
                             "run the recipe's bench step first")
        for path in paths or flat:
            folder_or_file = os.path.dirname(path) if paths else path
            seed = re.match(r"seed(\d+)", os.path.basename(folder_or_file)).group(1)
            with open(path, encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    if not row.get("method"):
                        continue
                    row = {**row, "seed": row.get("seed") or seed}
                    key = tuple(row.get(k, "") for k in ("seed", "size", "method", "decode", "bucket"))
                    if key not in seen:
                        seen.add(key)
                        rows.append(row)
    return rows


def mean_sd(values):
    """``"m ± s"`` (two decimals; sd 0 for one value); ``"–"`` for none (a bucket no sentence of
    a hand-made CSV falls in)."""
    values = [float(v) for v in values]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def train_pairs(work, method):
    """Training pairs of a Seq-KD variant's data-bin (``seq_kd+filter`` -> ``seqkd+filter-bin``)."""
    suffix = method.split("+", 1)[1] if "+" in method else ""
    path = os.path.join(work, f"seqkd{'+' + suffix if suffix else ''}-bin", "relabel.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)["train_sentences"]


def versus(row, rows, baseline):
    """``"+0.32 (0.074)"``: BLEU minus the same seed's, size's and decoding's baseline, and the bench's p."""
    same = [r for r in rows if r["method"] == baseline and r["seed"] == row["seed"]
            and r.get("size", "") == row.get("size", "") and r["decode"] == row["decode"]]
    delta = f"{float(row['bleu']) - float(same[0]['bleu']):+.2f} " if same else ""
    return delta + (f"({float(row['p_bleu']):.3f})" if row["p_bleu"] and tested_against(row, same) else "(-)")


def tested_against(row, baselines):
    """Whether the bench's p of ``row`` compares it with ``baselines[0]``: a grid bench of several
    sizes tests every student against the *first* size's baseline (one ``--baseline`` per bench),
    and that p must not be printed beside a difference to another student. CSVs without the
    ``baseline`` column (hand-made) are taken as tested against it."""
    return not row.get("baseline") or (bool(baselines) and row["baseline"] == baselines[0]["name"])


def table(rows, baseline, work=None):
    """The Markdown lines."""
    decodes = sorted({r["decode"] for r in rows}, key=lambda d: d != "greedy")
    keys = list(dict.fromkeys((r.get("size", ""), r["method"]) for r in rows))
    sized = any(size for size, _ in keys)  # a size column only where the names carry one
    head = "| " + ("size | " if sized else "") + "method | " + ("train pairs | " if work else "") + "seeds | "
    head += " | ".join(f"BLEU {d} | chrF {d}" for d in decodes) + f" | Δ BLEU vs {baseline} (p), per seed |"
    lines = [head, "|" + "---|" * (1 + sized) + ("---:|" if work else "") + "---:|"
             + "---:|---:|" * len(decodes) + "---|"]
    for size, method in keys:
        mine = [r for r in rows if r.get("size", "") == size and r["method"] == method]
        cells = []
        for d in decodes:
            got = [r for r in mine if r["decode"] == d]
            cells += [mean_sd(r["bleu"] for r in got), mean_sd(r["chrf"] for r in got)]
        last = sorted((r for r in mine if r["decode"] == decodes[-1]), key=lambda r: r["seed"])
        p = "(baseline)" if method == baseline else ", ".join(versus(r, rows, baseline) for r in last)
        pairs = f"{train_pairs(work, method)} | " if work else ""
        n_seeds = len({r["seed"] for r in mine})
        first = f"| {size} | {method} | " if sized else f"| {method} | "
        lines.append(f"{first}{pairs}{n_seeds} | " + " | ".join(cells) + f" | {p} |")
    lines += ["", f"mean ± sd over seeds; Δ: BLEU ({decodes[-1]}) minus the same seed's {baseline} student's, "
              "p: the paired bootstrap of that difference (kd-nmt bench, sacreBLEU, 1,000 resamples); "
              "(-): the bench tested this student against another one (a grid's first size's baseline). "
              "These p-values are over the sentences of one trained model each: read the seed-level table "
              "below for claims about a method."]
    return lines + [""] + seed_level_table(rows, baseline)


METRICS = (("bleu", "BLEU"), ("chrf", "chrF"))


def metric_cells(summaries, adjusted, i, calls=None):
    """Row ``i``'s cells per metric: the interval, the Holm-adjusted p and the call (renamed by
    ``calls``, e.g. "gain" -> "beam helps")."""
    cells = []
    for metric, _ in METRICS:
        p = adjusted[metric][i]
        call = seed_stats.call(summaries[metric], p)
        cells += [seed_stats.format_interval(summaries[metric]), "–" if p is None else f"{p:.3f}",
                  (calls or {}).get(call, call)]
    return cells


def seed_level_table(rows, baseline):
    """Each method against the same size's ``baseline`` with the training seed as the unit
    (kd_nmt.common.seed_stats): per decoding, the mean per-seed difference with its 95 % t
    interval, the Holm-adjusted p (one family per metric: every row and decoding of this table)
    and the call, BLEU and chrF side by side."""
    decodes = sorted({r["decode"] for r in rows}, key=decode_order)
    keys = [k for k in dict.fromkeys((r.get("size", ""), r["method"]) for r in rows) if k[1] != baseline]
    sized = any(size for size, _ in keys)
    cells = []  # (size, method, decode, {metric: summary})
    for size, method in keys:
        for d in decodes:
            def scores(m, metric):
                return {r["seed"]: float(r[metric]) for r in rows
                        if r.get("size", "") == size and r["method"] == m and r["decode"] == d}
            summaries = {metric: seed_stats.paired_seed_difference(scores(method, metric), scores(baseline, metric))
                         for metric, _ in METRICS}
            if summaries["bleu"]["n"]:
                cells.append((size, method, d, summaries))
    adjusted = {metric: seed_stats.holm([c[3][metric]["p"] for c in cells]) for metric, _ in METRICS}
    head = "| " + ("size | " if sized else "") + "method | decoding | seeds | "
    head += " | ".join(f"Δ {name} [95 % CI] | Holm p | {name} call" for _, name in METRICS) + " |"
    lines = [head, "|" + "---|" * (2 + sized) + "---:|" + "---:|---:|---|" * len(METRICS)]
    for i, (size, method, d, summaries) in enumerate(cells):
        parts = metric_cells(summaries, adjusted, i)
        first = f"| {size} | {method} | " if sized else f"| {method} | "
        lines.append(f"{first}{d} | {summaries['bleu']['n']} | " + " | ".join(parts) + " |")
    lines += ["", f"Seed-level: per seed, the method's score minus the same seed's {baseline} student's "
              "(same size and decoding); mean with a 95 % Student-t interval over those differences, the "
              "t-test's p adjusted by Holm across this table's rows (per metric). A gain or loss is called "
              "only where the adjusted p < 0.05; otherwise no difference shown. One seed is a pilot."]
    return lines


def beam_gain_table(rows):
    """Kim & Rush's "Seq-KD students need no beam search": per (size, method), the beam's score
    minus greedy's, paired by seed, with the seed-level interval and Holm across the rows."""
    decodes = sorted({r["decode"] for r in rows}, key=decode_order)
    if "greedy" not in decodes or len(decodes) < 2:
        raise KDNMTError("--beam-gain needs greedy and beam rows (bench without --no-greedy)")
    beam = decodes[-1]
    keys = list(dict.fromkeys((r.get("size", ""), r["method"]) for r in rows))
    sized = any(size for size, _ in keys)
    cells = []
    for size, method in keys:
        def scores(decode, metric):
            return {r["seed"]: float(r[metric]) for r in rows
                    if r.get("size", "") == size and r["method"] == method and r["decode"] == decode}
        cells.append((size, method, {metric: seed_stats.paired_seed_difference(scores(beam, metric),
                                                                               scores("greedy", metric))
                                     for metric, _ in METRICS}))
    adjusted = {metric: seed_stats.holm([c[2][metric]["p"] for c in cells]) for metric, _ in METRICS}
    head = "| " + ("size | " if sized else "") + "method | seeds | "
    head += " | ".join(f"{name} {beam} − greedy [95 % CI] | Holm p | call" for _, name in METRICS) + " |"
    lines = [head, "|" + "---|" * (1 + sized) + "---:|" + "---:|---:|---|" * len(METRICS)]
    for i, (size, method, summaries) in enumerate(cells):
        parts = metric_cells(summaries, adjusted, i, calls={"gain": "beam helps", "loss": "beam hurts"})
        first = f"| {size} | {method} | " if sized else f"| {method} | "
        lines.append(f"{first}{summaries['bleu']['n']} | " + " | ".join(parts) + " |")
    lines += ["", f"Per seed, the student's {beam} score minus its greedy score; mean with a 95 % t interval "
              "over seeds, Holm across the rows. \"No difference shown\" is what Kim & Rush's claim predicts "
              "for Seq-KD students; it is not proof of equality (read the interval's width)."]
    return lines


def decode_order(decode):
    """greedy, then beam searches by width: ``beam5`` before ``beam10``."""
    return (0, 0) if decode == "greedy" else (1, int("".join(c for c in decode if c.isdigit()) or 0))


def bucket_table(rows, whole):
    """The decoding table's Markdown lines: ``rows`` from bench_buckets.csv, ``whole`` from bench.csv."""
    buckets = list(dict.fromkeys(r["bucket"] for r in rows))
    students = list(dict.fromkeys((r.get("size", ""), r["method"]) for r in rows))
    keys = sorted(dict.fromkeys((r.get("size", ""), r["method"], r["decode"]) for r in rows),
                  key=lambda k: (students.index(k[:2]), decode_order(k[2])))
    sized = any(size for size, _, _ in keys)
    sentences = {b: next(r["n_sentences"] for r in rows if r["bucket"] == b) for b in buckets}
    head = "| " + ("size | " if sized else "") + "method | decoding | seeds | "
    head += " | ".join(f"BLEU {b} words ({sentences[b]} lines)" for b in buckets) + " | BLEU all |"
    lines = [head, "|" + "---|" * (2 + sized) + "---:|" * (len(buckets) + 2)]
    for size, method, decode in keys:
        mine = [r for r in rows if (r.get("size", ""), r["method"], r["decode"]) == (size, method, decode)]
        cells = [mean_sd(r["bleu"] for r in mine if r["bucket"] == b) for b in buckets]
        all_ = [r["bleu"] for r in whole if (r.get("size", ""), r["method"], r["decode"]) == (size, method, decode)]
        cells.append(mean_sd(all_))
        first = f"| {size} | {method} | " if sized else f"| {method} | "
        lines.append(f"{first}{decode} | {len({r['seed'] for r in mine})} | " + " | ".join(cells) + " |")
    lines += ["", "BLEU (sacreBLEU) per source-length bucket, in whitespace words of the source; "
              "mean ± sd over seeds."]
    return lines


def main(argv):
    parser = ArgumentParser(prog="seed_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="folder(s) with seed*/bench.csv (earlier ones win)")
    parser.add_argument("--baseline", help="the method the p-values compare against (not with --buckets)")
    parser.add_argument("--buckets", action="store_true",
                        help="the decoding table: BLEU per source-length bucket (seed*/bench_buckets.csv)")
    parser.add_argument("--beam-gain", action="store_true",
                        help="the beam-vs-greedy table: per student, beam minus greedy over seeds")
    parser.add_argument("--train-pairs", metavar="WORK",
                        help="add each Seq-KD data set's training pairs (WORK/seqkd*-bin/relabel.json)")
    args = parser.parse_args(argv)
    if args.buckets:
        lines = bucket_table(read_rows(*args.results, file="bench_buckets.csv"), read_rows(*args.results))
    elif args.beam_gain:
        lines = beam_gain_table(read_rows(*args.results))
    elif not args.baseline:
        parser.error("--baseline is needed (or --buckets)")
    else:
        lines = table(read_rows(*args.results), args.baseline, args.train_pairs)
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(run_tool("seed_table", main))
