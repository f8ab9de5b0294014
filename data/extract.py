"""Pure-python (stdlib only) extractors for German-English parallel text in Debian packages.

Three sources, see the project's shared DATA.md:

* LibreOffice help (``libreoffice-help-en-us`` + ``libreoffice-help-de``, MPL-2.0):
  HTML pages whose elements with an ``id`` starting ``par_`` or ``hd_`` carry the same id in
  every language, so segments are paired exactly by (relative file path, element id).
* Ding dictionary (``trans-de-en``, GPL-2+): full example sentences from the ``|`` aligned fields.
* LibreOffice UI strings (``libreoffice-l10n-de``, MPL-2.0): gettext ``.mo`` catalogues,
  msgid English, msgstr German.  Training only (they overlap the help text).

All functions return pairs as ``(de, en)`` tuples; every walk is sorted so the output is
deterministic.

Pair filters shared by all sources (:func:`keep_pair`): both sides non-empty and containing a
letter, not identical, and a **character**-length ratio ``len(de) / len(en)`` within
``[0.5, 2.5]`` (characters rather than words because German compounds make word ratios of short
segments jumpy: "Print warnings" / "Druckerwarnungen" is 2:1 in words, 1.1:1 in characters).
"""
from __future__ import annotations

import os
import re
import struct
from html.parser import HTMLParser
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

Pair = Tuple[str, str]

MIN_RATIO = 0.5
MAX_RATIO = 2.5

_WS = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")


def collapse_ws(text: str) -> str:
    """Collapse every run of whitespace (incl. non-breaking space) to one space, strip ends."""
    return _WS.sub(" ", text.replace("\u00a0", " ").replace("\u200b", "")).strip()


def length_ratio_ok(de: str, en: str, lo: float = MIN_RATIO, hi: float = MAX_RATIO) -> bool:
    """True when ``len(de) / len(en)`` (characters) lies within ``[lo, hi]``."""
    if not de or not en:
        return False
    r = len(de) / len(en)
    return lo <= r <= hi


def keep_pair(de: str, en: str) -> bool:
    """Common filter: non-empty, has letters, not identical, character-length ratio 0.5-2.5."""
    if not de or not en or de == en:
        return False
    if not _LETTER.search(de) or not _LETTER.search(en):
        return False
    return length_ratio_ok(de, en)


def dedupe(pairs: Iterable[Pair]) -> List[Pair]:
    """Drop repeated (de, en) pairs, keeping the first occurrence (order preserved)."""
    seen = set()
    out = []
    for p in pairs:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


# ---------------------------------------------------------------------------------------------
# LibreOffice help
# ---------------------------------------------------------------------------------------------

_SEG_ID = re.compile(r"^(par|hd)_")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
         "source", "track", "wbr"}
_SKIP_TAGS = {"script", "style", "noscript", "template"}


def _is_mac(attrs: Dict[str, str]) -> bool:
    cls = attrs.get("class") or ""
    ident = attrs.get("id") or ""
    return "MAC" in cls.split() or ident.startswith("MAC")


class _Switch:
    """Text of one inline ``switchinline`` span: the ``default...`` variant and the others."""

    __slots__ = ("default", "variants")

    def __init__(self):
        self.default: Optional[List[str]] = None
        self.variants: List[List[str]] = []

    def resolve(self) -> str:
        if self.default is not None:
            return "".join(self.default)
        return "".join(self.variants[0]) if self.variants else ""


class _Frame:
    __slots__ = ("tag", "sink", "switch", "segment")

    def __init__(self, tag, sink, switch=None, segment=None):
        self.tag = tag
        self.sink = sink          # list collecting text, or None to discard
        self.switch = switch      # _Switch when this element is a switchinline inside a segment
        self.segment = segment    # segment id when this element opened a segment


