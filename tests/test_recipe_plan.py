"""kd_nmt/recipes and scripts/recipe_plan.py: what the recipes' names mean, without a shell.

The expected command lines are those recipes/lib.sh gave before its case globs and string
surgery moved here (its student(), variant_bin, seqkd_suffix, with_seqkd_knobs, seqkd_data's part
parsing, student_init, grid and grid_bench, run with stubs on the same arguments): the move
changed no recipe's commands. tests/test_recipe_methods.py checks the same through lib.sh.
"""
import os
import re
import subprocess
import sys

import pytest

from helpers import REPO
from kd_nmt.errors import KDNMTError
from kd_nmt.recipes import grid, methods, variants

sys.path.insert(0, str(REPO / "scripts"))

import check_knobs  # noqa: E402

CE = "--task translation --criterion label_smoothed_cross_entropy"
KD = "--task kd_translation --criterion word_kd --kd-alpha 0.5 --kd-divergence fkl"
HYBRID = "--task kd_translation {t} --sentence-kd-data work/SEQKD-bin --criterion hybrid_kd --kd-alpha 0.5 " \
         "--kd-divergence fkl"
LIVE = "--teacher-path TEACHER.pt"

# method: (data-bin, options with the live teacher, options with CACHE_TOPK=8)
EXPECTED = {
    "baseline": ("DATA/bin", CE, CE),
    "word_kd": ("DATA/bin", f"{KD} {LIVE}", f"{KD} --teacher-cache DATA/bin-cache-topk-tail8"),
    "todi": ("DATA/bin", f"{KD} {LIVE} --kd-divergence todi",
             f"{KD} --teacher-cache DATA/bin-cache-topk-tail8 --kd-divergence todi"),
    "selective_kd": ("DATA/bin", f"{KD} {LIVE} --kd-select global --kd-select-rate 0.5",
                     f"{KD} --teacher-cache DATA/bin-cache-topk-tail8 --kd-select global --kd-select-rate 0.5"),
    "on_policy_kd": ("DATA/bin", f"{KD} {LIVE} --kd-on-policy 0.5 --kd-student-sampling greedy",
                     f"{KD} {LIVE} --kd-on-policy 0.5 --kd-student-sampling greedy"),
    "seq_kd": ("work/SEQKD-bin", CE, CE),
    "seq_kd+filter": ("work/SEQKD+filter-bin", CE, CE),
    "seq_kd+nbest4+mono3000": ("work/SEQKD+nbest4+mono3000-bin", CE, CE),
    "seq_kd+mbrchrf": ("work/SEQKD+mbrchrf-bin", CE, CE),
    "word_seq": ("work/SEQKD-bin", f"{KD} {LIVE}", f"{KD} --teacher-cache work/SEQKD-bin-cache-topk-tail8"),
    "word_seq+nbest4": ("work/SEQKD+nbest4-bin", f"{KD} {LIVE}",
                        f"{KD} --teacher-cache work/SEQKD+nbest4-bin-cache-topk-tail8"),
    "word_seq+mono20+filter": ("work/SEQKD+mono20+filter-bin", f"{KD} {LIVE}",
                               f"{KD} --teacher-cache work/SEQKD+mono20+filter-bin-cache-topk-tail8"),
    "seq_inter": ("work/SEQKD-inter-bin", CE, CE),
    "hybrid_kd": ("DATA/bin", HYBRID.format(t=LIVE), HYBRID.format(t="--teacher-cache DATA/bin-cache-topk-tail8")),
    "hybrid_kd_norm": ("DATA/bin", HYBRID.format(t=LIVE) + " --gate-normalize",
                       HYBRID.format(t="--teacher-cache DATA/bin-cache-topk-tail8") + " --gate-normalize"),
    "hybrid_kd_lr50": ("DATA/bin", HYBRID.format(t=LIVE) + " --gate-lr-scale 50",
                       HYBRID.format(t="--teacher-cache DATA/bin-cache-topk-tail8") + " --gate-lr-scale 50"),
    "hybrid_kd_norm_lr7": ("DATA/bin", HYBRID.format(t=LIVE) + " --gate-normalize --gate-lr-scale 7",
                           HYBRID.format(t="--teacher-cache DATA/bin-cache-topk-tail8")
                           + " --gate-normalize --gate-lr-scale 7"),
    "hybrid_kd_lr0.5": ("DATA/bin", HYBRID.format(t=LIVE) + " --gate-lr-scale 0.5",
                        HYBRID.format(t="--teacher-cache DATA/bin-cache-topk-tail8") + " --gate-lr-scale 0.5"),
}


