"""``kd-nmt relabel --keep-nbest N`` and ``kd-nmt relabel keep-nbest``: N aligned pairs per source.

The first tests need no teacher (hand-written n-best files); the others decode the fixture with
the tiny teacher, one CPU thread.
"""
import json

import pytest
import torch

from helpers import kill_after_first_chunk, tool

from kd_nmt import cli as kd_cli


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def lines(path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def kd_nmt(capsys, *args):
    """``kd-nmt ARGS`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    rc = kd_cli.main([*map(str, args)])
    return rc, capsys.readouterr().err


def record(line_id, *hyps):
    return json.dumps({"id": line_id, "hypotheses": [{"tokens": h, "score": -1.0} for h in hyps],
                       "selected": 0 if hyps else None})


def test_keep_nbest_subcommand_repeats_each_source_with_its_hypotheses(capsys, tmp_path):
    (tmp_path / "in.de").write_text("a b\n\nc\n", encoding="utf-8")
    (tmp_path / "n.jsonl").write_text(
        "\n".join([record(0, "A1", "A2", "A3"), record(1), record(2, "C1", "C2", "C3")]) + "\n",
        encoding="utf-8")
    out, src = tmp_path / "out.en", tmp_path / "out.de"
    rc, err = kd_nmt(capsys, "relabel", "keep-nbest", "--nbest-file", tmp_path / "n.jsonl",
                     "--input", tmp_path / "in.de", "--keep-nbest", 2, "--output", out,
                     "--output-source", src)
    assert rc == 0, err
    assert lines(out) == ["A1", "A2", "", "", "C1", "C2"]  # n-best order, the empty source kept
    assert lines(src) == ["a b", "a b", "", "", "c", "c"]
    assert "3 sources x 2 hypotheses = 6 lines" in err


@pytest.mark.parametrize("records, message", [
    ([record(0, "A1", "A2"), record(1, "B1"), record(2, "C1", "C2")],
     "source line 2 (id 1) has 1 hypotheses but --keep-nbest 2 needs 2; decode with --nbest 2 or more"),
    ([record(0, "A1", "A2"), record(2, "C1", "C2")], "id 1 is missing (line 2 has id 2)"),
    ([record(0, "A1", "A2"), record(0, "A1", "A2")], "line 2 has id 0 where id 1 belongs"),
    ([record(0, "A1", "A2"), record(1, "B1", "B2")], "ends after 2 records but --input has 3 lines"),
    ([record(0, "A1", "A2"), "{oops"], "line 2 is not a kd-nmt relabel --nbest-output record"),
    ([record(0, "A1", "A2"), record(1), record(2, "C1", "C2")],  # a non-empty source, no hypotheses
     "source line 2 (id 1) has 0 hypotheses"),
])
def test_missing_nbest_entries_are_one_clear_line(capsys, tmp_path, records, message):
    (tmp_path / "in.de").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "n.jsonl").write_text("\n".join(records) + "\n", encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, err = kd_nmt(capsys, "relabel", "keep-nbest", "--nbest-file", tmp_path / "n.jsonl",
                     "--input", tmp_path / "in.de", "--keep-nbest", 2, "--output", tmp_path / "o.en",
                     "--output-source", tmp_path / "o.de")
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("kd-nmt: error: n-best file") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


# ------------------------------------------------------------------------------------------
# with the teacher
# ------------------------------------------------------------------------------------------
def relabel_args(teacher, data_bin, src, out, *more):
    return ["relabel", "--no-progress", "--teacher", teacher, "--data-bin", data_bin, "--input", src,
            "--output", out, "--beam", "3", "--nbest", "3", "--max-len-b", "20", *more]


@pytest.fixture(scope="module")
def keep3(tokenized, data_bin, teacher_checkpoint, tmp_path_factory):
    """One uninterrupted run: the test split's 3-best, kept, n-best JSONL and data-bin too."""
    work = tmp_path_factory.mktemp("keep3")
    out = work / "test.kd.en"
    from helpers import run

    # --binarize-to aligns with the gold *train* split: a data-bin whose train split is the
    # fixture's test split (60 lines, decoded in seconds) stands in for the 400-line one
    gold = work / "gold-bin"
    gold.mkdir()
    for f in data_bin.iterdir():
        if not f.name.startswith("train."):
            (gold / f.name).symlink_to(f)
        if f.name.startswith("test."):
            (gold / f.name.replace("test.", "train.", 1)).symlink_to(f)
    proc = run([tool("kd-nmt"), *relabel_args(
        teacher_checkpoint, gold, tokenized / "test.de", out, "--keep-nbest", "3",
        "--nbest-output", work / "nbest.jsonl", "--chunk-size", "3", "--threads", "1",
        "--binarize-to", work / "bin")], env={"OMP_NUM_THREADS": "1"})
    return work, proc


def test_keep_nbest_is_aligned_in_nbest_order_and_binarized(keep3, tokenized, data_bin):
    from fairseq.data import data_utils

    work, proc = keep3
    sources = lines(tokenized / "test.de")
    records = [json.loads(x) for x in lines(work / "nbest.jsonl")]
    out, src = lines(work / "test.kd.en"), lines(work / "test.kd.en.source")
    assert len(out) == len(src) == 3 * len(sources) == 180
    for i, (source, rec) in enumerate(zip(sources, records)):
        assert src[3 * i: 3 * i + 3] == [source] * 3
        assert out[3 * i: 3 * i + 3] == [h["tokens"] for h in rec["hypotheses"]]  # n-best order
    assert "(3 hypotheses a line; sources repeated in" in proc.stderr
    # the data-bin: 3 x the gold test split's lines, each gold source 3 times in a row
    gold = data_utils.load_indexed_dataset(str(data_bin / "test.de-en.de"), None)
    binned = data_utils.load_indexed_dataset(str(work / "bin" / "train.de-en.de"), None)
    assert len(binned) == 180 and all(torch.equal(binned[k], gold[k // 3]) for k in range(180))
    assert json.loads((work / "bin" / "relabel.json").read_text())["repeat"] == 3
    # the same pair from the n-best file alone
    rc = kd_cli.main(["relabel", "keep-nbest", "--nbest-file", str(work / "nbest.jsonl"), "--input",
                      str(tokenized / "test.de"), "--keep-nbest", "3", "--output", str(work / "again.en"),
                      "--output-source", str(work / "again.de")])
    assert rc == 0
    assert (work / "again.en").read_bytes() == (work / "test.kd.en").read_bytes()
    assert (work / "again.de").read_bytes() == (work / "test.kd.en.source").read_bytes()


def test_filter_runs_on_the_kept_nbest(capsys, keep3):
    work, _ = keep3
    rc, err = kd_nmt(capsys, "filter", "--source", work / "test.kd.en.source",
                     "--hypothesis", work / "test.kd.en", "--output-source", work / "f.de",
                     "--output-target", work / "f.en", "--dedup", "--max-repeats", "3")
    assert rc == 0, err
    src, out = lines(work / "test.kd.en.source"), lines(work / "test.kd.en")
    kept = [row.split("\t") for row in lines(work / "f.en.decisions.tsv")[1:]]
    kept = [int(row[0]) - 1 for row in kept if row[1] == "kept"]
    # every kept pair is an input pair, and its source id is still line // 3
    assert lines(work / "f.de") == [src[k] for k in kept]
    assert lines(work / "f.en") == [out[k] for k in kept]


def test_keep_nbest_kill_9_then_rerun_is_byte_identical(capsys, keep3, tokenized, data_bin,
                                                        teacher_checkpoint, tmp_path):
    expected, _ = keep3
    out = tmp_path / "test.kd.en"
    args = relabel_args(teacher_checkpoint, data_bin, tokenized / "test.de", out,
                        "--keep-nbest", "3", "--chunk-size", "3")
    chunks = tmp_path / "test.kd.en.chunks"
    kill_after_first_chunk([tool("kd-nmt"), *args, "--threads", "1"], chunks, {"OMP_NUM_THREADS": "1"})
    assert not out.exists(), "the run finished before it was killed: give it more chunks"
    done = sorted(p.name for p in chunks.glob("*.txt"))
    assert 1 <= len(done) < 20
    assert len(lines(chunks / "000000.txt")) == 9  # 3 sources x 3 hypotheses

    rc, err = kd_nmt(capsys, *args[:-4], "--keep-nbest", "2", "--chunk-size", "3")
    assert rc == 2 and "keep_nbest: 3 in the work dir, 2 now" in err
    rc, err = kd_nmt(capsys, *args)
    assert rc == 0, err
    assert f"resuming: {len(done)}/20 chunks" in err
    assert out.read_bytes() == (expected / "test.kd.en").read_bytes()
    assert (tmp_path / "test.kd.en.source").read_bytes() == (expected / "test.kd.en.source").read_bytes()


def test_keep_nbest_bad_options_are_one_line(capsys, tokenized, data_bin, teacher_checkpoint, tmp_path):
    base = relabel_args(teacher_checkpoint, data_bin, tokenized / "test.de", tmp_path / "o.en")
    cases = {
        "more than nbest": (["--keep-nbest", "4"], "--keep-nbest 4 needs --nbest 4 or more (got --nbest 3)"),
        "with a selection": (["--keep-nbest", "2", "--select-by-mbr", "chrf"], "does not combine"),
        "source without keep": (["--output-source", tmp_path / "o.de", "--nbest-output", tmp_path / "n"],
                                "add --keep-nbest"),
        "source overwrites input": (["--keep-nbest", "2", "--output-source", tokenized / "test.de"],
                                    "would overwrite an input"),
    }
    for name, (more, message) in cases.items():
        rc, err = kd_nmt(capsys, *base, *more)
        assert rc == 2 and message in err and err.count("kd-nmt: error:") == 1, (name, err)
    assert list(tmp_path.iterdir()) == []
