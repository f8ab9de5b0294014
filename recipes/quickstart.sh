#!/usr/bin/env bash
# Quickstart (what `make demo` runs): the shipped de->en teacher (models/teacher-deen, checksum
# verified: no teacher training), a slice of the de-en corpus prepared with the teacher's
# sentencepiece model and dictionary, the teacher's beam search over that slice (Seq-KD data), and
# four students — baseline (gold CE), word_kd, seq_kd, hybrid_kd — then one table of BLEU/chrF
# (sacreBLEU signatures, beam 5; BENCH_GREEDY=1 adds greedy rows), speed and size on the held-out
# help pages (test_tech), and a deployment table (the teacher and the hybrid_kd student on
# CTranslate2 int8 and fairseq, one thread, the first DEPLOY_LINES=100 lines: speed, latency at
# batch 1, memory, size; lib.sh's deploy).
#
# The students (transformer_kd_small_d2: the teacher's encoder, two decoder layers) start from the
# teacher's own layers (scripts/shrink_teacher.py, "shrink and fine-tune", Shleifer & Rush 2020):
# from random weights no student translates after the few hundred updates 2 CPU cores give in
# minutes. Every student, the baseline included, starts from the same initial checkpoint.
#
#   bash recipes/quickstart.sh            # 9-11 min on 2 CPU cores with AVX-512 BF16 (.venv installed); rerun = resume
#
# Knobs: MAX_TRAIN (5000 train pairs), STUDENT_UPDATES (60), STUDENT_ARCH (transformer_kd_small_d2;
# any size, e.g. transformer_kd_tiny, which starts from random weights), STUDENT_INIT (0: the _dN
# sizes start from random weights too),
# TEACHER_DIR (models/teacher-deen), WORK (work/quickstart), RESULTS (results/quickstart),
# TEST_SPLIT (test_tech; with CORPUS=DIR one of its test* splits), plus
# recipes/lib.sh's (SEED, THREADS, MAX_TOKENS, LR, PRECISION, MONO, NBEST, FILTER, ...). TRAIN_TEACHER=1 trains a small
# teacher here instead (TEACHER_UPDATES, TEACHER_ARCH, VOCAB: the recipe of before the shipped one).
set -euo pipefail
RECIPE=quickstart
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${MAX_TRAIN:=5000}" "${STUDENT_UPDATES:=60}" "${STUDENT_ARCH:=transformer_kd_small_d2}"
: "${WORK:=work/quickstart}" "${RESULTS:=results/quickstart}" "${TEST_SPLIT:=test_tech}"
: "${BENCH_GREEDY:=0}"  # lib.sh's bench: the demo's 30 minutes go to the deployment table instead
START=$SECONDS

: "${TEACHER_UPDATES:=500}" "${TEACHER_ARCH:=transformer_kd_small}" "${VOCAB:=4000}"  # TRAIN_TEACHER=1 only
teacher_and_data "$WORK" "$MAX_TRAIN"
relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-bin"
METHODS=$(with_seqkd_knobs "baseline word_kd seq_kd hybrid_kd")  # MONO / NBEST / FILTER: lib.sh
seqkd_variants "$TEACHER" "$WORK/data" "$WORK/seqkd-bin" "$METHODS"
grid "$WORK/students" "$WORK/data" "$WORK/seqkd-bin" "$TEACHER" "$STUDENT_UPDATES" "$STUDENT_ARCH" "$METHODS"
grid_bench "$RESULTS/bench" "$WORK/students" "$WORK/data" "$TEST_SPLIT" "$TEACHER" "$STUDENT_ARCH" "$METHODS"
size=${STUDENT_ARCH#transformer_kd_}
deploy "$RESULTS/deploy" "$WORK/data" "$TEST_SPLIT" "teacher hybrid_kd/$size" "$TEACHER" \
    "$WORK/students/$size/hybrid_kd/checkpoint_best.pt"
kd-nmt plot --gate-log "$WORK/students/$size/hybrid_kd/train.log" --gate-labels learned --out "$RESULTS" >&2

log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
cat "$RESULTS/bench/bench.md"
echo
cat "$RESULTS/deploy/deploy.md"
