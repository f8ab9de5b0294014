"""Tests of the data side: extractors, corpus build, noise, committed fixture.

No network and no Debian packages: extractors run on tiny inline samples, the end-to-end build
runs on a fake package cache written into tmp_path (stamps present, so nothing is fetched).
"""
import argparse
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data import build_corpus as B  # noqa: E402
from data import debian_sources as D  # noqa: E402
from data import extract as X  # noqa: E402
from data import noise as N  # noqa: E402

FIXTURE = REPO / "data" / "fixtures" / "deen"


# ---------------------------------------------------------------------------------------------
# helpers

def make_mo(entries, big_endian=False):
    """A GNU .mo catalogue from ``[(msgid, msgstr), ...]`` (msgid may hold ``ctx\\x04id``)."""
    entries = sorted([("", "Content-Type: text/plain; charset=UTF-8\n")] + list(entries))
    e = ">" if big_endian else "<"
    ids = [k.encode("utf-8") for k, _ in entries]
    strs = [v.encode("utf-8") for _, v in entries]
    n = len(entries)
    o_off = 28
    t_off = o_off + 8 * n
    data_off = t_off + 8 * n
    otab, ttab, blob = [], [], b""
    for s in ids:
        otab.append((len(s), data_off + len(blob)))
        blob += s + b"\0"
    for s in strs:
        ttab.append((len(s), data_off + len(blob)))
        blob += s + b"\0"
    head = struct.pack(e + "Iiiiiii", 0x950412DE, 0, n, o_off, t_off, 0, 0)
    return (head + b"".join(struct.pack(e + "ii", *x) for x in otab)
            + b"".join(struct.pack(e + "ii", *x) for x in ttab) + blob)


def page(lang, body):
    return (f'<!DOCTYPE html><html lang="{lang}"><head><title>t</title>'
            '<script type="text/javascript">var par_id1 = "not text";</script>'
            '<style>p {color: red}</style></head><body>'
            f'<div id="DisplayArea">{body}</div></body></html>')


EN_PAGE = page("en-US", """
<h1 id="hd_id1" dir="auto">Row <a name="x"></a>Height</h1>
<p id="par_id2" class="paragraph">Sets the   row height
  of <span class="emph">selected</span> rows.</p>
<p id="par_id3">Use the shortcut <span id="sw1" class="switchinline">\
<span hidden="true" id="MACsw1" class="MAC">Command</span>\
<span hidden="true" id="defaultsw1">Ctrl</span></span> + F to search.</p>
<p id="par_id4">See <span id="sw2" class="switchinline">\
<span hidden="true" id="WRITERsw2" class="WRITER">Writer tables</span></span> for more.</p>
<span hidden="true" id="MACblock" class="MAC"><p id="par_id5">Only on a Mac computer.</p></span>
<p id="par_id6">LibreOffice</p>
<p id="par_id7">A very short one.</p>
<p id="other_8">Not a segment id.</p>
<p id="par_id9">Line one<br>line two.</p>
""")

DE_PAGE = page("de", """
<h1 id="hd_id1" dir="auto">Zeilen<a name="x"></a>höhe</h1>
<p id="par_id2" class="paragraph">Legt die Zeilenhöhe der <span class="emph">ausgewählten</span> Zeilen fest.</p>
<p id="par_id3">Verwenden Sie <span id="sw1" class="switchinline">\
<span hidden="true" id="MACsw1" class="MAC">Befehl</span>\
<span hidden="true" id="defaultsw1">Strg</span></span> + F zum Suchen.</p>
<p id="par_id4">Siehe <span id="sw2" class="switchinline">\
<span hidden="true" id="WRITERsw2" class="WRITER">Writer-Tabellen</span></span> für mehr.</p>
<span hidden="true" id="MACblock" class="MAC"><p id="par_id5">Nur auf einem Mac-Computer.</p></span>
<p id="par_id6">LibreOffice</p>
<p id="par_id7">Ein sehr, sehr, sehr, sehr, sehr, sehr, sehr, sehr langer Absatz statt eines kurzen.</p>
<p id="other_8">Kein Segment.</p>
<p id="par_id9">Zeile eins<br>Zeile zwei.</p>
""")

