#!/usr/bin/env bash
# Kim & Rush (2016)'s table on our data: the same student trained five ways, for several seeds —
#   baseline    gold CE
#   word_kd     word-level KD on the gold prefix (fkl, alpha 0.5)
#   seq_kd      CE on the teacher's beam-5 output (Seq-KD)
#   seq_inter   CE on the teacher's 5-best hypothesis closest to the reference (Seq-Inter, sentence BLEU)
#   word_seq    word-level KD on the Seq-KD data (Word-KD + Seq-KD)
# then one table per size: BLEU/chrF mean ± sd over seeds (greedy and beam), and each seed's paired
# bootstrap p-value against that seed's baseline (scripts/seed_table.py).
#
#   bash recipes/kim_rush.sh                  # ~80 min on 2 CPU cores; rerun = resume
#   SIZES="transformer_kd_small_d2 transformer_kd_small_d1" STUDENT_UPDATES=300 bash recipes/kim_rush.sh
#
# The data, the Seq-KD data and the teacher are the quickstart's (WORK defaults to work/quickstart,
# so a `make demo` before saves the preparation and the relabeling); the students of seed S train
# into WORK/kim_rush/seedS/<size>/<method>, all from the same shrunk-teacher start (lib.sh's
# student_init). Knobs: SEEDS (1 2 3), SIZES (transformer_kd_small_d2), STUDENT_UPDATES (60),
# MAX_TRAIN (5000), WORK (work/quickstart), RESULTS (results/kim_rush), TEST_SPLIT (test_tech),
# METHODS (the five above; any of lib.sh's student methods — hybrid_kd, selective_kd, on_policy_kd,
# todi — joins the table;
# another METHODS wants another RESULTS: a seed's finished bench is skipped),
# plus recipes/lib.sh's (SEED is the data's seed; SEEDS the students').
# Output: RESULTS/seedS/bench.{csv,md}, RESULTS/summary.md (also printed).
set -euo pipefail
RECIPE=kim_rush
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${SEEDS:=1 2 3}" "${SIZES:=transformer_kd_small_d2}" "${STUDENT_UPDATES:=60}" "${MAX_TRAIN:=5000}"
: "${WORK:=work/quickstart}" "${RESULTS:=results/kim_rush}" "${TEST_SPLIT:=test_tech}"
: "${TEACHER_UPDATES:=500}" "${TEACHER_ARCH:=transformer_kd_small}" "${VOCAB:=4000}"  # TRAIN_TEACHER=1 only
: "${METHODS:=baseline word_kd seq_kd seq_inter word_seq}"
START=$SECONDS

teacher_and_data "$WORK" "$MAX_TRAIN"
relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-bin"
seq_inter_relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-inter-bin"

for seed in $SEEDS; do
    SEED=$seed grid "$WORK/kim_rush/seed$seed" "$WORK/data" "$WORK/seqkd-bin" "$TEACHER" \
        "$STUDENT_UPDATES" "$SIZES" "$METHODS"
    SEED=$seed grid_bench "$RESULTS/seed$seed" "$WORK/kim_rush/seed$seed" "$WORK/data" "$TEST_SPLIT" \
        "$TEACHER" "$SIZES" "$METHODS" "seed=$seed"
done

python scripts/seed_table.py "$RESULTS" --baseline baseline >"$RESULTS/summary.md"
log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
cat "$RESULTS/summary.md"
