#!/usr/bin/env bash
# recipes/multi30k.sh — Kim & Rush (2016) on a standard benchmark: Multi30k de->en, a teacher
# trained from scratch, students with a real capacity gap trained from scratch, 3 seeds.
#
#   bash recipes/multi30k.sh                   # all of it: hours on 2 CPU cores; rerun = resume
#   SEEDS=1 SIZES=transformer_kd_micro bash recipes/multi30k.sh     # a one-seed pilot
#
# Stages (each step skipped when its output exists; training resumes from checkpoint_last.pt):
#   1. recipes/multi30k_teacher.sh: the shipped data, sha256-checked, prepared (8k joint
#      sentencepiece); the teacher (transformer_kd_small, dropout 0.3) and its learning curve
#   2. the last AVERAGE (1: the curve still climbs; docs/multi30k/teacher_average.md) interval
#      checkpoints averaged and shipped, float16 weights only, with spm,
#      dictionaries and MANIFEST.json -> SHIP (models/teacher-multi30k); its scores on every test
#      split (fairseq, greedy and beam 5, against the references as published; cased and lowercased
#      sacreBLEU) -> RESULTS/teacher/ and into the MANIFEST
#   3. the Seq-KD data (beam 5 over the train source) and Seq-Inter's (the 5-best hypothesis closest
#      to the reference, sentence BLEU), CTranslate2 int8
#   4. per seed in SEEDS and size in SIZES, the students METHODS (baseline, word_kd, seq_kd,
#      seq_inter, word_seq, hybrid_kd), STUDENT_UPDATES each (a checkpoint every 500 for the
#      baseline's learning curve), dropout STUDENT_DROPOUT -> WORK/students/seedS/<size>/<method>;
#      the word-level methods learn from a teacher cache (CACHE_TOPK 32 ids + the rest mass, built
#      once per data-bin: with the live teacher a 0.7M student trains ~3x slower; CACHE_TOPK=0
#      for the live teacher)
#   5. per test split in TEST_SPLITS, each seed's bench (greedy and beam 5) -> RESULTS/kim_rush/SPLIT/
#      seedS/, and the table over seeds with seed-level intervals (scripts/seed_table.py) ->
#      RESULTS/kim_rush/SPLIT/summary.md
#   6. the deployment table: the teacher and each size's DEPLOY_METHOD (word_seq) student of the first seed, CTranslate2
#      int8 and fairseq float32, one thread, beam 5 and greedy, all of test_2016_flickr
#      -> RESULTS/deploy_beam5/, RESULTS/deploy_greedy/
#
# Knobs: SEEDS (1 2 3), SIZES (transformer_kd_tiny transformer_kd_micro), METHODS, STUDENT_UPDATES
# (3000), STUDENT_DROPOUT (0.1), CACHE_TOPK (32), CACHE_MODE (topk-tail), AVERAGE (1), SHIP (models/teacher-multi30k), TEST_SPLITS
# (test_2016_flickr test_2017_flickr test_2017_mscoco), DEPLOY_LINES (1000), DEPLOY_METHOD (word_seq), WORK (work/multi30k),
# RESULTS (results/multi30k), the teacher's (TEACHER_ARCH, TEACHER_UPDATES, VOCAB, DROPOUT) and
# recipes/lib.sh's (SEED is the data's seed, SEEDS the students').
set -euo pipefail
RECIPE=multi30k
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${SEEDS:=1 2 3}" "${SIZES:=transformer_kd_tiny transformer_kd_micro}" "${STUDENT_UPDATES:=3000}"
: "${METHODS:=baseline word_kd seq_kd seq_inter word_seq hybrid_kd}" "${STUDENT_DROPOUT:=0.1}"
: "${CACHE_TOPK:=32}" "${AVERAGE:=1}" "${SHIP:=models/teacher-multi30k}" "${DEPLOY_LINES:=1000}" "${DEPLOY_METHOD:=word_seq}"
: "${TEST_SPLITS:=test_2016_flickr test_2017_flickr test_2017_mscoco}"
: "${WORK:=work/multi30k}" "${RESULTS:=results/multi30k}"
export WORK RESULTS CACHE_TOPK
REFERENCES=data/corpus/multi30k  # lib.sh's bench scores against the references as published
START=$SECONDS

