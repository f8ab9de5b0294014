"""recipes/lib.sh's student(): the kd-nmt train options each study method passes.

The recipes' training step is replaced by one that prints its arguments, so this checks the
command line the study runs for each method, without training anything.
"""
import os
import subprocess

import pytest

from helpers import BIN, REPO

pytestmark = pytest.mark.slow  # each case sources lib.sh, which imports torch once (~3 s)


def student_args(method, *extra, env=None, prelude=""):
    script = f"""
        source recipes/lib.sh
        train() {{ printf '%s\\n' "$@"; }}
        {prelude}
        student {method} SAVE DATA transformer_kd_small_d2 60 TEACHER.pt SEQKD-bin {' '.join(extra)}
    """
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PRECISION": "fp32",
           "SELECT_RATE": "0.25", **(env or {})}
    proc = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")[:-1]


def option(args, name):
    return args[args.index(name) + 1]


def test_selective_kd_is_word_kd_on_the_hardest_tokens():
    args = student_args("selective_kd", "--seed", "3")
    assert args[:4] == ["SAVE", "DATA/bin", "transformer_kd_small_d2", "60"]
    assert option(args, "--criterion") == "word_kd" and option(args, "--teacher-path") == "TEACHER.pt"
    assert option(args, "--kd-select") == "global"
    assert option(args, "--kd-select-rate") == "0.25"  # the SELECT_RATE knob
    assert args[-2:] == ["--seed", "3"]  # the grid's own options come last
    assert "--kd-on-policy" not in args


def test_on_policy_kd_decodes_half_the_sentences_greedily_by_default():
    args = student_args("on_policy_kd")
    assert option(args, "--criterion") == "word_kd" and option(args, "--teacher-path") == "TEACHER.pt"
    assert option(args, "--kd-on-policy") == "0.5"
    assert option(args, "--kd-student-sampling") == "greedy"
    assert "--kd-select" not in args and "--teacher-cache" not in args  # on-policy needs the live teacher


@pytest.mark.parametrize("method,data", [("baseline", "DATA/bin"), ("seq_kd", "SEQKD-bin"),
                                         ("seq_inter", "SEQKD-inter-bin"), ("seq_kd+filter", "SEQKD+filter-bin")])
def test_sequence_level_methods_train_with_ce_on_their_data(method, data):
    args = student_args(method)
    assert args[1] == data
    assert option(args, "--criterion") == "label_smoothed_cross_entropy"
    assert "--teacher-path" not in args


# kd-nmt replaced by a function that records its cache-teacher call in CALLS (in the test's cwd)
RECORD_KD_NMT = 'kd-nmt() { printf "%s " "$@" >>"$CALLS"; echo >>"$CALLS"; }'


@pytest.mark.parametrize("method,on", [("word_kd", "DATA/bin"), ("word_seq", "SEQKD-bin"),
                                       ("hybrid_kd", "DATA/bin"), ("word_seq+nbest4", "SEQKD+nbest4-bin")])
def test_cache_topk_trains_word_level_kd_from_a_cache_of_its_own_data(tmp_path, method, on):
    calls = tmp_path / "calls"
    args = student_args(method, env={"CACHE_TOPK": "8", "CALLS": str(calls)}, prelude=RECORD_KD_NMT)
    assert option(args, "--teacher-cache") == f"{on}-cache-topk-tail8" and "--teacher-path" not in args
    assert args[1] == on  # the cache is of the data the student trains on
    call = calls.read_text().split()
    assert call[0] == "cache-teacher" and option(call, "--teacher") == "TEACHER.pt"
    assert option(call, "--data-bin") == on and option(call, "--topk") == "8"
    assert option(call, "--mode") == "topk-tail" and option(call, "--out") == f"{on}-cache-topk-tail8"


def test_without_cache_topk_word_level_kd_keeps_the_live_teacher(tmp_path):
    args = student_args("word_kd", env={"CALLS": str(tmp_path / "calls")}, prelude=RECORD_KD_NMT)
    assert option(args, "--teacher-path") == "TEACHER.pt" and "--teacher-cache" not in args
    assert not (tmp_path / "calls").exists()


def test_a_finished_student_builds_no_cache(tmp_path):
    calls = tmp_path / "calls"
    save = tmp_path / "save"
    save.mkdir()
    (save / "DONE").write_text("wall_seconds 5\nupdates 60\n")
    script = f"""
        source recipes/lib.sh
        {RECORD_KD_NMT}
        student word_kd {save} DATA transformer_kd_micro 60 TEACHER.pt SEQKD-bin
    """
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PRECISION": "fp32",
           "CACHE_TOPK": "8", "CALLS": str(calls)}
    proc = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "skip" in proc.stderr and not calls.exists()


