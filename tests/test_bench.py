"""kd-nmt bench / kd-nmt plot on the real de-en fixture and its tiny teacher.

One bench run (the teacher and a byte-identical copy under another name) is shared by the
report tests; error cases run in-process and stop before any decoding.
"""
import csv
import json
import shutil

import pytest

from helpers import FIXTURE, run, tool

REFERENCE = FIXTURE / "test.en"
N_TEST = len(REFERENCE.read_text(encoding="utf-8").splitlines())


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bench(data_bin, teacher_checkpoint, tmp_path_factory):
    """``kd-nmt bench`` on the teacher and a copy of it (so: identical outputs)."""
    work = tmp_path_factory.mktemp("bench")
    copy = work / "copy.pt"
    shutil.copy(teacher_checkpoint, copy)
    out = work / "out"
    proc = run([
        tool("kd-nmt"), "bench", "--checkpoint", teacher_checkpoint, copy,
        "--data-bin", data_bin, "--split", "test", "--reference", REFERENCE,
        "--names", "teacher", "method=copy,size=tiny,noise=0.1", "--tag", "run=ci",
        "--beam", "4", "--bootstrap", "200", "--out", out, "--no-progress",
    ])
    return out, proc, copy


def test_bench_writes_reports_and_hypotheses(bench):
    out, proc, _ = bench
    for name in ("bench.csv", "bench.md", "bench.json", "bench_buckets.csv", "reference.txt",
                 "teacher.greedy.hyp", "teacher.beam4.hyp", "copy_tiny_0.1.greedy.hyp", "copy_tiny_0.1.beam4.hyp"):
        assert (out / name).is_file(), name
    rows = read_csv(out / "bench.csv")
    assert [(r["name"], r["decode"]) for r in rows] == [
        ("teacher", "greedy"), ("teacher", "beam4"), ("copy/tiny/0.1", "greedy"), ("copy/tiny/0.1", "beam4")]
    for r in rows:
        assert int(r["n_sentences"]) == N_TEST and int(r["n_truncated"]) == 0
        hyps = (out / r["hyp_file"]).read_text(encoding="utf-8").split("\n")[:-1]
        assert len(hyps) == N_TEST  # no line dropped
        assert float(r["sents_per_s"]) > 0 and float(r["toks_per_s"]) > 0
        assert r["threads"] == "1"
    # the printed Markdown table is the one written
    md = (out / "bench.md").read_text(encoding="utf-8")
    header = "| name | params | size MB | decode | BLEU | chrF | sents/s | toks/s | p (BLEU) | p (chrF) |"
    assert header in md and header in proc.stdout
    assert md.count("\n| teacher |") == 2 and "| copy/tiny/0.1 |" in md


def test_scores_equal_sacrebleu_on_written_hypotheses(bench):
    import sacrebleu

    out, _, _ = bench
    refs = REFERENCE.read_text(encoding="utf-8").splitlines()
    assert (out / "reference.txt").read_text(encoding="utf-8").splitlines() == refs
    for r in read_csv(out / "bench.csv"):
        hyps = (out / r["hyp_file"]).read_text(encoding="utf-8").splitlines()
        assert float(r["bleu"]) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
        assert float(r["chrf"]) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9)


def test_signatures_present(bench):
    out, _, _ = bench
    report = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    bleu_sig, chrf_sig = report["signatures"]["BLEU"], report["signatures"]["chrF"]
    assert bleu_sig.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.")
    assert chrf_sig.startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.")
    assert "bs:200|seed:12345" in report["bootstrap"]["signatures"]["BLEU"]
    for r in read_csv(out / "bench.csv"):
        assert r["bleu_signature"] == bleu_sig and r["chrf_signature"] == chrf_sig
    md = (out / "bench.md").read_text(encoding="utf-8")
    assert f"BLEU signature: `{bleu_sig}`" in md and f"chrF signature: `{chrf_sig}`" in md
    assert all(s["bleu_signature"] == bleu_sig for s in report["systems"])


def test_identical_systems_are_not_significant(bench):
    out, _, _ = bench
    for r in read_csv(out / "bench.csv"):
        assert r["baseline"] == "teacher"
        if r["name"] == "teacher":
            assert r["p_bleu"] == "" and r["p_chrf"] == ""
        else:
            assert float(r["p_bleu"]) == 1.0 and float(r["p_chrf"]) == 1.0
        assert float(r["bleu_ci95"]) >= 0
    report = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    copy = [s for s in report["systems"] if s["name"] != "teacher"]
    assert all(s["bootstrap"]["identical_to_baseline"] for s in copy)