DING_LINES = [
    "# Version :: devel 2023-01-30",
    "Absicht {f}; Vorhaben {n} | Absichten {pl} | Das war nicht meine Absicht. :: "
    "intention | intentions | Such was not my intention.",
    "Abstand {m} | Ich folgte ihm mit einigem Abstand.; Ich folgte ihm in einiger Entfernung. :: "
    "distance | I followed him at a distance.",
    "Abmachung {f} | Hast du vergessen, was wir abgemacht/ausgemacht [Ös.] haben? :: "
    "deal | Are you forgetting our deal?",
    "Gas {n} | Ich glaube, ich rieche Gas. [ugs.] :: gas | I think I smell gas. [coll.]",
    "gehen {vi} | Ich gehe. :: to go | I go.",
    "Haus {n} | das Haus am See ist schön. :: house | The house at the lake is nice.",
    "feld1 | Er gibt jdm. etw. zurück. :: field1 | He gives sth. back to sb.",
    "eins | zwei :: one",
    "Tür {f} | Mach bitte die Tür zu! :: door | Please close the door!",
]


# ---------------------------------------------------------------------------------------------
# LibreOffice help

def test_parse_help_html_segments():
    segs = dict(X.parse_help_html(EN_PAGE))
    assert segs["hd_id1"] == "Row Height"
    assert segs["par_id2"] == "Sets the row height of selected rows."
    assert segs["par_id3"] == "Use the shortcut Ctrl + F to search."       # default variant, no MAC
    assert segs["par_id4"] == "See Writer tables for more."               # no default: first variant
    assert "par_id5" not in segs                                           # inside a MAC block
    assert "other_8" not in segs
    assert segs["par_id9"] == "Line one line two."
    assert all("not text" not in v and "color" not in v for v in segs.values())
    assert list(segs) == ["hd_id1", "par_id2", "par_id3", "par_id4", "par_id6", "par_id7", "par_id9"]


def test_pair_help_page_and_filters(tmp_path):
    pairs = dict((en, de) for de, en in X.pair_help_page(DE_PAGE, EN_PAGE))
    assert pairs["Use the shortcut Ctrl + F to search."] == "Verwenden Sie Strg + F zum Suchen."

    en_dir, de_dir = tmp_path / "en-US", tmp_path / "de"
    for d, html in ((en_dir, EN_PAGE), (de_dir, DE_PAGE)):
        (d / "text" / "scalc").mkdir(parents=True)
        (d / "text" / "scalc" / "a.html").write_text(html, encoding="utf-8")
    (en_dir / "text" / "only_en.html").write_text(EN_PAGE, encoding="utf-8")
    st = {}
    got = list(X.extract_help(str(en_dir), str(de_dir), st))
    assert {rel for rel, _ in got} == {"text/scalc/a.html"}
    en_side = [p[1] for _, p in got]
    assert "LibreOffice" not in en_side            # identical pair dropped
    assert "A very short one." not in en_side      # char ratio > 2.5 dropped
    assert "Sets the row height of selected rows." in en_side
    assert st["drop_identical"] == 1 and st["drop_ratio_or_empty"] == 1
    assert st["files"] == 2 and st["files_paired"] == 1


def test_length_ratio_and_keep_pair():
    assert X.length_ratio_ok("abcde", "abcde")
    assert X.length_ratio_ok("a" * 25, "a" * 10) and not X.length_ratio_ok("a" * 26, "a" * 10)
    assert X.length_ratio_ok("a" * 5, "a" * 10) and not X.length_ratio_ok("a" * 4, "a" * 10)
    assert not X.keep_pair("Gleich", "Gleich")
    assert not X.keep_pair("123", "124")
    assert not X.keep_pair("", "x")
    assert X.keep_pair("Zeilenhöhe", "Row height")
    assert X.dedupe([("a", "b"), ("a", "c"), ("a", "b")]) == [("a", "b"), ("a", "c")]


