"""Build the real de-en corpus from Debian packages: one deterministic, cached command.

    python -m data.build_corpus [--out data/corpus/deen] [--max-train N] [--force] ...
    python -m data.build_corpus --fixture data/fixtures/deen     # the small committed fixture

Sources (see data/extract.py and the project's shared DATA.md): LibreOffice help (MPL-2.0), Ding example
sentences (GPL-2+), LibreOffice UI strings (MPL-2.0, training only).

Split rules (all hashes are md5 of UTF-8 text, so the split is the same on every machine):

* help, **by file**: ``b = int(md5("help:" + relpath)[:8], 16) % 1000``;
  ``b < 40`` -> test_tech (~4 % of files), ``40 <= b < 60`` -> valid (~2 %), else train.
* Ding: pairs ranked by ``md5("ding:" + de + "\\t" + en)``; the first ``--test-ding`` (1000) ->
  test_ding, the next ``--valid-ding`` (500) -> valid, the rest -> train.
* UI strings: train only.

Eval sets (valid, test_tech, test_ding) keep pairs with >= ``--min-eval-words`` (3) English words;
every split keeps pairs with <= ``--max-words`` (100) words on both sides.  Then, in order:
valid pairs sharing a side (de or en string) with a test set are removed from valid; train pairs
sharing a side with any test or valid pair are removed from train (counted in MANIFEST.json);
each split is de-duplicated.  Train is ordered by ``md5("train:" + de + "\\t" + en)`` (a fixed
shuffle that mixes the sources); ``--max-train N`` keeps the first N of that order.

Output (``--out``): raw, untokenised UTF-8 text, one segment per line
``train.{de,en} valid.{de,en} test_tech.{de,en} test_ding.{de,en}``, plus ``MANIFEST.json``
(package versions, counts per split and source, the rules) and ``ATTRIBUTION.md``.
The build is skipped (without touching apt) when ``MANIFEST.json`` exists with the same config
(the options plus an md5 of extract.py and build_corpus.py) and every file has the recorded line
count; ``--force`` rebuilds (e.g. after a newer Debian package version appeared).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

from . import debian_sources as deb
from .kd_nmt_stdlib import atomic_file, atomic_write, report_errors
from . import extract as X

Pair = Tuple[str, str]
SPLITS = ("train", "valid", "test_tech", "test_ding")
BUILDER_VERSION = 1
DEFAULT_OUT = os.path.join("data", "corpus", "deen")
HERE = os.path.dirname(os.path.abspath(__file__))


def md5_int(text: str, digits: int = 8) -> int:
    return int(hashlib.md5(text.encode("utf-8")).hexdigest()[:digits], 16)


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def help_bucket(relpath: str) -> int:
    """0..999 bucket of a help page (relative path such as ``text/scalc/01/05030000.html``)."""
    return md5_int("help:" + relpath) % 1000


def help_split(relpath: str, test_permille: int = 40, valid_permille: int = 20) -> str:
    b = help_bucket(relpath)
    if b < test_permille:
        return "test_tech"
    if b < test_permille + valid_permille:
        return "valid"
    return "train"


def ding_rank_key(p: Pair) -> str:
    return md5_hex("ding:" + p[0] + "\t" + p[1])


def train_order_key(p: Pair) -> str:
    return md5_hex("train:" + p[0] + "\t" + p[1])


def _code_hash() -> str:
    h = hashlib.md5()
    for name in ("extract.py", "build_corpus.py"):
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------

def _words_ok(p: Pair, max_words: int) -> bool:
    return max_words <= 0 or (len(p[0].split()) <= max_words and len(p[1].split()) <= max_words)


def split_sources(paths: Dict[str, str], args, log=print) -> Tuple[Dict[str, List[Tuple[str, Pair]]], dict]:
    """Extract all sources and assign them to splits.

    Returns ``({split: [(source, (de, en)), ...]}, stats)`` before the cross-split overlap
    removal; ``source`` is ``help``, ``ding`` or ``ui``.
    """
    stats: dict = {}
    splits: Dict[str, List[Tuple[str, Pair]]] = {s: [] for s in SPLITS}
    t0 = time.time()

    hst: dict = {}
    files_per_split = {s: set() for s in ("train", "valid", "test_tech")}
    for rel, p in X.extract_help(paths["help_en"], paths["help_de"], hst):
        s = help_split(rel, args.test_permille, args.valid_permille)
        files_per_split[s].add(rel)
        splits[s].append(("help", p))
    hst["files_per_split"] = {s: len(v) for s, v in files_per_split.items()}
    stats["help"] = hst
    log(f"[corpus] help: {hst['pairs']} pairs from {hst['files_paired']} files "
        f"({time.time() - t0:.1f}s)")

    t1 = time.time()
    dst: dict = {}
    ding = X.extract_ding(paths["ding"], min_words=4, stats=dst)
    ding.sort(key=ding_rank_key)
    nt, nv = args.test_ding, args.valid_ding
    splits["test_ding"].extend(("ding", p) for p in ding[:nt])
    splits["valid"].extend(("ding", p) for p in ding[nt:nt + nv])
    splits["train"].extend(("ding", p) for p in ding[nt + nv:])
    stats["ding"] = dst
    log(f"[corpus] ding: {dst['pairs']} sentence pairs ({time.time() - t1:.1f}s)")

    if not args.no_ui:
        t2 = time.time()
        ust: dict = {}
        ui = X.extract_ui(paths["ui_mo"], ust)
        splits["train"].extend(("ui", p) for p in ui)
        stats["ui"] = ust
        log(f"[corpus] ui: {ust['pairs_unique']} pairs ({time.time() - t2:.1f}s)")
    return splits, stats


def finalize_splits(splits: Dict[str, List[Tuple[str, Pair]]], args) -> Tuple[Dict[str, List[Tuple[str, Pair]]], dict]:
    """Length filters, de-duplication and overlap removal; returns final splits and counts."""
    rm: dict = {}
    out: Dict[str, List[Tuple[str, Pair]]] = {}
    for s in SPLITS:
        items = []
        seen = set()
        n_long = n_short = n_dup = 0
        for src, p in splits[s]:
            if not _words_ok(p, args.max_words):
                n_long += 1
                continue
            if s != "train" and len(p[1].split()) < args.min_eval_words:
                n_short += 1
                continue
            if p in seen:
                n_dup += 1
                continue
            seen.add(p)
            items.append((src, p))
        out[s] = items
        rm[s] = {"too_long": n_long, "too_short_eval": n_short, "duplicate": n_dup}

    test_de = {p[0] for s in ("test_tech", "test_ding") for _, p in out[s]}
    test_en = {p[1] for s in ("test_tech", "test_ding") for _, p in out[s]}
    # valid must not share a side with a test set
    kept = []
    n = 0
    for src, p in out["valid"]:
        if p[0] in test_de or p[1] in test_en:
            n += 1
        else:
            kept.append((src, p))
    out["valid"] = kept
    rm["valid"]["overlap_test"] = n
    # test_ding vs test_tech: tiny, but keep test sets disjoint too
    tech_de = {p[0] for _, p in out["test_tech"]}
    tech_en = {p[1] for _, p in out["test_tech"]}
    before = len(out["test_ding"])
    out["test_ding"] = [(s, p) for s, p in out["test_ding"]
                        if p[0] not in tech_de and p[1] not in tech_en]
    rm["test_ding"]["overlap_test_tech"] = before - len(out["test_ding"])

    valid_de = {p[0] for _, p in out["valid"]}
    valid_en = {p[1] for _, p in out["valid"]}
    kept = []
    n_test = {"help": 0, "ding": 0, "ui": 0}
    n_valid = {"help": 0, "ding": 0, "ui": 0}
    for src, p in out["train"]:
        if p[0] in test_de or p[1] in test_en:
            n_test[src] += 1
        elif p[0] in valid_de or p[1] in valid_en:
            n_valid[src] += 1
        else:
            kept.append((src, p))
    kept.sort(key=lambda sp: train_order_key(sp[1]))
    n_cap = 0
    if args.max_train and len(kept) > args.max_train:
        n_cap = len(kept) - args.max_train
        kept = kept[:args.max_train]
    out["train"] = kept
    rm["train"]["overlap_test"] = n_test
    rm["train"]["overlap_valid"] = n_valid
    rm["train"]["max_train_cap"] = n_cap
    return out, rm


def counts(final: Dict[str, List[Tuple[str, Pair]]]) -> dict:
    c = {}
    for s, items in final.items():
        per = {}
        for src, _ in items:
            per[src] = per.get(src, 0) + 1
        c[s] = {"total": len(items), "by_source": dict(sorted(per.items())),
                "words_en": sum(len(p[1].split()) for _, p in items),
                "words_de": sum(len(p[0].split()) for _, p in items)}
    return c


def write_pairs(out_dir: str, name: str, pairs: List[Pair]) -> None:
    for side, lang in ((0, "de"), (1, "en")):
        path = os.path.join(out_dir, f"{name}.{lang}")
        with atomic_file(path) as f:  # (a full disk left a stray PATH.tmp)
            for p in pairs:
                line = p[side]
                assert line and "\n" not in line and "\r" not in line
                f.write(line + "\n")


def count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


ATTRIBUTION = """# Attribution and licenses

