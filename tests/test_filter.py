"""kd-nmt filter: every drop explained, both sides aligned, reruns byte-identical, bad input = one line.

The hypotheses are the fixture's gold targets with known faults planted (empty, looping,
truncated, duplicated, misaligned lines), so each filter's catch can be asserted exactly.
"""
import json
import shutil

import pytest

from helpers import PLUGIN, TINY_ARCH, TRAIN_COMMON, run, tool
from kd_nmt.cli import main as kd_nmt
from kd_nmt.filter import checks

N = 120
EMPTY, LOOP, SHORT, DUP_OF, DUP = 2, 4, 6, 0, 9  # 0-based lines
MISALIGNED = list(range(30, 42))  # each gets another line's target


def test_checks_by_hand():
    assert checks.max_repeats("a b c d") == 1
    assert checks.max_repeats("▁the ▁the ▁the x") == 3
    assert checks.max_repeats("x a b a b a b a b y") == 4  # a bigram, four copies
    assert checks.max_repeats("a b c a b c") == 2
    assert checks.max_repeats("") == 0
    assert checks.length_ratio("a b c d", "x y") == 0.5
    assert checks.length_ratio("", "") == 0.0 and checks.length_ratio("", "x") == float("inf")
    assert checks.is_empty("a", " ") == 1 and checks.is_empty("a", "b") == 0
    assert checks.duplicates(["a", "b", "a", "a"], ["x", "y", "x", "z"]) == [None, None, 0, None]


@pytest.fixture(scope="module")
def corpus(tokenized, tmp_path_factory):
    """source, hypothesis (gold + planted faults), reference: N line-aligned token-space lines."""
    out = tmp_path_factory.mktemp("filter-corpus")
    src = (tokenized / "train.de").read_text(encoding="utf-8").splitlines()[:N]
    ref = (tokenized / "train.en").read_text(encoding="utf-8").splitlines()[:N]
    hyp = list(ref)
    hyp[EMPTY] = ""
    hyp[LOOP] = " ".join(ref[LOOP].split()[:2] + ["▁the"] * 6)
    hyp[SHORT] = ref[SHORT].split()[0]
    src[DUP], hyp[DUP], ref[DUP] = src[DUP_OF], hyp[DUP_OF], ref[DUP_OF]
    for k, i in enumerate(MISALIGNED):  # a target from far away
        hyp[i] = ref[80 + k]
    paths = {}
    for name, lines in (("src", src), ("hyp", hyp), ("ref", ref)):
        paths[name] = out / f"train.{name}"
        paths[name].write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return paths, src, hyp, ref


def _outputs(tmp_path, tag):
    return {"src": tmp_path / f"{tag}.de", "tgt": tmp_path / f"{tag}.en"}


def _filter(corpus, out, *options):
    paths = corpus[0]
    return kd_nmt(["filter", "--source", str(paths["src"]), "--hypothesis", str(paths["hyp"]),
                   "--output-source", str(out["src"]), "--output-target", str(out["tgt"]),
                   "--no-progress", *map(str, options)])


def _read_decisions(path):
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    return rows[0], rows[1:]


def _files(out):
    tgt = out["tgt"]
    return [out["src"], tgt, tgt.with_name(tgt.name + ".decisions.tsv"),
            tgt.with_name(tgt.name + ".counts.json")]


def test_cheap_filters_keep_alignment_explain_every_drop_and_rerun_identically(corpus, tmp_path):
    _, src, hyp, _ = corpus
    out = _outputs(tmp_path, "cheap")
    options = ["--drop-empty", "--max-repeats", "3", "--length-ratio", "0.4", "3.0", "--dedup"]
    assert _filter(corpus, out, *options) == 0
    header, rows = _read_decisions(_files(out)[2])
    assert header == ["line", "decision", "filter", "score", "empty", "repeat", "length_ratio", "dedup"]
    assert [int(r[0]) for r in rows] == list(range(1, N + 1))  # one row per input line
    dropped = {int(r[0]) - 1: r for r in rows if r[1] == "dropped"}
    assert dropped[EMPTY][2:4] == ["empty", "1"]
    assert dropped[LOOP][2:4] == ["repeat", "6"]
    assert dropped[SHORT][2] == "length_ratio" and float(dropped[SHORT][3]) < 0.4
    assert dropped[DUP][2:4] == ["dedup", str(DUP_OF + 1)]  # names the line it repeats
    assert DUP_OF not in dropped
    for i, row in dropped.items():  # every drop is explained by its own score
        assert row[3] == row[header.index(row[2])]
    kept = [i for i in range(N) if i not in dropped]
    # the kept lines, in order, on both sides: the alignment is the input's
    assert out["src"].read_text(encoding="utf-8").splitlines() == [src[i] for i in kept]
    assert out["tgt"].read_text(encoding="utf-8").splitlines() == [hyp[i] for i in kept]
    counts = json.loads(_files(out)[3].read_text())
    assert counts["lines"] == N and counts["kept"] == len(kept)
    assert sum(counts["dropped_by"].values()) == counts["dropped"] == len(dropped)
    assert counts["dropped_by"]["empty"] == 1 and counts["dropped_by"]["dedup"] == 1

    before = [p.read_bytes() for p in _files(out)]
    assert _filter(corpus, out, *options) == 0
    assert [p.read_bytes() for p in _files(out)] == before


