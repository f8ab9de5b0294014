"""The student methods of the recipes: what each name trains on, with which options and teacher.

``recipes/lib.sh``'s ``student METHOD SAVE_DIR DATA_DIR ARCH UPDATES TEACHER SEQKD_BIN`` trains
``kd-nmt train SAVE_DIR DATA_BIN --arch ARCH --max-update UPDATES`` plus the method's options:

==================  ===========  =========  ========================================================
method              data-bin     teacher    options (after lib.sh's common ones)
==================  ===========  =========  ========================================================
baseline            gold         none       label-smoothed cross-entropy (CE)
word_kd             gold         own        word-level KD: ``--criterion word_kd --kd-alpha 0.5
                                            --kd-divergence DIVERGENCE``
todi                gold         own        word_kd with ``--kd-divergence todi``
selective_kd        gold         own        word_kd on the hardest tokens (Wang et al. 2021):
                                            ``--kd-select global --kd-select-rate SELECT_RATE``
on_policy_kd        gold         live       word_kd on the student's own greedy output for
                                            ON_POLICY of the sentences (GKD / ImitKD)
seq_kd              seqkd        none       CE on the teacher's translations (Kim & Rush 2016)
seq_kd+PARTS        variant      none       CE on a Seq-KD data variant (``variants``)
seq_inter           inter        none       CE on Seq-Inter's data (``BASE-inter-bin``)
word_seq            seqkd        own        word_kd on the Seq-KD data
word_seq+PARTS      variant      own        word_kd on a Seq-KD data variant
hybrid_kd           gold         own        ``--criterion hybrid_kd`` with ``--sentence-kd-data
                                            SEQKD_BIN``: the learned gate between the two
hybrid_kd_norm      gold         own        hybrid_kd, ``--gate-normalize`` (docs/hybrid.md)
hybrid_kd_lrN       gold         own        hybrid_kd, ``--gate-lr-scale N`` (N > 0)
hybrid_kd_norm_lrN  gold         own        both
==================  ===========  =========  ========================================================

Data-bins: gold ``DATA_DIR/bin``, seqkd ``SEQKD_BIN``, inter ``SEQKD_BIN`` without ``-bin`` plus
``-inter-bin``, variant ``variants.data_bin``. Teachers: *none*; *live* ``--teacher-path TEACHER``
always (on-policy KD scores the student's own outputs: no cache can hold them); *own* the teacher
on the data-bin the method trains on: ``--teacher-path TEACHER``, or with CACHE_TOPK=k > 0
``--teacher-cache DATA_BIN-cache-MODEk``, a cache lib.sh builds first (``cache_plan``: kd-nmt
cache-teacher, once per data-bin; a live 7.6M teacher runs a forward per batch: a 0.7M student
trains ~3x slower with it than with a cache, docs/cost.md).
"""
import re
from dataclasses import dataclass

from kd_nmt.errors import KDNMTError
from kd_nmt.recipes import choice_knob, count_knob, knob, variants

KNOBS = {  # name: (default, meaning)
    "DIVERGENCE": ("fkl", "the word-level methods' divergence (--kd-divergence; kd_nmt/divergences.py)"),
    "SELECT_RATE": ("0.5", "selective_kd: the share of tokens given the KD term (--kd-select-rate)"),
    "ON_POLICY": ("0.5", "on_policy_kd: the share of sentences on the student's own output (--kd-on-policy)"),
    "CACHE_TOPK": ("0", "k > 0: the word-level methods learn from a cache of the teacher's top k of the "
                        "data they train on (kd-nmt cache-teacher, built once per data-bin); 0: the live teacher"),
    "CACHE_MODE": ("topk-tail", "the teacher cache's --mode (topk-tail: the k ids plus the rest mass, the "
                                "gradient closest to the live teacher's, docs/cost.md; topk; sample)"),
}
CACHE_MODES = ("topk", "topk-tail", "sample")  # kd_nmt.cache.store.MODES (tested equal)
KNOWN = ("baseline word_kd todi selective_kd on_policy_kd seq_kd seq_kd+PARTS word_seq word_seq+PARTS "
         "seq_inter hybrid_kd hybrid_kd_norm hybrid_kd_lrN hybrid_kd_norm_lrN")
CE = ["--task", "translation", "--criterion", "label_smoothed_cross_entropy"]


def _kd(k):
    return ["--task", "kd_translation", "--criterion", "word_kd", "--kd-alpha", "0.5", "--kd-divergence",
            k["DIVERGENCE"]]


@dataclass(frozen=True)
class Method:
    """A base method: ``data`` (gold, seqkd, inter, variant), ``teacher`` (none, live, own) and
    ``options(knobs, teacher_options, seqkd)``, the fairseq-train options."""

    data: str
    teacher: str
    options: object


