#!/usr/bin/env bash
# The learned gate of hybrid_kd over a longer run: the paper's gate (learned) against our remedy
# --gate-normalize, same student, data and teacher, trained from a top-16 teacher cache (no teacher
# in memory). Reuses the quickstart's data, teacher and relabeled corpus (run it first).
#
#   bash recipes/hybrid_gate.sh            # ~15 min on 2 CPU cores
#
# Knobs: UPDATES (1000), ARCH (transformer_kd_tiny), GATES ("learned normalize"), WORK
# (work/quickstart), RESULTS (results/hybrid_gate), and recipes/lib.sh's.
set -euo pipefail
RECIPE=hybrid_gate
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${UPDATES:=1000}" "${ARCH:=transformer_kd_tiny}" "${GATES:=learned normalize}"
: "${WORK:=work/quickstart}" "${RESULTS:=results/hybrid_gate}"
TEACHER=$WORK/teacher/checkpoint_best.pt
[ -e "$WORK/seqkd-bin/dict.en.txt" ] || { log "run recipes/quickstart.sh first"; exit 2; }
if [ ! -e "$WORK/cache-top16/meta.json" ]; then
    kd-nmt cache-teacher --teacher "$TEACHER" --data-bin "$WORK/data/bin" --split train \
        --topk 16 --out "$WORK/cache-top16" --no-progress-bar >&2
fi
logs=()
for gate in $GATES; do
    extra=(--gate learned)
    [ "$gate" = normalize ] && extra+=(--gate-normalize)
    train "$WORK/gate-$gate" "$WORK/data/bin" "$ARCH" "$UPDATES" --task kd_translation \
        --teacher-cache "$WORK/cache-top16" --sentence-kd-data "$WORK/seqkd-bin" \
        --criterion hybrid_kd --kd-alpha 0.5 "${extra[@]}"
    logs+=("$WORK/gate-$gate/train.log")
done
mkdir -p "$RESULTS"
# shellcheck disable=SC2086  # GATES: a word list, one label each
kd-nmt plot --gate-log "${logs[@]}" --gate-labels $GATES --out "$RESULTS" >&2
for gate in $GATES; do
    echo "== $gate: update, gate, token_loss, sentence_loss (bits)"
    grep -E "train_inner" "$WORK/gate-$gate/train.log" \
        | grep -oE "(num_updates|gate|token_loss|sentence_loss)=[0-9.]+" | paste - - - - | awk 'NR % 4 == 0'
done | tee "$RESULTS/trajectory.txt"