class HelpSegmentParser(HTMLParser):
    """Collect ``{element id: text}`` for ``par_*`` / ``hd_*`` elements of one help page.

    * text inside ``<script>``/``<style>`` and inside Mac-only variants (class ``MAC`` or an id
      starting ``MAC``) is skipped; a segment nested in a Mac-only block is dropped entirely;
    * inline ``switchinline`` spans (one hidden span per OS / application) keep only the
      ``default...`` variant, or the first non-Mac variant when a span has no default;
    * whitespace is collapsed; an id seen twice in a page keeps its first text.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.segments: Dict[str, str] = {}
        self._order: List[str] = []
        self._stack: List[_Frame] = []
        self._skip_depth = 0  # >0 while inside script/style/MAC

    # -- helpers
    def _top_sink(self):
        return self._stack[-1].sink if self._stack else None

    def _open(self, tag: str, attrs: Dict[str, str]):
        parent = self._stack[-1] if self._stack else None
        sink = parent.sink if parent else None
        frame = _Frame(tag, sink)
        if self._skip_depth or tag in _SKIP_TAGS or _is_mac(attrs):
            frame.sink = None
            frame.segment = "__skip__"
            self._skip_depth += 1
            return frame
        # a direct child of an inline switch: one variant
        if parent is not None and parent.switch is not None:
            ident = attrs.get("id") or ""
            if ident.startswith("default"):
                parent.switch.default = []
                frame.sink = parent.switch.default
            elif "hidden" in attrs:
                buf: List[str] = []
                parent.switch.variants.append(buf)
                frame.sink = buf
            # else: a visible child (rare): keep writing into the switch's sink (None)
            return frame
        ident = attrs.get("id") or ""
        if sink is None and _SEG_ID.match(ident):
            frame.sink = []
            frame.segment = ident
            return frame
        if sink is not None and "switchinline" in (attrs.get("class") or "").split():
            frame.switch = _Switch()
            frame.sink = None  # whitespace between variants is dropped
            frame.segment = None
        return frame

    def _close(self, frame: _Frame):
        if frame.segment == "__skip__":
            self._skip_depth -= 1
            return
        if frame.switch is not None:
            parent_sink = self._stack[-1].sink if self._stack else None
            if parent_sink is not None:
                parent_sink.append(frame.switch.resolve())
            return
        if frame.segment is not None:
            text = collapse_ws("".join(frame.sink or []))
            if frame.segment not in self.segments:
                self.segments[frame.segment] = text
                self._order.append(frame.segment)

    # -- HTMLParser API
    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag in _VOID:
            if tag == "br":
                sink = self._top_sink()
                if sink is not None:
                    sink.append(" ")
            return
        self._stack.append(self._open(tag, a))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        # pop up to and including the matching open tag (tolerates unclosed children)
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i].tag == tag:
                while len(self._stack) > i:
                    self._close(self._stack.pop())
                return
        # stray end tag: ignore

    def handle_data(self, data):
        sink = self._top_sink()
        if sink is not None:
            sink.append(data)

    def close(self):
        super().close()
        while self._stack:
            self._close(self._stack.pop())

    def ordered(self) -> List[Tuple[str, str]]:
        return [(k, self.segments[k]) for k in self._order]


def parse_help_html(html: str) -> List[Tuple[str, str]]:
    """``[(element id, text), ...]`` in document order for one help page."""
    p = HelpSegmentParser()
    p.feed(html)
    p.close()
    return p.ordered()


def help_files(lang_dir: str) -> List[str]:
    """Sorted relative paths (``text/...html``) of all help pages below ``lang_dir``."""
    out = []
    for root, dirs, files in os.walk(lang_dir):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".html"):
                out.append(os.path.relpath(os.path.join(root, f), lang_dir).replace(os.sep, "/"))
    return sorted(out)


def pair_help_page(de_html: str, en_html: str) -> List[Pair]:
    """Pair two language versions of one page by element id (English order), unfiltered."""
    de = dict(parse_help_html(de_html))
    out = []
    for ident, en_text in parse_help_html(en_html):
        de_text = de.get(ident)
        if de_text is not None:
            out.append((de_text, en_text))
    return out


def extract_help(en_dir: str, de_dir: str, stats: Optional[dict] = None
                 ) -> Iterator[Tuple[str, Pair]]:
    """Yield ``(relative path, (de, en))`` for every filtered help segment pair.

    ``en_dir``/``de_dir`` are the language roots (``.../help/en-US`` and ``.../help/de``).
    Pairs are filtered with :func:`keep_pair` and de-duplicated within a page; de-duplication
    across pages is done by the caller after the split (so it can be split-aware).
    """
    st = stats if stats is not None else {}
    for key in ("files", "files_paired", "pairs_raw", "drop_identical",
                "drop_ratio_or_empty", "pairs"):
        st.setdefault(key, 0)
    de_files = set(help_files(de_dir))
    for rel in help_files(en_dir):
        st["files"] += 1
        if rel not in de_files:
            continue
        st["files_paired"] += 1
        with open(os.path.join(en_dir, rel), encoding="utf-8", errors="replace") as f:
            en_html = f.read()
        with open(os.path.join(de_dir, rel), encoding="utf-8", errors="replace") as f:
            de_html = f.read()
        seen = set()
        for de, en in pair_help_page(de_html, en_html):
            st["pairs_raw"] += 1
            if de == en and de:
                st["drop_identical"] += 1
                continue
            if not keep_pair(de, en):
                st["drop_ratio_or_empty"] += 1
                continue
            if (de, en) in seen:
                continue
            seen.add((de, en))
            st["pairs"] += 1
            yield rel, (de, en)


# ---------------------------------------------------------------------------------------------
# Ding dictionary
# ---------------------------------------------------------------------------------------------

_DING_TAGS = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]|<[^<>]*>")
_SENT_END = (".", "!", "?")
# grammar placeholders that mark a dictionary phrase rather than a sentence
_DING_PLACEHOLDERS = re.compile(
    r"\b(sth|sb|etw|jd[mnrs]?|jds)\.|(?<![\w.])(sth|sb|etw|jdm|jdn|jds)(?![\w.])|…|\.\.\.")


def strip_ding_tags(text: str) -> str:
    """Remove ``{n}``, ``[ugs.]``, ``<Abk.>``-style marks and collapse whitespace."""
    prev = None
    while prev != text:  # nested marks such as ``[... {n} ...]``
        prev = text
        text = _DING_TAGS.sub(" ", text)
    text = collapse_ws(text)
    return re.sub(r"\s+([.!?,;:])", r"\1", text)


def is_ding_sentence(text: str, min_words: int = 4) -> bool:
    """A full sentence: capitalised, ends in . ! ?, at least ``min_words`` words, one variant."""
    if not text or ";" in text:
        return False
    if not text.endswith(_SENT_END):
        return False
    if not text[0].isupper():
        return False
    if len(text.split()) < min_words:
        return False
    if "/" in text or "(" in text or ")" in text:   # "abgemacht/ausgemacht", "(die) Tränen"
        return False
    if _DING_PLACEHOLDERS.search(text):
        return False
    return True


def parse_ding_line(line: str, min_words: int = 4) -> List[Pair]:
    """Full example-sentence pairs ``(de, en)`` of one Ding line (``de | ... :: en | ...``)."""
    line = line.rstrip("\n")
    if not line or line.startswith("#") or " :: " not in line:
        return []
    de_side, en_side = line.split(" :: ", 1)
    de_fields = de_side.split(" | ")
    en_fields = en_side.split(" | ")
    if len(de_fields) != len(en_fields):
        return []
    out = []
    for d, e in zip(de_fields, en_fields):
        d = strip_ding_tags(d)
        e = strip_ding_tags(e)
        if is_ding_sentence(d, min_words) and is_ding_sentence(e, min_words) and keep_pair(d, e):
            out.append((d, e))
    return out


def extract_ding(path: str, min_words: int = 4, stats: Optional[dict] = None) -> List[Pair]:
    """All de-duplicated full-sentence pairs of the Ding file, in file order."""
    st = stats if stats is not None else {}
    pairs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            pairs.extend(parse_ding_line(line, min_words))
    st["pairs_raw"] = len(pairs)
    pairs = dedupe(pairs)
    st["pairs"] = len(pairs)
    return pairs


# ---------------------------------------------------------------------------------------------
# LibreOffice UI strings (.mo)
# ---------------------------------------------------------------------------------------------

def read_mo(data: bytes) -> List[Tuple[Optional[str], str, str]]:
    """Parse a GNU ``.mo`` catalogue: ``[(msgctxt or None, msgid, msgstr), ...]`` in file order.

    Plural entries keep only the singular msgid / first msgstr; the header (empty msgid) is
    skipped.  A tiny reader rather than ``gettext.GNUTranslations`` because the latter folds
    contexts and plurals into private dict keys.
    """
    if len(data) < 20:
        raise ValueError("not a .mo file (too short)")
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0x950412DE:
        end = "<"
    elif magic == 0xDE120495:
        end = ">"
    else:
        raise ValueError("not a .mo file (bad magic)")
    _rev, n, o_off, t_off = struct.unpack(end + "4I", data[4:20])
    out = []
    for i in range(n):
        olen, opos = struct.unpack(end + "2I", data[o_off + 8 * i: o_off + 8 * i + 8])
        tlen, tpos = struct.unpack(end + "2I", data[t_off + 8 * i: t_off + 8 * i + 8])
        msgid = data[opos: opos + olen].decode("utf-8", errors="replace")
        msgstr = data[tpos: tpos + tlen].decode("utf-8", errors="replace")
        if not msgid:
            continue
        ctx = None
        if "\x04" in msgid:
            ctx, msgid = msgid.split("\x04", 1)
        msgid = msgid.split("\x00", 1)[0]
        msgstr = msgstr.split("\x00", 1)[0]
        out.append((ctx, msgid, msgstr))
    return out


_PLACEHOLDER = re.compile(
    r"%[0-9]+|%[a-zA-Z_]+%?|\$\([A-Za-z0-9_]+\)|\$[0-9]+|\{[A-Za-z0-9_]*\}|#[0-9]+|<[^>]+>|\\[nt]")
_PRODUCT = re.compile(r"%PRODUCTNAME\b|\$\(PRODUCTNAME\)|%PRODUCTNAME")
_MNEMONIC = re.compile(r"_(?=\w)")


def clean_ui_string(text: str) -> str:
    """Strip ``~``/``_`` accelerators, expand ``%PRODUCTNAME``, collapse whitespace.

    ``_`` is only treated as a (GTK .ui) mnemonic when the string has exactly one underscore
    and it is followed by a word character (``Print _all documents``, ``H_inzufügen``).
    """
    text = text.replace("~", "")
    if text.count("_") == 1:
        text = _MNEMONIC.sub("", text)
    text = _PRODUCT.sub("LibreOffice", text)
    return collapse_ws(text)


def has_placeholder(text: str) -> bool:
    """``%1``, ``%s``, ``%FOO``, ``$(ARG1)``, ``$1``, ``{0}``, ``#1``, markup or escapes."""
    return bool(_PLACEHOLDER.search(text))


