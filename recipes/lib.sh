# shellcheck shell=bash
# recipes/lib.sh — the steps every recipe shares. Source it; do not run it.
#
# Every step writes into its own directory and skips itself when that directory holds DONE
# (training) or its output file (data, relabel, bench): rerunning a recipe resumes it. An
# interrupted training resumes from its checkpoint_last.pt (fairseq's default).
#
# What the names mean (a student method, a Seq-KD data variant, a grid's folders and bench
# names) is not decided here: kd_nmt/recipes/ holds it, tested, and scripts/recipe_plan.py answers
# it; these functions ask, then chain the commands and skip what is done.
#
# Knobs (environment): SEED (1), THREADS (2: torch CPU threads for decoding), MAX_TOKENS (4096),
# LR (1e-3), WARMUP (200), BEAM (5), MONO_FILE (raw German text for +monoN, default: python -m
# data.monolingual's), BACKWARD (B.pt: +filter also drops the worst FILTER_DROP (0.05) backward
# scores). Read by kd_nmt/recipes (each module's KNOBS): DIVERGENCE (fkl), SELECT_RATE (0.5),
# ON_POLICY (0.5), CACHE_TOPK (0), CACHE_MODE (topk-tail) in methods.py; the Seq-KD data of
# seq_kd and word_seq in the recipes that call with_seqkd_knobs, NBEST=N, MBR=chrf|bleu, MONO=N,
# FILTER=1, in variants.py; STUDENT_INIT (1), INIT_LR (5e-4), INIT_WARMUP (30) in grid.py.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# a mistyped knob (STUDENT_UPDATE=300) stops the recipe here with one line instead of being ignored
python "$REPO/scripts/check_knobs.py" || exit 2
: "${SEED:=1}" "${THREADS:=2}" "${MAX_TOKENS:=4096}" "${LR:=1e-3}" "${WARMUP:=200}" "${BEAM:=5}"
# the knobs kd_nmt/recipes reads from the environment: exported, so that a recipe's own
# assignment (NBEST=4 after sourcing this file) reaches scripts/recipe_plan.py as well
PLAN_KNOBS=$(python "$REPO/scripts/recipe_plan.py" knobs) || exit 2
mapfile -t PLAN_KNOBS <<<"$PLAN_KNOBS"
export "${PLAN_KNOBS[@]}"
DEVICE_ARGS=$(python -c "import torch; print('' if torch.cuda.is_available() else '--cpu')")
# PRECISION=auto (default): bf16 autocast where the CPU multiplies bfloat16 natively (AVX-512 BF16,
# AMX; kd_nmt/precision.py), float32 elsewhere; PRECISION=bf16 / fp32 force one
: "${PRECISION:=auto}"
case $PRECISION in
    bf16) PRECISION_ARGS=--bf16 ;;
    fp32) PRECISION_ARGS= ;;
    auto) PRECISION_ARGS=$(python -c "from kd_nmt.precision import bf16_supported; print('--bf16' if bf16_supported() else '')" 2>/dev/null) ;;
    *) echo "PRECISION must be auto, bf16 or fp32 (got $PRECISION)" >&2; exit 2 ;;
esac

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${RECIPE:-recipe}" "$*" >&2; }

# corpus DIR MAX_TRAIN VOCAB [NOISE]: the de-en corpus from Debian packages, sentencepiece'd and
# binarized into DIR/bin (data/prepare.py; NOISE like dropout:0.1 noises the train source);
# SPM_MODEL / SRCDICT (a shipped teacher's) reuse a sentencepiece model and joined dictionary.
# CORPUS=RAW_DIR (absolute, or relative to the repository): the user's raw corpus instead,
# train.{de,en} valid.{de,en} test*.{de,en}, checked and prepared by scripts/prepare_corpus.py
corpus() {
    local dir=$1 max_train=$2 vocab=$3 noise=${4:-} raw=$REPO/data/corpus/deen
    local prepare=(python -m data.prepare)
    if [ -n "${CORPUS:-}" ]; then
        raw=$CORPUS
        prepare=(python "$REPO/scripts/prepare_corpus.py")
    else
        python -m data.build_corpus >&2
    fi
    if [ ! -e "$dir/bin/dict.en.txt" ]; then
        log "prepare $dir from $raw (train $max_train, vocab $vocab${noise:+, noise $noise})"
        "${prepare[@]}" --raw "$raw" --out "$dir" --vocab "$vocab" \
            --max-train "$max_train" --seed "$SEED" ${noise:+--noise "$noise"} \
            ${SPM_MODEL:+--spm-model "$SPM_MODEL"} ${SRCDICT:+--srcdict "$SRCDICT"} >&2
    fi
}