This corpus is derived from Debian packages (versions below). The text remains under the
licenses of its sources; redistribution of the derived files must keep this notice.

| source | Debian package(s) | version | license | used for |
| --- | --- | --- | --- | --- |
| LibreOffice help (en-US, de) | libreoffice-help-en-us, libreoffice-help-de \
| {help_v} | MPL-2.0 | train, valid, test_tech |
| Ding German-English dictionary (example sentences), (c) Frank Richter, TU Chemnitz \
| trans-de-en | {ding_v} | GPL-2+ | train, valid, test_ding |
| LibreOffice UI strings (gettext .mo, de) | libreoffice-l10n-de | {ui_v} | MPL-2.0 | train only |

- LibreOffice: Copyright The Document Foundation and contributors, Mozilla Public License 2.0,
  https://www.libreoffice.org/ (help content: https://help.libreoffice.org/).
- Ding: "Ding" dictionary by Frank Richter, GNU General Public License version 2 or later,
  https://dict.tu-chemnitz.de/.

Built with `{command}` (kd_nmt data/build_corpus.py); see MANIFEST.json for the split rules.
"""


def _versions(stamps: Dict[str, dict]) -> Dict[str, str]:
    return {p: st["version"] for p, st in sorted(stamps.items())}


def _attribution(versions: Dict[str, str], command: str) -> str:
    return ATTRIBUTION.format(
        help_v=versions.get("libreoffice-help-en-us", "?") + " / " + versions.get("libreoffice-help-de", "?"),
        ding_v=versions.get("trans-de-en", "?"),
        ui_v=versions.get("libreoffice-l10n-de", "?"),
        command=command)


def config_of(args) -> dict:
    return {
        "builder_version": BUILDER_VERSION,
        "code_md5": _code_hash(),
        "max_words": args.max_words,
        "min_eval_words": args.min_eval_words,
        "test_permille": args.test_permille,
        "valid_permille": args.valid_permille,
        "test_ding": args.test_ding,
        "valid_ding": args.valid_ding,
        "max_train": args.max_train,
        "ui": not args.no_ui,
    }


def cached(out_dir: str, cfg: dict) -> Optional[dict]:
    """The existing manifest when it matches ``cfg`` and every file has its line count."""
    path = os.path.join(out_dir, "MANIFEST.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            man = json.load(f)
    except (OSError, ValueError):
        return None
    if man.get("config") != cfg:
        return None
    for s in SPLITS:
        n = man.get("counts", {}).get(s, {}).get("total")
        for lang in ("de", "en"):
            p = os.path.join(out_dir, f"{s}.{lang}")
            if n is None or not os.path.exists(p) or count_lines(p) != n:
                return None
    return man


def build(args, log=print) -> dict:
    out_dir = args.out
    cfg = config_of(args)
    if not args.force:
        man = cached(out_dir, cfg)
        if man is not None:
            log(f"[corpus] up to date: {out_dir} (MANIFEST.json matches; --force rebuilds)")
            return man
    t0 = time.time()
    stamps = deb.fetch_all(cache=args.cache, log=log)
    t_fetch = time.time() - t0
    paths = deb.source_paths(args.cache)
    splits, stats = split_sources(paths, args, log)
    final, removed = finalize_splits(splits, args)
    os.makedirs(out_dir, exist_ok=True)
    for s in SPLITS:
        write_pairs(out_dir, s, [p for _, p in final[s]])
    versions = _versions(stamps)
    command = "python -m data.build_corpus " + " ".join(args.argv)
    man = {
        "config": cfg,
        "command": command.strip(),
        "packages": {p: {"version": st["version"], "license": st["license"], "deb": st["deb"]}
                     for p, st in sorted(stamps.items())},
        "counts": counts(final),
        "removed": removed,
        "extraction": stats,
        "rules": {
            "help_split": "b = int(md5('help:' + relpath).hexdigest()[:8], 16) % 1000; "
                          f"b < {args.test_permille} -> test_tech; b < "
                          f"{args.test_permille + args.valid_permille} -> valid; else train "
                          "(relpath like 'text/scalc/01/05030000.html')",
            "ding_split": "rank pairs by md5('ding:' + de + '\\t' + en).hexdigest(); first "
                          f"{args.test_ding} -> test_ding, next {args.valid_ding} -> valid, rest -> train",
            "ui_split": "train only",
            "pair_filter": "non-empty, has a letter, de != en, char-length ratio len(de)/len(en) in [0.5, 2.5]",
            "length": f"<= {args.max_words} words per side (all splits); eval sets need >= "
                      f"{args.min_eval_words} English words",
            "overlap": "valid pairs sharing a de or en string with a test set are dropped; train "
                       "pairs sharing a de or en string with any test or valid pair are dropped",
            "train_order": "sorted by md5('train:' + de + '\\t' + en).hexdigest(); --max-train keeps the first N",
            "ding_sentence": "both sides: capitalised, end in . ! ?, >= 4 words, no ';' (one "
                             "variant), no '/' or '(' alternatives, no sb./sth./etw./jdm. placeholders; "
                             "{..} [..] <..> tags stripped",
            "help_segments": "elements with id par_*/hd_* paired by (relpath, id); script/style and "
                             "MAC variants skipped; inline switches keep the default variant",
        },
        "timing_s": {"fetch": round(t_fetch, 1), "total": round(time.time() - t0, 1)},
    }
    atomic_write(os.path.join(out_dir, "MANIFEST.json"), json.dumps(man, indent=1, ensure_ascii=False) + "\n")
    atomic_write(os.path.join(out_dir, "ATTRIBUTION.md"), _attribution(versions, man["command"]))
    c = man["counts"]
    log("[corpus] " + ", ".join(f"{s}={c[s]['total']}" for s in SPLITS)
        + f" -> {out_dir} ({man['timing_s']['total']}s)")
    return man


# ---------------------------------------------------------------------------------------------
# fixture

FIXTURE_PLAN = (  # (fixture split, corpus split, source, n)
    ("train", "train", "help", 200),
    ("train", "train", "ding", 200),
    ("valid", "valid", "help", 30),
    ("valid", "valid", "ding", 30),
    ("test", "test_tech", "help", 30),
    ("test", "test_ding", "ding", 30),
)


def build_fixture(args, log=print) -> dict:
    """A small real fixture: 400 train / 60 valid / 60 test, half help, half Ding.

    Drawn from the full corpus splits (so train never shares a side with valid/test), pairs with
    3..``--fixture-max-words`` words on both sides, hash-selected by
    ``md5('fixture:' + de + '\\t' + en)``.  Train is mixed by ``md5('fixture-order:' + ...)``;
    valid and test keep the help block first, then Ding.
    """
    stamps = deb.fetch_all(cache=args.cache, log=log)
    paths = deb.source_paths(args.cache)
    full = argparse.Namespace(**vars(args))
    full.max_train = 0
    splits, _ = split_sources(paths, full, log)
    final, _ = finalize_splits(splits, full)
    chosen: Dict[str, List[Pair]] = {"train": [], "valid": [], "test": []}
    for fsplit, csplit, src, n in FIXTURE_PLAN:
        cands = [p for s, p in final[csplit] if s == src
                 and 3 <= len(p[0].split()) <= args.fixture_max_words
                 and 3 <= len(p[1].split()) <= args.fixture_max_words]
        cands.sort(key=lambda p: md5_hex("fixture:" + p[0] + "\t" + p[1]))
        if len(cands) < n:
            raise SystemExit(f"fixture: only {len(cands)} {src} candidates in {csplit}")
        chosen[fsplit].extend(cands[:n])
    # train: one fixed shuffle mixing the two sources (valid/test stay in blocks: help, then Ding)
    chosen["train"].sort(key=lambda p: md5_hex("fixture-order:" + p[0] + "\t" + p[1]))
    out_dir = args.fixture
    os.makedirs(out_dir, exist_ok=True)
    for name, pairs in chosen.items():
        write_pairs(out_dir, name, pairs)
    versions = _versions(stamps)
    command = "python -m data.build_corpus " + " ".join(args.argv)
    readme = f"""# Real de-en fixture (committed)

