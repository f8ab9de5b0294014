"""Seed-level statistics: a method against its baseline with the training seed as the unit.

A paired bootstrap over the test sentences of one trained model answers "would this model score
differently on other sentences?" — not "would this *method* win again with another seed?". Two
seeds of the same method often differ by more than the bootstrap's interval (docs/results.md), so
a claim about a method is made here from the per-seed differences ``d_s = metric(method, seed s) −
metric(baseline, seed s)``, paired by seed (same data order, same initialisation seed):

- mean difference ``d̄`` and its 95 % Student-t interval ``d̄ ± t(0.975, n−1) · sd(d) / √n``;
- the two-sided p-value of the one-sample t-test of ``d`` against 0;
- Holm's step-down correction of those p-values across the rows of one table (one family per
  metric), which keeps the chance of any false call in the table at 5 %;
- the call: "gain"/"loss" where the Holm-adjusted p < 0.05 (then the 95 % interval excludes 0 as
  well), otherwise "no difference shown". One seed gives no interval: "pilot (1 seed)".

Pure math, no dependencies (the t distribution from the regularised incomplete beta function).
"""
import math

ALPHA = 0.05


def _betacf(a, b, x, iterations=300, eps=3e-16):
    """Continued fraction of the incomplete beta function (Numerical Recipes §6.4, Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iterations + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a, b, x):
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf2(t, df):
    """Two-sided tail probability P(|T| ≥ |t|) of Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p, df):
    """The ``p`` quantile (p > 0.5) of Student's t, by bisection on the tail probability."""
    target = 2.0 * (1.0 - p)  # two-sided tail beyond the quantile
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_sf2(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def paired_seed_difference(method_scores, baseline_scores, level=0.95):
    """Per-seed differences of two ``{seed: score}`` maps (seeds both have) and their summary.

    Returns a dict: ``n`` (seeds), ``diffs`` (by seed order), ``mean``, ``sd`` (sample), ``low`` and
    ``high`` (the t interval; None for one seed), ``p`` (two-sided t-test; None for one seed; 0.0
    when every seed differs by the same nonzero amount, 1.0 when all differences are 0).
    """
    seeds = sorted(set(method_scores) & set(baseline_scores), key=str)
    diffs = [float(method_scores[s]) - float(baseline_scores[s]) for s in seeds]
    n = len(diffs)
    out = {"n": n, "seeds": seeds, "diffs": diffs, "mean": None, "sd": None, "low": None, "high": None, "p": None}
    if not n:
        return out
    mean = sum(diffs) / n
    out["mean"] = mean
    if n < 2:
        return out
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    out["sd"] = sd
    se = sd / math.sqrt(n)
    half = t_quantile(0.5 + level / 2.0, n - 1) * se
    out["low"], out["high"] = mean - half, mean + half
    if se == 0.0:
        out["p"] = 1.0 if mean == 0.0 else 0.0
    else:
        out["p"] = t_sf2(mean / se, n - 1)
    return out


def holm(pvalues):
    """Holm's step-down adjusted p-values, in the input order; ``None`` entries are skipped."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(indexed)
    adjusted = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def call(summary, adjusted_p, alpha=ALPHA):
    """The word a table prints: "gain", "loss", "no difference shown" or "pilot (1 seed)"."""
    if summary["n"] < 2 or adjusted_p is None:
        return f"pilot ({summary['n']} seed{'s' if summary['n'] != 1 else ''})"
    if adjusted_p < alpha and summary["low"] is not None and (summary["low"] > 0 or summary["high"] < 0):
        return "gain" if summary["mean"] > 0 else "loss"
    return "no difference shown"


def format_interval(summary):
    """``"+1.38 [+1.03, +1.73]"``, or ``"+1.38 (1 seed)"``, or ``"–"``."""
    if summary["mean"] is None:
        return "–"
    if summary["low"] is None:
        return f"{summary['mean']:+.2f} (1 seed)"
    return f"{summary['mean']:+.2f} [{summary['low']:+.2f}, {summary['high']:+.2f}]"