def test_hybrid_kd_norm_is_hybrid_kd_with_a_normalised_gate():
    plain, norm = student_args("hybrid_kd", "--seed", "2"), student_args("hybrid_kd_norm", "--seed", "2")
    assert option(norm, "--criterion") == "hybrid_kd" and option(norm, "--sentence-kd-data") == "SEQKD-bin"
    assert "--gate-normalize" not in plain
    norm.remove("--gate-normalize")
    assert norm == plain


def test_hybrid_kd_lr_n_scales_the_gate_step_of_either_gate():
    plain, fast = student_args("hybrid_kd", "--seed", "2"), student_args("hybrid_kd_lr50", "--seed", "2")
    assert option(fast, "--gate-lr-scale") == "50"
    fast.remove("--gate-lr-scale")
    fast.remove("50")
    assert fast == plain
    both = student_args("hybrid_kd_norm_lr7")
    assert option(both, "--gate-lr-scale") == "7" and "--gate-normalize" in both
    assert option(both, "--criterion") == "hybrid_kd"


def test_an_unknown_method_is_one_error_line():
    script = "source recipes/lib.sh; train() { :; }; student nope S D A 1 T B"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PRECISION": "fp32"}
    proc = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("unknown method nope")


def test_grid_passes_more_options_to_every_student():
    script = """
        source recipes/lib.sh
        student() { echo "$1 ${*: -2}"; }
        grid ROOT DATA SEQKD-bin T.pt 60 transformer_kd_tiny "baseline hybrid_kd" --log-interval 5
    """
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PRECISION": "fp32"}
    proc = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == ["baseline --log-interval 5", "hybrid_kd --log-interval 5"]


# --- more methods, the Seq-KD data and the grid, through lib.sh (kd_nmt/recipes decides, lib.sh runs) --

def test_todi_is_word_kd_with_the_todi_divergence():
    args = student_args("todi")
    assert option(args, "--criterion") == "word_kd" and option(args, "--teacher-path") == "TEACHER.pt"
    assert args[-2:] == ["--kd-divergence", "todi"]  # after DIVERGENCE's: the last one counts


def test_word_seq_variants_train_word_kd_on_their_own_data():
    args = student_args("word_seq+nbest4+mono20", "--seed", "3")
    assert args[1] == "SEQKD+nbest4+mono20-bin" and option(args, "--criterion") == "word_kd"
    assert option(args, "--teacher-path") == "TEACHER.pt" and args[-2:] == ["--seed", "3"]