# ---------------------------------------------------------------------------------------------
# Ding

def test_ding_sentences():
    pairs = [p for line in DING_LINES for p in X.parse_ding_line(line)]
    assert ("Das war nicht meine Absicht.", "Such was not my intention.") in pairs
    assert ("Ich glaube, ich rieche Gas.", "I think I smell gas.") in pairs   # tags stripped
    assert ("Mach bitte die Tür zu!", "Please close the door!") in pairs
    de_side = [d for d, _ in pairs]
    assert not any("Abstand" in d or "folgte" in d for d in de_side)     # two variants
    assert not any("abgemacht" in d for d in de_side)                    # slash alternative
    assert "Ich gehe." not in de_side                                     # < 4 words
    assert not any(d.startswith("das Haus") for d in de_side)            # not capitalised
    assert not any("jdm." in d for d in de_side)                          # placeholder phrase
    assert len(pairs) == 3
    assert X.parse_ding_line("# comment :: x") == []


def test_strip_ding_tags():
    assert X.strip_ding_tags("Haus {n} [arch.] [ugs.] <Hs.>") == "Haus"
    assert X.strip_ding_tags("Er kommt [ugs.] .") == "Er kommt."


def test_extract_ding_file(tmp_path):
    f = tmp_path / "de-en"
    f.write_text("\n".join(DING_LINES + DING_LINES) + "\n", encoding="utf-8")
    st = {}
    pairs = X.extract_ding(str(f), stats=st)
    assert len(pairs) == 3 and st["pairs_raw"] == 6


# ---------------------------------------------------------------------------------------------
# UI strings (.mo)

UI_ENTRIES = [
    ("menu|file\x04~File", "~Datei"),
    ("dlg|print\x04Print _all documents", "_Alle Dokumente drucken"),
    ("STR_X\x04Close %PRODUCTNAME now", "%PRODUCTNAME jetzt schließen"),
    ("STR_Y\x04Page %1 of %2", "Seite %1 von %2"),
    ("STR_Z\x04Save as $(ARG1)", "Speichern als $(ARG1)"),
    ("STR_SAME\x04OK", "OK"),
    ("STR_EMPTY\x04Untranslated", ""),
    ("STR_DUP1\x04Delete row", "Zeile löschen"),
    ("STR_DUP2\x04Delete row", "Zeile löschen"),
]


@pytest.mark.parametrize("big_endian", [False, True])
def test_read_mo(big_endian):
    entries = X.read_mo(make_mo(UI_ENTRIES, big_endian))
    assert ("menu|file", "~File", "~Datei") in entries
    assert all(msgid for _, msgid, _ in entries)     # header skipped
    with pytest.raises(ValueError):
        X.read_mo(b"not a mo file at all, really")


def test_read_mo_matches_gettext(tmp_path):
    import gettext
    data = make_mo(UI_ENTRIES)
    t = gettext.GNUTranslations(__import__("io").BytesIO(data))
    for ctx, msgid, msgstr in X.read_mo(data):
        if msgstr:
            assert t.pgettext(ctx, msgid) == msgstr


def test_ui_pairs(tmp_path):
    st = {}
    pairs = X.ui_pairs_from_mo(make_mo(UI_ENTRIES), st)
    assert ("Datei", "File") in pairs
    assert ("Alle Dokumente drucken", "Print all documents") in pairs
    assert ("LibreOffice jetzt schließen", "Close LibreOffice now") in pairs
    assert not any("%" in d or "$(" in d for d, _ in pairs)
    assert st["drop_placeholder"] == 2 and st["drop_untranslated"] == 1
    d = tmp_path / "mo"
    d.mkdir()
    (d / "a.mo").write_bytes(make_mo(UI_ENTRIES))
    (d / "b.mo").write_bytes(make_mo(UI_ENTRIES[:2]))
    allp = X.extract_ui(str(d))
    assert len(allp) == len(set(allp)) == 4


def test_clean_ui_string():
    assert X.clean_ui_string("~Format  Cells") == "Format Cells"
    assert X.clean_ui_string("H_inzufügen") == "Hinzufügen"
    assert X.clean_ui_string("MY_VAR_NAME") == "MY_VAR_NAME"   # not a single mnemonic