A small slice of the real corpus built by `data/build_corpus.py`, for tests and tiny smoke runs.

| file | pairs | content |
| --- | --- | --- |
| train.de / train.en | {len(chosen['train'])} | 200 LibreOffice help segments + 200 Ding sentences, \
mixed by a fixed md5 order (corpus train split) |
| valid.de / valid.en | {len(chosen['valid'])} | lines 1-30 help (held-out help files), \
31-60 Ding (corpus valid split) |
| test.de / test.en | {len(chosen['test'])} | lines 1-30 from test_tech (held-out help files), 31-60 from test_ding |

Raw untokenised UTF-8, one segment per line, 3-{args.fixture_max_words} words per side, selected by
`md5('fixture:' + de + '\\t' + en)` within each (split, source) bucket. No train line shares a
German or English side with a valid/test line (inherited from the corpus overlap rule).

Made with:

    {command.strip()}

## Sources and licenses

| source | Debian package | version | license |
| --- | --- | --- | --- |
| LibreOffice help (en-US, de) | libreoffice-help-en-us, libreoffice-help-de \
| {versions.get('libreoffice-help-en-us')} / {versions.get('libreoffice-help-de')} | MPL-2.0 |
| Ding dictionary example sentences, (c) Frank Richter, TU Chemnitz \
| trans-de-en | {versions.get('trans-de-en')} | GPL-2+ |

