"""The Seq-KD data variants: the ``+parts`` of a method name (``seq_kd+nbest4+mono3000``).

A variant is the 1-best Seq-KD data (``relabel`` in ``recipes/lib.sh``: the teacher's beam search
over the train source) changed by its parts, joined by ``+``, each at most once:

=========  ===================================================================================
part       what it does
=========  ===================================================================================
nbestN     the teacher's N best hypotheses per source, each source N times (``kd-nmt relabel
           --nbest N --keep-nbest N``; N >= 1)
mbrchrf,   per source the MBR choice (utility chrF or BLEU) among the teacher's 5-best
mbrbleu    (``--nbest 5 --select-by-mbr U``); nbestN and mbrU both choose how the teacher
           decodes: one of them at most
monoN      N monolingual German lines (``MONO_FILE``, default ``python -m data.monolingual``'s),
           relabeled the same way, appended after the train pairs (N >= 1)
filter     ``kd-nmt filter``'s cheap checks (empty, repeats > 3, length ratio outside 0.5-2.5,
           duplicates) and, when ``BACKWARD`` is set, its worst ``FILTER_DROP`` (0.05) backward
           scores
=========  ===================================================================================

The files, from the 1-best data-bin ``SEQKD_BIN`` (``work/x/seqkd-bin``; ``BASE`` is it without
``-bin``) and the prepared corpus ``DATA_DIR``:

* the variant's data-bin: ``BASE+parts-bin`` (``seqkd+nbest4+mono3000-bin``);
* the teacher's text of each input (``DATA_DIR/tok/train.de``, and ``DATA_DIR/tok/monoN.de``):
  ``BASE<tag>.<input>.en``, the tag being the decoding part (``+nbest4``, ``+mbrchrf``, or none),
  so that variants decoding alike share it (``seqkd.train.en`` is the 1-best relabel's own);
  with +nbestN its sources, each N times, are ``BASE<tag>.<input>.en.source``;
* with +monoN the joined pair ``BASE+parts.de`` / ``.en`` (the train lines, then the monolingual
  ones); with +filter the kept pair ``BASE+parts.kept.de`` / ``.en``.

``hybrid_kd`` always takes the plain ``SEQKD_BIN``: it pairs line i of the Seq-KD data with gold
line i.

The knobs of ``KNOBS`` name the variant a recipe's plain ``seq_kd`` and ``word_seq`` become
(``with_knobs``: the recipes calling lib.sh's ``with_seqkd_knobs``), in this order:
``+nbestN`` (NBEST > 1), ``+mbrU`` (MBR), ``+monoN`` (MONO > 0), ``+filter`` (FILTER=1).
"""
import re
from dataclasses import dataclass

from kd_nmt.errors import KDNMTError
from kd_nmt.recipes import choice_knob, count_knob

KNOBS = {  # name: (default, meaning)
    "NBEST": ("0", "N > 1: seq_kd and word_seq train on the teacher's N best per source (+nbestN)"),
    "MBR": ("", "chrf or bleu: seq_kd and word_seq train on the MBR choice among the teacher's 5-best (+mbrU)"),
    "MONO": ("0", "N > 0: seq_kd and word_seq train with N relabeled monolingual lines appended (+monoN)"),
    "FILTER": ("0", "1: seq_kd and word_seq train on the data kd-nmt filter keeps (+filter)"),
}
PARTS = "+nbestN, +mbrchrf, +mbrbleu, +monoN, +filter"
_COUNT = re.compile(r"(nbest|mono)([0-9]+)")


@dataclass(frozen=True)
class Variant:
    """One variant's parts and what they ask of the teacher and the data."""

    parts: tuple  # the parts as written, in order: ("nbest4", "mono3000")
    keep: int = 1  # hypotheses kept per source (+nbestN)
    mono: int = 0  # monolingual lines appended (+monoN)
    filter: bool = False  # kd-nmt filter instead of a plain binarize (+filter)
    decode: tuple = ()  # the kd-nmt relabel options of its decoding
    tag: str = ""  # the decoding part ("+nbest4", "+mbrchrf", ""): in the name of the teacher's text

    @property
    def suffix(self):
        """``+nbest4+mono3000``: what the variant adds to a method's and a data-bin's name."""
        return "".join(f"+{p}" for p in self.parts)


