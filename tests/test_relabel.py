"""kd-nmt relabel on the real de-en fixture (sentencepiece pieces) and its tiny teacher.

Most runs are in-process (``kd_nmt.cli.main``); the console script, stock fairseq-generate,
the kill -9 test and fairseq-train run as subprocesses. Decoding uses one CPU thread: faster
than two on a busy 2-core machine, and the same numerics in every run.
"""
import json
import math
import os
import re
import shutil

import pytest
import torch

from helpers import PLUGIN, TINY_ARCH, kill_after_first_chunk, run, tool

from kd_nmt import cli as kd_cli
from kd_nmt.common.hashing import sha256_file

N_TEST = 60


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def relabel(capsys, *args):
    """``kd-nmt relabel ARGS`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    rc = kd_cli.main(["relabel", "--no-progress", *map(str, args)])
    return rc, capsys.readouterr().err


def lines(path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def base_args(teacher, data_bin, src, out):
    return ["--teacher", teacher, "--data-bin", data_bin, "--input", src, "--output", out]


def generate_hypotheses(data_bin, path, beam, subset="test"):
    """Stock fairseq-generate's H- lines (token strings, by sentence id)."""
    proc = run([
        tool("fairseq-generate"), data_bin, "--path", path, "--gen-subset", subset,
        "--beam", beam, "--max-tokens", "4000", "--cpu", "--num-workers", "0",
        # fairseq 0.12 silently drops the last batch when its size is not a multiple of
        # --required-batch-size-multiple (default 8; fairseq issue #5036): 56 of 60 sentences
        "--required-batch-size-multiple", "1",
    ], env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1"})
    hyps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("H-"):
            sent_id, _score, text = line[2:].split("\t")
            hyps[int(sent_id)] = text
    return [hyps[i] for i in sorted(hyps)], len(hyps)


@pytest.fixture(scope="module")
def reference_run(tokenized, data_bin, teacher_checkpoint, tmp_path_factory):
    """One uninterrupted console-script run over the test split (beam 5, chunks of 3 lines)."""
    work = tmp_path_factory.mktemp("relabel")
    out = work / "test.kd.en"
    proc = run([
        tool("kd-nmt"), "relabel", *base_args(teacher_checkpoint, data_bin, tokenized / "test.de", out),
        "--beam", "5", "--chunk-size", "3", "--threads", "1",
    ])
    return out, proc


# ------------------------------------------------------------------------------------------
def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        kd_cli.main(["relabel", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("examples:", "--binarize-to", "--select-by-reference", "--num-shards",
                   "kd-nmt relabel binarize", "ctranslate2"):
        assert needle in text


def test_console_script_equals_fairseq_generate(reference_run, data_bin, teacher_checkpoint):
    out, proc = reference_run
    ours = lines(out)
    assert len(ours) == N_TEST
    theirs, n = generate_hypotheses(data_bin, teacher_checkpoint, beam=5)
    assert n == N_TEST
    assert ours == theirs
    summary = proc.stderr.strip().splitlines()[-1]
    assert re.search(r"60 lines \(0 empty, 0 truncated .* in [0-9.]+ s, [0-9.]+ sents/s", summary)
    assert not os.path.exists(str(out) + ".chunks")  # work dir removed after success


def test_ensemble_equals_fairseq_generate(capsys, tokenized, data_bin, teacher_checkpoint, tmp_path):
    ensemble = f"{teacher_checkpoint}:{teacher_checkpoint}"
    out = tmp_path / "ens.en"
    rc, err = relabel(capsys, *base_args(ensemble, data_bin, tokenized / "test.de", out), "--beam", "4")
    assert rc == 0, err
    theirs, n = generate_hypotheses(data_bin, ensemble, beam=4)
    assert n == N_TEST and lines(out) == theirs


def test_empty_lines_kept_and_long_lines_truncated(capsys, tokenized, data_bin, teacher_checkpoint, tmp_path):
    test = lines(tokenized / "test.de")
    long_line = " ".join(["\u2581die", "\u2581Tabelle"] * 550)  # 1100 tokens > 1023
    src = [test[0], "", test[1], "   ", long_line, test[2], " ".join(long_line.split()[:1023])]
    (tmp_path / "in.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    out = tmp_path / "out.en"
    rc, err = relabel(capsys, *base_args(teacher_checkpoint, data_bin, tmp_path / "in.de", out),
                      "--beam", "2", "--max-len-b", "12")
    assert rc == 0, err
    hyps = lines(out)
    assert len(hyps) == len(src)
    assert hyps[1] == "" and hyps[3] == ""
    assert all(hyps[i] for i in (0, 2, 4, 5, 6))
    assert hyps[4] == hyps[6]  # truncated = its first 1023 tokens (+ EOS)
    assert "7 lines (2 empty, 1 truncated to 1023 tokens" in err


def test_kill_9_then_rerun_is_byte_identical(capsys, reference_run, tokenized, data_bin,
                                            teacher_checkpoint, tmp_path):
    expected, _ = reference_run
    out = tmp_path / "test.kd.en"
    args = [*base_args(teacher_checkpoint, data_bin, tokenized / "test.de", out),
            "--beam", "5", "--chunk-size", "3"]
    chunks = tmp_path / "test.kd.en.chunks"
    kill_after_first_chunk([tool("kd-nmt"), "relabel", *args, "--threads", "1"], chunks)
    assert not out.exists(), "the run finished before it was killed: give it more chunks"
    done = sorted(p.name for p in chunks.glob("*.txt"))
    assert 1 <= len(done) < 20

    # the work dir refuses other options or input, naming what differs, and stays intact
    rc, err = relabel(capsys, *args, "--beam", "4")
    assert rc == 2 and "beam: 5 in the work dir, 4 now" in err and "--restart" in err
    other = tmp_path / "other.de"
    other.write_text("\n".join(lines(tokenized / "test.de")[:-1]) + "\n", encoding="utf-8")
    rc, err = relabel(capsys, *base_args(teacher_checkpoint, data_bin, other, out),
                      "--beam", "5", "--chunk-size", "3")
    assert rc == 2 and "input_sha256" in err
    assert sorted(p.name for p in chunks.glob("*.txt")) == done and not out.exists()

    rc, err = relabel(capsys, *args)
    assert rc == 0, err
    assert f"resuming: {len(done)}/20 chunks" in err and "resumed from earlier runs" in err
    assert out.read_bytes() == expected.read_bytes()
    assert not chunks.exists()


def test_shards_concatenate_to_the_full_output(capsys, reference_run, tokenized, data_bin,
                                               teacher_checkpoint, tmp_path):
    expected, _ = reference_run
    parts = []
    for shard in range(3):
        out = tmp_path / f"part.{shard}"
        rc, err = relabel(capsys, *base_args(teacher_checkpoint, data_bin, tokenized / "test.de", out),
                          "--beam", "5", "--num-shards", "3", "--shard-id", shard, "--chunk-size", "7")
        assert rc == 0, err
        assert len(lines(out)) == 20
        parts.append(out.read_bytes())
    assert b"".join(parts) == expected.read_bytes()


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
def test_nbest_output_and_seq_inter(capsys, metric, tokenized, data_bin, teacher_checkpoint, tmp_path):
    from sacrebleu.metrics import BLEU, CHRF

    from kd_nmt.common.detokenize import detokenize

    n = 12
    src, ref = tmp_path / "in.de", tmp_path / "ref.en"
    src.write_text("\n".join(lines(tokenized / "test.de")[:n - 1] + [""]) + "\n", encoding="utf-8")
    ref.write_text("\n".join(lines(tokenized / "test.en")[:n]) + "\n", encoding="utf-8")
    out, nbest = tmp_path / "out.en", tmp_path / "nbest.jsonl"
    rc, err = relabel(capsys, *base_args(teacher_checkpoint, data_bin, src, out), "--beam", "3",
                      "--nbest", "3", "--reference", ref, "--select-by-reference", metric,
                      "--nbest-output", nbest, "--max-len-b", "20")
    assert rc == 0, err
    records = [json.loads(x) for x in lines(nbest)]
    hyps, refs = lines(out), lines(ref)
    assert len(records) == len(hyps) == n
    assert [r["id"] for r in records] == list(range(n))
    scorer = BLEU(effective_order=True, smooth_method="exp") if metric == "bleu" else CHRF()
    for i, (record, hyp) in enumerate(zip(records[:-1], hyps)):
        entries = record["hypotheses"]
        assert len(entries) == 3
        model_scores = [e["score"] for e in entries]
        assert model_scores == sorted(model_scores, reverse=True)  # n-best order
        metric_scores = [e[metric] for e in entries]
        for e in entries:  # scored on detokenized text, as sacreBLEU would
            expect = scorer.sentence_score(detokenize(e["tokens"]), [detokenize(refs[i])]).score
            assert e[metric] == pytest.approx(expect, abs=1e-3)
        best = max(metric_scores)
        assert record["selected"] == metric_scores.index(best)  # first of the best
        assert hyp == entries[record["selected"]]["tokens"]
    assert records[-1] == {"id": n - 1, "hypotheses": [], "selected": None} and hyps[-1] == ""


def test_selector_picks_the_hypothesis_closest_to_the_reference():
    from kd_nmt.relabel.select import Selector

    for metric in ("bleu", "chrf"):
        sel = Selector(metric)
        hyps = ["\u2581the \u2581cat \u2581sat", "\u2581a \u2581dog \u2581ran \u2581away \u2581fast",
                "\u2581the \u2581dog \u2581ran \u2581away \u2581fast"]
        scores = sel.scores(hyps, "\u2581the \u2581dog \u2581ran \u2581away \u2581fast")
        assert sel.best(scores) == 2 and scores[2] == pytest.approx(100.0)
        assert sel.best([5.0, 7.0, 7.0]) == 1  # ties: the teacher's preference


def test_ctranslate2_backend(capsys, reference_run, tokenized, data_bin, teacher_checkpoint, tmp_path):
    fairseq_out, _ = reference_run
    teacher = tmp_path / "teacher.pt"
    shutil.copy(teacher_checkpoint, teacher)
    out = tmp_path / "ct2.en"
    args = [*base_args(teacher, data_bin, tokenized / "test.de", out), "--backend", "ctranslate2"]
    rc, err = relabel(capsys, *args)
    assert rc == 0, err
    cache = tmp_path / "teacher.pt.ct2-int8"
    stamp = json.loads((cache / "kd_nmt_stamp.json").read_text())
    assert stamp["quantization"] == "int8" and stamp["size"] == teacher.stat().st_size
    assert stamp["sha256"] == sha256_file(teacher)
    assert "converting" in err and len(lines(out)) == N_TEST
    model_mtime = (cache / "model.bin").stat().st_mtime_ns
    rc, err = relabel(capsys, *args, "--beam", "4")
    assert rc == 0 and "converting" not in err  # cached
    assert (cache / "model.bin").stat().st_mtime_ns == model_mtime
    os.utime(teacher)  # a touched checkpoint (same content) keeps its conversion
    rc, err = relabel(capsys, *args)
    assert rc == 0 and "converting" not in err

    # float32: the same beam search as fairseq's, up to float rounding
    out32 = tmp_path / "ct2.f32.en"
    rc, err = relabel(capsys, *base_args(teacher, data_bin, tokenized / "test.de", out32),
                      "--backend", "ctranslate2", "--ct2-quantization", "float32",
                      "--ct2-dir", tmp_path / "f32")
    assert rc == 0, err
    same = sum(a == b for a, b in zip(lines(out32), lines(fairseq_out)))
    assert same >= 0.9 * N_TEST, same


def test_binarize_to_gives_aligned_data_bin_and_word_kd_trains(tokenized, data_bin, teacher_checkpoint,
                                                               tmp_path):
    from fairseq.data import data_utils

    out, kd_bin = tmp_path / "train.kd.en", tmp_path / "kd-bin"
    run([tool("kd-nmt"), "relabel", *base_args(teacher_checkpoint, data_bin, tokenized / "train.de", out),
         "--beam", "2", "--max-len-b", "20", "--threads", "1", "--binarize-to", kd_bin, "--no-progress"])
    n = len(lines(tokenized / "train.de"))
    assert len(lines(out)) == n
    for lang in ("de", "en"):
        ds = data_utils.load_indexed_dataset(str(kd_bin / f"train.de-en.{lang}"), None)
        assert len(ds) == n
        assert (kd_bin / f"dict.{lang}.txt").read_bytes() == (data_bin / f"dict.{lang}.txt").read_bytes()
    gold_src = data_utils.load_indexed_dataset(str(data_bin / "train.de-en.de"), None)
    assert all(torch.equal(ds_i, gold_i) for ds_i, gold_i in zip(
        data_utils.load_indexed_dataset(str(kd_bin / "train.de-en.de"), None), gold_src))
    for split in ("valid", "test"):
        for ext in ("de.bin", "de.idx", "en.bin", "en.idx"):
            name = f"{split}.de-en.{ext}"
            assert (kd_bin / name).read_bytes() == (data_bin / name).read_bytes()
    meta = json.loads((kd_bin / "relabel.json").read_text())
    assert meta["train_sentences"] == n and meta["source_lengths_match_gold"] is True

    # word-level KD on the Seq-KD data
    proc = run([
        tool("fairseq-train"), kd_bin, "--user-dir", PLUGIN, "--task", "kd_translation",
        "--teacher-path", teacher_checkpoint, "--criterion", "word_kd", "--kd-alpha", "0.5",
        *TINY_ARCH, "--optimizer", "adam", "--lr", "0.003", "--max-tokens", "2000", "--cpu",
        "--seed", "1", "--max-update", "3", "--no-save", "--disable-validation",
        "--log-format", "simple", "--log-interval", "1", "--num-workers", "0", "--no-progress-bar",
    ], env={"OMP_NUM_THREADS": "1"})
    losses = [float(m) for m in re.findall(r"train_inner .*?\bloss[= ]([-+0-9.naif]+)", proc.stdout + proc.stderr)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), losses


def test_binarize_subcommand_checks_counts(capsys, tokenized, data_bin, tmp_path):
    short = tmp_path / "short.en"
    short.write_text("\n".join(lines(tokenized / "train.en")[:-1]) + "\n", encoding="utf-8")
    capsys.readouterr()
    rc = kd_cli.main(["relabel", "binarize", "--data-bin", str(data_bin), "--source",
                      str(tokenized / "train.de"), "--target", str(short), "--destdir", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "--source has 400 lines but --target has 399" in err
    assert not (tmp_path / "b").exists()
    # a source of the right count but not the gold one: binarized, but the gold count is checked
    partial = tmp_path / "part.de"
    partial.write_text("\n".join(lines(tokenized / "train.de")[:-1]) + "\n", encoding="utf-8")
    rc = kd_cli.main(["relabel", "binarize", "--data-bin", str(data_bin), "--source", str(partial),
                      "--target", str(short), "--destdir", str(tmp_path / "b"), "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "binarized line counts differ" in err and "gold train 400" in err
    assert not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


# ------------------------------------------------------------------------------------------
# --bf16: the teacher's forward under CPU bfloat16 autocast
# ------------------------------------------------------------------------------------------
# About 3x what the tiny teacher shows (bfloat16 keeps 8 significant bits): the sentence score
# (length-normalised log-probability) of the same hypothesis moves by at most 0.007, and 54 of
# the 60 1-best outputs stay the same (near-ties in the beam may flip).
BF16_SCORE_ATOL = 0.03
BF16_SAME_OUTPUT = 0.5


def test_bf16_scores_close_to_fp32(capsys, tokenized, data_bin, teacher_checkpoint, tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        out, nbest = tmp_path / f"{precision}.en", tmp_path / f"{precision}.jsonl"
        rc, err = relabel(capsys, *base_args(teacher_checkpoint, data_bin, tokenized / "test.de", out),
                          "--beam", "3", "--nbest", "2", "--nbest-output", nbest, "--max-len-b", "30",
                          "--device", "cpu", *(["--bf16"] if precision == "bf16" else []))
        assert rc == 0, err
        runs[precision] = (lines(out), [json.loads(x) for x in lines(nbest)])
    (out32, rec32), (out16, rec16) = runs["fp32"], runs["bf16"]
    assert len(out16) == len(rec16) == len(out32) == N_TEST and all(out16)
    assert sum(a == b for a, b in zip(out16, out32)) >= BF16_SAME_OUTPUT * N_TEST
    compared = 0
    for r16, r32 in zip(rec16, rec32):
        assert all(isinstance(h["score"], float) and math.isfinite(h["score"]) for h in r16["hypotheses"])
        scores32 = {h["tokens"]: h["score"] for h in r32["hypotheses"]}
        for h in r16["hypotheses"]:
            if h["tokens"] in scores32:
                assert abs(h["score"] - scores32[h["tokens"]]) < BF16_SCORE_ATOL, (h, scores32)
                compared += 1
    assert compared >= N_TEST

    # bf16 is part of the work dir's identity: an fp32 run is not resumed in bf16
    args = [*base_args(teacher_checkpoint, data_bin, tokenized / "test.de", tmp_path / "mixed.en"),
            "--beam", "3", "--chunk-size", "30", "--max-len-b", "5", "--device", "cpu"]
    rc, err = relabel(capsys, *args, "--keep-chunks")
    assert rc == 0, err
    rc, err = relabel(capsys, *args, "--bf16")
    assert rc == 2 and "bf16: None in the work dir, True now" in err and "--restart" in err


def test_bf16_is_for_the_fairseq_backend(capsys, tokenized, data_bin, teacher_checkpoint, tmp_path):
    out = tmp_path / "out.en"
    rc, err = relabel(capsys, *base_args(teacher_checkpoint, data_bin, tokenized / "test.de", out),
                      "--bf16", "--backend", "ctranslate2")
    assert rc == 2 and "--ct2-quantization bfloat16" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------
# bad input: one clear error before any work, nothing written
# ------------------------------------------------------------------------------------------
def _bad_cases(tokenized, data_bin, teacher, tmp):
    good = base_args(teacher, data_bin, tokenized / "test.de", tmp / "out.en")

    def replace(flag, value):
        args = list(good)
        args[args.index(flag) + 1] = value
        return args

    other_dict = tmp / "other-bin"
    other_dict.mkdir()
    for lang in ("de", "en"):
        text = (data_bin / f"dict.{lang}.txt").read_text(encoding="utf-8").split("\n")
        text[5], text[6] = text[6], text[5]  # swap two symbols
        (other_dict / f"dict.{lang}.txt").write_text("\n".join(text), encoding="utf-8")
    short_ref = tmp / "ref.en"
    short_ref.write_text("\u2581a\n\u2581b\n", encoding="utf-8")
    latin1 = tmp / "latin1.de"
    latin1.write_bytes("\u2581Gr\u00fc\u00dfe\n".encode("utf-8") + b"\xe2\x96\x81sch\xf6n\n")  # latin-1 byte
    afile = tmp / "afile"
    afile.write_text("x\n")
    return {
        "missing teacher": (replace("--teacher", tmp / "nope.pt"), "teacher checkpoint not found"),
        "missing data-bin": (replace("--data-bin", tmp / "no-bin"), "data-bin directory not found"),
        "dictionary mismatch": (
            replace("--data-bin", other_dict) + ["-s", "de", "-t", "en"],
            "uses a different source dictionary: student has 608 symbols, teacher 608; first difference at index",
        ),
        "output dir missing": (replace("--output", tmp / "no-dir" / "out.en"), "does not exist"),
        "output under a file": (replace("--output", afile / "out.en"), "is not a directory"),
        "output is a directory": (replace("--output", tmp), "is a directory"),
        "reference line count": (
            good + ["--nbest", "2", "--reference", short_ref],
            "has 2 lines but --input",
        ),
        "unknown backend": (good + ["--backend", "marian"], "invalid choice: 'marian'"),
        "non-UTF-8 input": (replace("--input", latin1), "is not UTF-8: byte 0xf6 at line 2"),
        "ensemble on ctranslate2": (
            replace("--teacher", f"{teacher}:{teacher}") + ["--backend", "ctranslate2"],
            "use --backend fairseq for ensembles",
        ),
        "nbest larger than beam": (good + ["--nbest", "6", "--nbest-output", tmp / "n.jsonl"],
                                   "--nbest 6 is larger than --beam 5"),
        "reference without nbest": (good + ["--reference", tokenized / "test.en"], "give --nbest K"),
        "shard id out of range": (good + ["--num-shards", "2", "--shard-id", "2"], "--shard-id must be in 0..1"),
        "binarize with shards": (good + ["--num-shards", "2", "--binarize-to", tmp / "b"],
                                 "kd-nmt relabel binarize"),
        "output overwrites input": (replace("--output", tokenized / "test.de"), "would overwrite an input"),
    }


def test_bad_input_is_one_clear_error_and_writes_nothing(capsys, tokenized, data_bin,
                                                         teacher_checkpoint, tmp_path):
    cases = _bad_cases(tokenized, data_bin, teacher_checkpoint, tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for name, (args, message) in cases.items():
        rc, err = relabel(capsys, *args)
        assert rc == 2, (name, err)
        assert message in err, (name, err)
        error_lines = [x for x in err.splitlines() if x.startswith("kd-nmt: error:")]
        assert len(error_lines) == 1 and "Traceback" not in err, (name, err)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before, name  # nothing written
    assert not (tmp_path / "out.en").exists() and not (tmp_path / "out.en.chunks").exists()