# done_training SAVE_DIR UPDATES: true when SAVE_DIR/DONE records UPDATES or more (or no count)
done_training() {
    [ -e "$1/DONE" ] || return 1
    local reached
    reached=$(sed -n 's/^updates //p' "$1/DONE")
    [ -z "$reached" ] || [ "$2" -le "$reached" ]
}

# train SAVE_DIR DATA_BIN ARCH UPDATES [fairseq-train options...]: one model, label-smoothed,
# Adam + inverse-sqrt; logs to SAVE_DIR/train.log, wall time and updates to SAVE_DIR/DONE
# (a larger UPDATES later continues the run)
train() {
    local save=$1 data=$2 arch=$3 updates=$4 earlier=
    shift 4
    if [ -e "$save/DONE" ]; then
        # DONE records the update count it reached: asking for more continues from checkpoint_last.pt
        if done_training "$save" "$updates"; then log "skip $save (done)"; return; fi
        local reached
        reached=$(sed -n 's/^updates //p' "$save/DONE")
        log "continue $save from $reached to $updates updates"
        earlier=$(sed -n 's/^wall_seconds //p' "$save/DONE")
        rm "$save/DONE"
    fi
    mkdir -p "$save"
    log "train $save ($arch, $updates updates)"
    # wall_seconds in DONE: every run's time so far (fairseq's own wall= restarts at 0 on resume)
    local start=$((SECONDS - ${earlier:-0}))
    # shellcheck disable=SC2086  # DEVICE_ARGS / PRECISION_ARGS: zero or one flag each
    kd-nmt train "$data" --arch "$arch" --label-smoothing 0.1 \
        --optimizer adam --adam-betas '(0.9, 0.98)' --lr "$LR" --lr-scheduler inverse_sqrt \
        --warmup-updates "$WARMUP" --max-tokens "$MAX_TOKENS" --max-update "$updates" \
        --seed "$SEED" $DEVICE_ARGS $PRECISION_ARGS --num-workers 0 --no-epoch-checkpoints \
        --log-format simple --log-interval 25 --no-progress-bar \
        --save-dir "$save" "$@" >>"$save/train.log" 2>&1 \
        || { log "FAILED: see $save/train.log"; tail -n 20 "$save/train.log" >&2; return 1; }
    printf 'wall_seconds %s\nupdates %s\n' "$((SECONDS - start))" "$updates" >"$save/DONE"
}

# teacher_and_data WORK MAX_TRAIN: exports TEACHER and prepares WORK/data (the first MAX_TRAIN
# training pairs, 0 = all). By default the shipped teacher TEACHER_DIR (models/teacher-deen), its
# sha256 verified, with the corpus prepared by its sentencepiece model and dictionary;
# TRAIN_TEACHER=1 trains a teacher in WORK/teacher instead (corpus_and_teacher with the recipe's
# VOCAB, TEACHER_ARCH, TEACHER_UPDATES)
teacher_and_data() {
    local work=$1 max_train=$2
    if [ -n "${TRAIN_TEACHER:-}" ]; then
        corpus_and_teacher "$work" "$max_train" "${VOCAB:?}" "${TEACHER_ARCH:?}" "${TEACHER_UPDATES:?}"
        return
    fi
    : "${TEACHER_DIR:=models/teacher-deen}"
    python scripts/ship_checkpoint.py --verify "$TEACHER_DIR"
    log "teacher: $TEACHER_DIR (sha256 verified)"
    SPM_MODEL=$TEACHER_DIR/spm.model SRCDICT=$TEACHER_DIR/dict.en.txt corpus "$work/data" "$max_train" 0
    TEACHER=$TEACHER_DIR/model.pt  # read by the calling recipe
    export TEACHER
}

# corpus_and_teacher WORK MAX_TRAIN VOCAB ARCH UPDATES: the corpus in WORK/data and a plain
# translation teacher (label-smoothed CE) in WORK/teacher; sets TEACHER to its best checkpoint
corpus_and_teacher() {
    corpus "$1/data" "$2" "$3"
    train "$1/teacher" "$1/data/bin" "$4" "$5" --task translation --criterion label_smoothed_cross_entropy
    TEACHER=$1/teacher/checkpoint_best.pt  # read by the calling recipe
    export TEACHER
}

# plan ARGS...: scripts/recipe_plan.py's answer (kd_nmt/recipes); its error line already printed
plan() { python "$REPO/scripts/recipe_plan.py" "$@"; }