def test_params_and_size(bench, data_bin, teacher_checkpoint):
    from kd_nmt.checkpoint import load_models
    from kd_nmt.common.task_setup import translation_task

    out, _, copy = bench
    task = translation_task(data_bin, "de", "en")
    models, _ = load_models([str(teacher_checkpoint)], task=task)
    n_params = sum(p.numel() for p in models[0].parameters())
    for r in read_csv(out / "bench.csv"):
        assert int(r["params"]) == n_params
        assert float(r["size_mb"]) == round(teacher_checkpoint.stat().st_size / 1e6, 3)
    assert f"{n_params / 1e3:.1f}K" in (out / "bench.md").read_text(encoding="utf-8")


def test_tag_columns_and_buckets(bench):
    out, _, _ = bench
    rows = read_csv(out / "bench.csv")
    assert list(rows[0])[:5] == ["name", "run", "method", "size", "noise"]
    assert {(r["run"], r["method"], r["size"], r["noise"]) for r in rows} == {
        ("ci", "", "", ""), ("ci", "copy", "tiny", "0.1")}
    buckets = read_csv(out / "bench_buckets.csv")
    assert {b["bucket"] for b in buckets} == {"<=10", "11-25", ">25"}
    for name in ("teacher", "copy/tiny/0.1"):
        for decode in ("greedy", "beam4"):
            group = [b for b in buckets if b["name"] == name and b["decode"] == decode]
            assert sum(int(b["n_sentences"]) for b in group) == N_TEST


def test_plot_writes_pngs(bench, tmp_path):
    import matplotlib.image

    out, _, _ = bench
    sweep = tmp_path / "sweep.csv"
    sweep.write_text(
        "name,method,size,noise,decode,params,bleu,chrf\n"
        "a,word_kd,tiny,0,beam5,1000000,20,50\n"
        "b,word_kd,tiny,0.1,beam5,1000000,18,48\n"
        "c,word_kd,small,0,beam5,5000000,24,52\n"
        "d,hybrid_kd,tiny,0,beam5,1000000,21,51\n"
        "e,hybrid_kd,tiny,0.1,beam5,1000000,20,50\n",
        encoding="utf-8")
    log = tmp_path / "train.log"
    log.write_text(
        "2026-01-01 00:00:00 | INFO | fairseq_cli.train | {'gate': 'learned', 'gate_init': 0.5}\n"
        "2026-01-01 00:00:01 | INFO | train_inner | epoch 001:      1 / 2 loss=9.1, gate=0.5, num_updates=1\n"
        "2026-01-01 00:00:02 | INFO | train_inner | epoch 001:      2 / 2 loss=8.1, gate=0.6, num_updates=2\n"
        "2026-01-01 00:00:03 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 8 | gate 0.58 "
        "| num_updates 2\n",
        encoding="utf-8")
    figs = tmp_path / "figs"
    proc = run([tool("kd-nmt"), "plot", "--results", out, sweep, "--gate-log", log, "--out", figs])
    for name in ("bleu_vs_params.png", "bleu_vs_noise.png", "gate.png"):
        path = figs / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width = matplotlib.image.imread(str(path)).shape[:2]
        assert width >= 600 and height >= 400
        assert str(path) in proc.stdout


def test_gate_log_formats(tmp_path):
    from kd_nmt.bench.plot import read_gate_log

    simple = tmp_path / "simple.log"
    simple.write_text(
        "x | train_inner | epoch 001:  1 / 9 loss=3.0, gate=0.25, num_updates=10\n"
        "x | valid | epoch 001 | valid on 'valid' subset | loss 2.9 | gate 0.3 | num_updates 10\n")
    assert read_gate_log(simple) == {"train": [(10, 0.25)], "valid": [(10, 0.3)]}
    js = tmp_path / "json.log"
    js.write_text('{"epoch": 1, "loss": "3.0", "gate": "0.7", "num_updates": "5"}\n'
                  '{"epoch": 1, "valid_loss": "2.0", "valid_gate": "0.75", "valid_num_updates": "5"}\n')
    assert read_gate_log(js) == {"train": [(5, 0.7)], "valid": [(5, 0.75)]}


# ------------------------------------------------------------------------------------------
# units: batching, truncation, bootstrap
# ------------------------------------------------------------------------------------------
def test_make_batches_covers_every_line_once():
    from kd_nmt.common.batches import make_batches

    sizes = [5, 3, 9, 1, 100, 7, 7, 2]
    batches = make_batches(sizes, max_tokens=20)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    assert batches[0] == [4]  # over-long sentence alone, longest first
    assert all(max(sizes[i] for i in b) * len(b) <= 20 for b in batches[1:])
    assert all(len(b) <= 2 for b in make_batches(sizes, 1000, max_sentences=2))