bash recipes/multi30k_teacher.sh

if [ ! -e "$SHIP/MANIFEST.json" ]; then
    log "ship the mean of the last $AVERAGE interval checkpoints -> $SHIP"
    python scripts/ship_checkpoint.py --run "$WORK/teacher" --average "$AVERAGE" --data "$WORK/data" --out "$SHIP" \
        --note "bash recipes/multi30k.sh (recipes/multi30k_teacher.sh: TEACHER_ARCH=${TEACHER_ARCH:-transformer_kd_small} TEACHER_UPDATES=${TEACHER_UPDATES:-3000} VOCAB=${VOCAB:-8000} DROPOUT=${DROPOUT:-0.3} SEED=$SEED ${PRECISION_ARGS:-fp32}; AVERAGE=$AVERAGE)" \
        --info "train_wall_seconds=$(sed -n 's/^wall_seconds //p' "$WORK/teacher/DONE")" \
               "corpus=Multi30k task 1 de-en, github.com/multi30k/dataset a3d2e0d (data/multi30k/)" \
               "machine=$(python -c 'from kd_nmt.precision import bf16_supported as b; import os; print(f"{os.cpu_count()} cores, AVX-512 BF16 {b()}")')" \
               "torch=$(python -c 'import torch;print(torch.__version__)')" \
               "fairseq=$(python -c 'import fairseq;print(fairseq.__version__)')"
fi
python scripts/ship_checkpoint.py --verify "$SHIP"
TEACHER=$SHIP/model.pt

for split in valid $TEST_SPLITS; do
    scored=$RESULTS/teacher/$split
    bench "$scored" "$WORK/data" "$split" teacher "$TEACHER"
    [ -e "$scored/variants.json" ] || python scripts/bleu_variants.py --hyp "$scored/teacher.beam$BEAM.hyp" \
        --ref "$REFERENCES/$split.en" --json "$scored/variants.json"
done
if ! grep -q '"scores"' "$SHIP/MANIFEST.json"; then
    # shellcheck disable=SC2086  # TEST_SPLITS: one argument per split
    scores=$(python -c 'import json,sys; print(json.dumps({s: json.load(open(f"{sys.argv[1]}/{s}/variants.json")) for s in sys.argv[2:]}))' \
             "$RESULTS/teacher" valid $TEST_SPLITS)
    python scripts/ship_checkpoint.py --update "$SHIP" --info "scores=$scores"
fi

relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-bin"
seq_inter_relabel "$TEACHER" "$WORK/data" "$WORK/seqkd-inter-bin"

for seed in $SEEDS; do
    SEED=$seed grid "$WORK/students/seed$seed" "$WORK/data" "$WORK/seqkd-bin" "$TEACHER" "$STUDENT_UPDATES" \
        "$SIZES" "$METHODS" --dropout "$STUDENT_DROPOUT" --save-interval-updates 500 --keep-interval-updates -1
    for split in $TEST_SPLITS; do
        SEED=$seed grid_bench "$RESULTS/kim_rush/$split/seed$seed" "$WORK/students/seed$seed" "$WORK/data" \
            "$split" "$TEACHER" "$SIZES" "$METHODS" "seed=$seed"
    done
done
for split in $TEST_SPLITS; do
    python scripts/seed_table.py "$RESULTS/kim_rush/$split" --baseline baseline >"$RESULTS/kim_rush/$split/summary.md"
done

first=${SEEDS%% *}
names=teacher checkpoints=("$TEACHER")
for arch in $SIZES; do
    names+=" $DEPLOY_METHOD/${arch#transformer_kd_}"
    checkpoints+=("$WORK/students/seed$first/${arch#transformer_kd_}/$DEPLOY_METHOD/checkpoint_best.pt")
done
BEAM=5 deploy "$RESULTS/deploy_beam5" "$WORK/data" test_2016_flickr "$names" "${checkpoints[@]}"
BEAM=1 deploy "$RESULTS/deploy_greedy" "$WORK/data" test_2016_flickr "$names" "${checkpoints[@]}"

log "done in $((SECONDS - START)) s (this run; finished steps were skipped)"
cat "$RESULTS/kim_rush/test_2016_flickr/summary.md"
