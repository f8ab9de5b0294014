"""IBM model 1 word alignment and the data complexity of Zhou et al. (ICLR 2020).

Zhou, Gu and Neubig ("Understanding knowledge distillation in non-autoregressive machine
translation") measure how *deterministic* a parallel corpus is: align it word by word, read
``p(y | x)`` off the alignment counts, and average the conditional entropy over the source
vocabulary,

    C(d) = 1/|V_x| · Σ_{x ∈ V_x} H(y | x),   H(y | x) = −Σ_y p(y | x) log p(y | x)   (nats).

They align with fast_align; here the aligner is our own: a few EM iterations of IBM model 1
(Brown et al. 1993) in numpy, on the sample itself, so the measure needs nothing outside the
project. Model 1 has one parameter table ``t(y | x)``; its E-step is closed-form, and only pairs
of words that co-occur in some sentence pair ever get mass, so the table is stored sparsely, one
entry per co-occurring ``(x, y)``: a few million for 5,000 sentences.

Each target word is then aligned to its most probable source word (Viterbi under model 1, the
empty word ``NULL`` included); target words aligned to ``NULL`` are not counted, nor is ``NULL``
in ``V_x``.
"""
from dataclasses import dataclass

import numpy as np

NULL = "<NULL>"


@dataclass
class CooccurrenceTable:
    """Every (source position, target position) pair of every sentence pair, as flat arrays."""

    pair: np.ndarray  # per occurrence: the index of its (x, y) word pair in the sparse table
    token: np.ndarray  # per occurrence: the index of its target token in the corpus
    pair_source: np.ndarray  # per (x, y) entry: the id of x
    pair_target: np.ndarray  # per (x, y) entry: the id of y
    source_vocab: list  # id -> source word (NULL first when used)
    target_vocab: list  # id -> target word
    n_tokens: int  # target tokens in the corpus


def cooccurrences(pairs, null=True):
    """The sparse co-occurrence table of ``pairs`` (``[(source words, target words)]``)."""
    source_ids, target_ids = {}, {}
    if null:
        source_ids[NULL] = 0
    occ_x, occ_y, occ_token = [], [], []
    n_tokens = 0
    for src, tgt in pairs:
        xs = ([0] if null else []) + [source_ids.setdefault(w, len(source_ids)) for w in src]
        ys = [target_ids.setdefault(w, len(target_ids)) for w in tgt]
        if not xs or not ys:
            n_tokens += len(ys)
            continue
        xs = np.asarray(xs, dtype=np.int64)
        ys = np.asarray(ys, dtype=np.int64)
        occ_x.append(np.tile(xs, len(ys)))
        occ_y.append(np.repeat(ys, len(xs)))
        occ_token.append(np.repeat(np.arange(n_tokens, n_tokens + len(ys)), len(xs)))
        n_tokens += len(ys)
    if not occ_x:
        raise ValueError("no sentence pair has both a source and a target word")
    x = np.concatenate(occ_x)
    y = np.concatenate(occ_y)
    key = x * max(len(target_ids), 1) + y
    unique, pair = np.unique(key, return_inverse=True)
    return CooccurrenceTable(
        pair=pair, token=np.concatenate(occ_token),
        pair_source=unique // max(len(target_ids), 1), pair_target=unique % max(len(target_ids), 1),
        source_vocab=list(source_ids), target_vocab=list(target_ids), n_tokens=n_tokens,
    )


def ibm1(table, iterations=5, on_iteration=None):
    """``t(y | x)`` per entry of ``table`` after ``iterations`` EM steps from uniform
    (``on_iteration()`` called after each: a progress bar).

    A uniform start makes the first E-step split each target word evenly over its sentence's
    source words, whatever the uniform value; so ``t`` starts at 1 on every co-occurring pair.
    """
    t = np.ones(len(table.pair_source))
    n_source = len(table.source_vocab)
    for _ in range(iterations):
        p = t[table.pair]
        denominator = np.bincount(table.token, weights=p, minlength=table.n_tokens)
        share = p / denominator[table.token]  # E-step: the posterior of each alignment link
        counts = np.bincount(table.pair, weights=share, minlength=len(t))
        totals = np.bincount(table.pair_source, weights=counts, minlength=n_source)
        t = counts / totals[table.pair_source]  # M-step: normalise per source word
        if on_iteration is not None:
            on_iteration()
    return t


def viterbi_counts(table, t):
    """``{(x id, y id): n}``: each target token aligned to its most probable source word."""
    p = t[table.pair]
    # the best link of each target token: sort its links by probability, keep the last
    order = np.lexsort((p, table.token))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = table.token[order][1:] != table.token[order][:-1]
    best = table.pair[order][last]
    entries, n = np.unique(best, return_counts=True)
    return entries, n


def conditional_entropy(table, t, null=True):
    """Zhou et al.'s ``C(d)`` (nats) and the number of source words it averages over."""
    entries, n = viterbi_counts(table, t)
    x = table.pair_source[entries]
    keep = x != 0 if null else np.ones(len(x), dtype=bool)
    x, n = x[keep], n[keep].astype(float)
    if not len(x):
        return 0.0, 0
    totals = np.bincount(x, weights=n)
    p = n / totals[x]
    h = np.bincount(x, weights=-p * np.log(p))
    seen = np.unique(x)
    return float(h[seen].mean()), int(len(seen))


def data_complexity(pairs, iterations=5, null=True, on_iteration=None):
    """``(C(d) in nats, |V_x|)`` of ``pairs`` (``[(source words, target words)]``)."""
    table = cooccurrences(pairs, null=null)
    t = ibm1(table, iterations, on_iteration)
    return conditional_entropy(table, t, null=null)
