#!/usr/bin/env bash
# Study: which Seq-KD training data serves the student best — the same student, the same number of
# updates, the same teacher, five data sets:
#   seq_kd                the teacher's 1-best (Kim & Rush 2016)
#   seq_kd+filter         the 1-best after kd-nmt filter (cheap checks + the backward model's worst 5 %)
#   seq_kd+mbrchrf        per source the MBR choice (expected chrF) among the teacher's 5-best
#   seq_kd+nbestN         the teacher's N best per source, each source N times (N x the data)
#   seq_kd+monoN          the 1-best plus N relabeled monolingual German lines (python -m data.monolingual)
# for every seed of SEEDS, then one table: BLEU/chrF per method (mean and sd over seeds, beam and
# greedy) and each seed's paired bootstrap p-value against seq_kd (kd-nmt bench, sacreBLEU).
#
#   bash recipes/study_seqkd_data.sh          # hours on 2 CPU cores; rerun = resume
#
# Knobs: SEEDS (1 2 3: the students' seeds; data and teacher are shared), MAX_TRAIN (10000),
# STUDENT_ARCH (transformer_kd_tiny), STUDENT_UPDATES (1500), NBEST (4), MBR (chrf), MONO (10000),
# MONO_FILE (raw German text instead of manpages-de's), BACKWARD (an en->de checkpoint on the same
# dictionaries, e.g. recipes/backward.sh's; unset: one is trained here, BACKWARD_ARCH
# transformer_kd_small, BACKWARD_UPDATES 1200; none: the filter without it), FILTER_DROP (0.05),
# TEACHER_DIR (models/teacher-deen; TRAIN_TEACHER=1 trains one: TEACHER_UPDATES, TEACHER_ARCH,
# VOCAB), TEST_SPLIT (test_tech), CORPUS, WORK (work/seqkd_data), RESULTS (results/seqkd_data),
# plus recipes/lib.sh's.
# Output: RESULTS/seedS/bench.{csv,md} per seed, RESULTS/summary.md (also printed).
set -euo pipefail
RECIPE=study_seqkd_data
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${SEEDS:=1 2 3}" "${MAX_TRAIN:=10000}" "${STUDENT_ARCH:=transformer_kd_tiny}" "${STUDENT_UPDATES:=1500}"
: "${NBEST:=4}" "${MBR:=chrf}" "${MONO:=10000}" "${BACKWARD:=}" "${BACKWARD_ARCH:=transformer_kd_small}"
: "${BACKWARD_UPDATES:=1200}"
: "${WORK:=work/seqkd_data}" "${RESULTS:=results/seqkd_data}" "${TEST_SPLIT:=test_tech}"
START=$SECONDS
METHODS="seq_kd seq_kd+filter seq_kd+mbr$MBR seq_kd+nbest$NBEST seq_kd+mono$MONO"

: "${TEACHER_UPDATES:=500}" "${TEACHER_ARCH:=transformer_kd_small}" "${VOCAB:=4000}"  # TRAIN_TEACHER=1 only
teacher_and_data "$WORK" "$MAX_TRAIN"

# the backward model of the filter, then the five data sets
case $BACKWARD in
    none) unset BACKWARD ;;
    "") backward_model "$WORK/backward" "$WORK/data/bin" "$BACKWARD_ARCH" "$BACKWARD_UPDATES" --dropout 0.1 ;;
    *) export BACKWARD ;;
esac
relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-bin"
seqkd_variants "$TEACHER" "$WORK/data" "$WORK/seqkd-bin" "$METHODS"

# the students, one grid per seed, each benched against its seed's seq_kd
size=${STUDENT_ARCH#transformer_kd_}
for seed in $SEEDS; do
    SEED=$seed grid "$WORK/seed$seed" "$WORK/data" "$WORK/seqkd-bin" "$TEACHER" "$STUDENT_UPDATES" \
        "$STUDENT_ARCH" "$METHODS"
    names='' checkpoints=()
    for method in $METHODS; do
        names+=" method=$method,seed=$seed"
        checkpoints+=("$WORK/seed$seed/$size/$method/checkpoint_best.pt")
    done
    BASELINE=seq_kd/$seed bench "$RESULTS/seed$seed" "$WORK/data" "$TEST_SPLIT" "$names" "${checkpoints[@]}"
done

# one table over the seeds, with the training pairs each data set holds (its data-bin's relabel.json)
python scripts/seed_table.py "$RESULTS" --baseline seq_kd --train-pairs "$WORK" >"$RESULTS/summary.md"
log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
cat "$RESULTS/summary.md"