def args(method, env=None):
    return methods.train_args(method, "SAVE", "DATA", "transformer_kd_small_d2", 60, "TEACHER.pt",
                              "work/SEQKD-bin", env or {})


@pytest.mark.parametrize("method", EXPECTED)
def test_every_method_trains_as_lib_sh_did(method):
    data, live, cached = EXPECTED[method]
    assert args(method) == ["SAVE", data, "transformer_kd_small_d2", "60", *live.split()]
    assert args(method, {"CACHE_TOPK": "8"}) == ["SAVE", data, "transformer_kd_small_d2", "60", *cached.split()]


def test_every_named_method_is_covered():
    covered = {re.sub(r"\+.*", "+PARTS", re.sub(r"_lr[0-9.]+$", "_lrN", m)) for m in EXPECTED}
    assert covered == set(methods.KNOWN.split())


@pytest.mark.parametrize("method,bin_", [(m, d) for m, (d, live, _) in EXPECTED.items()
                                         if "--teacher" in live and "on-policy" not in live])
def test_the_cache_is_of_the_data_the_method_trains_on(method, bin_):
    plan = methods.cache_plan(method, "DATA", "TEACHER.pt", "work/SEQKD-bin", {"CACHE_TOPK": "8"})
    assert plan == ["--teacher", "TEACHER.pt", "--data-bin", bin_, "--split", "train", "--topk", "8",
                    "--mode", "topk-tail", "--out", f"{bin_}-cache-topk-tail8"]
    assert methods.cache_plan(method, "DATA", "TEACHER.pt", "work/SEQKD-bin", {}) == []


@pytest.mark.parametrize("method", ["baseline", "seq_kd", "seq_kd+nbest4", "seq_inter", "on_policy_kd"])
def test_no_cache_without_a_teacher_or_with_the_live_one(method):
    assert methods.cache_plan(method, "DATA", "T.pt", "S-bin", {"CACHE_TOPK": "8"}) == []


def test_cache_knobs_and_paths_as_lib_sh():
    env = {"CACHE_TOPK": "16", "CACHE_MODE": "topk"}
    assert methods.cache_plan("word_kd", "DATA", "T.pt", "S-bin", env)[-1] == "DATA/bin-cache-topk16"
    # kd_teacher stripped one trailing slash of the data-bin it caches, not of the one trained on
    plan = methods.cache_plan("word_seq", "DATA", "T.pt", "S-bin/", {"CACHE_TOPK": "8"})
    assert plan[3] == "S-bin" and plan[-1] == "S-bin-cache-topk-tail8"
    assert methods.train_args("word_seq", "S", "D", "A", 1, "T", "S-bin/", {"CACHE_TOPK": "8"})[1] == "S-bin/"
    assert methods.CACHE_MODES == __import__("kd_nmt.cache.store", fromlist=["MODES"]).MODES


def test_knobs_reach_the_options():
    out = args("selective_kd", {"DIVERGENCE": "rkl", "SELECT_RATE": "0.3"})
    assert out[out.index("--kd-divergence") + 1] == "rkl" and out[out.index("--kd-select-rate") + 1] == "0.3"
    out = args("on_policy_kd", {"ON_POLICY": "0.25"})
    assert out[out.index("--kd-on-policy") + 1] == "0.25"
    assert args("word_kd", {"DIVERGENCE": ""})[11] == "fkl"  # empty is unset, as ${DIVERGENCE:-fkl}


@pytest.mark.parametrize("name", ["nope", "word-kd", "seqkd", "hybrid_kd_lr", "hybrid_kd_lrx", "hybrid_kd_lr5x",
                                  "hybrid_kd_norm_norm", "baseline+filter", "seq_kd+"])
def test_an_unknown_method_is_one_error_naming_the_known_ones(name):
    with pytest.raises(KDNMTError) as info:
        methods.resolve(name)
    message = str(info.value)
    assert "\n" not in message
    if name != "seq_kd+":
        assert message.endswith(f"unknown method {name}") and methods.KNOWN in message
    else:
        assert "unknown Seq-KD variant part +" in message and "+nbestN" in message


def test_a_gate_step_of_zero_is_refused():
    with pytest.raises(KDNMTError, match="must be > 0"):
        methods.resolve("hybrid_kd_lr0")


