#!/usr/bin/env bash
# recipes/teacher.sh — train the de->en teacher that ships in models/teacher-deen/, from scratch.
#
#   bash recipes/teacher.sh            # ~2 h on 2 CPU cores (float32, no AVX-512); rerun = resume
#
# Steps (each skipped when its output exists, training resumes from checkpoint_last.pt):
#   1. the whole corpus (58,532 train pairs), one joint 8k sentencepiece model -> WORK/data
#   2. transformer_kd_small (3+3 x 256), bf16 autocast where the CPU has it (PRECISION), dropout 0.1, lr 1e-3 with
#      400 warm-up updates, label smoothing 0.1, 4,096 tokens a batch, TEACHER_UPDATES updates,
#      a checkpoint every 200 updates -> WORK/model
#   3. the learning curve: BLEU/chrF of every interval checkpoint on test_tech and test_ding
#      (CTranslate2 int8, beam 5) -> RESULTS/curve.{tsv,png}
#   4. the mean of the last AVERAGE interval checkpoints, float16 weights only, with spm model,
#      dictionaries and MANIFEST.json (sha256, command, BLEU) -> SHIP (default: RESULTS/ship;
#      SHIP=models/teacher-deen replaces the shipped teacher)
#
# Knobs: TEACHER_UPDATES (2400; a larger value later continues the run), VOCAB (8000), AVERAGE (1: while the curve still climbs, averaging the last 2 or 3 checkpoints scored lower on valid), WORK (work/teacher),
# RESULTS (results/teacher), SHIP, plus recipes/lib.sh's (SEED, MAX_TOKENS, LR, ...).
set -euo pipefail
RECIPE=teacher
: "${WARMUP:=400}"
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${TEACHER_UPDATES:=2400}" "${VOCAB:=8000}"
: "${WORK:=work/teacher}" "${RESULTS:=results/teacher}" "${AVERAGE:=1}"
: "${SHIP:=$RESULTS/ship}"
START=$SECONDS

corpus "$WORK/data" 0 "$VOCAB"
train "$WORK/model" "$WORK/data/bin" transformer_kd_small "$TEACHER_UPDATES" \
    --task translation --criterion label_smoothed_cross_entropy --dropout 0.1 \
    --save-interval-updates 200 --keep-interval-updates -1

log "learning curve -> $RESULTS/curve.png"
python scripts/learning_curve.py --data "$WORK/data" --run "$WORK/model" \
    --splits test_tech test_ding --threads "$THREADS" --out "$RESULTS/curve" \
    --title "teacher transformer_kd_small, 58,532 pairs, ${PRECISION_ARGS:-fp32}" >&2

if [ ! -e "$SHIP/MANIFEST.json" ]; then
    log "ship the mean of the last $AVERAGE interval checkpoints -> $SHIP"
    python scripts/ship_checkpoint.py --run "$WORK/model" --average "$AVERAGE" --data "$WORK/data" --out "$SHIP" \
        --note "bash recipes/teacher.sh (TEACHER_UPDATES=$TEACHER_UPDATES VOCAB=$VOCAB SEED=$SEED)" \
        --info "train_wall_seconds=$(sed -n 's/^wall_seconds //p' "$WORK/model/DONE")" \
               "corpus=$(python -c 'import json;m=json.load(open("data/corpus/deen/MANIFEST.json"));print(json.dumps(m["packages"]))')" \
               "torch=$(python -c 'import torch;print(torch.__version__)')" \
               "fairseq=$(python -c 'import fairseq;print(fairseq.__version__)')"
fi
log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