def test_long_sources_are_truncated_and_counted(data_bin, teacher_checkpoint):
    from kd_nmt.bench.decode import Detokenizer, decode
    from kd_nmt.checkpoint import load_models
    from kd_nmt.common.task_setup import load_split, translation_task

    task = translation_task(data_bin, "de", "en")
    dataset = load_split(task, "test")
    models, _ = load_models([str(teacher_checkpoint)], task=task)
    model = models[0]
    model.encoder.max_source_positions = 12
    result = decode(model, task, dataset, Detokenizer(), beam=1, max_tokens=200, max_len_b=5, progress=False)
    assert result.n_truncated == sum(1 for s in dataset.src_sizes if s > 12) > 0
    assert len(result.hypotheses) == len(dataset) and all(h is not None for h in result.hypotheses)


# About 30x what the tiny teacher shows: its bf16 outputs differ from float32's where its beam
# has near-ties (it repeats pieces, "s s s ▁ t t t"; 22 of 60 outputs identical, beam 2), but
# corpus BLEU and chrF move by ~0.05.
BF16_CORPUS_ATOL = 1.0


def test_bf16_decoding_scores_close_to_fp32(data_bin, teacher_checkpoint, tmp_path, capsys):
    import torch

    from kd_nmt.bench.decode import Detokenizer, decode
    from kd_nmt.bench.metrics import corpus_scores
    from kd_nmt.checkpoint import load_models
    from kd_nmt.cli import main
    from kd_nmt.common.lines import read_lines
    from kd_nmt.common.task_setup import load_split, translation_task

    task = translation_task(data_bin, "de", "en")
    dataset = load_split(task, "test")
    (model,), _ = load_models([str(teacher_checkpoint)], task=task)
    results = {bf16: decode(model, task, dataset, Detokenizer(), beam=2, max_len_b=30, progress=False, bf16=bf16)
               for bf16 in (False, True)}
    assert all(h is not None for h in results[True].hypotheses) and len(results[True].hypotheses) == N_TEST
    references = read_lines(REFERENCE)
    scores = {bf16: corpus_scores(results[bf16].hypotheses, references) for bf16 in (False, True)}
    for metric in ("bleu", "chrf"):
        assert abs(scores[True][metric] - scores[False][metric]) < BF16_CORPUS_ATOL, (metric, scores)
    assert all(p.dtype == torch.float32 for p in model.parameters())

    # the command: reports written, the precision recorded
    out = tmp_path / "out"
    assert main(["bench", "--checkpoint", str(teacher_checkpoint), "--data-bin", str(data_bin),
                 "--beam", "1", "--bootstrap", "0", "--buckets", "none", "--max-len-b", "30",
                 "--out", str(out), "--no-progress", "--bf16"]) == 0
    report = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert report["bf16"] is True and "(bf16 autocast)" in (out / "bench.md").read_text(encoding="utf-8")
    assert len((out / report["systems"][0]["hyp_file"]).read_text(encoding="utf-8").splitlines()) == N_TEST
    capsys.readouterr()


def test_paired_bootstrap_p_values():
    from kd_nmt.bench.metrics import paired_bootstrap

    refs = [f"the cat number {i} sat on the red mat today" for i in range(40)]
    good = list(refs)
    bad = [f"a dog {i} stood" for i in range(40)]
    _, res = paired_bootstrap(("base", good), [("same", list(good)), ("bad", bad)], refs, n_samples=100)
    assert res["base"]["bleu"]["p_value"] is None
    assert res["same"]["bleu"]["p_value"] == 1.0 and res["same"]["identical_to_baseline"]
    assert res["bad"]["bleu"]["p_value"] < 0.05 and res["bad"]["chrf"]["p_value"] < 0.05