# ---------------------------------------------------------------------------------------------
# corpus build (offline, fake package cache)

def _fake_cache(root: Path):
    def stamp(pkg, version):
        d = root / "root" / pkg
        d.mkdir(parents=True, exist_ok=True)
        (d / D.STAMP).write_text(json.dumps({"package": pkg, "version": version,
                                             "deb": f"{pkg}_{version}_all.deb",
                                             "license": D.LICENSES[pkg]}), encoding="utf-8")
    for pkg in D.PACKAGES:
        stamp(pkg, "0.test")
    paths = D.source_paths(str(root))
    for i in range(12):
        for key, lang, words in (("help_en", "en-US", ("Click the button number", "Select row")),
                                 ("help_de", "de", ("Klicken Sie auf die Schaltfläche Nummer",
                                                    "Wählen Sie Zeile"))):
            p = Path(paths[key]) / "text" / f"mod{i % 3}" / f"page{i:02d}.html"
            p.parent.mkdir(parents=True, exist_ok=True)
            body = "".join(f'<p id="par_id{i}{j}">{words[0]} {i} {j} now.</p>' for j in range(4))
            body += f'<h2 id="hd_id{i}">{words[1]} {i}</h2>'
            p.write_text(page(lang, body), encoding="utf-8")
    ding = Path(paths["ding"])
    ding.parent.mkdir(parents=True, exist_ok=True)
    ding.write_text("".join(f"x | Das ist der Satz Nummer {i}. :: x | This is sentence number {i}.\n"
                            for i in range(40)), encoding="utf-8")
    mo = Path(paths["ui_mo"])
    mo.mkdir(parents=True)
    (mo / "ui.mo").write_bytes(make_mo(UI_ENTRIES + [("S\x04Select row 3", "Wählen Sie Zeile 3")]))
    return paths


def _args(out, cache, **kw):
    a = B.parse_args(["--out", str(out), "--cache", str(cache), "--test-permille", "300",
                      "--valid-permille", "200", "--test-ding", "5", "--valid-ding", "3"])
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def _read(out, split):
    de = (out / f"{split}.de").read_text(encoding="utf-8").splitlines()
    en = (out / f"{split}.en").read_text(encoding="utf-8").splitlines()
    assert len(de) == len(en)
    return list(zip(de, en))


