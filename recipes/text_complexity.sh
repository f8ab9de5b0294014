#!/usr/bin/env bash
# Study axis 2 — text complexity: noise injected into the training *source* (word dropout, local
# word shuffle in a window of 3, random word replacement; data/noise.py, seeded per line) at
# several rates. The teacher is the clean one of student_size.sh (same WORK); it relabels each
# noisy source. Dictionaries and sentencepiece model are the clean data's, so every model shares them.
#
#   bash recipes/text_complexity.sh
#
# Output: RESULTS/<noise>-<rate>/bench.{csv,md}, RESULTS/figures-<noise>, RESULTS/summary.md (every
# cell so far: scripts/axis_table.py, BLEU against each cell's baseline, output length ratio).
# Knobs: NOISES (dropout shuffle replace), RATES (0.1 0.2 0.3; rate 0 is student_size.sh's clean
# run), ARCH (transformer_kd_tiny), METHODS (baseline word_kd seq_kd hybrid_kd), and
# student_size.sh's MAX_TRAIN VOCAB TEACHER_ARCH TEACHER_UPDATES STUDENT_UPDATES WORK.
set -euo pipefail
RECIPE=text_complexity
# shellcheck source=recipes/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
: "${MAX_TRAIN:=0}" "${VOCAB:=4000}" "${TEACHER_UPDATES:=3000}" "${STUDENT_UPDATES:=1500}"
: "${TEACHER_ARCH:=transformer_kd_small}" "${ARCH:=transformer_kd_tiny}"
: "${NOISES:=dropout shuffle replace}" "${RATES:=0.1 0.2 0.3}"
: "${METHODS:=baseline word_kd seq_kd hybrid_kd}"
: "${WORK:=work/study}" "${RESULTS:=results/text_complexity}"
START=$SECONDS
METHODS=$(with_seqkd_knobs "$METHODS")  # MONO / NBEST / FILTER / MBR: recipes/lib.sh

teacher_and_data "$WORK" "$MAX_TRAIN"

results=()
for noise in $NOISES; do
    for rate in $RATES; do
        dir=$WORK/noise/$noise-$rate
        if [ ! -e "$dir/data/bin/dict.en.txt" ]; then
            log "prepare $dir (noise $noise:$rate on the train source)"
            python -m data.prepare --raw "$REPO/data/corpus/deen" --out "$dir/data" \
                --max-train "$MAX_TRAIN" --seed "$SEED" --noise "$noise:$rate" \
                --spm-model "$WORK/data/spm.model" --srcdict "$WORK/data/bin/dict.de.txt" >&2
        fi
        relabel "$TEACHER" "$dir/data" "$dir/seqkd-bin"
        seqkd_variants "$TEACHER" "$dir/data" "$dir/seqkd-bin" "$METHODS"
        grid "$dir/students" "$dir/data" "$dir/seqkd-bin" "$TEACHER" "$STUDENT_UPDATES" "$ARCH" "$METHODS"
        grid_bench "$RESULTS/$noise-$rate" "$dir/students" "$dir/data" test_tech "$TEACHER" \
            "$ARCH" "$METHODS" "noise=$rate"
        results+=("$RESULTS/$noise-$rate")
    done
    kd-nmt plot --results "${results[@]}" --title "$noise" --out "$RESULTS/figures-$noise" >&2
    results=()
done
log "done in $((SECONDS - START)) s"
# every cell benched so far under RESULTS (earlier runs' too), one column each
cells=()
for dir in "$RESULTS"/*/; do
    [ ! -e "$dir/bench.csv" ] || cells+=("$(basename "$dir" | tr - ' ')=${dir%/}")
done
python scripts/axis_table.py "${cells[@]}" --length | tee "$RESULTS/summary.md"