METHODS = {
    "baseline": Method("gold", "none", lambda k, t, s: CE),
    "word_kd": Method("gold", "own", lambda k, t, s: _kd(k) + t),
    "todi": Method("gold", "own", lambda k, t, s: _kd(k) + t + ["--kd-divergence", "todi"]),
    "selective_kd": Method("gold", "own", lambda k, t, s: _kd(k) + t + [
        "--kd-select", "global", "--kd-select-rate", k["SELECT_RATE"]]),
    "on_policy_kd": Method("gold", "live", lambda k, t, s: _kd(k) + t + [
        "--kd-on-policy", k["ON_POLICY"], "--kd-student-sampling", "greedy"]),
    "seq_kd": Method("seqkd", "none", lambda k, t, s: CE),
    "seq_kd+": Method("variant", "none", lambda k, t, s: CE),
    "seq_inter": Method("inter", "none", lambda k, t, s: CE),
    "word_seq": Method("seqkd", "own", lambda k, t, s: _kd(k) + t),
    "word_seq+": Method("variant", "own", lambda k, t, s: _kd(k) + t),
    "hybrid_kd": Method("gold", "own", lambda k, t, s: [
        "--task", "kd_translation", *t, "--sentence-kd-data", s, "--criterion", "hybrid_kd",
        "--kd-alpha", "0.5", "--kd-divergence", k["DIVERGENCE"]]),
}
_VARIANT = re.compile(r"(seq_kd|word_seq)\+(.*)")
_GATE = re.compile(r"hybrid_kd(_norm)?(?:_lr([0-9]+(?:\.[0-9]+)?))?")


@dataclass(frozen=True)
class Resolved:
    """A method name read: its base ``method``, its Seq-KD ``variant`` (or None) and the options
    its name adds (``gate``: hybrid_kd's ``--gate-normalize`` / ``--gate-lr-scale N``)."""

    name: str
    method: Method
    variant: object = None
    gate: tuple = ()


def resolve(name):
    """What the method ``name`` means; an unknown name is one error listing the known ones."""
    if name in METHODS and not name.endswith("+"):
        return Resolved(name, METHODS[name])
    variant = _VARIANT.fullmatch(name)
    if variant:
        return Resolved(name, METHODS[variant.group(1) + "+"], variants.parse(variant.group(2), name))
    gate = _GATE.fullmatch(name)
    if gate:
        scale = gate.group(2)
        if scale is not None and float(scale) <= 0:
            raise KDNMTError(f"method {name}: the gate's step scale N of hybrid_kd_lrN must be > 0")
        options = (("--gate-normalize",) if gate.group(1) else ()) + (("--gate-lr-scale", scale) if scale else ())
        return Resolved(name, METHODS["hybrid_kd"], None, options)
    raise KDNMTError(f"the methods are {KNOWN} (PARTS: nbestN, mbrchrf, mbrbleu, monoN, filter, joined by +; "
                     f"N a number); unknown method {name}")


def method_knobs(environ=None):
    """The knobs the options read, checked: ``{name: value}``."""
    values = {name: knob(KNOBS, name, environ) for name in ("DIVERGENCE", "SELECT_RATE", "ON_POLICY")}
    values["CACHE_TOPK"] = count_knob(KNOBS, "CACHE_TOPK", environ)
    values["CACHE_MODE"] = choice_knob(KNOBS, "CACHE_MODE", CACHE_MODES, environ)
    return values


def train_bin(resolved, data, seqkd):
    """The data-bin the method trains on."""
    kind = resolved.method.data
    if kind == "gold":
        return f"{data}/bin"
    if kind == "seqkd":
        return seqkd
    if kind == "inter":
        return f"{variants.strip_bin(seqkd)}-inter-bin"
    return variants.data_bin(seqkd, resolved.variant)


def _cache(resolved, data, seqkd, knobs):
    """``(data-bin, cache folder)`` of the method's teacher cache, or None (no cache)."""
    if resolved.method.teacher != "own" or knobs["CACHE_TOPK"] == 0:
        return None
    on = train_bin(resolved, data, seqkd)
    on = on[:-1] if on.endswith("/") else on
    return on, f"{on}-cache-{knobs['CACHE_MODE']}{knobs['CACHE_TOPK']}"


def train_args(name, save, data, arch, updates, teacher, seqkd, environ=None):
    """lib.sh's ``train`` arguments of the method: ``SAVE_DIR DATA_BIN ARCH UPDATES options...``
    (the student's own options follow them)."""
    resolved, knobs = resolve(name), method_knobs(environ)
    cache = _cache(resolved, data, seqkd, knobs)
    if resolved.method.teacher == "none":
        teach = []
    elif cache:
        teach = ["--teacher-cache", cache[1]]
    else:
        teach = ["--teacher-path", teacher]
    options = resolved.method.options(knobs, teach, seqkd)
    return [save, train_bin(resolved, data, seqkd), arch, str(updates), *options, *resolved.gate]


def cache_plan(name, data, teacher, seqkd, environ=None):
    """The ``kd-nmt cache-teacher`` arguments that build the method's teacher cache, or ``[]``
    when it learns from no cache (no teacher, the live one, or CACHE_TOPK 0)."""
    knobs = method_knobs(environ)
    cache = _cache(resolve(name), data, seqkd, knobs)
    if not cache:
        return []
    return ["--teacher", teacher, "--data-bin", cache[0], "--split", "train", "--topk", str(knobs["CACHE_TOPK"]),
            "--mode", knobs["CACHE_MODE"], "--out", cache[1]]