def ui_pairs_from_mo(data: bytes, stats: Optional[dict] = None) -> List[Pair]:
    """Cleaned, filtered ``(de, en)`` UI-string pairs from one ``.mo`` (msgid en, msgstr de).

    Pairs whose either side still contains a placeholder (after expanding ``%PRODUCTNAME``)
    are dropped: such strings are templates, not text.
    """
    st = stats if stats is not None else {}
    for key in ("entries", "drop_untranslated", "drop_placeholder", "drop_filter", "pairs"):
        st.setdefault(key, 0)
    out = []
    for _ctx, msgid, msgstr in read_mo(data):
        st["entries"] += 1
        if not msgstr:
            st["drop_untranslated"] += 1
            continue
        en = clean_ui_string(msgid)
        de = clean_ui_string(msgstr)
        if has_placeholder(en) or has_placeholder(de):
            st["drop_placeholder"] += 1
            continue
        if not keep_pair(de, en):
            st["drop_filter"] += 1
            continue
        st["pairs"] += 1
        out.append((de, en))
    return out


def extract_ui(mo_dir: str, stats: Optional[dict] = None) -> List[Pair]:
    """All de-duplicated UI pairs from the sorted ``*.mo`` files in ``mo_dir``."""
    st = stats if stats is not None else {}
    pairs: List[Pair] = []
    names = sorted(f for f in os.listdir(mo_dir) if f.endswith(".mo"))
    st["catalogues"] = len(names)
    for name in names:
        with open(os.path.join(mo_dir, name), "rb") as f:
            pairs.extend(ui_pairs_from_mo(f.read(), st))
    pairs = dedupe(pairs)
    st["pairs_unique"] = len(pairs)
    return pairs


def word_count(text: str) -> int:
    return len(text.split())


__all__ = [
    "Pair", "collapse_ws", "length_ratio_ok", "keep_pair", "dedupe",
    "HelpSegmentParser", "parse_help_html", "help_files", "pair_help_page", "extract_help",
    "strip_ding_tags", "is_ding_sentence", "parse_ding_line", "extract_ding",
    "read_mo", "clean_ui_string", "has_placeholder", "ui_pairs_from_mo", "extract_ui",
    "word_count",
]
