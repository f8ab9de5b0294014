#!/usr/bin/env bash
# recipes/multi30k_teacher.sh — the Multi30k de->en teacher, from scratch (the first stage of
# recipes/multi30k.sh; run alone it stops after the teacher).
#
#   bash recipes/multi30k_teacher.sh          # ~70 min on 2 cores with AVX-512 BF16 (3,000 updates); rerun = resume
#
# Steps (each skipped when its output exists; training resumes from checkpoint_last.pt):
#   1. python -m data.build_multi30k: the shipped gzip files, sha256-checked -> data/corpus/multi30k
#   2. scripts/prepare_corpus.py: one joint VOCAB sentencepiece model on train -> WORK/data
#   3. TEACHER_ARCH (transformer_kd_small, 3+3 x 256), dropout DROPOUT (0.3: 29,000 pairs
#      overfit a 7.6M model at 0.1 — fairseq's IWSLT recipe uses 0.3 for 160k), label smoothing 0.1,
#      lr 1e-3 with WARMUP (500) warm-up updates then 1/sqrt decay, 4,096 tokens a batch (~135
#      updates an epoch), TEACHER_UPDATES (3000: this machine's run, docs/multi30k.md; more
#      continues it), a checkpoint every 250 updates -> WORK/teacher
#   4. the learning curve (CTranslate2 int8, beam 5) on valid and test_2016_flickr -> RESULTS/curve.*
#
# Knobs: TEACHER_ARCH, TEACHER_UPDATES, VOCAB (8000), DROPOUT, WORK (work/multi30k),
# RESULTS (results/multi30k), plus recipes/lib.sh's (SEED, MAX_TOKENS, LR, PRECISION, ...).
set -euo pipefail
RECIPE=multi30k_teacher
: "${WARMUP:=500}"
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${TEACHER_ARCH:=transformer_kd_small}" "${TEACHER_UPDATES:=3000}" "${VOCAB:=8000}" "${DROPOUT:=0.3}"
: "${WORK:=work/multi30k}" "${RESULTS:=results/multi30k}"
START=$SECONDS

python -m data.build_multi30k
CORPUS=data/corpus/multi30k corpus "$WORK/data" 0 "$VOCAB"
train "$WORK/teacher" "$WORK/data/bin" "$TEACHER_ARCH" "$TEACHER_UPDATES" \
    --task translation --criterion label_smoothed_cross_entropy --dropout "$DROPOUT" \
    --save-interval-updates 250 --keep-interval-updates -1

log "learning curve -> $RESULTS/teacher_curve.png"
python scripts/learning_curve.py --data "$WORK/data" --run "$WORK/teacher" \
    --splits valid test_2016_flickr --threads "$THREADS" --out "$RESULTS/teacher_curve" \
    --title "Multi30k teacher $TEACHER_ARCH, dropout $DROPOUT, ${PRECISION_ARGS:-fp32}" >&2
log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