LibreOffice: The Document Foundation, Mozilla Public License 2.0 (https://www.libreoffice.org/).
Ding: GNU General Public License version 2 or later (https://dict.tu-chemnitz.de/).
"""
    atomic_write(os.path.join(out_dir, "README.md"), readme)
    log(f"[fixture] train={len(chosen['train'])} valid={len(chosen['valid'])} "
        f"test={len(chosen['test'])} -> {out_dir}")
    return {k: len(v) for k, v in chosen.items()}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m data.build_corpus",
        description="Build the de-en corpus (LibreOffice help + Ding + UI strings) from Debian packages.")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output dir (default {DEFAULT_OUT})")
    ap.add_argument("--cache", default=None,
                    help="Debian package cache (default $KD_NMT_CACHE or ~/.cache/kd_nmt/debian)")
    ap.add_argument("--max-train", type=int, default=0, help="keep at most N train pairs (0 = all)")
    ap.add_argument("--max-words", type=int, default=100,
                    help="drop pairs with more words on either side (0 = no limit; default 100)")
    ap.add_argument("--min-eval-words", type=int, default=3,
                    help="valid/test pairs need at least this many English words (default 3)")
    ap.add_argument("--test-permille", type=int, default=40,
                    help="help files per mille held out as test_tech (default 40)")
    ap.add_argument("--valid-permille", type=int, default=20,
                    help="help files per mille held out as valid (default 20)")
    ap.add_argument("--test-ding", type=int, default=1000, help="Ding pairs in test_ding (default 1000)")
    ap.add_argument("--valid-ding", type=int, default=500, help="Ding pairs in valid (default 500)")
    ap.add_argument("--no-ui", action="store_true", help="leave the UI strings out of train")
    ap.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
    ap.add_argument("--fixture", metavar="DIR", default=None,
                    help="write the small committed fixture (train 400 / valid 60 / test 60) to DIR instead")
    ap.add_argument("--fixture-max-words", type=int, default=30,
                    help="fixture pairs have at most this many words per side (default 30)")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv=None) -> int:
    """Its status; an OSError (full disk, read-only) is one line ``build_corpus: error: ...``."""
    return report_errors("build_corpus", _main, argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.fixture:
            build_fixture(args, log)
        else:
            build(args, log)
    except deb.DebianSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