def parse(parts, where=None):
    """The ``Variant`` of ``parts`` (``+nbest4+mono3000``, the leading ``+`` optional); an unknown
    or repeated part is one error naming the known ones (``where``: the method it came from)."""
    text = parts[1:] if parts.startswith("+") else parts
    where = f" in {where}" if where else ""
    keep, mono, filtered, decode, tag, seen = 1, 0, False, (), "", {}
    for part in text.split("+"):
        count = _COUNT.fullmatch(part)
        if count:
            kind, n = count.group(1), int(count.group(2))
            if n < 1:
                raise KDNMTError(f"Seq-KD variant part +{part}{where}: N must be at least 1")
        elif part in ("mbrchrf", "mbrbleu"):
            kind = "mbr"
        elif part == "filter":
            kind = "filter"
        else:
            raise KDNMTError(f"unknown Seq-KD variant part +{part}{where} (the parts: {PARTS})")
        group = "decode" if kind in ("nbest", "mbr") else kind
        if group in seen:
            raise KDNMTError(f"Seq-KD variant parts +{seen[group]} and +{part}{where}: "
                             + ("both choose how the teacher decodes; keep one" if group == "decode" else "keep one"))
        seen[group] = part
        if kind == "nbest":
            keep, decode, tag = n, ("--nbest", str(n), "--keep-nbest", str(n)), f"+{part}"
        elif kind == "mbr":
            decode, tag = ("--nbest", "5", "--select-by-mbr", part[len("mbr"):]), f"+{part}"
        elif kind == "mono":
            mono = n
        else:
            filtered = True
    return Variant(tuple(text.split("+")), keep, mono, filtered, decode, tag)


def strip_bin(path):
    """``path`` without a trailing ``-bin`` (bash's ``${path%-bin}``)."""
    return path[:-len("-bin")] if path.endswith("-bin") else path


def relabel_output(out_bin):
    """The teacher's text that lib.sh's ``relabel`` binarizes into ``out_bin``: ``BASE.train.en``
    (the 1-best text every variant decoding as it does reuses)."""
    return f"{strip_bin(out_bin)}.train.en"


def data_bin(seqkd, variant):
    """The variant's data-bin beside the 1-best one: ``BASE+parts-bin``."""
    return f"{strip_bin(seqkd)}{variant.suffix}-bin"


def data_plan(variant, seqkd, data):
    """What lib.sh's ``seqkd_data`` runs for one variant, as names -> values (lists for arrays):

    ``dest`` the data-bin; ``decode`` the relabel options; ``mono`` N and ``mono_input`` the
    monolingual source to build (``""`` without +monoN); per input (``inputs``) the teacher's text
    (``targets``) and its source side (``sources``); ``joined_source`` / ``joined_target`` the pair
    they are joined into (``""`` with one input); ``filter`` (0 or 1) with its ``kept_source`` /
    ``kept_target``; ``repeat`` and ``extra_lines`` of ``kd-nmt relabel binarize``."""
    base, pair = strip_bin(seqkd), strip_bin(data_bin(seqkd, variant))
    mono_input = f"{data}/tok/mono{variant.mono}.de" if variant.mono else ""
    inputs = [f"{data}/tok/train.de"] + ([mono_input] if mono_input else [])
    targets, sources = [], []
    for path in inputs:
        name = path.rsplit("/", 1)[-1][:-len(".de")]
        targets.append(relabel_output(seqkd) if (variant.tag, name) == ("", "train")
                       else f"{base}{variant.tag}.{name}.en")
        sources.append(f"{targets[-1]}.source" if variant.keep > 1 else path)
    joined = len(inputs) > 1
    return {
        "dest": f"{pair}-bin", "decode": list(variant.decode), "mono": variant.mono, "mono_input": mono_input,
        "inputs": inputs, "targets": targets, "sources": sources,
        "joined_source": f"{pair}.de" if joined else "", "joined_target": f"{pair}.en" if joined else "",
        "filter": int(variant.filter), "kept_source": f"{pair}.kept.de", "kept_target": f"{pair}.kept.en",
        "repeat": variant.keep, "extra_lines": variant.mono * variant.keep,
    }


def knob_suffix(environ=None):
    """The ``+parts`` the knobs ask for (``""`` for none): NBEST > 1, MBR, MONO > 0, FILTER=1."""
    nbest, mbr = count_knob(KNOBS, "NBEST", environ), choice_knob(KNOBS, "MBR", ("", "chrf", "bleu"), environ)
    mono, filtered = count_knob(KNOBS, "MONO", environ), choice_knob(KNOBS, "FILTER", ("0", "1"), environ)
    suffix = (f"+nbest{nbest}" if nbest > 1 else "") + (f"+mbr{mbr}" if mbr else "") \
        + (f"+mono{mono}" if mono > 0 else "") + ("+filter" if filtered == "1" else "")
    if suffix:
        parse(suffix, "the knobs NBEST / MBR / MONO / FILTER")  # NBEST > 1 with MBR: one decoding at most
    return suffix


def with_knobs(methods, environ=None):
    """``methods`` with the plain ``seq_kd`` and ``word_seq`` turned into the knobs' variant."""
    suffix = knob_suffix(environ)
    return [m + suffix if m in ("seq_kd", "word_seq") else m for m in methods]