@pytest.mark.parametrize("env,message", [({"CACHE_TOPK": "x"}, "CACHE_TOPK must be a whole number"),
                                         ({"CACHE_TOPK": "-1"}, "CACHE_TOPK must be a whole number"),
                                         ({"CACHE_MODE": "top"}, "CACHE_MODE must be one of topk, topk-tail, sample")])
def test_a_bad_knob_value_is_one_error(env, message):
    with pytest.raises(KDNMTError, match=message):
        args("word_kd", env)


# --- variants ---------------------------------------------------------------------------------

@pytest.mark.parametrize("parts,keep,mono,filtered,decode,tag", [
    ("+nbest4", 4, 0, False, "--nbest 4 --keep-nbest 4", "+nbest4"),
    ("+nbest1", 1, 0, False, "--nbest 1 --keep-nbest 1", "+nbest1"),
    ("+mbrchrf", 1, 0, False, "--nbest 5 --select-by-mbr chrf", "+mbrchrf"),
    ("+mbrbleu", 1, 0, False, "--nbest 5 --select-by-mbr bleu", "+mbrbleu"),
    ("+mono3000", 1, 3000, False, "", ""),
    ("+filter", 1, 0, True, "", ""),
    ("nbest2+mono20+filter", 2, 20, True, "--nbest 2 --keep-nbest 2", "+nbest2"),
    ("+filter+mbrchrf", 1, 0, True, "--nbest 5 --select-by-mbr chrf", "+mbrchrf"),
])
def test_each_part(parts, keep, mono, filtered, decode, tag):
    v = variants.parse(parts)
    assert (v.keep, v.mono, v.filter, v.decode, v.tag) == (keep, mono, filtered, tuple(decode.split()), tag)
    assert v.suffix == "+" + parts.lstrip("+")


@pytest.mark.parametrize("parts,message", [
    ("+nbst4", "unknown Seq-KD variant part +nbst4"), ("+mbrter", "unknown Seq-KD variant part +mbrter"),
    ("+nbest", "unknown Seq-KD variant part +nbest"), ("+mono3k", "unknown Seq-KD variant part +mono3k"),
    ("+nbest0", "N must be at least 1"), ("+mono0", "N must be at least 1"), ("+a++filter", "part +a "),
    ("+nbest4+mbrchrf", "both choose how the teacher decodes"), ("+mono2+mono3", "+mono2 and +mono3"),
    ("+filter+filter", "+filter and +filter"),
])
def test_a_bad_part_is_one_error_naming_the_parts(parts, message):
    with pytest.raises(KDNMTError) as info:
        variants.parse(parts, "seq_kd" + parts)
    assert message in str(info.value) and "\n" not in str(info.value)
    if "unknown" in message:
        assert variants.PARTS in str(info.value) and f"in seq_kd{parts}" in str(info.value)


def test_the_one_best_text_is_relabels_own():
    assert variants.relabel_output("work/seqkd-bin") == "work/seqkd.train.en"
    assert variants.relabel_output("work/seqkd-inter-bin") == "work/seqkd-inter.train.en"
    for parts in ("+filter", "+mono5", "+mono5+filter"):
        plan = variants.data_plan(variants.parse(parts), "work/seqkd-bin", "DATA")
        assert plan["targets"][0] == variants.relabel_output("work/seqkd-bin")


def test_data_bins_beside_the_one_best():
    v = variants.parse("+nbest4+mono3000")
    assert variants.data_bin("work/seqkd-bin", v) == "work/seqkd+nbest4+mono3000-bin"
    assert variants.data_bin("work/seqkd", v) == "work/seqkd+nbest4+mono3000-bin"  # ${1%-bin}
    assert variants.strip_bin("a-bin-bin") == "a-bin" and variants.strip_bin("a-bin/") == "a-bin/"


def test_the_plan_of_nbest_and_mono():
    plan = variants.data_plan(variants.parse("+nbest4+mono3000"), "work/seqkd-bin", "DATA")
    assert plan == {
        "dest": "work/seqkd+nbest4+mono3000-bin", "decode": ["--nbest", "4", "--keep-nbest", "4"],
        "mono": 3000, "mono_input": "DATA/tok/mono3000.de", "inputs": ["DATA/tok/train.de", "DATA/tok/mono3000.de"],
        "targets": ["work/seqkd+nbest4.train.en", "work/seqkd+nbest4.mono3000.en"],
        "sources": ["work/seqkd+nbest4.train.en.source", "work/seqkd+nbest4.mono3000.en.source"],
        "joined_source": "work/seqkd+nbest4+mono3000.de", "joined_target": "work/seqkd+nbest4+mono3000.en",
        "filter": 0, "kept_source": "work/seqkd+nbest4+mono3000.kept.de",
        "kept_target": "work/seqkd+nbest4+mono3000.kept.en", "repeat": 4, "extra_lines": 12000,
    }


