"""sacreBLEU scores with signatures, per-length buckets, and paired bootstrap resampling.

Everything is computed by sacreBLEU itself (``sacrebleu.metrics.BLEU`` / ``CHRF`` with their
default settings, ``sacrebleu.significance.PairedTest`` for the bootstrap), so a score here
is the score ``sacrebleu -m bleu chrf`` prints for the same files, and the signature says so.
"""
from kd_nmt.errors import KDNMTError

# the default bucket bounds: source words <=10, 11-25, >25
DEFAULT_BUCKETS = (10, 25)


def _metrics(references=None):
    from sacrebleu.metrics import BLEU, CHRF

    refs = None if references is None else [list(references)]
    return BLEU(references=refs), CHRF(references=refs)


def corpus_scores(hypotheses, references):
    """``{"bleu", "chrf", "bleu_signature", "chrf_signature", "bleu_detail"}`` for one system."""
    bleu, chrf = _metrics()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return {
        "bleu": b.score,
        "chrf": c.score,
        "bleu_signature": bleu.get_signature().format(),
        "chrf_signature": chrf.get_signature().format(),
        "bleu_detail": str(b),
    }


# --------------------------------------------------------------------------------------------
# length buckets
# --------------------------------------------------------------------------------------------
def parse_buckets(text):
    """``"10,25"`` → ``(10, 25)``; ``"none"`` / ``""`` → ``()`` (no buckets)."""
    if text is None or str(text).strip().lower() in ("", "none", "off", "0"):
        return ()
    try:
        bounds = tuple(int(x) for x in str(text).replace(" ", "").split(",") if x)
    except ValueError:
        raise KDNMTError(f"--buckets wants increasing word counts like 10,25 (got {text!r})") from None
    if any(b <= 0 for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise KDNMTError(f"--buckets wants increasing positive word counts like 10,25 (got {text!r})")
    return bounds


def bucket_labels(bounds):
    """``(10, 25)`` → ``["<=10", "11-25", ">25"]``."""
    labels, low = [], 1
    for i, high in enumerate(bounds):
        labels.append(f"<={high}" if i == 0 else f"{low}-{high}")
        low = high + 1
    labels.append(f">{bounds[-1]}")
    return labels


def bucket_of(n_words, bounds):
    for i, high in enumerate(bounds):
        if n_words <= high:
            return i
    return len(bounds)


def bucket_scores(hypotheses, references, source_lengths, bounds):
    """BLEU and chrF per source-length bucket: ``[{"bucket", "n_sentences", "bleu", "chrf"}]``.

    An empty bucket has ``n_sentences`` 0 and no scores (``None``).
    """
    if not bounds:
        return []
    labels = bucket_labels(bounds)
    groups = [[] for _ in labels]
    for i, n in enumerate(source_lengths):
        groups[bucket_of(n, bounds)].append(i)
    rows = []
    for label, idx in zip(labels, groups):
        row = {"bucket": label, "n_sentences": len(idx), "bleu": None, "chrf": None}
        if idx:
            scores = corpus_scores([hypotheses[i] for i in idx], [references[i] for i in idx])
            row["bleu"], row["chrf"] = scores["bleu"], scores["chrf"]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# paired bootstrap resampling
# --------------------------------------------------------------------------------------------
def paired_bootstrap(baseline, systems, references, n_samples=1000):
    """Paired bootstrap resampling (Koehn 2004) of each system against ``baseline``.

    ``baseline`` and ``systems`` are ``(name, hypotheses)``; sacreBLEU's ``PairedTest`` (test
    type ``bs``) does the work, with its fixed seed (``SACREBLEU_SEED``, default 12345).
    Returns ``(signatures, results)``: ``results[name] = {"bleu": {...}, "chrf": {...}}`` with
    ``score``, ``p_value`` (``None`` for the baseline), ``mean`` and ``ci`` (95 % half-width).

    One deliberate deviation: sacreBLEU counts resampled differences *strictly greater* than
    the observed one, so a system whose output is identical to the baseline's (observed and
    every resampled difference 0) gets the smallest possible p = 1/(n+1) — "significant". Its
    p-value is reported as 1.0 instead (nothing differs, nothing can be significant), and the
    result carries ``"identical_to_baseline": True``.
    """
    from sacrebleu.significance import PairedTest

    if n_samples <= 0:
        raise KDNMTError("--bootstrap wants a positive number of resamples (or 0 to skip the test)")
    bleu, chrf = _metrics(references)
    named = [(baseline[0], list(baseline[1]))] + [(n, list(h)) for n, h in systems]
    test = PairedTest(named, {"BLEU": bleu, "chrF": chrf}, references=None,
                      test_type="bs", n_samples=n_samples)
    sigs, scores = test()
    keys = [k for k in scores if k != "System"]  # BLEU, chrF2 (metric names as sacreBLEU writes them)
    results = {}
    for row, (name, hyps) in enumerate(named):
        identical = row > 0 and hyps == named[0][1]
        entry = {"identical_to_baseline": identical}
        for key, short in zip(keys, ("bleu", "chrf")):
            r = scores[key][row]
            p = r.p_value
            if identical:
                p = 1.0
            entry[short] = {"score": r.score, "p_value": p, "mean": _float(r.mean), "ci": _float(r.ci)}
        results[name] = entry
    signatures = {("BLEU" if k.startswith("BLEU") else "chrF"): sig.format() for k, sig in sigs.items()}
    return signatures, results


def _float(x):
    return None if x is None else float(x)
