#!/usr/bin/env bash
# The learned gate of hybrid_kd at the study's tier: the paper's gate (learned) against our remedies,
# same student, data and teacher (the shipped teacher, 5,000 pairs, the 3+2 student from the
# teacher's layers, 60 updates — the Kim & Rush recipe's seed-1 setting, whose students it shares).
#
#   bash recipes/hybrid_gate.sh            # ~45 min on 2 CPU cores (4 gated students); rerun = resume
#
# GATES, one student each (word list):
#   learned          the paper's gate G = sigmoid(theta), theta trained with the student (hybrid_kd)
#   normalize        the same, its gradient seeing each loss over its running mean (--gate-normalize)
#   lrN              learned, theta's step N times larger (--gate-lr-scale N, G = sigmoid(N·theta))
#   normalize_lrN    both
# Output: RESULTS/bench.{md,csv} (BLEU/chrF, p against the baseline student), RESULTS/gate.png (the
# gates over the updates), RESULTS/trajectory.txt (update, gate, token and sentence loss, every 5
# updates: the gated students log every 5, the rest of the study every 25).
# Knobs: GATES ("learned normalize lr50 normalize_lr50"), ARCH (transformer_kd_small_d2), UPDATES (60),
# MAX_TRAIN (5000), WORK (work/quickstart), RESULTS (results/hybrid_gate), TEST_SPLIT (test_tech),
# STUDENT_SEED (1; the data keep lib.sh's SEED) and recipes/lib.sh's.
set -euo pipefail
RECIPE=hybrid_gate
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${GATES:=learned normalize lr50 normalize_lr50}" "${ARCH:=transformer_kd_small_d2}" "${UPDATES:=60}"
: "${MAX_TRAIN:=5000}" "${WORK:=work/quickstart}" "${RESULTS:=results/hybrid_gate}" "${TEST_SPLIT:=test_tech}"
: "${STUDENT_SEED:=1}"
START=$SECONDS

# gate_student GATE: the student's folder name and its options after the method, one per line
gate_student() {
    local gate=$1 method=hybrid_kd options=()
    case $gate in
        normalize | normalize_lr[0-9]*) method=hybrid_kd_norm ;;
        learned | lr[0-9]*) ;;
        *) log "unknown gate '$gate' (learned, normalize, lrN, normalize_lrN)"; return 2 ;;
    esac
    case $gate in
        *lr[0-9]*) options=(--gate-lr-scale "${gate##*lr}") ;;
    esac
    printf '%s\n' "$method" "${method}${options[0]:+_lr${gate##*lr}}" "${options[@]}"
}

teacher_and_data "$WORK" "$MAX_TRAIN"
relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-bin"
size=${ARCH#transformer_kd_}
root=$WORK/kim_rush/seed$STUDENT_SEED
init=$(student_init "$root" "$TEACHER" "$ARCH")
# shellcheck disable=SC2086  # init: options, split on spaces
SEED=$STUDENT_SEED student baseline "$root/$size/baseline" "$WORK/data" "$ARCH" "$UPDATES" "$TEACHER" "$WORK/seqkd-bin" $init
names="method=baseline,size=$size" checkpoints=("$root/$size/baseline/checkpoint_best.pt") logs=()
for gate in $GATES; do
    mapfile -t spec < <(gate_student "$gate")
    [ "${#spec[@]}" -ge 2 ] || exit 2
    save=$root/$size/${spec[1]}
    # shellcheck disable=SC2086
    SEED=$STUDENT_SEED student "${spec[0]}" "$save" "$WORK/data" "$ARCH" "$UPDATES" "$TEACHER" "$WORK/seqkd-bin" $init \
        "${spec[@]:2}" --log-interval 5
    names+=" method=${spec[1]},size=$size"
    checkpoints+=("$save/checkpoint_best.pt")
    logs+=("$save/train.log")
done
mkdir -p "$RESULTS"
# shellcheck disable=SC2086  # GATES: a word list, one label each
kd-nmt plot --gate-log "${logs[@]}" --gate-labels $GATES --out "$RESULTS" >&2
BENCH_GREEDY=0 BASELINE=baseline/$size bench "$RESULTS" "$WORK/data" "$TEST_SPLIT" "$names" "${checkpoints[@]}"
for log_file in "${logs[@]}"; do
    echo "== $log_file: update, gate, token_loss, sentence_loss (bits)"
    grep -E "train_inner" "$log_file" | awk '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); sub(/,$/, "", kv[2]); v[kv[1]] = kv[2] }
        print v["num_updates"], v["gate"], v["token_loss"], v["sentence_loss"] }'
done | tee "$RESULTS/trajectory.txt"
log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
cat "$RESULTS/bench.md"