def test_the_plan_of_filter_reuses_the_one_best_text():
    plan = variants.data_plan(variants.parse("+filter"), "work/seqkd-bin", "DATA")
    assert plan["dest"] == "work/seqkd+filter-bin" and plan["decode"] == [] and plan["filter"] == 1
    assert plan["inputs"] == plan["sources"] == ["DATA/tok/train.de"]
    assert plan["targets"] == ["work/seqkd.train.en"]  # relabel()'s own 1-best text
    assert plan["mono_input"] == plan["joined_source"] == "" and plan["kept_target"] == "work/seqkd+filter.kept.en"
    assert (plan["repeat"], plan["extra_lines"]) == (1, 0)
    mbr = variants.data_plan(variants.parse("+mbrchrf+mono100"), "work/seqkd-bin", "DATA")
    assert mbr["targets"] == ["work/seqkd+mbrchrf.train.en", "work/seqkd+mbrchrf.mono100.en"]
    assert mbr["sources"] == mbr["inputs"] and mbr["extra_lines"] == 100


@pytest.mark.parametrize("env,suffix", [
    ({}, ""), ({"NBEST": "4"}, "+nbest4"), ({"NBEST": "1"}, ""), ({"MBR": "chrf"}, "+mbrchrf"),
    ({"MONO": "3000"}, "+mono3000"), ({"FILTER": "1"}, "+filter"), ({"FILTER": "0"}, ""),
    ({"NBEST": "2", "MONO": "20", "FILTER": "1"}, "+nbest2+mono20+filter"),
    ({"MBR": "bleu", "MONO": "5", "FILTER": "1"}, "+mbrbleu+mono5+filter"),
    ({"FILTER": "1", "MONO": "0", "NBEST": ""}, "+filter"),
])
def test_the_knobs_suffix(env, suffix):
    assert variants.knob_suffix(env) == suffix
    assert variants.with_knobs(["baseline", "seq_kd", "word_seq", "hybrid_kd", "seq_kd+filter"], env) == [
        "baseline", f"seq_kd{suffix}", f"word_seq{suffix}", "hybrid_kd", "seq_kd+filter"]


@pytest.mark.parametrize("env,message", [
    ({"NBEST": "four"}, "NBEST must be a whole number"), ({"MONO": "1e3"}, "MONO must be a whole number"),
    ({"MBR": "ter"}, "MBR must be one of '', chrf, bleu"), ({"FILTER": "yes"}, "FILTER must be one of 0, 1"),
    ({"NBEST": "4", "MBR": "chrf"}, "both choose how the teacher decodes"),
])
def test_a_bad_suffix_knob_is_one_error(env, message):
    with pytest.raises(KDNMTError, match=message):
        variants.knob_suffix(env)


# --- grid -------------------------------------------------------------------------------------

def test_sizes_and_starts():
    assert grid.size("transformer_kd_small_d2") == "small_d2" and grid.size("transformer") == "transformer"
    assert grid.init_plan("ROOT", "transformer_kd_small_d2", {}) == {
        "layers": "2", "init": "ROOT/init/transformer_kd_small_d2.pt",
        "options": ["--finetune-from-model", "ROOT/init/transformer_kd_small_d2.pt", "--lr", "5e-4",
                    "--warmup-updates", "30"]}
    assert grid.init_plan("R", "transformer_kd_small_d2", {"INIT_LR": "1e-4", "INIT_WARMUP": "5"})["options"][3:] \
        == ["1e-4", "--warmup-updates", "5"]
    empty = {"layers": "", "init": "", "options": []}
    assert grid.init_plan("R", "transformer_kd_tiny", {}) == empty
    assert grid.init_plan("R", "transformer_kd_small_d12", {}) == empty  # *_d[0-9]: one digit
    assert grid.init_plan("R", "transformer_kd_small_d2", {"STUDENT_INIT": "0"}) == empty
    with pytest.raises(KDNMTError, match="STUDENT_INIT must be one of 0, 1"):
        grid.init_plan("R", "transformer_kd_small_d2", {"STUDENT_INIT": "no"})


