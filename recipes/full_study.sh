#!/usr/bin/env bash
# The whole study, for several seeds: student size, text complexity, decoding. Hours to days on
# a CPU — run it on a GPU machine if you have one (every step uses CUDA when torch sees it).
#
#   SEEDS="1 2 3" bash recipes/full_study.sh
#
# Each seed gets its own WORK (work/study-seedN) and RESULTS (results/*/seedN); every step skips
# finished outputs, so a rerun resumes. All knobs of the three recipes apply.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
: "${SEEDS:=1 2 3}"
for seed in $SEEDS; do
    export SEED=$seed WORK=work/study-seed$seed
    RESULTS=results/student_size/seed$seed bash "$here/student_size.sh"
    RESULTS=results/text_complexity/seed$seed bash "$here/text_complexity.sh"
    RESULTS=results/decoding/seed$seed bash "$here/decoding.sh"
done
