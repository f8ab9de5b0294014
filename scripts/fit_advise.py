#!/usr/bin/env python3
"""Fit ``kd-nmt advise``'s model on the study's cells and test it by leave-one-group-out.

    python scripts/fit_advise.py

Reads the committed tables — the per-seed bench CSVs of the study (docs/kim_rush*/,
docs/size_tier28/, docs/text_complexity_tier28/, docs/multi30k/kim_rush/) and the measured
features (docs/advise/data_features.csv, docs/advise/student_sizes.csv, written by
scripts/measure_advise_cells.py) — and writes:

* docs/advise/outcomes.csv: per (group, test split, decoding, seed, method) the BLEU difference
  to the same seed's baseline student (same size, data, split and decoding);
* docs/advise/units.csv: the training table, one row per (group, decoding): the features and,
  per method, the mean Δ over seeds (test splits averaged first), its sd and the seeds;
* kd_nmt/advise/model.json: per method a ridge regression of Δ on the standardized features
  (kd_nmt/advise/model.py), the ridge penalty chosen by leave-one-group-out squared error, the
  interval from the leave-one-group-out residuals;
* docs/advise/logo.md: the leave-one-group-out test against the best fixed method and Wei et
  al.'s rule of thumb (the definitions are printed with the table).

A group is a corpus/student size/noise cell with all its seeds and decodings: it is held out
whole, and everything (standardization, penalty, weights) is refitted without it.

example:
  python scripts/fit_advise.py --check   # refit and compare with the committed model.json
"""
import csv
import glob
import io
import json
import math
import os
import statistics

import numpy as np
from tool_common import REPO, run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_write
from kd_nmt.errors import KDNMTError

METHODS = ("word_kd", "seq_kd", "word_seq", "hybrid_kd")
FEATURES = ("param_ratio", "data_complexity", "teacher_entropy", "teacher_gold_bleu", "teacher_beam_gain",
            "student_beam_search")  # = kd_nmt.advise.features.MODEL_FEATURES (checked in main)
PENALTIES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
# a method is ranked (recommended, or picked in the test) only where its fit saw this many groups:
# from one group its "prediction" is that group's gain whatever the features (word_seq's, with
# the 3+2 held out, was the 3+1's +2.53 and it was picked)
MIN_GROUPS = 3
Z = 1.96  # a 95 % normal interval

# group -> (data cell of docs/advise/data_features.csv, corpus, student size, bench CSVs); the same
# student can be in several CSVs (a later bench that reused it): the first row of a
# (checkpoint, split, decoding) is kept
NOISY = [f"{k}-{r}" for k in ("dropout", "replace", "shuffle") for r in ("0.1", "0.3")]
GROUPS = {
    "deen/small_d2/clean": ("deen-clean", "deen", "small_d2", [
        "docs/kim_rush/seed*.csv", "docs/kim_rush_token/seed*.csv", "docs/kim_rush_beam10/seed*.csv",
        "docs/size_tier28/seed1.csv"]),
    "deen/small_d1/clean": ("deen-clean", "deen", "small_d1", [
        "docs/kim_rush_d1/seed*.csv", "docs/size_tier28/seed*_d1.csv"]),
    "deen/small_d3/clean": ("deen-clean", "deen", "small_d3", [
        "docs/size_tier28/seed1.csv", "docs/size_tier28/seed*_d3.csv"]),
    **{f"deen/small_d2/{n}": (f"deen-{n}", "deen", "small_d2", [f"docs/text_complexity_tier28/{n}.csv"])
       for n in NOISY},
    "multi30k/micro/clean": ("multi30k", "multi30k", "micro", ["docs/multi30k/kim_rush/*/seed*.csv"]),
}


