#!/usr/bin/env bash
# Study axis 3 — decoding difficulty: greedy vs beam for every system of student_size.sh, on both
# test sets, and per source-length bucket (<=10, 11-25, >25 words; bench_buckets.csv). Needs the
# models of student_size.sh (same WORK); bench already decodes greedy and beam, so this recipe
# gathers the rows and adds a wider beam.
#
# Knobs: BEAMS (5 10), SIZES / METHODS / WORK as student_size.sh.
set -euo pipefail
RECIPE=decoding
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${SIZES:=transformer_kd_tiny transformer_kd_small_d1 transformer_kd_small_d2}"
: "${METHODS:=baseline word_kd todi selective_kd on_policy_kd seq_kd seq_inter word_seq hybrid_kd}"
: "${WORK:=work/study}" "${RESULTS:=results/decoding}" "${BEAMS:=5 10}"
METHODS=$(with_seqkd_knobs "$METHODS")  # the same knobs as student_size.sh's run
TEACHER=${TEACHER_DIR:-models/teacher-deen}/model.pt
[ -z "${TRAIN_TEACHER:-}" ] || TEACHER=$WORK/teacher/checkpoint_best.pt
[ -e "$TEACHER" ] || { log "no $TEACHER: run recipes/student_size.sh first"; exit 2; }
for beam in $BEAMS; do
    for split in test_tech test_ding; do
        BEAM=$beam grid_bench "$RESULTS/beam$beam-$split" "$WORK/students" "$WORK/data" "$split" \
            "$TEACHER" "$SIZES" "$METHODS"
    done
done
kd-nmt plot --results "$RESULTS"/beam*-test_tech --decode all --out "$RESULTS/figures" >&2
cat "$RESULTS"/beam*-test_tech/bench.md "$RESULTS"/beam*-test_tech/bench_buckets.csv
