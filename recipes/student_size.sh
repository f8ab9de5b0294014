#!/usr/bin/env bash
# Study axis 1 — student size: every KD method for students of several sizes, one teacher.
#
#   bash recipes/student_size.sh                        # full corpus; hours on 2 CPU cores
#   SIZES="transformer_kd_small_d1 transformer_kd_small_d2" STUDENT_UPDATES=300 \
#       METHODS="baseline word_kd seq_kd" bash recipes/student_size.sh      # teacher-initialised students only
#
# The shipped teacher (models/teacher-deen; TRAIN_TEACHER=1 trains one with VOCAB, TEACHER_ARCH,
# TEACHER_UPDATES). Knobs: MAX_TRAIN (0 = all train pairs), VOCAB (4000), TEACHER_ARCH (transformer_kd_small),
# TEACHER_UPDATES (3000), STUDENT_UPDATES (1500), SIZES (tiny, small_d1, small_d2: the _dN sizes
# start from the teacher's layers, see lib.sh's student_init), METHODS (all nine of lib.sh's
# student(): the seven of the paper's study plus selective_kd and on_policy_kd),
# WORK (work/study), RESULTS (results/student_size), and recipes/lib.sh's.
# Output: RESULTS/bench_test_tech, RESULTS/bench_test_ding (bench.csv, bench.md, per-length buckets),
# RESULTS/figures (BLEU vs parameters per method, gate trajectories).
set -euo pipefail
RECIPE=student_size
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${MAX_TRAIN:=0}" "${VOCAB:=4000}" "${TEACHER_UPDATES:=3000}" "${STUDENT_UPDATES:=1500}"
: "${TEACHER_ARCH:=transformer_kd_small}"
: "${SIZES:=transformer_kd_tiny transformer_kd_small_d1 transformer_kd_small_d2}"
: "${METHODS:=baseline word_kd todi selective_kd on_policy_kd seq_kd seq_inter word_seq hybrid_kd}"
: "${WORK:=work/study}" "${RESULTS:=results/student_size}"
START=$SECONDS

teacher_and_data "$WORK" "$MAX_TRAIN"
relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-bin"
METHODS=$(with_seqkd_knobs "$METHODS")  # MONO / NBEST / FILTER / MBR: recipes/lib.sh
seqkd_variants "$TEACHER" "$WORK/data" "$WORK/seqkd-bin" "$METHODS"
case " $METHODS " in *" seq_inter "*) seq_inter_relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-inter-bin" ;; esac

grid "$WORK/students" "$WORK/data" "$WORK/seqkd-bin" "$TEACHER" "$STUDENT_UPDATES" "$SIZES" "$METHODS"
for split in test_tech test_ding; do
    grid_bench "$RESULTS/bench_$split" "$WORK/students" "$WORK/data" "$split" "$TEACHER" "$SIZES" "$METHODS"
done
gate_logs=()
for arch in $SIZES; do
    log_file=$WORK/students/${arch#transformer_kd_}/hybrid_kd/train.log
    [ -e "$log_file" ] && gate_logs+=("$log_file")
done
kd-nmt plot --results "$RESULTS/bench_test_tech" ${gate_logs[@]:+--gate-log "${gate_logs[@]}"} \
    --out "$RESULTS/figures" >&2

log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
cat "$RESULTS/bench_test_tech/bench.md"
