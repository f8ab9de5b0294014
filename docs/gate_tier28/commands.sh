source .venv/bin/activate
set -euo pipefail
RECIPE=gate_fast
source recipes/lib.sh
W=work/quickstart; R=$W/kim_rush/seed1; T=models/teacher-deen/model.pt; A=transformer_kd_small_d2
init=$(student_init "$R" "$T" "$A")
export SEED=1
# shellcheck disable=SC2086
student hybrid_kd "$R/small_d2/hybrid_kd_lr50" "$W/data" "$A" 60 "$T" "$W/seqkd-bin" $init --gate-lr-scale 50
# shellcheck disable=SC2086
student hybrid_kd_norm "$R/small_d2/hybrid_kd_norm_lr50" "$W/data" "$A" 60 "$T" "$W/seqkd-bin" $init --gate-lr-scale 50
names="method=baseline,size=small_d2 method=hybrid_kd,size=small_d2 method=hybrid_kd_norm,size=small_d2 method=hybrid_kd_lr50,size=small_d2 method=hybrid_kd_norm_lr50,size=small_d2"
BENCH_GREEDY=0 BASELINE=baseline/small_d2 bench results/gate_tier28 "$W/data" test_tech "$names" \
    $R/small_d2/{baseline,hybrid_kd,hybrid_kd_norm,hybrid_kd_lr50,hybrid_kd_norm_lr50}/checkpoint_best.pt
