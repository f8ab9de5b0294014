"""kd-nmt bench on raw text (--input/--reference), with CTranslate2 (--backend), and --deploy.

The equality tests decode the fixture test split both ways: the binarized split and the raw
text must give the same tokens, hence the same output and scores. The fixture data-bin was
encoded without normalisation, so those runs use ``--normalize none``; that the default
(sacremoses) encoding is data/prepare.py's is checked on its own.
"""
import csv
import json
import shutil
import sys

import pytest

from helpers import FIXTURE, REPO

SOURCE, REFERENCE = FIXTURE / "test.de", FIXTURE / "test.en"
N_TEST = len(REFERENCE.read_text(encoding="utf-8").splitlines())
QUIET = ["--bootstrap", "0", "--buckets", "none", "--no-progress", "--max-len-b", "40"]


def bench(capsys, *argv):
    from kd_nmt.cli import main

    rc = main(["bench", *map(str, argv)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out


def bench_error(capsys, *argv):
    from kd_nmt.cli import main

    assert main(["bench", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kd-nmt: error: "), err
    return err[0]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def hyps(out, row):
    return (out / row["hyp_file"]).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def data_dir(data_bin, tokenized, tmp_path_factory):
    """DATA/bin (the fixture data-bin) with DATA/spm.model beside it, as data/prepare.py lays it out."""
    data = tmp_path_factory.mktemp("data")
    shutil.copytree(data_bin, data / "bin")
    shutil.copy(tokenized / "spm.model", data / "spm.model")
    return data


@pytest.fixture(scope="module")
def checkpoint(teacher_checkpoint, tmp_path_factory):
    """The teacher copied where its CTranslate2 conversions may be cached."""
    path = tmp_path_factory.mktemp("ckpt") / "teacher.pt"
    shutil.copy(teacher_checkpoint, path)
    return path


def test_raw_text_equals_binarized_split(capsys, checkpoint, data_dir, tmp_path):
    common = ["--checkpoint", checkpoint, "--reference", REFERENCE, "--beam", "2", *QUIET]
    binarized, raw = tmp_path / "binarized", tmp_path / "raw"
    bench(capsys, *common, "--data-bin", data_dir / "bin", "--split", "test", "--spm", data_dir / "spm.model",
          "--out", binarized)
    # the sentencepiece model found beside the data-bin (DATA/spm.model)
    bench(capsys, *common, "--data-bin", data_dir / "bin", "--input", SOURCE, "--normalize", "none", "--out", raw)
    rows = {d: read_csv(d / "bench.csv") for d in (binarized, raw)}
    assert [r["decode"] for r in rows[raw]] == ["greedy", "beam2"]
    for a, b in zip(rows[binarized], rows[raw]):
        assert hyps(binarized, a) == hyps(raw, b) and len(hyps(raw, b)) == N_TEST
        assert float(a["bleu"]) == float(b["bleu"]) and float(a["chrf"]) == float(b["chrf"])
        assert a["out_tokens"] == b["out_tokens"] and b["split"] == "test.de" and b["backend"] == "fairseq"
    report = json.loads((raw / "bench.json").read_text(encoding="utf-8"))
    assert report["input"] == str(SOURCE) and report["normalize"] == "none"
    assert "spm.model" in report["detokenizer"]


def test_default_encoding_is_data_prepare(tokenized, tmp_path):
    sys.path.insert(0, str(REPO))  # data/ is not installed
    from data.prepare import _encode, _normalise
    from kd_nmt.common.spm_text import encode_lines

    raw = tmp_path / "raw"
    raw.mkdir()
    for lang in ("de", "en"):
        shutil.copy(FIXTURE / f"test.{lang}", raw / f"test.{lang}")
    _normalise(raw, tmp_path / "norm", 0, splits=("test",))
    _encode(tmp_path / "norm", tmp_path / "tok", tokenized / "spm.model", ["test"], None, 1)
    prepared = (tmp_path / "tok" / "test.de").read_text(encoding="utf-8").splitlines()
    lines = SOURCE.read_text(encoding="utf-8").splitlines()
    ours = [" ".join(p) for p in encode_lines(lines, tokenized / "spm.model", "de")]
    assert ours == prepared
    plain = [" ".join(p) for p in encode_lines(lines, tokenized / "spm.model", "de", normalize="none")]
    assert plain != prepared  # the fixture has punctuation the normaliser changes ("–", "…")


def test_ctranslate2_backend_matches_fairseq_greedy(capsys, checkpoint, data_dir, tmp_path):
    from kd_nmt.common.hashing import sha256_file

    common = ["--checkpoint", checkpoint, "--data-bin", data_dir / "bin", "--input", SOURCE,
              "--reference", REFERENCE, "--normalize", "none", "--beam", "1", *QUIET]
    bench(capsys, *common, "--out", tmp_path / "fairseq")
    out = bench(capsys, *common, "--backend", "ctranslate2", "--ct2-quantization", "float32",
                "--out", tmp_path / "ct2")
    assert "CTranslate2 (ctranslate2-float32)" in out
    (fs_row,), (ct2_row,) = read_csv(tmp_path / "fairseq" / "bench.csv"), read_csv(tmp_path / "ct2" / "bench.csv")
    fs, ct2 = hyps(tmp_path / "fairseq", fs_row), hyps(tmp_path / "ct2", ct2_row)
    same = sum(a == b for a, b in zip(fs, ct2))
    assert len(ct2) == N_TEST and same >= 0.95 * N_TEST, same
    assert ct2_row["backend"] == "ctranslate2-float32" and float(ct2_row["sents_per_s"]) > 0
    cache = checkpoint.parent / "teacher.pt.ct2-float32"
    stamp = json.loads((cache / "kd_nmt_stamp.json").read_text())
    assert stamp["sha256"] == sha256_file(checkpoint) and stamp["quantization"] == "float32"
    assert float(ct2_row["size_mb"]) == round(sum(f.stat().st_size for f in cache.iterdir()) / 1e6, 3)
    # cached: a second run converts nothing
    mtime = (cache / "model.bin").stat().st_mtime_ns
    bench(capsys, *common, "--backend", "ctranslate2", "--ct2-quantization", "float32", "--out", tmp_path / "again")
    assert (cache / "model.bin").stat().st_mtime_ns == mtime


DEPLOY_COLUMNS = {"name", "engine", "params", "model_mb", "bleu", "chrf", "sents_per_s", "words_per_s",
                  "toks_per_s", "latency_p50_ms", "latency_p90_ms", "latency_lines", "peak_rss_mb",
                  "load_seconds", "decode_seconds", "n_sentences", "out_words", "batch_sentences"}


def test_deploy_table(capsys, checkpoint, data_dir, tmp_path):
    import matplotlib.image

    student = tmp_path / "student.pt"
    shutil.copy(checkpoint, student)
    out = tmp_path / "deploy"
    printed = bench(capsys, "--deploy", "--checkpoint", checkpoint, student, "--names", "teacher", "student",
                    "--data-bin", data_dir / "bin", "--input", SOURCE, "--reference", REFERENCE,
                    "--normalize", "none", "--beam", "2", "--latency-lines", "8", "--out", out, *QUIET)
    rows = read_csv(out / "deploy.csv")
    assert DEPLOY_COLUMNS <= set(rows[0])
    assert [(r["name"], r["engine"]) for r in rows] == [
        ("teacher", "ctranslate2-int8"), ("teacher", "fairseq-float32"),
        ("student", "ctranslate2-int8"), ("student", "fairseq-float32")]
    from sacrebleu.metrics import BLEU, CHRF

    references = [line.strip() for line in REFERENCE.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        # the table's scores are sacreBLEU's of the row's own hypotheses (not just "in range")
        assert float(r["bleu"]) == pytest.approx(BLEU().corpus_score(hyps(out, r), [references]).score, abs=1e-6)
        assert float(r["chrf"]) == pytest.approx(CHRF().corpus_score(hyps(out, r), [references]).score, abs=1e-6)
        # sentences/s: the sentences over the engine's timed seconds
        assert float(r["sents_per_s"]) == pytest.approx(N_TEST / float(r["decode_seconds"]), rel=1e-2)
        assert 0 < float(r["latency_p50_ms"]) <= float(r["latency_p90_ms"])
        assert int(r["latency_lines"]) == 8 and int(r["n_sentences"]) == N_TEST
        assert r["batch_sentences"] == "32" and r["threads"] == "1"
        assert 20 < float(r["peak_rss_mb"]) < 8000 and float(r["model_mb"]) > 0
        assert len(hyps(out, r)) == N_TEST
        # words/s and sentences/s are the same run's
        assert float(r["words_per_s"]) / float(r["sents_per_s"]) == pytest.approx(
            int(r["out_words"]) / N_TEST, rel=1e-2)
    by = {(r["name"], r["engine"]): r for r in rows}
    # the same checkpoint under two names: the same output, the same size
    assert hyps(out, by["teacher", "fairseq-float32"]) == hyps(out, by["student", "fairseq-float32"])
    assert by["teacher", "ctranslate2-int8"]["model_mb"] == by["student", "ctranslate2-int8"]["model_mb"]
    # int8 weights without optimizer state vs a float32 training checkpoint; a process without torch
    ct2, fs = by["teacher", "ctranslate2-int8"], by["teacher", "fairseq-float32"]
    assert float(ct2["model_mb"]) < float(fs["model_mb"]) / 2
    assert float(ct2["peak_rss_mb"]) < float(fs["peak_rss_mb"]) - 100  # torch alone is more
    report = json.loads((out / "deploy.json").read_text(encoding="utf-8"))
    assert [s["torch_imported"] for s in report["systems"]] == [False, True, False, True]
    assert report["signatures"]["BLEU"].startswith("nrefs:1|")
    md = (out / "deploy.md").read_text(encoding="utf-8")
    assert md.splitlines()[0] in printed and md.count("| teacher |") == 2
    png = out / "deploy_speed_quality.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(str(png)).shape[1] >= 600


def test_raw_text_bad_inputs(capsys, checkpoint, data_dir, tmp_path):
    import sentencepiece as spm

    ok = ["--checkpoint", checkpoint, "--data-bin", data_dir / "bin", "--out", tmp_path / "never"]
    short = tmp_path / "short.en"
    short.write_text("\n".join(REFERENCE.read_text(encoding="utf-8").splitlines()[:-2]) + "\n", encoding="utf-8")
    msg = bench_error(capsys, *ok, "--input", SOURCE, "--reference", short)
    assert f"has {N_TEST - 2} lines but --input" in msg and f"has {N_TEST}; they must be line-aligned" in msg
    latin = tmp_path / "latin1.de"
    latin.write_bytes("Größe\nzwei\n".encode("latin-1"))
    msg = bench_error(capsys, *ok, "--input", latin, "--reference", REFERENCE)
    assert "is not UTF-8" in msg and "line 1" in msg
    assert "--input needs --reference" in bench_error(capsys, *ok, "--input", SOURCE)
    assert "not both" in bench_error(capsys, *ok, "--input", SOURCE, "--reference", REFERENCE, "--split", "test")
    # a sentencepiece model the dictionaries were not built with
    spm.SentencePieceTrainer.train(
        input=str(FIXTURE / "valid.en"), model_prefix=str(tmp_path / "small"), vocab_size=200,
        hard_vocab_limit=False, num_threads=1, minloglevel=2)
    msg = bench_error(capsys, *ok, "--input", SOURCE, "--reference", REFERENCE, "--spm", tmp_path / "small.model")
    assert "are not pieces of" in msg and "dict.de.txt" in msg
    # no model beside the dictionaries nor beside the checkpoint's training data
    bare = tmp_path / "bare" / "bin"
    shutil.copytree(data_dir / "bin", bare)
    msg = bench_error(capsys, "--checkpoint", checkpoint, "--data-bin", bare, "--input", SOURCE,
                      "--reference", REFERENCE, "--out", tmp_path / "never")
    assert "no sentencepiece model beside" in msg and "--spm MODEL" in msg
    assert "--engines is for the deployment table" in bench_error(
        capsys, *ok, "--input", SOURCE, "--reference", REFERENCE, "--engines", "fairseq-float32")
    assert "unknown engine 'onnx-int8'" in bench_error(
        capsys, *ok, "--input", SOURCE, "--reference", REFERENCE, "--deploy", "--engines", "onnx-int8")
    assert "--bf16 is autocast of the fairseq backend" in bench_error(
        capsys, *ok, "--input", SOURCE, "--reference", REFERENCE, "--backend", "ctranslate2", "--bf16")
    assert not (tmp_path / "never").exists()


# --- units -----------------------------------------------------------------------------------

def test_percentile_by_hand():
    from kd_nmt.bench.timed_decoding import percentile

    xs = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4: p50 at position 1.5, p90 at 2.7
    assert percentile(xs, 50) == 2.5 and percentile(xs, 90) == pytest.approx(3.7)
    assert percentile([7.0], 90) == 7.0 and percentile([], 50) is None


def test_parse_engine():
    from kd_nmt.bench.deploy import parse_engine
    from kd_nmt.errors import KDNMTError

    assert parse_engine("ctranslate2-int8") == ("ctranslate2", "int8")
    assert parse_engine("fairseq-float32") == ("fairseq", "float32")
    for bad in ("fairseq-int8", "ctranslate2", "ct2-int8"):
        with pytest.raises(KDNMTError, match="unknown engine"):
            parse_engine(bad)


def test_find_spm_model(tmp_path):
    from kd_nmt.common.spm_text import find_spm_model

    (tmp_path / "bin").mkdir()
    assert find_spm_model(tmp_path / "bin") is None
    (tmp_path / "spm.model").write_bytes(b"x")
    assert find_spm_model(tmp_path / "bin") == str(tmp_path / "spm.model")
    (tmp_path / "bin" / "spm.model").write_bytes(b"x")  # a shipped model: beside the dictionaries
    assert find_spm_model(tmp_path / "bin") == str(tmp_path / "bin" / "spm.model")