def build_parser():
    parser = ArgumentParser(prog="fit_advise.py", description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.add_argument("--features", default="docs/advise/data_features.csv", metavar="CSV")
    parser.add_argument("--sizes", default="docs/advise/student_sizes.csv", metavar="CSV")
    parser.add_argument("--docs", default="docs/advise", metavar="DIR",
                        help="where outcomes.csv, units.csv, logo.md go")
    parser.add_argument("--model", default="kd_nmt/advise/model.json", metavar="JSON")
    parser.add_argument("--check", action="store_true", help="write nothing; fail if model.json would change")
    return parser


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def csv_text(rows, columns):
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# the outcomes: Δ BLEU per seed, then per (group, decoding)
# --------------------------------------------------------------------------------------------
def outcomes():
    """``[{group, split, decode, beam, seed, method, bleu, baseline_bleu, delta}]`` of every study cell."""
    rows = []
    for group, (_, _, size, patterns) in GROUPS.items():
        seen, scores = set(), {}
        for pattern in patterns:
            for path in sorted(glob.glob(os.path.join(REPO, pattern))):
                if path.endswith("_buckets.csv"):  # the per-length-bucket tables beside each bench
                    continue
                for r in read_csv(path):
                    key = (r["checkpoint"], r["split"], r["decode"])
                    if r.get("size") != size or key in seen or r["method"] not in ("baseline", *METHODS):
                        continue
                    seen.add(key)
                    seed = r.get("seed") or "1"  # text_complexity_tier28's benches are seed 1's
                    scores[(r["split"], r["decode"], int(r["beam"]), int(seed), r["method"])] = float(r["bleu"])
        for (split, decode, beam, seed, method), bleu in sorted(scores.items()):
            base = scores.get((split, decode, beam, seed, "baseline"))
            if method == "baseline" or base is None:
                continue
            rows.append({"group": group, "split": split, "decode": decode, "beam": beam, "seed": seed,
                         "method": method, "bleu": bleu, "baseline_bleu": base, "delta": bleu - base})
    return rows


def units(outcome_rows, cells, sizes):
    """One training unit per (group, decoding): features and per method mean/sd/seeds of Δ."""
    out = {}
    for r in outcome_rows:
        out.setdefault((r["group"], r["decode"]), {"beam": r["beam"], "deltas": {}})
        per = out[(r["group"], r["decode"])]["deltas"].setdefault(r["method"], {})
        per.setdefault(r["seed"], []).append(r["delta"])
    table = []
    for (group, decode), unit in out.items():
        cell_name, corpus, size, _ = GROUPS[group]
        cell = cells[cell_name]
        student = sizes[(corpus, size)]
        features = {"param_ratio": student["params"] / student["teacher_params"],
                    "student_beam_search": 1.0 if unit["beam"] > 1 else 0.0,
                    **{f: cell[f] for f in FEATURES if f in cell}}
        methods = {}
        for method, by_seed in unit["deltas"].items():
            per_seed = [statistics.fmean(v) for _, v in sorted(by_seed.items())]  # test splits averaged
            methods[method] = {"mean": statistics.fmean(per_seed),
                               "sd": statistics.stdev(per_seed) if len(per_seed) > 1 else None,
                               "seeds": len(per_seed)}
        noise = cell_name.split("-", 1)[1] if cell_name.startswith("deen-") and cell_name != "deen-clean" else ""
        table.append({"group": group, "decode": decode, "beam": unit["beam"], "noise": noise,
                      "features": features, "methods": methods})
    return table


# --------------------------------------------------------------------------------------------
# the model: ridge per method on standardized features
# --------------------------------------------------------------------------------------------
def standardization(train):
    x = np.array([[u["features"][f] for f in FEATURES] for u in train])
    mean, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0  # a feature constant over the training units carries no information
    return mean, sd


def ridge(train, method, mean, sd, penalty):
    """``(intercept, weights)`` of ``method`` on the ``train`` units that measured it (intercept unpenalized)."""
    rows = [u for u in train if method in u["methods"]]
    if not rows:
        return None
    x = (np.array([[u["features"][f] for f in FEATURES] for u in rows]) - mean) / sd
    y = np.array([u["methods"][method]["mean"] for u in rows])
    design = np.hstack([np.ones((len(rows), 1)), x])
    regularizer = penalty * np.eye(design.shape[1])
    regularizer[0, 0] = 0.0
    beta = np.linalg.solve(design.T @ design + regularizer, design.T @ y)
    return float(beta[0]), beta[1:]


def groups_of(train, method):
    return len({u["group"] for u in train if method in u["methods"]})


def fit(train, penalty):
    mean, sd = standardization(train)
    methods = {m: c for m in METHODS if (c := ridge(train, m, mean, sd, penalty)) is not None}
    return {"mean": mean, "sd": sd, "penalty": penalty, "methods": methods,
            "rankable": {m for m in methods if groups_of(train, m) >= MIN_GROUPS}}


def predict(model, unit):
    z = (np.array([unit["features"][f] for f in FEATURES]) - model["mean"]) / model["sd"]
    return {m: b + float(w @ z) for m, (b, w) in model["methods"].items()}


def logo_residuals(units_, penalty):
    """``[(method, observed − predicted)]`` with each group predicted by a fit without it."""
    out = []
    for group in sorted({u["group"] for u in units_}):
        train = [u for u in units_ if u["group"] != group]
        model = fit(train, penalty)
        for u in units_:
            if u["group"] != group:
                continue
            pred = predict(model, u)
            out += [(m, v["mean"] - pred[m]) for m, v in u["methods"].items() if m in pred]
    return out


def choose_penalty(units_):
    """The penalty with the least leave-one-group-out squared error (all methods pooled)."""
    def error(penalty):
        return statistics.fmean(r * r for _, r in logo_residuals(units_, penalty))

    return min(PENALTIES, key=error)


def fit_with_penalty(units_):
    return fit(units_, choose_penalty(units_))


# --------------------------------------------------------------------------------------------
# the leave-one-group-out test and its baselines
# --------------------------------------------------------------------------------------------
def pooled_seed_sd(units_):
    """The seed sd of Δ pooled over every (unit, method) with two seeds or more (root mean variance)."""
    variances = [v["sd"] ** 2 for u in units_ for v in u["methods"].values() if v["sd"] is not None]
    return math.sqrt(statistics.fmean(variances))


def rule_of_thumb(unit):
    """Wei et al.: sentence-level KD for "complex" settings, token-level for "simple" ones: seq_kd
    when at least two of (small student: under half the teacher's parameters; noisy training text;
    beam search) hold, word_kd otherwise."""
    f = unit["features"]
    complex_ = (f["param_ratio"] < 0.5) + bool(unit["noise"]) + (f["student_beam_search"] > 0)
    return "seq_kd" if complex_ >= 2 else "word_kd"


def judge(unit, pick, noise_sd):
    """``(is the best, within noise of the best)``; noise = the best method's seed sd, or the pooled
    one where the best has one seed."""
    methods = unit["methods"]
    best = max(methods, key=lambda m: methods[m]["mean"])
    sd = methods[best]["sd"] if methods[best]["sd"] is not None else noise_sd
    return pick == best, methods[pick]["mean"] >= methods[best]["mean"] - sd


def logo_test(units_):
    noise_sd = pooled_seed_sd(units_)
    rows, errors = [], {"model": [], "average": []}
    for group in sorted({u["group"] for u in units_}):
        train = [u for u in units_ if u["group"] != group]
        model = fit_with_penalty(train)
        # the best fixed method: the highest mean Δ over the training units that measured it
        averages = {m: statistics.fmean(u["methods"][m]["mean"] for u in train if m in u["methods"])
                    for m in METHODS if groups_of(train, m) >= MIN_GROUPS}
        for u in units_:
            if u["group"] != group:
                continue
            pred = predict(model, u)
            available = [m for m in u["methods"] if m in model["rankable"]]
            for m in available:
                errors["model"].append(abs(u["methods"][m]["mean"] - pred[m]))
                errors["average"].append(abs(u["methods"][m]["mean"] - averages[m]))
            if len(available) < 2:
                rows.append({"unit": u, "pred": pred, "choice": False, "available": available})
                continue
            picks = {"model": max(available, key=lambda m: pred[m]),
                     "fixed": max(available, key=lambda m: averages[m]),
                     "rule": rule_of_thumb(u)}
            rows.append({"unit": u, "pred": pred, "choice": True, "penalty": model["penalty"], "picks": picks,
                         "judged": {k: judge(u, p, noise_sd) for k, p in picks.items()}})
    return rows, errors, noise_sd


def logo_markdown(rows, errors, noise_sd, always):
    lines = ["| group | decoding | observed Δ BLEU (seeds) | best | model's pick (predicted Δ) | best fixed | "
             "rule of thumb |", "|---|---|---|---|---|---|---|"]
    mark = {(True, True): "**best**", (False, True): "within noise", (False, False): "miss"}

    def cell(pick, judged):
        return f"{pick} ({mark[judged]})"

    for r in rows:
        u = r["unit"]
        obs = ", ".join(f"{m} {v['mean']:+.2f} ({v['seeds']})" for m, v in
                        sorted(u["methods"].items(), key=lambda kv: -kv[1]["mean"]))
        best = max(u["methods"], key=lambda m: u["methods"][m]["mean"])
        if not r["choice"]:
            preds = ", ".join(f"{m} {r['pred'][m]:+.2f}" for m in r["available"]) or "none"
            lines.append(f"| {u['group']} | {u['decode']} | {obs} | – | predicted {preds} "
                         "(fewer than two ranked methods measured: no choice) | – | – |")
            continue
        p = r["picks"]
        lines.append(f"| {u['group']} | {u['decode']} | {obs} | {best} | "
                     f"{cell(p['model'], r['judged']['model'])} ({r['pred'][p['model']]:+.2f}) | "
                     f"{cell(p['fixed'], r['judged']['fixed'])} | {cell(p['rule'], r['judged']['rule'])} |")
    scored = [r for r in rows if r["choice"]]
    n = len(scored)

    def rate(key, index):
        k = sum(r["judged"][key][index] for r in scored)
        return f"{k}/{n} ({100 * k / n:.0f} %)"

    lines += ["", "| picker | picks the best | best or within noise |", "|---|---:|---:|"]
    for key, name in (("model", "the fitted model (leave-one-group-out)"),
                      ("fixed", "the best fixed method of the training groups"),
                      ("rule", "Wei et al.'s rule of thumb")):
        lines.append(f"| {name} | {rate(key, 0)} | {rate(key, 1)} |")
    for method, (best, near) in always.items():
        lines.append(f"| always {method} | {best}/{n} ({100 * best / n:.0f} %) | {near}/{n} ({100 * near / n:.0f} %) |")
    fixed = sorted({r["picks"]["fixed"] for r in scored})
    lines += [
        "",
        f"Units scored: {n} (group × decoding with at least two ranked methods measured; a method is "
        f"ranked where the fold's fit saw it in {MIN_GROUPS} groups or more); seed noise: the best "
        f"method's sd over seeds, or where it has one seed the pooled seed sd of all multi-seed cells, "
        f"{noise_sd:.2f} BLEU. Best fixed method per fold: {', '.join(fixed)}. Mean absolute error of the "
        f"predicted Δ over every held-out (unit, method): model {statistics.fmean(errors['model']):.2f} BLEU, "
        f"the method's average over the training groups {statistics.fmean(errors['average']):.2f} BLEU.",
    ]
    return "\n".join(lines)


def always_counts(rows, noise_sd):
    out = {}
    for method in METHODS:
        scored = [r for r in rows if r["choice"]]
        if not all(method in r["unit"]["methods"] for r in scored):
            continue  # not measured everywhere: "always" it cannot be scored
        judged = [judge(r["unit"], method, noise_sd) for r in scored]
        out[method] = (sum(j[0] for j in judged), sum(j[1] for j in judged))
    return out


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def model_json(units_, model):
    residuals = logo_residuals(units_, model["penalty"])
    x = np.array([[u["features"][f] for f in FEATURES] for u in units_])
    methods = {}
    for m, (b, w) in model["methods"].items():
        r = [e for k, e in residuals if k == m]
        trained = [u for u in units_ if m in u["methods"]]
        methods[m] = {"intercept": round(b, 6), "weights": {f: round(float(v), 6) for f, v in zip(FEATURES, w)},
                      "interval_sd": round(math.sqrt(statistics.fmean(e * e for e in r)), 6),
                      "units": len(trained), "groups": groups_of(units_, m), "ranked": m in model["rankable"]}
    groups = sorted({u["group"] for u in units_})
    return {
        "what": "kd-nmt advise: per method, Δ BLEU over no KD = intercept + Σ weight·(x − mean)/sd; "
                "interval ± z·interval_sd (leave-one-group-out RMSE). Refit: python scripts/fit_advise.py",
        "fitted_on": f"{len(units_)} settings in {len(groups)} groups of 2 corpora (docs/advise/units.csv)",
        "groups": groups,
        "features": list(FEATURES),
        "mean": {f: round(float(v), 6) for f, v in zip(FEATURES, model["mean"])},
        "sd": {f: round(float(v), 6) for f, v in zip(FEATURES, model["sd"])},
        "range": {f: [round(float(lo), 6), round(float(hi), 6)] for f, lo, hi in zip(FEATURES, x.min(0), x.max(0))},
        "penalty": model["penalty"], "z": Z, "interval_percent": 95, "min_groups": MIN_GROUPS,
        "methods": methods,
    }


def units_csv(units_):
    columns = ["group", "decode", "beam", "noise", *FEATURES]
    rows = []
    for u in units_:
        row = {k: u[k] for k in ("group", "decode", "beam", "noise")}
        row.update(u["features"])
        for m in METHODS:
            v = u["methods"].get(m)
            row[f"{m}_delta"] = v["mean"] if v else ""
            row[f"{m}_sd"] = v["sd"] if v and v["sd"] is not None else ""
            row[f"{m}_seeds"] = v["seeds"] if v else 0
        rows.append(row)
    columns += [f"{m}_{k}" for m in METHODS for k in ("delta", "sd", "seeds")]
    return csv_text(rows, columns)


def main(argv):
    args = build_parser().parse_args(argv)
    from kd_nmt.advise.features import MODEL_FEATURES

    if tuple(MODEL_FEATURES) != FEATURES:
        raise KDNMTError(f"FEATURES {FEATURES} differ from kd_nmt.advise.features.MODEL_FEATURES {MODEL_FEATURES}")
    path = under_repo
    for p in (args.features, args.sizes):
        if not os.path.isfile(path(p)):
            raise KDNMTError(f"{p} not found: run scripts/measure_advise_cells.py first")
    cells = {r["data_cell"]: {k: float(v) for k, v in r.items() if k in FEATURES}
             for r in read_csv(path(args.features))}
    sizes = {(r["corpus"], r["size"]): {"params": int(r["params"]), "teacher_params": int(r["teacher_params"])}
             for r in read_csv(path(args.sizes))}
    outcome_rows = outcomes()
    units_ = units(outcome_rows, cells, sizes)
    model = model_json(units_, fit_with_penalty(units_))
    rows, errors, noise_sd = logo_test(units_)
    table = logo_markdown(rows, errors, noise_sd, always_counts(rows, noise_sd))
    text = json.dumps(model, indent=2) + "\n"
    if args.check:
        with open(path(args.model), encoding="utf-8") as f:
            if f.read() != text:
                raise KDNMTError(f"{args.model} differs from a refit: run python scripts/fit_advise.py")
        print(f"{args.model} is what the committed tables fit")
        return 0
    atomic_write(path(os.path.join(args.docs, "outcomes.csv")), csv_text(
        outcome_rows, ["group", "split", "decode", "beam", "seed", "method", "bleu", "baseline_bleu", "delta"]))
    atomic_write(path(os.path.join(args.docs, "units.csv")), units_csv(units_))
    atomic_write(path(args.model), text)
    header = ("<!-- python scripts/fit_advise.py: leave-one-group-out test of kd-nmt advise's model -->\n")
    atomic_write(path(os.path.join(args.docs, "logo.md")), header + table + "\n")
    print(table)
    print(f"\npenalty {model['penalty']}; wrote {args.model}, {args.docs}/outcomes.csv, units.csv, logo.md")
    return 0


def under_repo(path):
    """A relative path is the repository's, wherever the script is run from."""
    return path if os.path.isabs(path) else os.path.join(REPO, path)


if __name__ == "__main__":
    raise SystemExit(run_tool("fit_advise.py", main))
