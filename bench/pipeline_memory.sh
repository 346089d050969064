#!/bin/bash
# Peak memory a rank of a pipeline, by schedule, against data parallel at
# the same ranks, same run: examples/deep-mlp-pipeline.ini (8 dense layers
# of 1024, Adam) with a batch large enough for activations to matter.
# Each line: samples/s, rank 0's peak RSS, the most any rank had and
# which, and the samples of activations each stage keeps (--dry-run).
# Usage: bash bench/pipeline_memory.sh [STEPS] [BATCH] [M] ["2 4"]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
steps=${1:-6} batch=${2:-4096} M=${3:-16} counts=${4:-"2 4"}

train() {
    local np=$1
    shift
    mpirun "${bench_flags[@]}" -np "$np" build/mpitrain train \
        examples/deep-mlp-pipeline.ini --set train.max_steps="$steps" \
        --set train.epochs=100 --set run.dir=/tmp/mpitrain-bench \
        --set run.progress=none --set data.test= --set data.validation=0 \
        --set data.limit=$((4 * batch)) --set train.batch="$batch" "$@" 2>&1
}

# "samples/s rank0-MiB most-MiB most-rank" of a run
measure() {
    train "$@" | sed -n 's/^trained .* \([0-9]*\) samples\/s, peak RSS \([0-9]*\) MiB.*most RSS \([0-9]*\) MiB (rank \([0-9]*\)).*/\1 \2 \3 \4/p'
}

# the samples of activations each stage keeps, "a / b / ..."
held() {
    train "$@" --dry-run | sed -n 's/.*activations of \([0-9]*\) samples.*/\1/p' |
        paste -sd/ | sed 's|/| / |g'
}

bench_machine
echo "batch $batch, $M micro-batches, $steps steps"
echo
echo "| ranks | mode | samples/s | rank 0 peak RSS MiB | most MiB (rank) | activations kept a stage (samples) |"
echo "| ---: | --- | ---: | ---: | ---: | --- |"
for np in $counts; do
    read -r rate r0 most who <<<"$(measure "$np" --set parallel.stages=1)"
    echo "| $np | data parallel | $rate | $r0 | $most ($who) | $((batch / np)) |"
    for sch in gpipe 1f1b zb; do
        set -- --set parallel.stages="$np" --set parallel.micro_batches="$M" \
            --set parallel.schedule="$sch"
        read -r rate r0 most who <<<"$(measure "$np" "$@")"
        echo "| $np | $np stages, $sch | $rate | $r0 | $most ($who) | $(held "$np" "$@") |"
    done
done