# student METHOD SAVE_DIR DATA_DIR ARCH UPDATES TEACHER SEQKD_BIN [more options]: one KD method
# (kd_nmt/recipes/methods.py: the data-bin it trains on, its options, its teacher). With
# CACHE_TOPK=k a word-level method learns from a teacher cache of its own data-bin, built here
# first (kd-nmt cache-teacher, once per data-bin: it resumes and skips finished chunks; nothing is
# built for a finished student).
student() {
    local method=$1 save=$2 updates=$5 answer args cache
    local where=(--save "$2" --data "$3" --arch "$4" --updates "$5" --teacher "$6" --seqkd "$7")
    shift 7
    answer=$(plan student "$method" "${where[@]}") || return 2
    mapfile -t args <<<"$answer"
    if ! done_training "$save" "$updates"; then
        answer=$(plan teacher-cache "$method" "${where[@]}") || return 2
        if [ -n "$answer" ]; then
            mapfile -t cache <<<"$answer"
            log "teacher cache: kd-nmt cache-teacher ${cache[*]} (finished chunks are skipped)"
            kd-nmt cache-teacher "${cache[@]}" --no-progress >&2 || return 1
        fi
    fi
    train "${args[@]}" "$@"
}

# relabel TEACHER DATA_DIR OUT_BIN [kd-nmt relabel options]: the teacher's beam search over the
# train source (CTranslate2 int8; outputs at most 1.2 x source + 10 tokens), binarized with the
# student's dictionaries into OUT_BIN
relabel() {
    local teacher=$1 data=$2 out=$3 text
    shift 3
    if [ -e "$out/dict.en.txt" ]; then log "skip $out (done)"; return; fi
    text=$(plan relabel-output "$out") || return 2  # OUT_BIN without -bin, .train.en
    log "relabel the train source with $teacher -> $out"
    kd-nmt relabel --teacher "$teacher" --data-bin "$data/bin" --input "$data/tok/train.de" \
        --output "$text" --beam "$BEAM" --threads "$THREADS" \
        --max-len-a 1.2 --max-len-b 10 \
        --backend ctranslate2 --binarize-to "$out" "$@"
}

# bench OUT DATA_DIR SPLIT NAMES CHECKPOINTS...: BLEU/chrF (greedy unless BENCH_GREEDY=0, and
# beam), speed, size (outputs at most 1.2 x source + 10 tokens: an undertrained student would
# babble 200 tokens a line); the bootstrap baseline is $BASELINE (a name) or else the first
# checkpoint. NAMES: space-separated, one per checkpoint (see kd-nmt bench --help). The references
# are DATA_DIR/raw/SPLIT.en (punctuation-normalised like the source) unless REFERENCES=DIR names a
# folder of the corpus as published (DIR/SPLIT.en: the standard references of a benchmark).
bench() {
    local out=$1 data=$2 split=$3 names=$4 greedy=()
    shift 4
    [ "${BENCH_GREEDY:-1}" != 0 ] || greedy=(--no-greedy)
    log "bench $split -> $out (kd-nmt bench --skip-done: skipped when done by this same command)"
    # shellcheck disable=SC2086
    kd-nmt bench --checkpoint "$@" --data-bin "$data/bin" --split "$split" \
        --spm "$data/spm.model" --reference "${REFERENCES:-$data/raw}/$split.en" --beam "$BEAM" \
        --max-len-a 1.2 --max-len-b 10 \
        --threads "$THREADS" --names $names ${BASELINE:+--baseline "$BASELINE"} \
        ${BASELINE_PER:+--baseline-per "$BASELINE_PER"} --out "$out" --skip-done "${greedy[@]}"
}

# deploy OUT DATA_DIR SPLIT NAMES CHECKPOINTS...: the deployment table (kd-nmt bench --deploy:
# CTranslate2 int8 and fairseq float32 on one thread — BLEU/chrF, sentences/s and words/s,
# latency at batch 1 over the first DEPLOY_LATENCY_LINES (25), peak RSS, model size, a
# speed-quality plot) on the first DEPLOY_LINES (100; 0 = all) raw lines of SPLIT
deploy() {
    local out=$1 data=$2 split=$3 names=$4 lines=${DEPLOY_LINES:-100}
    shift 4
    if [ -e "$out/deploy.md" ]; then log "skip $out (done)"; return; fi
    log "deployment table on ${lines/#0/all} lines of $split -> $out"
    local src=$data/raw/$split.de ref=${REFERENCES:-$data/raw}/$split.en
    mkdir -p "$out"
    if [ "$lines" -gt 0 ]; then
        head -n "$lines" "$src" >"$out/input.de" && src=$out/input.de
        head -n "$lines" "$ref" >"$out/reference.en" && ref=$out/reference.en
    fi
    # shellcheck disable=SC2086
    kd-nmt bench --deploy --checkpoint "$@" --names $names --data-bin "$data/bin" \
        --spm "$data/spm.model" --input "$src" --reference "$ref" --source-lang de --target-lang en \
        --beam "$BEAM" --max-len-a 1.2 --max-len-b 10 --threads 1 --latency-lines "${DEPLOY_LATENCY_LINES:-25}" \
        --no-progress --out "$out"
}

