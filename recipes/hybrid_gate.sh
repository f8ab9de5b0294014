#!/usr/bin/env bash
# The learned gate of hybrid_kd at the study's tier: the paper's gate (learned) against our remedies,
# same student, data and teacher (the shipped teacher, 5,000 pairs, the 3+2 student from the
# teacher's layers, 60 updates — the Kim & Rush recipe's seed-1 setting, whose students it shares).
#
#   bash recipes/hybrid_gate.sh            # ~45 min on 2 CPU cores (4 gated students); rerun = resume
#
# GATES, one student each (recipes/lib.sh's methods):
#   hybrid_kd              the paper's gate G = sigmoid(theta), theta trained with the student
#   hybrid_kd_norm         the same, its gradient seeing each loss over its running mean (--gate-normalize)
#   hybrid_kd_lrN          theta's step N times larger (--gate-lr-scale N, G = sigmoid(N·theta))
#   hybrid_kd_norm_lrN     both
# Output: RESULTS/bench.{md,csv} (the teacher and the students: BLEU/chrF, p against the baseline), RESULTS/gate.png (the
# gates over the updates), RESULTS/trajectory.txt (update, gate, token and sentence loss, every 5
# updates: the gated students log every 5, the rest of the study every 25).
# Knobs: GATES (the four above, N = 50), ARCH (transformer_kd_small_d2), UPDATES (60),
# MAX_TRAIN (5000), WORK (work/quickstart), RESULTS (results/hybrid_gate), TEST_SPLIT (test_tech),
# STUDENT_SEED (1; the data keep lib.sh's SEED) and recipes/lib.sh's.
set -euo pipefail
RECIPE=hybrid_gate
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${GATES:=hybrid_kd hybrid_kd_norm hybrid_kd_lr50 hybrid_kd_norm_lr50}" "${ARCH:=transformer_kd_small_d2}" "${UPDATES:=60}"
: "${MAX_TRAIN:=5000}" "${WORK:=work/quickstart}" "${RESULTS:=results/hybrid_gate}" "${TEST_SPLIT:=test_tech}"
: "${STUDENT_SEED:=1}"
START=$SECONDS

teacher_and_data "$WORK" "$MAX_TRAIN"
relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-bin"
root=$WORK/kim_rush/seed$STUDENT_SEED
# the students log every 5 updates (the gates' trajectory); the baseline is the bench's reference
SEED=$STUDENT_SEED grid "$root" "$WORK/data" "$WORK/seqkd-bin" "$TEACHER" "$UPDATES" "$ARCH" "baseline $GATES" \
    --log-interval 5
logs=()
for gate in $GATES; do logs+=("$root/${ARCH#transformer_kd_}/$gate/train.log"); done
mkdir -p "$RESULTS"
# shellcheck disable=SC2086  # GATES: a word list, one label each
kd-nmt plot --gate-log "${logs[@]}" --gate-labels $GATES --out "$RESULTS" >&2
BENCH_GREEDY=0 grid_bench "$RESULTS" "$root" "$WORK/data" "$TEST_SPLIT" "$TEACHER" "$ARCH" "baseline $GATES"
for log_file in "${logs[@]}"; do
    echo "== $log_file: update, gate, token_loss, sentence_loss (bits)"
    grep -E "train_inner" "$log_file" | awk '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); sub(/,$/, "", kv[2]); v[kv[1]] = kv[2] }
        print v["num_updates"], v["gate"], v["token_loss"], v["sentence_loss"] }'
done | tee "$RESULTS/trajectory.txt"
log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
cat "$RESULTS/bench.md"
