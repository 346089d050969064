#!/usr/bin/env bash
# Samples/s of pipeline training against data parallel at the same rank
# count, same run: data parallel, a pipeline of N stages (1f1b and zb,
# keeping activations, and 1f1b recomputing them: [parallel] recompute),
# and at 4 ranks a 2 x 2 grid (2 stages x 2 replicas), on LeNet-5 and
# the deep MLP of examples/ (8 dense layers of 1024). Each configuration
# runs `rounds` times, alternating, and the best is kept.
#
#   ./quickstart.sh            # builds build/ and data/
#   bench/pipeline_train.sh [steps] [rounds] [rank counts]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-100}
rounds=${2:-2}
nps=${3:-2 4}
. bench/lib.sh
export MPITRAIN_BENCH_SLOW=""
bench_machine
echo "steps $steps, best of $rounds, micro_batches 8"
for ini in examples/lenet5-fashion.ini examples/deep-mlp-pipeline.ini; do
    batch=$(sed -n 's/^batch *= *//p' "$ini")
    echo
    echo "$ini (batch $batch)"
    printf '| ranks | layout | samples/s | vs data parallel |\n'
    printf '| ---: | --- | ---: | ---: |\n'
    for np in $nps; do
        modes=("data parallel|--set parallel.stages=1"
            "$np stages, 1f1b|--set parallel.stages=$np --set parallel.schedule=1f1b"
            "$np stages, zb|--set parallel.stages=$np --set parallel.schedule=zb"
            "$np stages, 1f1b recomputing|--set parallel.stages=$np --set parallel.schedule=1f1b --set parallel.recompute=true")
        [ "$np" -eq 4 ] && modes+=("2 stages x 2 replicas, 1f1b|--set parallel.stages=2"
            "2 stages x 2 replicas, ps|--set parallel.stages=2 --set parallel.sync=ps")
        declare -A best=()
        for ((r = 0; r < rounds; r++)); do
            for m in "${modes[@]}"; do
                # shellcheck disable=SC2086
                v=$(bench_rate "$np" "$ini" "$steps" \
                    --set parallel.micro_batches=8 ${m#*|})
                keep_best "${m%%|*}" "$v"
            done
        done
        dp=${best["data parallel"]}
        for m in "${modes[@]}"; do
            name=${m%%|*}
            printf '| %d | %s | %d | %s |\n' "$np" "$name" "${best[$name]}" \
                "$(ratio_of "${best[$name]}" "$dp")"
        done
        unset best
    done
done
