"""scripts/gpu_check.py without a GPU: the one line it prints, its plan, its comparisons.

Nothing here trains or decodes (seconds): the script is run with CUDA hidden
(``CUDA_VISIBLE_DEVICES=""``, so these tests mean the same on a CUDA machine) and with
``--dry-run``; the loss comparison and the log parsing are called on hand-made numbers.
"""
import json
import shlex
import sys

import pytest

from helpers import REPO, run

SCRIPT = REPO / "scripts" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))

import gpu_check  # noqa: E402

NO_CUDA = {"CUDA_VISIBLE_DEVICES": ""}


def script(*args, **kwargs):
    return run([sys.executable, SCRIPT, *map(str, args)], **kwargs)


# --- (a) no CUDA: one line, status 0, nothing made or imported ----------------------------------

def test_without_cuda_one_line_status_0_and_no_work_folder(tmp_path):
    work, out = tmp_path / "work", tmp_path / "report.json"
    proc = script("--work", work, "--out", out, env=NO_CUDA)
    assert proc.returncode == 0
    assert proc.stdout == gpu_check.NO_CUDA_LINE + "\n"
    assert proc.stdout == ("gpu_check: needs a CUDA device (torch.cuda.is_available() is False here); "
                           "nothing was run\n")
    assert not work.exists() and not out.exists()
    assert list(tmp_path.iterdir()) == []

    # the defaults (work/gpu_check in the repository), from another folder
    default = REPO / "work" / "gpu_check"
    existed = default.exists()
    proc = run([sys.executable, SCRIPT], env=NO_CUDA, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == gpu_check.NO_CUDA_LINE + "\n"
    assert default.exists() == existed and list(tmp_path.iterdir()) == []


def test_without_cuda_neither_fairseq_nor_kd_nmt_is_imported(tmp_path):
    probe = (
        "import json, runpy, sys\n"
        f"sys.argv = [{str(SCRIPT)!r}, '--work', {str(tmp_path / 'work')!r}]\n"
        "code = 0\n"
        "try:\n"
        f"    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps({'code': code, 'imported': sorted(m for m in ('fairseq', 'kd_nmt', 'sentencepiece',"
        " 'ctranslate2') if m in sys.modules)}), file=sys.stderr)\n"
    )
    proc = run([sys.executable, "-c", probe], env=NO_CUDA)
    assert proc.stdout == gpu_check.NO_CUDA_LINE + "\n"
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == {"code": 0, "imported": []}
    assert not (tmp_path / "work").exists()


def test_bad_options_are_one_line_and_status_2(tmp_path):
    for args in (["--no-such-option"], ["--updates", "3"], ["--methods", "nope"]):
        proc = script(*args, "--work", tmp_path / "w", check=False, env=NO_CUDA)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("gpu_check: error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stdout == ""
    assert not (tmp_path / "w").exists()


def test_help_has_an_example():
    out = script("--help").stdout
    assert "example:" in out and "scripts/gpu_check.py --out docs/gpu_check.json" in out


# --- (b) --dry-run: the plan --------------------------------------------------------------------

@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    work = tmp_path_factory.mktemp("plan") / "work"
    proc = script("--dry-run", "--work", work)
    assert proc.returncode == 0 and not work.exists()
    lines = proc.stdout.splitlines()
    commands = [line for line in lines if not line.startswith("#")]
    return proc.stdout, [shlex.split(line, comments=True) for line in commands], [
        line.rsplit("  # ", 1)[1] for line in commands]


def kd_nmt_subcommands(argvs):
    return [argv[1] for argv in argvs if argv[0].rsplit("/", 1)[-1] == "kd-nmt"]


def test_dry_run_lists_every_path(plan):
    text, argvs, names = plan
    for needle in ("--fp16", "--bf16", " relabel ", " cache-teacher ", " bench ", "--backend ctranslate2",
                   "--criterion word_kd", "--criterion hybrid_kd", "--sentence-kd-data", "--teacher-cache",
                   "--kd-select global", "--kd-on-policy 0.5 --kd-student-sampling greedy",
                   "--device cuda", "fairseq-preprocess", "fairseq-train", "--binarize-to"):
        assert needle in text, needle
    subcommands = kd_nmt_subcommands(argvs)
    assert {"train", "relabel", "cache-teacher", "bench"} <= set(subcommands)
    from kd_nmt.cli import COMMANDS

    assert set(subcommands) <= set(COMMANDS)
    assert len(names) == len(set(names))  # one labelled command per step
    for method in gpu_check.METHODS:
        for precision in ("fp32-cpu", "fp16", "bf16"):
            assert f"train/{method}/{precision}" in names
    # CTranslate2 decodes on CUDA in relabel and bench; fairseq's relabel and the cache too
    by_name = dict(zip(names, argvs))
    for name in ("relabel/ctranslate2-cuda", "bench/ctranslate2-cuda", "relabel/fairseq-cuda",
                 "bench/fairseq-cuda"):
        argv = by_name[name]
        assert argv[argv.index("--device") + 1] == "cuda", name
    assert "--cpu" not in by_name["cache-teacher/cuda"] and "--fp16" in by_name["cache-teacher/cuda-fp16"]


def _without(argv, flags_with_values, flags):
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        if a in flags_with_values:
            skip = 1
            continue
        if a not in flags:
            out.append(a)
    return out


def test_each_precision_runs_the_same_command_as_its_cpu_reference(plan):
    _, argvs, names = plan
    by_name = dict(zip(names, argvs))
    for method in gpu_check.METHODS:
        ref = by_name[f"train/{method}/fp32-cpu"]
        assert "--cpu" in ref and "--fp16" not in ref and "--bf16" not in ref
        for option, value in (("--seed", "1"), ("--log-interval", "1"), ("--log-format", "simple"),
                              ("--max-tokens", "2000"), ("--dropout", "0.0"), ("--max-update", "30")):
            assert ref[ref.index(option) + 1] == value, (method, option)
        base = _without(ref, {"--save-dir"}, {"--cpu"})
        for precision, flags in (("fp16", ["--fp16"]), ("bf16", ["--bf16"])):
            argv = by_name[f"train/{method}/{precision}"]
            assert all(f in argv for f in flags) and "--cpu" not in argv
            assert _without(argv, {"--save-dir", "--fp16-init-scale"}, {"--fp16", "--bf16"}) == base


def test_plan_follows_methods_and_precisions(tmp_path):
    steps = gpu_check.build_plan(gpu_check.Paths(tmp_path), methods=["word_kd"], precisions=["fp16"],
                                 ct2_device="cpu")
    names = [s.name for s in steps]
    assert [n for n in names if n.startswith("train/")] == ["train/word_kd/fp32-cpu", "train/word_kd/fp16"]
    text = "\n".join(s.command for s in steps)
    assert "--bf16" not in text and "--binarize-to" not in text  # no hybrid_kd: no Seq-KD data-bin
    ct2 = next(s for s in steps if s.name == "relabel/ctranslate2-cpu")
    assert ct2.argv[ct2.argv.index("--ct2-quantization") + 1] == "int8"
    assert not tmp_path.joinpath("tok").exists()


# --- (c) the comparisons ------------------------------------------------------------------------

FIRST, LATER = gpu_check.FIRST_UPDATE_RTOL, gpu_check.LATER_UPDATES_RTOL
REF = [9.0, 8.0, 7.0, 6.0]


def test_compare_losses_at_its_tolerances():
    assert gpu_check.compare_losses(REF, list(REF))["passed"]
    inside = [9.0 * (1 + 0.95 * FIRST), 8.0 * (1 - 0.95 * LATER), 7.0 * (1 + 0.95 * LATER), 6.0]
    result = gpu_check.compare_losses(REF, inside)
    assert result["passed"] and result["compared"] == 4 and result["worst_update"] in (2, 3)
    assert result["max_rel_error"] == pytest.approx(0.95 * LATER)

    first_out = [9.0 * (1 + 1.05 * FIRST), *REF[1:]]  # inside the later tolerance, not the first's
    assert 1.05 * FIRST < LATER
    result = gpu_check.compare_losses(REF, first_out)
    assert not result["passed"] and "update 1:" in result["reason"]

    later_out = [9.0, 8.0, 7.0 * (1 - 1.05 * LATER), 6.0]
    result = gpu_check.compare_losses(REF, later_out)
    assert not result["passed"] and "update 3:" in result["reason"] and "1 of 4" in result["reason"]


def test_compare_losses_missing_or_not_finite():
    assert "logged 3 losses, 4 expected" in gpu_check.compare_losses(REF, REF[:3])["reason"]
    assert not gpu_check.compare_losses(REF, [9.0, float("nan"), 7.0, 6.0])["passed"]
    assert not gpu_check.compare_losses(REF, [9.0, float("inf"), 7.0, 6.0])["passed"]
    # only the first `expected` (e.g. before an fp16 overflow) count
    assert gpu_check.compare_losses(REF, [9.0, 8.0, 99.0], expected=2)["passed"]
    assert not gpu_check.compare_losses(REF, [], expected=0)["passed"]


def train_log(losses, bsz=64, overflow_after=None):
    lines = ["kd-nmt train ..."]
    for i, loss in enumerate(losses, 1):
        if overflow_after is not None and i == overflow_after + 1:
            lines.append("2026-12-01 | INFO | fairseq.trainer | NOTE: gradient overflow detected, ignoring "
                         "gradient, setting loss scale to: 4.0")
        lines.append(f"2026-12-01 | INFO | train_inner | epoch 001:      {i} / 8 loss={loss}, nll_loss=9.1, "
                     f"kd_loss=1.03, ppl=12.3, wps=610.7, ups=0.25, wpb=1843, bsz={bsz}, num_updates={i}, "
                     "lr=3e-05, gnorm=1.219, loss_scale=8, train_wall=0, wall=3")
    lines.append("2026-12-01 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 5.396 | nll_loss 4.01")
    return "\n".join(lines) + "\n"


def train_steps(tmp_path, ref_losses, losses, n, **log_kwargs):
    steps = {}
    for precision, values, kwargs in (("fp32-cpu", ref_losses, {}), ("fp16", losses, log_kwargs)):
        step = gpu_check.Step(f"train/word_kd/{precision}", "train", "cpu", argv=["true"], status="pass",
                              info={"method": "word_kd", "precision": precision, "updates": n})
        step.log = tmp_path / f"{precision}.log"
        step.log.write_text(train_log(values, **kwargs), encoding="utf-8")
        steps[step.name] = step
    return steps


def test_check_train_compares_losses_and_batches(tmp_path):
    ref = [9.2 - 0.1 * i for i in range(12)]
    steps = train_steps(tmp_path, ref, [x * 1.001 for x in ref], 12)
    ok, reason, details = gpu_check.check_train(steps["train/word_kd/fp16"], steps)
    assert ok, reason
    assert details["comparison"]["compared"] == 12 and details["comparison"]["reference_losses"] == ref

    steps = train_steps(tmp_path, ref, [x * 1.2 for x in ref], 12)
    ok, reason, _ = gpu_check.check_train(steps["train/word_kd/fp16"], steps)
    assert not ok and "out of tolerance" in reason

    steps = train_steps(tmp_path, ref, ref, 12, bsz=65)  # equal losses, other batches
    ok, reason, _ = gpu_check.check_train(steps["train/word_kd/fp16"], steps)
    assert not ok and "not the same batches" in reason and "bsz=65" in reason

    steps = train_steps(tmp_path, ref, ref[:7], 12)  # the run stopped early
    ok, reason, _ = gpu_check.check_train(steps["train/word_kd/fp16"], steps)
    assert not ok and "logged 7 losses, 12 expected" in reason


def test_check_train_stops_at_the_first_fp16_overflow(tmp_path):
    n = gpu_check.MIN_COMPARED_UPDATES + 2
    ref = [9.0 - 0.1 * i for i in range(n)]
    after = gpu_check.MIN_COMPARED_UPDATES  # later batches no longer line up: not compared
    steps = train_steps(tmp_path, ref, ref[:after] + [50.0] * (n - after), n, overflow_after=after)
    ok, reason, details = gpu_check.check_train(steps["train/word_kd/fp16"], steps)
    assert ok, reason
    assert details["comparison"]["compared"] == after and details["fp16_overflow_after_update"] == after

    steps = train_steps(tmp_path, ref, ref, n, overflow_after=3)
    ok, reason, _ = gpu_check.check_train(steps["train/word_kd/fp16"], steps)
    assert not ok and "overflow after 3 updates" in reason


def test_parse_train_log_reads_fairseq_simple_lines():
    records, overflow = gpu_check.parse_train_log(train_log([9.331, 9.2], overflow_after=1))
    assert [r["loss"] for r in records] == [9.331, 9.2] and overflow == 1
    assert records[0]["bsz"] == 64 and records[0]["wpb"] == 1843 and records[0]["lr"] == 3e-05
    assert records[0]["nll_loss"] == 9.1 and records[0]["loss_scale"] == 8


# --- the runner and the report, with stand-in steps (no fairseq, no CUDA) ----------------------

def fake_plan(p):
    py = sys.executable

    def make(step):
        (p.work / "made.txt").write_text("x", encoding="utf-8")

    return [
        gpu_check.Step("made", "data", "-", func=make, describe="writes made.txt",
                       check=lambda s, by: gpu_check.check_files(p.work / "made.txt")),
        gpu_check.Step("ok", "train", "cuda", deps=("made",), argv=[py, "-c", "print('hello')"]),
        gpu_check.Step("crash", "train", "cuda", deps=("made",), argv=[
            py, "-c", "import sys; print(\"AttributeError: 'NoneType' object has no attribute 'xla_device'\"); "
                      "sys.exit(1)"]),
        gpu_check.Step("after-crash", "train", "cuda", deps=("crash",), argv=[py, "-c", "pass"]),
        gpu_check.Step("slow", "relabel", "cpu", argv=[py, "-c", "import time; time.sleep(60)"]),
        gpu_check.Step("waits", "bench", "cuda", soft_deps=("crash",), argv=[py, "-c", "pass"],
                       check=lambda s, by: (False, "a failed check", {"why": 1})),
    ]


def fake_args(**kw):
    import argparse

    base = dict(methods=list(gpu_check.METHODS), precisions=list(gpu_check.PRECISIONS), updates=30,
                teacher_updates=300, gpu_jobs=2, time_limit=60, step_timeout=2, keep=False)
    base.update(kw)
    return argparse.Namespace(**base)


def test_runner_report_and_cleanup(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "build_plan", lambda p, *a, **k: fake_plan(p))
    monkeypatch.setattr(gpu_check, "environment", lambda ct2: {"gpu": "stand-in", "torch": "x", "torch_cuda": "y"})
    monkeypatch.setattr(gpu_check, "ctranslate2_cuda", lambda: False)
    p = gpu_check.Paths(tmp_path / "work")
    out = p.work / "gpu_check.json"
    assert gpu_check.run_check(fake_args(), p, out) == 1
    report = json.loads(out.read_text(encoding="utf-8"))
    steps = {s["name"]: s for s in report["steps"]}
    assert {n: s["status"] for n, s in steps.items()} == {
        "made": "pass", "ok": "pass", "crash": "fail", "after-crash": "skip", "slow": "fail", "waits": "fail"}
    assert report["passed"] is False and report["summary"] == "2/6 steps passed"
    assert steps["crash"]["rc"] == 1 and "turns --bf16 into --tpu" in steps["crash"]["known_cause"]
    assert any("xla_device" in line for line in steps["crash"]["log_tail"])
    assert "crash did not pass" in steps["after-crash"]["reason"] and steps["after-crash"]["rc"] is None
    assert steps["slow"]["rc"] is None and "--step-timeout" in steps["slow"]["reason"]
    assert steps["waits"]["reason"] == "a failed check" and steps["waits"]["details"] == {"why": 1}
    assert steps["ok"]["reason"] == "exit status 0"
    assert shlex.split(steps["ok"]["command"]) == [sys.executable, "-c", "print('hello')"]
    assert steps["ok"]["wall_s"] >= 0
    assert steps["made"]["command"] == "(in this process) writes made.txt"
    assert report["tolerances"]["first_update_rtol"] == gpu_check.FIRST_UPDATE_RTOL
    # one summary line per step, then the total; the work folder is gone but for the report
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and lines[1].startswith("gpu_check: PASS ok (") and "FAIL crash" in lines[2]
    assert lines[-1].startswith("gpu_check: 2/6 steps passed in ")
    assert sorted(x.name for x in p.work.iterdir()) == ["gpu_check.json"]


def test_work_folder_reused_only_if_ours(tmp_path, monkeypatch):
    from kd_nmt.errors import KDNMTError

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(KDNMTError, match="was not made by gpu_check"):
        gpu_check.prepare_work(foreign, foreign / "gpu_check.json")
    assert (foreign / "precious.txt").read_text(encoding="utf-8") == "keep me"

    monkeypatch.setattr(gpu_check, "build_plan", lambda p, *a, **k: fake_plan(p)[:2])
    monkeypatch.setattr(gpu_check, "environment", lambda ct2: {"gpu": "stand-in", "torch": "x", "torch_cuda": "y"})
    monkeypatch.setattr(gpu_check, "ctranslate2_cuda", lambda: False)
    p = gpu_check.Paths(tmp_path / "ours")
    out = tmp_path / "elsewhere" / "report.json"
    assert gpu_check.run_check(fake_args(keep=True), p, out) == 0
    assert (p.work / "made.txt").exists() and (p.work / "logs").is_dir() and out.exists()
    assert gpu_check.run_check(fake_args(), p, out) == 0  # ours: cleared, run again, then removed
    assert not p.work.exists() and json.loads(out.read_text(encoding="utf-8"))["passed"] is True
