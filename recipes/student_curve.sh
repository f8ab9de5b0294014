#!/usr/bin/env bash
# Size the study by measurement: BLEU/chrF of students against updates, to choose the budget at
# which the study's students are trained (the teacher's own curve: recipes/teacher.sh).
#
#   bash recipes/student_curve.sh                 # baseline 3+1 student, 600 updates; rerun = resume
#   SIZES="transformer_kd_small_d1 transformer_kd_tiny" METHODS="baseline word_kd" bash recipes/student_curve.sh
#
# Every (size, method) student trains on all training pairs (MAX_TRAIN 0) prepared with the
# shipped teacher's sentencepiece model, keeps a checkpoint every EVERY updates, and
# scripts/learning_curve.py scores each on test_tech and test_ding (CTranslate2 int8, beam 5).
# The _dN sizes start from the teacher's layers (lib.sh's student_init).
# Knobs: SIZES (transformer_kd_small_d1), METHODS (baseline; any of lib.sh's student methods,
# seq_kd relabels the whole training source first), STUDENT_UPDATES (600), EVERY (100),
# MAX_TRAIN (0), WORK (work/student_curve), RESULTS (results/student_curve), plus lib.sh's.
# Output: RESULTS/<size>-<method>.{tsv,png}.
set -euo pipefail
RECIPE=student_curve
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${SIZES:=transformer_kd_small_d1}" "${METHODS:=baseline}" "${STUDENT_UPDATES:=600}" "${EVERY:=100}"
: "${MAX_TRAIN:=0}" "${WORK:=work/student_curve}" "${RESULTS:=results/student_curve}"
: "${TEACHER_UPDATES:=500}" "${TEACHER_ARCH:=transformer_kd_small}" "${VOCAB:=4000}"  # TRAIN_TEACHER=1 only
START=$SECONDS

teacher_and_data "$WORK" "$MAX_TRAIN"
case " $METHODS " in *" seq_kd "* | *" word_seq "* | *" hybrid_kd "*) relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-bin" ;; esac

for arch in $SIZES; do
    size=${arch#transformer_kd_}
    init=$(student_init "$WORK/students" "$TEACHER" "$arch")
    for method in $METHODS; do
        run=$WORK/students/$size/$method
        # shellcheck disable=SC2086  # init: options, split on spaces
        student "$method" "$run" "$WORK/data" "$arch" "$STUDENT_UPDATES" "$TEACHER" "$WORK/seqkd-bin" $init \
            --save-interval-updates "$EVERY" --keep-interval-updates -1
        log "learning curve $size $method -> $RESULTS/$size-$method.png"
        python scripts/learning_curve.py --data "$WORK/data" --run "$run" --splits test_tech test_ding \
            --threads "$THREADS" --out "$RESULTS/$size-$method" \
            --title "$size $method, ${MAX_TRAIN/#0/all} training pairs, ${PRECISION_ARGS:-fp32}" >&2
    done
done
log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
for tsv in "$RESULTS"/*.tsv; do echo "== $tsv"; cat "$tsv"; done