def test_bench_names_and_baseline():
    plan = grid.bench_plan("ROOT", "T.pt", ["transformer_kd_tiny", "transformer_kd_small_d2"],
                           ["word_kd", "baseline", "hybrid_kd"])
    assert plan["names"] == ("teacher method=word_kd,size=tiny method=baseline,size=tiny "
                             "method=hybrid_kd,size=tiny method=word_kd,size=small_d2 "
                             "method=baseline,size=small_d2 method=hybrid_kd,size=small_d2")
    assert plan["checkpoints"][:2] == ["T.pt", "ROOT/tiny/word_kd/checkpoint_best.pt"]
    assert plan["checkpoints"][-1] == "ROOT/small_d2/hybrid_kd/checkpoint_best.pt"
    assert plan["baseline"] == "baseline/tiny"
    tagged = grid.bench_plan("ROOT", "T.pt", ["transformer_kd_tiny"], ["word_kd", "hybrid_kd"], "noise=dropout-0.1")
    assert tagged["names"] == ("name=teacher,noise=dropout-0.1 method=word_kd,size=tiny,noise=dropout-0.1 "
                               "method=hybrid_kd,size=tiny,noise=dropout-0.1")
    assert tagged["baseline"] == "teacher"
    assert grid.bench_plan("R", "T", ["tiny", "small"], ["baseline"], "beam=5")["baseline"] == "baseline/tiny/5"
    with pytest.raises(KDNMTError, match="key=value"):
        grid.bench_plan("R", "T", ["tiny"], ["baseline"], "beam5")
    with pytest.raises(KDNMTError, match="unknown method wordkd"):
        grid.bench_plan("R", "T", ["tiny"], ["wordkd"])


def test_check_knobs_knows_every_knob_the_modules_read():
    tables = {*methods.KNOBS, *variants.KNOBS, *grid.KNOBS}
    assert check_knobs.planned_knobs() == tables and tables <= check_knobs.known_knobs()
    assert check_knobs.mistyped({"SELECT_RATES": "0.5", "CACHE_TOP": "8"}, check_knobs.known_knobs()) == [
        ("CACHE_TOP", "CACHE_TOPK"), ("SELECT_RATES", "SELECT_RATE")]


# --- the command line ---------------------------------------------------------------------------

PLAN = [sys.executable, str(REPO / "scripts" / "recipe_plan.py")]


def plan(*argv, env=None, check=True):
    proc = subprocess.run([*PLAN, *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow  # a few processes
def test_the_command_line_prints_one_argument_per_line_and_one_error_line():
    out = plan("student", "word_seq+nbest4", "--save", "S", "--data", "D", "--arch", "A", "--updates", "60",
               "--teacher", "T", "--seqkd", "with space-bin", env={"CACHE_TOPK": "8"}).stdout
    assert out.split("\n")[:-1] == ["S", "with space+nbest4-bin", "A", "60", *KD.split(), "--teacher-cache",
                                    "with space+nbest4-bin-cache-topk-tail8"]
    bad = plan("with-knobs", "baseline wordkd", check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("recipe_plan: error: the methods are baseline ") and bad.stderr.count("\n") == 1
    assert bad.stderr.rstrip().endswith("unknown method wordkd")
    assert plan("with-knobs", "baseline seq_kd", env={"NBEST": "4"}).stdout == "baseline seq_kd+nbest4\n"
    assert plan("variants", "seq_kd word_seq+filter seq_kd+filter seq_kd+nbest2").stdout == "+filter\n+nbest2\n"
    assert plan("knobs").stdout.split() == sorted({*methods.KNOBS, *variants.KNOBS, *grid.KNOBS})
    assert "example:" in plan("--help").stdout


@pytest.mark.slow
def test_the_assignments_survive_bash_eval():
    odd = "it's a \"dir\" $HOME"
    script = f"""
        answer=$({' '.join(PLAN)} variant +nbest2+mono5 --seqkd "$1/seqkd-bin" --data "$1/data") || exit 2
        eval "$answer"
        printf '%s\\n' "$dest" "${{#inputs[@]}}" "${{targets[1]}}" "${{decode[*]}}" "$extra_lines"
    """
    proc = subprocess.run(["bash", "-c", script, "bash", odd], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == [f"{odd}/seqkd+nbest2+mono5-bin", "2", f"{odd}/seqkd+nbest2.mono5.en",
                                            "--nbest 2 --keep-nbest 2", "10"]


@pytest.mark.slow
def test_the_command_line_imports_neither_torch_nor_fairseq():
    proc = subprocess.run([sys.executable, "-X", "importtime", *PLAN[1:], "suffix"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}
    assert "kd_nmt" in imported and not imported & {"torch", "fairseq", "numpy"}
