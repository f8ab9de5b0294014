"""German monolingual source text from Debian's manual pages (``manpages-de``): one cached command.

    python -m data.monolingual [--out data/corpus/mono-de] [--corpus data/corpus/deen] [--force]

For monolingual source distillation: the teacher translates these sentences, the student trains
on the pairs (see the project's shared DATA.md §5). Rules, applied in this order:

1. ``apt-get download manpages-de`` + ``dpkg -x`` (``data.debian_sources``, cached); every
   regular ``*.gz`` page under ``usr/share/man/de/`` in sorted path order (symlinked aliases
   skipped, ``.so`` redirections skipped).
2. roff → text (``strip_roff``): comments dropped; tables (``.TS/.TE``), no-fill blocks
   (``.nf/.fi``, ``.EX/.EE``) and macro definitions (``.de`` … ``..``) skipped; the sections
   ``SKIP_SECTIONS`` (synopsis, name line, see-also, authors, translators, copyright, bug
   reports) skipped; font macros (``.B``, ``.IR``, …) keep their words, every other request
   ends a paragraph; inline escapes removed or mapped (``\\-`` → ``-``, ``\\(aq`` → ``'``, …).
3. Sentences (``split_sentences``): paragraph text split after ``. ! ?`` followed by a space and
   an upper-case letter, a digit or an opening quote, unless the word before is a known
   abbreviation (``z.B.``, ``d.h.``, ``bzw.``, …) or a single letter/number.
4. Kept (``keep_reason`` is None): 4–60 words, starts with an upper-case letter or an opening
   quote, ends with ``. ! ?``, at least 60 % letters among its non-space characters, no
   leftover ``\\`` (an escape this stripper does not know), no ``<``/``>`` (addresses, markup).
5. Dedup (whitespace-collapsed, case-folded): first occurrence only, and nothing that is a
   source sentence of any split of the parallel corpus (``CORPUS/*.de``: train, valid and the
   test sets).

Output (``--out``): ``mono.de`` (one sentence a line, in the order of step 1), ``MANIFEST.json``
(package version, counts per rule, the parallel files deduplicated against with their sha256,
the config) and ``ATTRIBUTION.md``. Skipped when ``MANIFEST.json`` has the same config (options,
package version, md5 of this file, the parallel files' sha256) and ``mono.de`` its line count.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import os
import re
import sys
from typing import Iterable, Iterator, List, Optional

from . import debian_sources as deb
from .kd_nmt_stdlib import atomic_file, atomic_write, report_errors

PACKAGE = "manpages-de"
LICENSE = ("GPL-3+ for the German translations; each page also carries the license of the "
           "original English page (see usr/share/doc/manpages-de/copyright)")
DEFAULT_OUT = os.path.join("data", "corpus", "mono-de")
DEFAULT_CORPUS = os.path.join("data", "corpus", "deen")
MIN_WORDS, MAX_WORDS = 4, 60
BUILDER_VERSION = 1

SKIP_SECTIONS = {"BEZEICHNUNG", "NAME", "ÜBERSICHT", "SYNOPSIS", "SIEHE AUCH", "AUTOR", "AUTOREN",
                 "ÜBERSETZUNG", "COPYRIGHT", "FEHLER MELDEN", "KOLOPHON"}
FONT_MACROS = {"B", "I", "SM", "SB"}  # words joined with spaces
ALTERNATING = {"BI", "BR", "IB", "IR", "RB", "RI"}  # words joined without spaces
SKIP_BLOCKS = {"TS": "TE", "nf": "fi", "EX": "EE", "de": ".", "ig": "."}
NAMED = {"aq": "'", "cq": "'", "oq": "'", "dq": '"', "lq": "“", "rq": "”", "Bq": "„", "Fo": "«",
         "Fc": "»", "fo": "‹", "fc": "›", "em": "—", "en": "–", "hy": "-", "mi": "-", "co": "©",
         "rg": "®", "tm": "™", "bu": "•", "ti": "~", "ha": "^", "rs": "\\", "dg": "†",
         ":a": "ä", ":o": "ö", ":u": "ü", ":A": "Ä", ":O": "Ö", ":U": "Ü", "ss": "ß", "Aq": "'"}
ABBREVIATIONS = {"z.b.", "d.h.", "u.a.", "bzw.", "usw.", "etc.", "vgl.", "ggf.", "ca.", "nr.",
                 "s.", "u.u.", "z.t.", "o.ä.", "i.d.r.", "evtl.", "inkl.", "bspw.", "sog.", "bzgl.",
                 "dr.", "prof.", "abs.", "abschn.", "kap.", "max.", "min.", "zzgl.", "e.g.", "i.e.",
                 "v.", "vs.", "z.", "d.", "u.", "o.", "i.", "ggfs.", "beispielsw."}

_ESCAPES = [
    (re.compile(r'\\".*$'), ""),                          # inline comment
    (re.compile(r"\\f(\[[^\]]*\]|\([A-Za-z0-9]{2}|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?(\d|\(\d\d|\[\d+\])"), ""),     # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),         # string interpolations
    (re.compile(r"\\n[+-]?(\[[^\]]*\]|\(..|.)"), ""),     # number registers
    (re.compile(r"\\[hvwHmMlLDXoSxbNYkzZ]'[^']*'"), ""),  # motions, widths, ... with an argument
    (re.compile(r"\\m\[[^\]]*\]"), ""),                   # colours
    (re.compile(r"\\[{}]"), ""),                           # conditional braces
    (re.compile(r"\\[&,/|^:%cdupat!]"), ""),               # zero-width and hints
    (re.compile(r"\\[ ~0]"), " "),                         # unbreakable spaces
    (re.compile(r"\\[-e]"), lambda m: "-" if m.group(0) == r"\-" else "\\"),
]
_NAMED = re.compile(r"\\(\(([^ ]{2})|\[([^\]]*)\])")


def _named(match: re.Match) -> str:
    name = match.group(2) or match.group(3)
    return NAMED.get(name, "")


def roff_inline(text: str) -> str:
    """One line of roff text with its inline escapes removed or mapped to characters."""
    text = _NAMED.sub(_named, text)
    for pattern, repl in _ESCAPES:
        text = pattern.sub(repl, text)
    return text


def _macro_words(args: str) -> List[str]:
    """Arguments of a request: whitespace-separated, "double quotes" group words."""
    return [quoted or plain for quoted, plain in re.findall(r'"([^"]*)"|(\S+)', args)]


def strip_roff(source: str) -> List[str]:
    """The paragraphs of running text in a roff page (see the module docstring, rule 2)."""
    paragraphs: List[str] = []
    current: List[str] = []
    skip_until: Optional[str] = None
    skip_section = False
    tag_line = False  # the line after .TP is the item's tag, a paragraph of its own

    def flush():
        if current:
            text = " ".join(" ".join(current).split())
            if text:
                paragraphs.append(text)
            current.clear()

    for line in source.split("\n"):
        if skip_until is not None:
            if line.startswith("." + skip_until) if skip_until != "." else line.strip() == "..":
                skip_until = None
            continue
        if line.startswith((".\\\"", "'\\\"", "\\\"")):
            continue
        if line.startswith((".", "'")):
            m = re.match(r"[.']\s*(\S+)\s*(.*)", line)
            if not m:
                continue
            name, args = m.group(1), m.group(2)
            if name in SKIP_BLOCKS:
                flush()
                skip_until = SKIP_BLOCKS[name]
                continue
            if name in ("SH", "SS"):
                flush()
                title = " ".join(_macro_words(roff_inline(args))).strip().upper()
                if name == "SH":
                    skip_section = title in SKIP_SECTIONS
                continue
            if skip_section:
                continue
            if name in FONT_MACROS or name in ALTERNATING:
                words = [roff_inline(w) for w in _macro_words(args)]
                current.append(("" if name in ALTERNATING else " ").join(words))
                if tag_line:
                    flush()
                    tag_line = False
                continue
            flush()  # every other request (.PP, .TP, .IP, .br, .sp, .RS, .so, ...) ends a paragraph
            tag_line = name == "TP"
            continue
        if skip_section:
            continue
        text = roff_inline(line).strip()
        if text:
            current.append(text)
            if tag_line:
                flush()
                tag_line = False
    flush()
    return paragraphs


_BOUNDARY = re.compile(r"(?<=[.!?])[\"”«»)]?\s+(?=[A-ZÄÖÜ0-9„»\"(])")


def split_sentences(paragraph: str) -> List[str]:
    """Sentences of one paragraph (module docstring, rule 3)."""
    pieces, start = [], 0
    for m in _BOUNDARY.finditer(paragraph):
        before = paragraph[start:m.start()].rstrip()
        last = before.split()[-1].lower() if before.split() else ""
        if last in ABBREVIATIONS or re.fullmatch(r"\d+\.|[^\W\d_]\.", last):
            continue  # "z.B. Dateien", "1. Januar", "a. Das": not a sentence end
        pieces.append(paragraph[start:m.start()].strip())
        start = m.end()
    pieces.append(paragraph[start:].strip())
    return [p for p in pieces if p]


def keep_reason(sentence: str) -> Optional[str]:
    """Why a sentence is dropped (a rule name), or None to keep it (module docstring, rule 4)."""
    words = sentence.split()
    if len(words) < MIN_WORDS:
        return "too_short"
    if len(words) > MAX_WORDS:
        return "too_long"
    if not re.match(r"[A-ZÄÖÜ„»\"]", sentence) or sentence[-1] not in ".!?":
        return "not_a_sentence"
    chars = [c for c in sentence if not c.isspace()]
    if "\\" in sentence or "<" in sentence or ">" in sentence or \
            sum(c.isalpha() for c in chars) < 0.6 * len(chars):
        return "not_text"
    return None


def dedup_key(sentence: str) -> str:
    return " ".join(sentence.split()).casefold()


def page_files(man_root: str) -> List[str]:
    """Every regular gzipped page under ``man_root``, sorted by relative path (aliases skipped)."""
    found = []
    for path in glob.glob(os.path.join(man_root, "**", "*.gz"), recursive=True):
        if os.path.isfile(path) and not os.path.islink(path):
            found.append(os.path.relpath(path, man_root))
    return sorted(found)


def sentences_of(pages: Iterable[str], exclude: set, counts: dict) -> Iterator[str]:
    """Kept, deduplicated sentences of roff ``pages`` (texts), counting every drop in ``counts``."""
    seen = set()
    for page in pages:
        counts["pages"] = counts.get("pages", 0) + 1
        for paragraph in strip_roff(page):
            for sentence in split_sentences(paragraph):
                counts["candidates"] = counts.get("candidates", 0) + 1
                reason = keep_reason(sentence)
                key = dedup_key(sentence)
                if reason is None and key in exclude:
                    reason = "in_parallel_corpus"
                elif reason is None and key in seen:
                    reason = "duplicate"
                if reason:
                    counts[reason] = counts.get(reason, 0) + 1
                    continue
                seen.add(key)
                counts["kept"] = counts.get("kept", 0) + 1
                yield sentence


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _code_md5() -> str:
    with open(os.path.abspath(__file__), "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def build(out: str = DEFAULT_OUT, corpus: str = DEFAULT_CORPUS, cache: Optional[str] = None,
          force: bool = False, log=print) -> dict:
    """Build (or find up to date) ``out/mono.de``; returns the manifest."""
    parallel = sorted(glob.glob(os.path.join(corpus, "*.de")))
    if not parallel:
        raise SystemExit(f"error: no *.de files in the parallel corpus {corpus!r} to dedup against; "
                         "build it first (python -m data.build_corpus) or give --corpus")
    stamp = deb.fetch_package(PACKAGE, cache, log)
    config = {
        "builder_version": BUILDER_VERSION, "code_md5": _code_md5(), "package": PACKAGE,
        "version": stamp["version"], "min_words": MIN_WORDS, "max_words": MAX_WORDS,
        "dedup_against": {os.path.basename(p): _sha256(p) for p in parallel},
    }
    manifest_path = os.path.join(out, "MANIFEST.json")
    text_path = os.path.join(out, "mono.de")
    if not force and os.path.isfile(manifest_path) and os.path.isfile(text_path):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        with open(text_path, "rb") as f:
            n = sum(1 for _ in f)
        if manifest.get("config") == config and manifest["counts"].get("kept") == n:
            log(f"[mono] {text_path} is up to date ({n} sentences); --force rebuilds it")
            return manifest
    exclude = set()
    for path in parallel:
        with open(path, encoding="utf-8") as f:
            exclude.update(dedup_key(line) for line in f if line.strip())
    man_root = os.path.join(deb.package_root(PACKAGE, cache), "usr", "share", "man", "de")
    files = page_files(man_root)

    def pages():
        for rel in files:
            with gzip.open(os.path.join(man_root, rel), "rb") as f:
                yield f.read().decode("utf-8", errors="replace")

    counts: dict = {}
    os.makedirs(out, exist_ok=True)
    with atomic_file(text_path) as f:  # (a full disk left a stray PATH.tmp.PID)
        for sentence in sentences_of(pages(), exclude, counts):
            f.write(sentence + "\n")
    manifest = {"config": config, "counts": dict(sorted(counts.items())), "deb": stamp["deb"],
                "license": LICENSE, "command": "python -m data.monolingual"}
    atomic_write(manifest_path, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    atomic_write(os.path.join(out, "ATTRIBUTION.md"),
                 f"# mono.de\n\nSentences extracted from the Debian package `{PACKAGE}` "
                 f"{stamp['version']} (German manual pages, {stamp['deb']}).\n\nLicense: {LICENSE}.\n")
    log(f"[mono] {counts.get('kept', 0)} sentences from {counts.get('pages', 0)} pages -> {text_path}")
    return manifest


def main(argv=None) -> int:
    """Its status; an OSError (full disk, read-only) is one line ``monolingual: error: ...``."""
    return report_errors("monolingual", _main, argv)


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output dir (default {DEFAULT_OUT})")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS,
                    help=f"parallel corpus whose *.de sentences are excluded (default {DEFAULT_CORPUS})")
    ap.add_argument("--cache", default=None, help="Debian package cache (default $KD_NMT_CACHE or "
                    "~/.cache/kd_nmt/debian)")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = ap.parse_args(argv)
    try:
        build(args.out, args.corpus, args.cache, args.force, log=lambda m: print(m, file=sys.stderr))
    except deb.DebianSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
