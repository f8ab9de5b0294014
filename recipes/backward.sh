#!/usr/bin/env bash
# recipes/backward.sh — the en->de backward model that kd-nmt filter's backward score needs
# (kd-nmt filter --backward-model; FILTER=1 BACKWARD=... in the other recipes), trained like the
# teacher of recipes/teacher.sh: the same corpus directory (WORK/data, prepared by teacher.sh or
# here, same 8k joint sentencepiece and dictionary, so the filter can check it against the
# teacher's data-bin), the languages swapped, the same architecture and schedule.
#
#   bash recipes/backward.sh            # as long as teacher.sh's training (~1 h per 1,200 updates
#                                       # on 2 cores); rerun = resume
#
# Steps (each skipped when its output exists; training resumes from checkpoint_last.pt):
#   1. the corpus, if teacher.sh has not prepared it (with the shipped teacher's sentencepiece
#      model and dictionary) -> WORK/data
#   2. transformer_kd_small en->de, dropout 0.1, lr 1e-3 with 400 warm-up updates, label smoothing
#      0.1, BACKWARD_UPDATES updates -> WORK/backward (checkpoint_best.pt: the --backward-model)
#
# Knobs: BACKWARD_UPDATES (2400; a larger value later continues the run), VOCAB (8000), ARCH
# (transformer_kd_small), WORK (work/teacher), BACKWARD_INIT (a checkpoint to start from instead
# of random weights, e.g. the shipped de->en teacher models/teacher-deen/model.pt: its embeddings
# are one joint matrix over the same dictionary, so its weights load into the en->de model and it
# only has to learn the other direction — far fewer updates than from scratch), plus
# recipes/lib.sh's (SEED, MAX_TOKENS, LR, ...).
#
#   WARMUP=100 BACKWARD_INIT=models/teacher-deen/model.pt BACKWARD_UPDATES=200 bash recipes/backward.sh  # 10 min
set -euo pipefail
RECIPE=backward
: "${WARMUP:=400}"
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${BACKWARD_UPDATES:=2400}" "${VOCAB:=8000}" "${ARCH:=transformer_kd_small}" "${WORK:=work/teacher}"
START=$SECONDS

# a fresh WORK/data takes the shipped teacher's sentencepiece model and dictionary (TEACHER_DIR,
# models/teacher-deen), so the filter accepts the backward model beside that teacher's data-bins;
# a WORK/data that teacher.sh prepared is used as it is
: "${TEACHER_DIR:=models/teacher-deen}"
if [ ! -e "$WORK/data/bin/dict.en.txt" ] && [ -e "$TEACHER_DIR/spm.model" ]; then
    SPM_MODEL=$TEACHER_DIR/spm.model SRCDICT=$TEACHER_DIR/dict.en.txt corpus "$WORK/data" 0 0
else
    corpus "$WORK/data" 0 "$VOCAB"
fi
init=()
[ -z "${BACKWARD_INIT:-}" ] || init=(--finetune-from-model "$BACKWARD_INIT")
backward_model "$WORK/backward" "$WORK/data/bin" "$ARCH" "$BACKWARD_UPDATES" --dropout 0.1 \
    --save-interval-updates 200 --keep-interval-updates 2 "${init[@]}"
log "done in $((SECONDS - START)) s: kd-nmt filter --backward-model $BACKWARD --data-bin $WORK/data/bin ..."