def test_build_corpus_offline(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    _fake_cache(cache)
    logs = []
    man = B.build(_args(out, cache), log=logs.append)
    sp = {s: _read(out, s) for s in B.SPLITS}
    c = man["counts"]
    for s in B.SPLITS:
        assert c[s]["total"] == len(sp[s])
    assert c["test_ding"]["total"] == 5 and c["test_ding"]["by_source"] == {"ding": 5}
    assert c["valid"]["by_source"]["ding"] == 3
    assert c["test_tech"]["total"] > 0 and c["valid"]["by_source"].get("help", 0) > 0
    assert c["train"]["by_source"]["ui"] > 0
    # no test/valid side appears in train
    held = {x for s in ("valid", "test_tech", "test_ding") for p in sp[s] for x in p}
    assert not any(p[0] in held or p[1] in held for p in sp["train"])
    # the UI pair "Select row 3" clashes with held-out help only if page 3 was held out
    assert man["packages"]["trans-de-en"]["version"] == "0.test"
    assert "GPL-2+" in (out / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "MPL-2.0" in (out / "ATTRIBUTION.md").read_text(encoding="utf-8")
    # by-file split: every help page lands in exactly one split
    for s in ("valid", "test_tech"):
        for de, en in sp[s]:
            if en.startswith("Click"):
                i = int(en.split()[4])
                rel = f"text/mod{i % 3}/page{i:02d}.html"
                assert B.help_split(rel, 300, 200) == s
    # cached: second run is a no-op, --force rebuilds identically
    before = {s: (out / f"{s}.en").read_bytes() for s in B.SPLITS}
    logs.clear()
    B.build(_args(out, cache), log=logs.append)
    assert any("up to date" in m for m in logs)
    B.build(_args(out, cache, force=True), log=logs.append)
    assert before == {s: (out / f"{s}.en").read_bytes() for s in B.SPLITS}
    # --max-train caps train deterministically (a prefix of the fixed order)
    out2 = tmp_path / "out2"
    B.build(_args(out2, cache, max_train=7), log=logs.append)
    assert _read(out2, "train") == sp["train"][:7]


def test_finalize_removes_overlap():
    args = argparse.Namespace(max_words=100, min_eval_words=1, max_train=0)
    splits = {
        "train": [("help", ("Eins zwei", "One two")), ("ding", ("Anders", "One two")),
                  ("ui", ("Drei", "Three")), ("ui", ("Drei", "Three")), ("help", ("Vier", "Valid x"))],
        "valid": [("help", ("V", "Valid x")), ("help", ("Eins zwei", "leak"))],
        "test_tech": [("help", ("Eins zwei", "One two"))],
        "test_ding": [],
    }
    final, removed = B.finalize_splits(splits, args)
    assert [p for _, p in final["train"]] == [("Drei", "Three")]
    assert removed["train"]["overlap_test"] == {"help": 1, "ding": 1, "ui": 0}
    assert removed["train"]["overlap_valid"]["help"] == 1
    assert removed["train"]["duplicate"] == 1
    assert [p for _, p in final["valid"]] == [("V", "Valid x")]
    assert removed["valid"]["overlap_test"] == 1


def test_help_split_deterministic():
    rel = "text/scalc/01/05030000.html"
    assert B.help_bucket(rel) == B.help_bucket(rel)
    rels = [f"text/x/{i}.html" for i in range(4000)]
    frac = sum(B.help_split(r) == "test_tech" for r in rels) / len(rels)
    assert 0.03 < frac < 0.05


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KD_NMT_CACHE", str(tmp_path / "c"))
    assert D.cache_dir() == str(tmp_path / "c")
    assert D.cache_dir(str(tmp_path / "d")) == str(tmp_path / "d")
    monkeypatch.delenv("KD_NMT_CACHE")
    assert D.cache_dir().endswith(os.path.join(".cache", "kd_nmt", "debian"))


def test_missing_apt_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))   # no apt-get / dpkg on PATH
    with pytest.raises(D.DebianSourceError, match="not available"):
        D.fetch_package("trans-de-en", cache=str(tmp_path / "cache"), log=lambda m: None)


# ---------------------------------------------------------------------------------------------
# noise

WORDS = "the quick brown fox jumps over the lazy dog today".split()


def test_noise_rate_zero_is_identity():
    rng = random.Random(0)
    assert N.word_dropout(WORDS, 0.0, rng) == WORDS
    assert N.local_shuffle(WORDS, 0.0, 3, rng) == WORDS
    assert N.word_replace(WORDS, 0.0, rng, ["x"]) == WORDS
    lines = ["  odd   spacing here ", "", "x"]
    for kind in N.KINDS:
        assert N.noise_lines(lines, kind, 0.0, seed=3, vocab=["a", "b"]) == lines


def test_word_dropout_keeps_a_word():
    for s in range(50):
        out = N.word_dropout(WORDS, 1.0, random.Random(s))
        assert len(out) == 1 and out[0] in WORDS
    out = N.word_dropout(WORDS * 20, 0.3, random.Random(1))
    assert 0.55 < len(out) / (len(WORDS) * 20) < 0.85


@pytest.mark.parametrize("window", [1, 2, 3, 5])
@pytest.mark.parametrize("rate", [0.3, 1.0])
def test_local_shuffle_window(window, rate):
    words = [str(i) for i in range(40)]
    moved = False
    for s in range(30):
        out = N.local_shuffle(words, rate, window, random.Random(s))
        assert sorted(out, key=int) == words
        for new_pos, w in enumerate(out):
            assert abs(new_pos - int(w)) <= window - 1
        moved |= out != words
    assert moved == (window > 1)


