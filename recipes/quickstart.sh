#!/usr/bin/env bash
# Quickstart (what `make demo` runs): a slice of the de-en corpus, a small teacher, and four tiny
# students — baseline (gold CE), word_kd, seq_kd, hybrid_kd — then one table of BLEU/chrF
# (sacreBLEU signatures), greedy and beam, speed and size on the held-out help pages (test_tech).
#
#   bash recipes/quickstart.sh            # ~30 min on 2 CPU cores; rerun = resume
#
# Knobs: MAX_TRAIN (20000 train pairs), VOCAB (4000), TEACHER_UPDATES (500), STUDENT_UPDATES (300),
# TEACHER_ARCH (transformer_kd_small), STUDENT_ARCH (transformer_kd_tiny), WORK (work/quickstart),
# RESULTS (results/quickstart), plus recipes/lib.sh's (SEED, THREADS, MAX_TOKENS, LR, ...).
RECIPE=quickstart
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
: "${MAX_TRAIN:=20000}" "${VOCAB:=4000}" "${TEACHER_UPDATES:=500}" "${STUDENT_UPDATES:=300}"
: "${TEACHER_ARCH:=transformer_kd_small}" "${STUDENT_ARCH:=transformer_kd_tiny}"
: "${WORK:=work/quickstart}" "${RESULTS:=results/quickstart}"
START=$SECONDS

corpus_and_teacher "$WORK" "$MAX_TRAIN" "$VOCAB" "$TEACHER_ARCH" "$TEACHER_UPDATES"
relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-bin"

METHODS="baseline word_kd seq_kd hybrid_kd"
grid "$WORK/students" "$WORK/data" "$WORK/seqkd-bin" "$TEACHER" "$STUDENT_UPDATES" "$STUDENT_ARCH" "$METHODS"
grid_bench "$RESULTS/bench" "$WORK/students" "$WORK/data" test_tech "$TEACHER" "$STUDENT_ARCH" "$METHODS"
size=${STUDENT_ARCH#transformer_kd_}
kd-nmt plot --gate-log "$WORK/students/$size/hybrid_kd/train.log" --gate-labels learned --out "$RESULTS" >&2

log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
cat "$RESULTS/bench/bench.md"
