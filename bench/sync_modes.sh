#!/usr/bin/env bash
# Samples/s of every gradient-synchronisation mode, same run, against
# sync = allreduce at the same rank count: allreduce, ring, ps colocated
# and ps with one dedicated server (which trains nothing, so it has one
# worker fewer), allreduce and ring with shard_optimizer and with
# shared_memory (one node: nothing sent), at 2, 3 and 4
# ranks, on LeNet-5 and the MLP of examples/, and one rank (the scaling
# column). Each configuration runs `rounds` times, alternating, and the
# best is kept. Prints the bytes each worker sends per step too.
#
#   ./quickstart.sh            # builds build/ and data/
#   bench/sync_modes.sh [steps] [rounds] [rank counts]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
rounds=${2:-2}
nps=${3:-2 3 4}
. bench/lib.sh
# The message rows with shared_memory = false (auto would take it).
msg="--set parallel.shared_memory=false"
modes=("allreduce|--set parallel.sync=allreduce $msg"
    "ring|--set parallel.sync=ring $msg"
    "ps colocated|--set parallel.sync=ps"
    "ps 1 server|--set parallel.sync=ps --set parallel.servers=1"
    "allreduce sharded|--set parallel.sync=allreduce --set parallel.shard_optimizer=true $msg"
    "ring sharded|--set parallel.sync=ring --set parallel.shard_optimizer=true $msg"
    "allreduce shm|--set parallel.sync=allreduce --set parallel.shared_memory=true"
    "ring shm|--set parallel.sync=ring --set parallel.shared_memory=true")

export MPITRAIN_BENCH_SLOW=""
bench_machine
echo "steps $steps, best of $rounds, batch 64"
for ini in examples/lenet5-fashion.ini examples/mlp-fashion.ini; do
    params=$(build/mpitrain train "$ini" --dry-run 2>/dev/null |
        sed -n 's/.*parameters \[0, \([0-9]*\)).*/\1/p' | head -1)
    echo
    echo "$ini: $params parameters ($((params * 4 / 1024)) KiB of gradients)"
    one=0
    for ((r = 0; r < rounds; r++)); do
        v=$(bench_rate 1 "$ini" "$steps")
        [ "$v" -le "$one" ] || one=$v
    done
    echo "1 rank: $one samples/s"
    printf '| ranks | mode | samples/s | vs allreduce | vs 1 rank | sent per worker per step |\n'
    printf '| ---: | --- | ---: | ---: | ---: | ---: |\n'
    for np in $nps; do
        declare -A best=()
        for ((r = 0; r < rounds; r++)); do
            for m in "${modes[@]}"; do
                name=${m%%|*}
                # shellcheck disable=SC2086
                v=$(bench_rate "$np" "$ini" "$steps" ${m#*|})
                keep_best "$name" "$v"
            done
        done
        for m in "${modes[@]}"; do
            name=${m%%|*}
            # What a worker sends per step, in KiB: a ring-allreduce
            # 2 (P - 1) / P of the gradients; a ps worker every piece
            # not its own (colocated keeps 1/P) plus, colocated, its
            # shard to each other worker.
            case $name in
            allreduce | ring | "ps colocated" | *sharded)
                kib=$((params * 4 * 2 * (np - 1) / np / 1024)) ;;
            "ps 1 server") kib=$((params * 4 / 1024)) ;;
            # One node: no message; each rank reads the others' blocks.
            *shm) kib=0 ;;
            esac
            ratio=$(ratio_of "${best[$name]}" "${best[allreduce]}")
            printf '| %d | %s | %d | %s | %s | %d KiB |\n' "$np" "$name" \
                "${best[$name]}" "$ratio" "$(ratio_of "${best[$name]}" "$one")" \
                "$kib"
        done
        unset best
    done
done
