#!/usr/bin/env bash
# recipes/multi30k_prune.sh — Kim & Rush (2016)'s weight pruning of a distilled Multi30k student:
# class-blind magnitude pruning at each fraction PRUNE_KEEP, retrained with the zeros held.
#
#   bash recipes/multi30k_prune.sh        # after bash recipes/multi30k.sh; rerun = resume
#
# Steps (each skipped when its output exists):
#   1. scripts/prune.py: the student WORK/students/seedPRUNE_SEED/PRUNE_SIZE/PRUNE_METHOD pruned
#      at every fraction of PRUNE_KEEP -> WORK/pruned/seedS/SIZE/METHOD/keepK.pt, prune.json
#   2. each retrained RETRAIN_UPDATES updates on PRUNE_DATA (the data it was distilled on) with
#      --keep-pruned, lr RETRAIN_LR, warmup 30 -> .../retrainK/; kept 1 (no pruning) is the
#      control: the same retraining without zeros, so Δ is pruning's cost, not the extra updates
#   3. kd-nmt bench on test_2016_flickr, greedy and beam 5: the teacher, every pruned (no
#      retraining) and retrained model -> RESULTS/prune/seedS/
#   4. scripts/prune_table.py: BLEU against the fraction kept, nonzeros, × fewer than the
#      teacher, sizes on disk -> RESULTS/prune/seedS/prune.md (.csv)
#
# Knobs: PRUNE_SEED (1), PRUNE_SIZE (micro), PRUNE_METHOD (seq_kd), PRUNE_DATA (WORK/seqkd-bin),
# PRUNE_KEEP (1 0.5 0.2 0.1 0.08; written as scripts/prune.py names them: 1, not 1.0),
# RETRAIN_UPDATES (500), RETRAIN_LR (5e-4), WORK (work/multi30k), RESULTS (results/multi30k),
# SHIP (models/teacher-multi30k) and recipes/lib.sh's.
set -euo pipefail
RECIPE=multi30k_prune
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${WORK:=work/multi30k}" "${RESULTS:=results/multi30k}" "${SHIP:=models/teacher-multi30k}"
: "${PRUNE_SEED:=1}" "${PRUNE_SIZE:=micro}" "${PRUNE_METHOD:=seq_kd}" "${PRUNE_DATA:=$WORK/seqkd-bin}"
: "${PRUNE_KEEP:=1 0.5 0.2 0.1 0.08}" "${RETRAIN_UPDATES:=500}" "${RETRAIN_LR:=5e-4}"
REFERENCES=data/corpus/multi30k  # lib.sh's bench scores against the references as published
START=$SECONDS

student=$WORK/students/seed$PRUNE_SEED/$PRUNE_SIZE/$PRUNE_METHOD/checkpoint_best.pt
[ -e "$student" ] || { log "error: no $student (run bash recipes/multi30k.sh first)"; exit 2; }
pruned=$WORK/pruned/seed$PRUNE_SEED/$PRUNE_SIZE/$PRUNE_METHOD
if [ ! -e "$pruned/prune.json" ]; then
    log "prune $student at $PRUNE_KEEP -> $pruned"
    # shellcheck disable=SC2086  # PRUNE_KEEP: one argument per fraction
    python scripts/prune.py --checkpoint "$student" --keep $PRUNE_KEEP --out "$pruned"
fi

names=teacher checkpoints=("$SHIP/model.pt")
for keep in $PRUNE_KEEP; do
    [ -e "$pruned/keep$keep.pt" ] || { log "error: no $pruned/keep$keep.pt (PRUNE_KEEP as prune.py writes it: 1, 0.5)"; exit 2; }
    SEED=$PRUNE_SEED train "$pruned/retrain$keep" "$PRUNE_DATA" "transformer_kd_$PRUNE_SIZE" "$RETRAIN_UPDATES" \
        --task kd_translation --keep-pruned --finetune-from-model "$pruned/keep$keep.pt" \
        --criterion label_smoothed_cross_entropy --lr "$RETRAIN_LR" --warmup-updates 30 --dropout 0.1
    names+=" keep=$keep,stage=pruned keep=$keep,stage=retrained"
    checkpoints+=("$pruned/keep$keep.pt" "$pruned/retrain$keep/checkpoint_best.pt")
done
bench_out=$RESULTS/prune/seed$PRUNE_SEED
BASELINE=1/retrained bench "$bench_out" "$WORK/data" test_2016_flickr "$names" "${checkpoints[@]}"
python scripts/prune_table.py --prune-dir "$pruned" --bench "$bench_out/bench.csv" --out "$bench_out/prune.md"
log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