# seq_inter_relabel TEACHER DATA_DIR OUT_BIN: Seq-Inter — the teacher's 5-best, per line the
# hypothesis with the best sentence BLEU against the gold target
seq_inter_relabel() {
    relabel "$1" "$2" "$3" --nbest 5 --reference "$2/tok/train.en" --select-by-reference bleu
}

# student_init ROOT TEACHER ARCH: for a shrunk-teacher size (transformer_kd_small_dN: the teacher's
# encoder, N decoder layers; _d3 keeps all three, a student as big as the shipped teacher) the
# options that start every method's student from the teacher's own layers
# (scripts/shrink_teacher.py -> ROOT/init/ARCH.pt, fine-tuned with INIT_LR 5e-4 and INIT_WARMUP 30
# updates); nothing for other sizes or with STUDENT_INIT=0 (random weights): kd_nmt/recipes/grid.py
student_init() {
    local root=$1 teacher=$2 arch=$3 answer layers init options
    answer=$(plan init "$arch" --root "$root") || return 2
    eval "$answer"  # layers, init, options
    [ -n "$layers" ] || return 0
    if [ ! -e "$init" ]; then
        python scripts/shrink_teacher.py --teacher "$teacher" --decoder-layers "spread:$layers" \
            --out "$init" >&2
    fi
    echo "${options[*]}"
}

# grid ROOT DATA_DIR SEQKD_BIN TEACHER UPDATES "ARCHS" "METHODS" [more options]: every (arch,
# method) student, trained into ROOT/<size>/<method> (size = the arch name without
# transformer_kd_); students of a shrunk-teacher size start from the teacher's layers
# (student_init); the more options go to every student
grid() {
    local root=$1 data=$2 seqkd=$3 teacher=$4 updates=$5 archs=$6 methods=$7 arch method init size
    shift 7
    for arch in $archs; do
        init=$(student_init "$root" "$teacher" "$arch")
        size=$(plan size "$arch") || return 2
        for method in $methods; do
            # shellcheck disable=SC2086  # init: options, split on spaces
            student "$method" "$root/$size/$method" "$data" "$arch" "$updates" \
                "$teacher" "$seqkd" $init "$@"
        done
    done
}

# grid_bench OUT ROOT DATA_DIR SPLIT TEACHER "ARCHS" "METHODS" [TAG]: bench the teacher and every
# student of a grid (columns method, size and, with TAG=key=value, one more); p-values of each
# size against its own baseline student (the teacher against the first size's)
grid_bench() {
    local out=$1 data=$3 split=$4 answer names checkpoints baseline
    answer=$(plan bench-grid --root "$2" --teacher "$5" --archs "$6" --methods "$7" --tag "${8:-}") || return 2
    eval "$answer"  # names, checkpoints, baseline (kd_nmt/recipes/grid.py)
    BASELINE=$baseline BASELINE_PER=size bench "$out" "$data" "$split" "$names" "${checkpoints[@]}"
}

# backward_model SAVE_DIR DATA_BIN ARCH UPDATES [fairseq-train options...]: an en->de model on the
# de-en data-bin (its dictionaries, the languages swapped), trained like a teacher (label-smoothed
# CE); kd-nmt filter --backward-model scores log P(source | teacher output) with it. Sets BACKWARD.
backward_model() {
    train "$@" --task translation --source-lang en --target-lang de \
        --criterion label_smoothed_cross_entropy
    BACKWARD=$1/checkpoint_best.pt  # read by seqkd_data's filter step
    export BACKWARD
}

# ---- Seq-KD data variants ------------------------------------------------------------------
# A variant is a method name with +parts: seq_kd+filter, word_seq+nbest4+mono3000, ... The parts
# (+nbestN, +mbrchrf, +mbrbleu, +monoN, +filter), their files and the data-bin
# ${SEQKD_BIN%-bin}+parts-bin: kd_nmt/recipes/variants.py. hybrid_kd always takes the plain
# SEQKD_BIN: it pairs line i of the Seq-KD data with gold line i.