def lib_sh(script, cwd, env=None):
    """Run ``script`` after sourcing lib.sh, in ``cwd``."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PRECISION": "fp32", "THREADS": "1",
           **(env or {})}
    return subprocess.run(["bash", "-c", f"source {REPO}/recipes/lib.sh\n{script}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_mistyped_method_or_part_stops_with_one_line(tmp_path):
    proc = lib_sh('with_seqkd_knobs "baseline seq_kd+nbst4"', tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("recipe_plan: error: unknown Seq-KD variant part +nbst4 in seq_kd+nbst4 "
                                   "(the parts: +nbestN, +mbrchrf, +mbrbleu, +monoN, +filter)")
    proc = lib_sh('echo "$(with_seqkd_knobs "baseline seq_kd hybrid_kd")"', tmp_path, env={"MONO": "30"})
    assert proc.returncode == 0 and proc.stdout == "baseline seq_kd+mono30 hybrid_kd\n", proc.stderr


# kd-nmt records its calls and writes the relabel outputs it is asked for (and their .source)
RECORD_AND_WRITE = """
kd-nmt() {
    printf '%s ' "$@" >>calls; echo >>calls
    local previous= arg
    for arg in "$@"; do
        if [ "$previous" = --output ]; then echo "hyp $arg" >"$arg"; echo "src $arg" >"$arg.source"; fi
        previous=$arg
    done
}
mono_source() { echo "mono_source $*" >>calls; echo mono >"$3"; }
"""
RELABEL = "--beam 5 --threads 1 --max-len-a 1.2 --max-len-b 10 --backend ctranslate2 --no-progress"


def test_seqkd_data_and_relabel_chain_what_the_variant_plan_says(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "DATA" / "tok").mkdir(parents=True)
    (tmp_path / "work" / "seqkd.train.en").write_text("the 1-best\n")  # relabel()'s, reused by +filter
    proc = lib_sh(RECORD_AND_WRITE + """
        seqkd_data T.pt DATA work/seqkd-bin +nbest2+mono3
        echo --- >>calls
        BACKWARD=B.pt seqkd_data T.pt DATA work/seqkd-bin +filter
        mkdir work/seqkd+filter-bin && touch work/seqkd+filter-bin/dict.en.txt
        seqkd_variants T.pt DATA work/seqkd-bin "baseline seq_kd+filter word_seq+filter"
        echo --- >>calls
        relabel T.pt DATA work/seqkd-inter-bin --nbest 5
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "calls").read_text().split("\n")[:-1] == [
        "mono_source DATA 3 DATA/tok/mono3.de",
        f"relabel --teacher T.pt --data-bin DATA/bin --input DATA/tok/train.de --output work/seqkd+nbest2.train.en "
        f"{RELABEL} --nbest 2 --keep-nbest 2 ",
        f"relabel --teacher T.pt --data-bin DATA/bin --input DATA/tok/mono3.de --output work/seqkd+nbest2.mono3.en "
        f"{RELABEL} --nbest 2 --keep-nbest 2 ",
        "relabel binarize --data-bin DATA/bin --source work/seqkd+nbest2+mono3.de --target work/seqkd+nbest2+mono3.en "
        "--repeat 2 --extra-lines 6 --workers 1 --destdir work/seqkd+nbest2+mono3-bin ",
        "---",
        "filter --source DATA/tok/train.de --hypothesis work/seqkd.train.en --output-source work/seqkd+filter.kept.de "
        "--output-target work/seqkd+filter.kept.en --drop-empty --max-repeats 3 --length-ratio 0.5 2.5 --dedup "
        "--backward-model B.pt --drop-fraction 0.05 --data-bin DATA/bin --threads 1 --no-progress "
        "--binarize-to work/seqkd+filter-bin ",
        "---",
        "relabel --teacher T.pt --data-bin DATA/bin --input DATA/tok/train.de --output work/seqkd-inter.train.en "
        "--beam 5 --threads 1 --max-len-a 1.2 --max-len-b 10 --backend ctranslate2 --binarize-to work/seqkd-inter-bin "
        "--nbest 5 ",
    ]
    # the train lines, then the monolingual ones, each source side N times (relabel's .source)
    assert (tmp_path / "work" / "seqkd+nbest2+mono3.de").read_text() == (
        "src work/seqkd+nbest2.train.en\nsrc work/seqkd+nbest2.mono3.en\n")
    assert (tmp_path / "work" / "seqkd+nbest2+mono3.en").read_text() == (
        "hyp work/seqkd+nbest2.train.en\nhyp work/seqkd+nbest2.mono3.en\n")
    assert "skip work/seqkd+filter-bin (done)" in proc.stderr and proc.stderr.count("skip work/seqkd+filter-bin") == 1


def test_grid_bench_and_student_init_ask_the_grid_plan(tmp_path):
    (tmp_path / "ROOT" / "init").mkdir(parents=True)
    (tmp_path / "ROOT" / "init" / "transformer_kd_small_d2.pt").write_text("")
    proc = lib_sh("""
        bench() { printf '%s\\n' "$@" "BASELINE=$BASELINE" "PER=$BASELINE_PER"; }
        INIT_LR=1e-4 student_init ROOT T.pt transformer_kd_small_d2
        student_init ROOT T.pt transformer_kd_tiny
        grid_bench OUT ROOT DATA test T.pt "transformer_kd_tiny transformer_kd_small_d2" "word_kd baseline" beam=5
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == [
        "--finetune-from-model ROOT/init/transformer_kd_small_d2.pt --lr 1e-4 --warmup-updates 30",
        "OUT", "DATA", "test",
        "name=teacher,beam=5 method=word_kd,size=tiny,beam=5 method=baseline,size=tiny,beam=5 "
        "method=word_kd,size=small_d2,beam=5 method=baseline,size=small_d2,beam=5",
        "T.pt", "ROOT/tiny/word_kd/checkpoint_best.pt", "ROOT/tiny/baseline/checkpoint_best.pt",
        "ROOT/small_d2/word_kd/checkpoint_best.pt", "ROOT/small_d2/baseline/checkpoint_best.pt",
        "BASELINE=baseline/tiny/5", "PER=size",
    ]