def test_word_replace_uses_vocab():
    vocab = N.Vocab({"alpha": 5, "beta": 1})
    out = N.word_replace(WORDS, 1.0, random.Random(0), vocab)
    assert len(out) == len(WORDS) and set(out) <= {"alpha", "beta"}
    out = N.word_replace(WORDS, 0.5, random.Random(0), ["zzz"])
    assert len(out) == len(WORDS) and "zzz" in out
    with pytest.raises(ValueError):
        N.word_replace(WORDS, 0.5, random.Random(0), [])


def test_noise_file_deterministic_and_line_count(tmp_path):
    src = tmp_path / "in.txt"
    lines = [" ".join(WORDS[: 1 + i % len(WORDS)]) for i in range(200)]
    lines[5] = ""
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for kind in N.KINDS:
        a, b, c = tmp_path / f"{kind}.a", tmp_path / f"{kind}.b", tmp_path / f"{kind}.c"
        assert N.noise_file(str(src), str(a), kind, 0.5, seed=1) == 200
        N.noise_file(str(src), str(b), kind, 0.5, seed=1)
        N.noise_file(str(src), str(c), kind, 0.5, seed=2)
        ta, tb, tc = (p.read_text(encoding="utf-8") for p in (a, b, c))
        assert ta == tb and ta != tc
        out = ta.split("\n")
        assert out[-1] == "" and len(out) - 1 == 200
        for i, (x, y) in enumerate(zip(lines, out)):
            assert bool(x.strip()) == bool(y.strip()), (kind, i)
    # line i's noise does not depend on the other lines
    one = N.noise_lines(lines[:10], "dropout", 0.5, seed=1)
    assert one == N.noise_lines(lines, "dropout", 0.5, seed=1)[:10]


def test_noise_cli(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.write_text("ein zwei drei vier\nfünf sechs\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "data.noise", "--kind", "dropout", "--rate", "0.1",
                        "--seed", "1", str(src), str(dst)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(dst.read_text(encoding="utf-8").splitlines()) == 2
    r = subprocess.run([sys.executable, "-m", "data.noise", "--kind", "dropout", "--rate", "2",
                        str(src), str(dst)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode != 0


# ---------------------------------------------------------------------------------------------
# committed fixture

@pytest.mark.parametrize("split,n", [("train", 400), ("valid", 60), ("test", 60)])
def test_fixture_sanity(split, n):
    for lang in ("de", "en"):
        raw = (FIXTURE / f"{split}.{lang}").read_bytes()
        text = raw.decode("utf-8")                      # valid UTF-8
        assert text.endswith("\n") and "\r" not in text
        lines = text.split("\n")[:-1]
        assert len(lines) == n
        assert all(line.strip() and line == line.strip() for line in lines)
        assert all(len(line.split()) <= 30 for line in lines)


def test_fixture_no_leak_and_readme():
    train = set((FIXTURE / "train.de").read_text(encoding="utf-8").splitlines()) | \
        set((FIXTURE / "train.en").read_text(encoding="utf-8").splitlines())
    for split in ("valid", "test"):
        for lang in ("de", "en"):
            held = (FIXTURE / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            assert not train & set(held)
    readme = (FIXTURE / "README.md").read_text(encoding="utf-8")
    for needle in ("MPL-2.0", "GPL-2+", "trans-de-en", "libreoffice-help-de",
                   "python -m data.build_corpus --fixture"):
        assert needle in readme


def test_noise_lines_replace_draws_from_the_lines_themselves():
    # data.prepare noises the train source through noise_lines with no vocab: replace must work
    # there (it failed with "needs a non-empty vocab" on the real corpus) and draw only words
    # that occur in the lines
    lines = ["das ist ein Haus", "ein Hund", "", "Haus und Hund"]
    out = N.noise_lines(lines, "replace", 0.5, seed=1)
    assert len(out) == 4 and out[2] == ""
    assert out != lines
    words = {w for line in lines for w in line.split()}
    assert {w for line in out for w in line.split()} <= words
    assert out == N.noise_lines(lines, "replace", 0.5, seed=1)  # seeded
