"""The fitted model behind ``kd-nmt advise``: one ridge regression per KD method.

For each method ``m`` (word_kd, seq_kd, word_seq, hybrid_kd) the predicted BLEU difference over
the same student trained without KD is linear in the standardized features,

    Δ_m = intercept_m + Σ_f weight_m,f · (x_f − mean_f) / sd_f,

with the interval ``Δ_m ± z · interval_sd_m``: ``interval_sd_m`` is the method's root mean squared
error when each study group is predicted by a fit that never saw it (leave-one-group-out, in
``scripts/fit_advise.py``), so the interval is as wide as the model's out-of-sample error, seed
noise included. The recommendation is the method with the highest Δ among those the fit saw in
enough groups (``ranked``: a method measured in one or two groups is predicted, not ranked); the
measurements that drove it are the features' shares of its margin over the runner-up. Everything is in
``kd_nmt/advise/model.json``, refitted from the committed tables by ``scripts/fit_advise.py``.
"""
import json
import os

from kd_nmt.errors import KDNMTError

DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.json")


def load_model(path=None):
    path = path or DEFAULT_MODEL
    try:
        with open(path, encoding="utf-8") as f:
            model = json.load(f)
    except FileNotFoundError:
        raise KDNMTError(f"advise model not found: {path!r}") from None
    except json.JSONDecodeError as exc:
        raise KDNMTError(f"advise model {path!r} is not valid JSON: {exc}") from None
    missing = [k for k in ("features", "mean", "sd", "methods", "z") if k not in model]
    if missing:
        raise KDNMTError(f"advise model {path!r} lacks {', '.join(missing)}: refit it with scripts/fit_advise.py")
    return model


def standardized(model, features):
    """``{feature: (x − mean) / sd}``; a feature the model reads but ``features`` lacks is an error."""
    missing = [f for f in model["features"] if f not in features]
    if missing:
        raise KDNMTError(f"no measurement of {', '.join(missing)} for the advise model")
    return {f: (features[f] - model["mean"][f]) / model["sd"][f] for f in model["features"]}


def contributions(model, method, z):
    """``{feature: weight · z}`` of ``method``: what each feature adds to its Δ."""
    weights = model["methods"][method]["weights"]
    return {f: weights[f] * z[f] for f in model["features"]}


def predict(model, features):
    """``{method: {"delta", "low", "high", "contributions"}}`` for one setting's ``features``."""
    z = standardized(model, features)
    out = {}
    for method, fit in model["methods"].items():
        parts = contributions(model, method, z)
        delta = fit["intercept"] + sum(parts.values())
        half = model["z"] * fit["interval_sd"]
        out[method] = {"delta": delta, "low": delta - half, "high": delta + half, "intercept": fit["intercept"],
                       "ranked": fit.get("ranked", True), "contributions": parts}
    return out


# the part of a margin that is no measurement: the methods' average gains over the study differ
AVERAGE = "average over the study"


def recommend(predictions):
    """``(best method, runner-up, {feature: its share of the margin})``, the shares largest first;
    ``AVERAGE`` is the difference of the two methods' intercepts (their gains at the mean setting)."""
    ranked = sorted((m for m in predictions if predictions[m]["ranked"]), key=lambda m: -predictions[m]["delta"])
    best = ranked[0]
    second = ranked[1] if len(ranked) > 1 else None
    if second is None:
        return best, None, {}
    a, b = predictions[best]["contributions"], predictions[second]["contributions"]
    margin = {f: a[f] - b[f] for f in a}
    margin[AVERAGE] = predictions[best]["intercept"] - predictions[second]["intercept"]
    return best, second, dict(sorted(margin.items(), key=lambda kv: -abs(kv[1])))


def outside_range(model, features):
    """Features outside the range the model was fitted on: ``{feature: (value, low, high)}``."""
    out = {}
    for f, (low, high) in model.get("range", {}).items():
        x = features.get(f)
        # the fitted features are stored rounded (5 decimals in docs/advise/data_features.csv): a
        # fitted setting measured again must not fall outside its own range by that rounding
        slack = 1e-4 * (high - low) + 1e-5
        if x is not None and not (low - slack <= x <= high + slack):
            out[f] = (x, low, high)
    return out