# seqkd_suffix: the +parts the knobs NBEST (> 1), MBR, MONO (> 0) and FILTER (1) ask for
seqkd_suffix() {
    local answer
    answer=$(plan suffix) || return 2
    printf '%s' "$answer"
}

# with_seqkd_knobs "METHODS": the methods (checked: a mistyped one stops the recipe here), seq_kd
# and word_seq turned into the knobs' variant
with_seqkd_knobs() {
    local answer
    answer=$(plan with-knobs "$1") || return 2
    printf '%s' "$answer"
}

# seqkd_variants TEACHER DATA_DIR SEQKD_BIN "METHODS": the data-bin of every variant in METHODS
seqkd_variants() {
    local answer parts
    answer=$(plan variants "$4") || return 2
    [ -n "$answer" ] || return 0
    mapfile -t parts <<<"$answer"
    for answer in "${parts[@]}"; do seqkd_data "$1" "$2" "$3" "$answer"; done
}

# relabel_text TEACHER DATA_DIR INPUT OUTPUT [kd-nmt relabel options]: the teacher's translation
# of INPUT (token space) as text, decoded as relabel() does; skipped when OUTPUT exists (relabel
# writes it last), resumed from OUTPUT.chunks/ after an interruption
relabel_text() {
    local teacher=$1 data=$2 input=$3 output=$4
    shift 4
    if [ -e "$output" ]; then log "skip $output (done)"; return; fi
    log "relabel $input -> $output $*"
    kd-nmt relabel --teacher "$teacher" --data-bin "$data/bin" --input "$input" --output "$output" \
        --beam "$BEAM" --threads "$THREADS" --max-len-a 1.2 --max-len-b 10 --backend ctranslate2 \
        --no-progress "$@"
}

# mono_source DATA_DIR N OUT: OUT (DATA_DIR/tok/monoN.de), the first N lines of MONO_FILE (default:
# built by python -m data.monolingual) normalised and sentencepiece'd as the corpus
mono_source() {
    local data=$1 n=$2 out=$3 file=${MONO_FILE:-}
    if [ -e "$out" ]; then return; fi
    if [ -z "$file" ]; then
        python -m data.monolingual >&2
        file=$REPO/data/corpus/mono-de/mono.de
    fi
    python "$REPO/scripts/encode_text.py" --spm "$data/spm.model" --lang de --max-lines "$n" "$file" "$out"
}

# seqkd_data TEACHER DATA_DIR SEQKD_BIN +PARTS: one variant's data-bin (its files and options:
# kd_nmt/recipes/variants.py). The 1-best text of relabel() (SEQKD_BIN without -bin, .train.en)
# is reused; every step skips what exists.
seqkd_data() {
    local teacher=$1 data=$2 answer i src tgt
    local dest decode mono mono_input inputs targets sources joined_source joined_target filter
    local kept_source kept_target repeat extra_lines
    answer=$(plan variant "$4" --seqkd "$3" --data "$data") || return 2
    eval "$answer"
    if [ -e "$dest/dict.en.txt" ]; then log "skip $dest (done)"; return; fi
    # the teacher's text for the train source (and the monolingual one), decoded as the parts ask
    if [ -n "$mono_input" ]; then mono_source "$data" "$mono" "$mono_input"; fi
    for i in "${!inputs[@]}"; do
        relabel_text "$teacher" "$data" "${inputs[i]}" "${targets[i]}" "${decode[@]}"
    done
    src=${sources[0]} tgt=${targets[0]}
    if [ -n "$joined_source" ]; then  # one aligned pair: the train lines, then the monolingual ones
        cat "${sources[@]}" >"$joined_source.tmp" && mv "$joined_source.tmp" "$joined_source"
        cat "${targets[@]}" >"$joined_target.tmp" && mv "$joined_target.tmp" "$joined_target"
        src=$joined_source tgt=$joined_target
    fi
    if [ "$filter" = 1 ]; then
        log "filter $tgt -> $dest${BACKWARD:+ (backward model $BACKWARD)}"
        kd-nmt filter --source "$src" --hypothesis "$tgt" \
            --output-source "$kept_source" --output-target "$kept_target" \
            --drop-empty --max-repeats 3 --length-ratio 0.5 2.5 --dedup \
            ${BACKWARD:+--backward-model "$BACKWARD" --drop-fraction "${FILTER_DROP:-0.05}"} \
            --data-bin "$data/bin" --threads "$THREADS" --no-progress --binarize-to "$dest"
    else
        kd-nmt relabel binarize --data-bin "$data/bin" --source "$src" --target "$tgt" \
            --repeat "$repeat" --extra-lines "$extra_lines" --workers 1 --destdir "$dest"
    fi
}