# ------------------------------------------------------------------------------------------
# bad input: one clear error, exit status 2, before any work
# ------------------------------------------------------------------------------------------
def bench_error(capsys, *argv):
    from kd_nmt.cli import main

    assert main(["bench", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kd-nmt: error: "), err
    return err[0]


def test_errors(data_bin, teacher_checkpoint, tmp_path, capsys):
    ok = ["--data-bin", data_bin, "--out", tmp_path / "never"]
    assert "checkpoint not found" in bench_error(capsys, "--checkpoint", tmp_path / "no.pt", *ok)
    assert "data-bin directory not found" in bench_error(
        capsys, "--checkpoint", teacher_checkpoint, "--data-bin", tmp_path / "nope")
    msg = bench_error(capsys, "--checkpoint", teacher_checkpoint, *ok, "--split", "test_tech")
    assert "split 'test_tech' not found" in msg and "test, train, valid" in msg
    short = tmp_path / "short.en"
    short.write_text("\n".join(REFERENCE.read_text(encoding="utf-8").splitlines()[:-3]) + "\n")
    msg = bench_error(capsys, "--checkpoint", teacher_checkpoint, *ok, "--reference", short)
    assert f"has {N_TEST - 3} lines" in msg and f"has {N_TEST} sentences" in msg
    assert "--names has 1 entries for 2" in bench_error(
        capsys, "--checkpoint", teacher_checkpoint, teacher_checkpoint, *ok, "--names", "a")
    assert "--baseline 'zz'" in bench_error(capsys, "--checkpoint", teacher_checkpoint, *ok, "--baseline", "zz")
    # a data-bin whose dictionaries are not the checkpoint's
    other = tmp_path / "other-bin"
    shutil.copytree(data_bin, other)
    for lang in ("de", "en"):
        lines = (data_bin / f"dict.{lang}.txt").read_text(encoding="utf-8").splitlines()
        (other / f"dict.{lang}.txt").write_text("\n".join(lines[:-5]) + "\n", encoding="utf-8")
    msg = bench_error(capsys, "--checkpoint", teacher_checkpoint, "--data-bin", other, "--out", tmp_path / "never")
    assert "dictionary mismatch" in msg and "source vocabulary" in msg
    assert not (tmp_path / "never").exists()


def test_help_has_examples(capsys):
    from kd_nmt.cli import main

    for command in ("bench", "plot"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_plot_errors(tmp_path, capsys):
    from kd_nmt.cli import main

    assert main(["plot", "--out", str(tmp_path)]) == 2
    assert "nothing to plot" in capsys.readouterr().err
    assert main(["plot", "--results", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "results not found" in capsys.readouterr().err


def test_baselines_by_group_pairs_each_size_with_its_own_baseline():
    from kd_nmt.bench.cli import baselines_by_group

    systems = [("teacher", {}), ("baseline/d3", {"method": "baseline", "size": "d3"}),
               ("kd/d3", {"method": "kd", "size": "d3"}), ("baseline/d2", {"method": "baseline", "size": "d2"}),
               ("kd/d2", {"method": "kd", "size": "d2"}), ("kd/d1", {"method": "kd", "size": "d1"})]
    assert baselines_by_group(systems, "baseline/d3", None) == {name: "baseline/d3" for name, _ in systems}
    assert baselines_by_group(systems, "baseline/d3", "size") == {
        "teacher": "baseline/d3",  # no size tag
        "baseline/d3": "baseline/d3", "kd/d3": "baseline/d3",
        "baseline/d2": "baseline/d2", "kd/d2": "baseline/d2",
        "kd/d1": "baseline/d3",  # d1 has no baseline student: the overall one
    }


def test_baseline_per_size_end_to_end(data_bin, teacher_checkpoint, tmp_path):
    copies = []
    for i in range(3):
        copies.append(tmp_path / f"c{i}.pt")
        shutil.copy(teacher_checkpoint, copies[-1])
    out = tmp_path / "out"
    run([tool("kd-nmt"), "bench", "--checkpoint", teacher_checkpoint, *copies, "--data-bin", data_bin,
         "--split", "test", "--reference", REFERENCE, "--no-greedy", "--beam", "2", "--bootstrap", "50",
         "--names", "method=baseline,size=a", "method=kd,size=a", "method=baseline,size=b", "method=kd,size=b",
         "--baseline-per", "size", "--out", out, "--no-progress", "--buckets", "none"])
    rows = {r["name"]: r for r in read_csv(out / "bench.csv")}
    assert {n: r["baseline"] for n, r in rows.items()} == {
        "baseline/a": "baseline/a", "kd/a": "baseline/a", "baseline/b": "baseline/b", "kd/b": "baseline/b"}
    assert rows["baseline/b"]["p_bleu"] == ""  # a group's baseline is not tested against the first one
    assert float(rows["kd/b"]["p_bleu"]) == 1.0  # identical outputs to its own baseline: nothing differs
    md = (out / "bench.md").read_text(encoding="utf-8")
    assert "| baseline/b | " in md and md.count("| baseline | baseline |") == 2
    assert "(or its counterpart of the same size)" in md


def test_deploy_is_its_own_command_and_old_spellings_are_aliases(capsys):
    from kd_nmt.bench.cli import build_parser
    from kd_nmt.cli import COMMANDS, main

    assert COMMANDS["deploy"] == "kd_nmt.bench.cli:deploy_main"
    assert main(["deploy", "--help"]) == 0 and "kd-nmt bench --deploy" in capsys.readouterr().out
    args = build_parser().parse_args(["--checkpoint", "a.pt", "--spm-model", "m.model", "--no-progress-bar"])
    assert args.spm == "m.model" and args.no_progress
    from kd_nmt.cache.cli import build_parser as cache_parser

    cache_args = cache_parser().parse_args(["--teacher", "t", "--data-bin", "d", "--out", "o", "--topk", "8",
                                            "--no-progress"])
    assert cache_args.no_progress_bar
