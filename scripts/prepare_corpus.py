#!/usr/bin/env python3
"""Prepare any parallel corpus for kd_nmt: raw text -> sentencepiece -> fairseq data-bin.

The same steps as data/prepare.py for the project's Debian corpus (its functions, not a copy):
sacremoses punctuation normalisation per language, one joint sentencepiece unigram model trained
on the train split, every split encoded to pieces, fairseq-preprocess --joined-dictionary.

RAW holds UTF-8 text, one sentence per line, the two sides line-aligned:
  train.SRC  train.TGT    required
  valid.SRC  valid.TGT    required (fairseq-train validates on it)
  test*.SRC  test*.TGT    any number: test, test_news, test-2019, ... (letters, digits, _ and -)
Every file is checked before any work: a missing side, a file that is not UTF-8 (its line) or
two sides with different line counts (both counts) stop with one line and exit status 2.

OUT/ then holds raw/ (normalised text: the references for `kd-nmt bench --reference`),
spm.model, tok/ (pieces: the input of `kd-nmt relabel`), bin/ (the data-bin to train on; its
path is printed on stdout) and prepare.json. Each step is skipped when its output exists, so an
interrupted run resumes; an OUT begun or finished from other input files (sha256) or options is
refused with one line (its skipped steps would keep the old corpus): delete OUT to prepare again.

example:
  python scripts/prepare_corpus.py --raw ~/corpora/fr-en --out work/fren --vocab 8000 \\
      --source-lang fr --target-lang en
  kd-nmt train work/fren/bin --task translation --arch transformer_kd_small ...
  # students of a shipped teacher reuse its vocabulary:
  python scripts/prepare_corpus.py --raw ~/corpora/de-en --out work/deen \\
      --spm-model models/teacher-deen/spm.model --srcdict models/teacher-deen/dict.de.txt
"""
import os
import re
import sys

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.lines import TextFile
from kd_nmt.errors import KDNMTError

PROG = "prepare_corpus"
# a split name becomes part of fairseq's file names ({split}.{src}-{tgt}.{lang}.bin)
TEST_SPLIT = re.compile(r"test[A-Za-z0-9_-]*")


def find_splits(raw, src, tgt):
    """``["train", "valid", test splits...]`` of the corpus directory ``raw``, sides checked.

    One KDNMTError for a missing train/valid file, a test split with one side only or a test
    file name fairseq cannot use.
    """
    if not os.path.isdir(raw):
        raise KDNMTError(f"corpus directory not found: {raw!r}")
    for split in ("train", "valid"):
        missing = [f"{split}.{lang}" for lang in (src, tgt) if not os.path.isfile(os.path.join(raw, f"{split}.{lang}"))]
        if missing:
            raise KDNMTError(
                f"{raw} has no {' and no '.join(missing)}: a corpus needs train.{src}, train.{tgt}, "
                f"valid.{src} and valid.{tgt} (see --source-lang/--target-lang)"
            )
    tests = {}
    for name in sorted(os.listdir(raw)):
        stem, _, lang = name.rpartition(".")
        if lang in (src, tgt) and stem.startswith("test"):
            if not TEST_SPLIT.fullmatch(stem):
                raise KDNMTError(
                    f"{os.path.join(raw, name)}: test split {stem!r} may only hold letters, digits, "
                    "_ and - after 'test' (it names fairseq's files); rename it"
                )
            tests.setdefault(stem, set()).add(lang)
    for stem, langs in tests.items():
        if langs != {src, tgt}:
            (missing,) = {src, tgt} - langs
            raise KDNMTError(f"{os.path.join(raw, stem + '.' + next(iter(langs)))} has no other side {stem}.{missing}")
    return ["train", "valid", *sorted(tests)]


def check_pairs(raw, src, tgt, splits):
    """``{split: line count}``; one KDNMTError for a non-UTF-8 file or sides of unequal length.

    Lines are counted as data/prepare.py and fairseq-preprocess read them (universal newlines).
    """
    counts = {}
    for split in splits:
        files = [TextFile(os.path.join(raw, f"{split}.{lang}"), what="corpus") for lang in (src, tgt)]
        if len(files[0]) != len(files[1]):
            raise KDNMTError(
                f"{split} sides differ in length: {files[0].path} has {len(files[0])} lines, "
                f"{files[1].path} has {len(files[1])}; the two sides must be line-aligned"
            )
        if split == "train" and not files[0].lines:
            raise KDNMTError(f"{files[0].path} is empty")
        counts[split] = len(files[0])
    return counts


def main(argv):
    p = ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--raw", required=True, help="corpus directory (train.SRC, train.TGT, valid.*, test*.*)")
    p.add_argument("--out", required=True, help="output directory (raw/, spm.model, tok/, bin/)")
    p.add_argument("--source-lang", default="de", help="source language: the file suffix (default de)")
    p.add_argument("--target-lang", default="en", help="target language: the file suffix (default en)")
    p.add_argument("--vocab", type=int, default=8000, help="joint sentencepiece vocabulary size (default 8000)")
    p.add_argument("--max-train", type=int, default=0, help="keep the first N train pairs (0 = all)")
    p.add_argument("--noise", default=None,
                   help="KIND:RATE noise on the train source (data/noise.py), e.g. dropout:0.1")
    p.add_argument("--seed", type=int, default=1, help="seed of the noise (default 1)")
    p.add_argument("--spm-model", "--spm", dest="spm_model", default=None,
                   help="reuse this sentencepiece model (no training)")
    p.add_argument("--srcdict", default=None, help="reuse this joined fairseq dictionary (dict.SRC.txt)")
    a = p.parse_args(argv)
    src, tgt = a.source_lang, a.target_lang
    # the vocabulary size means nothing when --spm-model is reused (recipes pass 0 then)
    check_minimums(("--vocab", None if a.spm_model else a.vocab, 10), ("--max-train", a.max_train, 0))
    if src == tgt or not re.fullmatch(r"[A-Za-z0-9_]+", src) or not re.fullmatch(r"[A-Za-z0-9_]+", tgt):
        raise KDNMTError(f"--source-lang {src!r} and --target-lang {tgt!r} "
                         "must be two different file suffixes (letters, digits, _)")
    noise = None
    if a.noise:
        kind, _, rate = a.noise.partition(":")
        try:
            noise = (kind, float(rate))
        except ValueError:
            raise KDNMTError(f"--noise takes KIND:RATE, e.g. dropout:0.1 (got {a.noise!r})") from None
    for option, path in (("--spm-model", a.spm_model), ("--srcdict", a.srcdict)):
        if path and not os.path.isfile(path):
            raise KDNMTError(f"{option} file not found: {path!r}")

    splits = find_splits(a.raw, src, tgt)
    counts = check_pairs(a.raw, src, tgt, splits)

    from data.prepare import PrepareError, prepare

    try:
        bin_dir = prepare(a.raw, a.out, a.vocab, a.max_train, noise, a.seed, a.srcdict, a.spm_model,
                          src=src, tgt=tgt, splits=splits)
    except PrepareError as exc:
        raise KDNMTError(str(exc)) from None
    if a.max_train:
        counts["train"] = min(counts["train"], a.max_train)
    summary = ", ".join(f"{split} {n}" for split, n in counts.items())
    print(f"{PROG}: {src}-{tgt} pairs: {summary} -> {bin_dir}", file=sys.stderr)
    print(bin_dir)


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
