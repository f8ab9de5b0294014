"""data/monolingual.py: roff stripping and sentence rules on an inline page (no network)."""
from data import monolingual as M

PAGE = r""".\" -*- coding: UTF-8 -*-
.TH LS 1 "September 2022" "GNU coreutils 9.1"
.SH BEZEICHNUNG
ls \- Verzeichnisinhalte auflisten
.SH ÜBERSICHT
\fBls\fP [\fI\,OPTION\/\fP]… [\fI\,DATEI\/\fP]…
.SH BESCHREIBUNG
.PP
Auflistung von Informationen über die DATEIen (Standardvorgabe ist das
aktuelle Verzeichnis). Die Einträge werden z.B. alphabetisch sortiert, falls
weder \fB\-cftuvSUX\fP noch \fB\-\-sort\fP angegeben wurden.
.TP
\fB\-a\fP, \fB\-\-all\fP
Einträge nicht ignorieren, die mit \(Bq.\(lq beginnen.
.TP
.B \-\-color
Steuert die Farbe der Ausgabe
.BR dircolors (1)
nach den Regeln der Datei.
.nf
Dies ist ein Beispiel im Fließsatz. Es wird nicht übernommen.
.fi
.TS
tab(;);
Eine Tabelle;wird übersprungen.
.TE
Kurz.
Das ist ein Satz ohne Ende
.SH "SIEHE AUCH"
Die vollständige Dokumentation ist im Info-Handbuch verfügbar.
"""


def test_strip_roff_keeps_running_text_only():
    assert M.strip_roff(PAGE) == [
        "Auflistung von Informationen über die DATEIen (Standardvorgabe ist das aktuelle "
        "Verzeichnis). Die Einträge werden z.B. alphabetisch sortiert, falls weder -cftuvSUX "
        "noch --sort angegeben wurden.",
        "-a, --all",  # a .TP tag is a paragraph of its own
        "Einträge nicht ignorieren, die mit „.“ beginnen.",
        "--color",
        "Steuert die Farbe der Ausgabe dircolors(1) nach den Regeln der Datei.",
        "Kurz. Das ist ein Satz ohne Ende",
    ]


def test_sentences_split_at_ends_not_at_abbreviations():
    assert M.split_sentences("Das ist z.B. so. Dann folgt am 1. Januar ein Satz! Oder? Nein.") == [
        "Das ist z.B. so.", "Dann folgt am 1. Januar ein Satz!", "Oder?", "Nein."]


def test_keep_rules():
    assert M.keep_reason("Die Einträge werden alphabetisch sortiert.") is None
    assert M.keep_reason("Kurz und gut.") == "too_short"
    assert M.keep_reason(" ".join(["Wort"] * 61) + ".") == "too_long"
    assert M.keep_reason("Das ist ein Satz ohne Ende") == "not_a_sentence"
    assert M.keep_reason("klein geschrieben ist kein Satz.") == "not_a_sentence"
    assert M.keep_reason("Siehe <https://example.org/a/b> für mehr.") == "not_text"
    assert M.keep_reason("Werte 1 2 3 4 5 6 7 8 9 10.") == "not_text"


def test_pages_to_sentences_dedup_within_and_against_the_parallel_corpus():
    counts = {}
    exclude = {M.dedup_key("Steuert die Farbe der Ausgabe dircolors(1) nach den Regeln der Datei.")}
    out = list(M.sentences_of([PAGE, PAGE], exclude, counts))
    assert out == [
        "Auflistung von Informationen über die DATEIen (Standardvorgabe ist das aktuelle "
        "Verzeichnis).",
        "Die Einträge werden z.B. alphabetisch sortiert, falls weder -cftuvSUX noch --sort "
        "angegeben wurden.",
        "Einträge nicht ignorieren, die mit „.“ beginnen.",
    ]
    assert counts["pages"] == 2 and counts["kept"] == 3 and counts["duplicate"] == 3
    assert counts["in_parallel_corpus"] == 2  # once per page
    assert counts["too_short"] == 2 * 3  # "-a, --all", "--color", "Kurz." on each page