def test_min_chrf_drops_the_misaligned_lines(corpus, tmp_path):
    paths, _, hyp, ref = corpus
    out = _outputs(tmp_path, "chrf")
    ref_out = tmp_path / "chrf.ref"
    assert _filter(corpus, out, "--reference", paths["ref"], "--min-chrf", 40,
                   "--output-reference", ref_out) == 0
    _, rows = _read_decisions(_files(out)[2])
    dropped = {int(r[0]) - 1 for r in rows if r[1] == "dropped"}
    assert set(MISALIGNED) <= dropped
    assert EMPTY in dropped  # chrF 0 against a non-empty reference
    # identical to the reference: chrF 100, kept
    assert all(float(r[3 + 1]) == 100.0 for r in rows if hyp[int(r[0]) - 1] == ref[int(r[0]) - 1])
    kept = [i for i in range(N) if i not in dropped]
    assert ref_out.read_text(encoding="utf-8").splitlines() == [ref[i] for i in kept]


@pytest.fixture(scope="module")
def backward_checkpoint(data_bin, tmp_path_factory):
    """A tiny en->de model on the fixture's (joined) dictionaries."""
    save = tmp_path_factory.mktemp("backward")
    run([tool("fairseq-train"), data_bin, "--source-lang", "en", "--target-lang", "de",
         *TINY_ARCH, *TRAIN_COMMON, "--criterion", "cross_entropy", "--max-update", "120",
         "--save-dir", save, "--user-dir", PLUGIN, "--no-save-optimizer-state"])
    return save / "checkpoint_best.pt"


def test_backward_model_drops_the_worst_fraction(corpus, data_bin, backward_checkpoint, tmp_path):
    out = _outputs(tmp_path, "bw")
    options = ["--drop-empty", "--backward-model", backward_checkpoint, "--data-bin", data_bin,
               "--drop-fraction", 0.1, "--batch-tokens", 500,
               "--binarize-to", tmp_path / "bin"]
    assert _filter(corpus, out, *options) == 0
    header, rows = _read_decisions(_files(out)[2])
    assert header[-1] == "backward"
    scored = [r for r in rows if r[-1] != "-"]
    assert len(scored) == N - 1  # all but the empty line
    dropped = [int(r[0]) - 1 for r in rows if r[2] == "backward"]
    assert len(dropped) == int(0.1 * (N - 1))
    # the dropped are the lowest scores (which lines they are depends on the model: a tiny
    # model barely conditions on its input, see docs/filter.md)
    worst_kept = min(float(r[-1]) for r in scored if r[1] == "kept")
    assert all(float(rows[i][-1]) <= worst_kept for i in dropped)
    counts = json.loads(_files(out)[3].read_text())
    assert counts["filters"]["backward"]["scored"] == N - 1
    # the data-bin holds the kept lines, the gold valid/test splits beside them
    meta = json.loads((tmp_path / "bin" / "relabel.json").read_text())
    assert meta["train_sentences"] == counts["kept"] and meta["other_splits"] == ["test", "valid"]
    assert meta["gold_data_bin"] == str(data_bin.resolve())

    before = [p.read_bytes() for p in _files(out)]
    shutil.rmtree(tmp_path / "bin")
    assert _filter(corpus, out, *options) == 0
    assert [p.read_bytes() for p in _files(out)] == before


def test_bad_input_is_one_line_and_writes_nothing(corpus, data_bin, backward_checkpoint, tmp_path,
                                                  capsys):
    paths = corpus[0]
    short = tmp_path / "short.en"
    short.write_text("▁a\n", encoding="utf-8")
    other_bin = tmp_path / "other-bin"  # same files, one dictionary entry swapped
    shutil.copytree(data_bin, other_bin)
    lines = (other_bin / "dict.en.txt").read_text(encoding="utf-8").splitlines()
    lines[5], lines[6] = lines[6], lines[5]
    (other_bin / "dict.en.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = _outputs(tmp_path, "bad")
    cases = {
        "has 1 lines but --source": ["--hypothesis", short, "--dedup"],
        "source file not found": ["--source", tmp_path / "nope.de", "--dedup"],
        "no filter chosen": [],
        "--min-chrf compares with the gold target": ["--min-chrf", 10],
        "--backward-model checkpoint not found": ["--backward-model", tmp_path / "b.pt",
                                                  "--data-bin", data_bin],
        "--backward-model does not match --data-bin": ["--backward-model", backward_checkpoint,
                                                       "--data-bin", other_bin],
        "--drop-fraction must be in [0, 1)": ["--dedup", "--drop-fraction", 1],
    }
    for needle, options in cases.items():
        capsys.readouterr()
        argv = ["filter", "--source", paths["src"], "--hypothesis", paths["hyp"],
                "--output-source", out["src"], "--output-target", out["tgt"], *options]
        # later options win: a case may replace --source/--hypothesis
        assert kd_nmt([str(a) for a in argv]) == 2, needle
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("kd-nmt: error: ") and needle in err[0], err
        assert not any(p.exists() for p in _files(out)), needle
    # the console script: the same line, exit status 2
    proc = run([tool("kd-nmt"), "filter", "--source", paths["src"], "--hypothesis", short,
                "--output-source", out["src"], "--output-target", out["tgt"], "--dedup"], check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "must be line-aligned" in proc.stderr
