#!/usr/bin/env bash
# Data parallel across emulated hosts (tests/cluster/: network namespaces,
# TCP only, each link shaped with tc tbf), one rank a host, same run:
# samples/s of every sync mode against one rank, and the ideal,
# max(compute, wire): compute is one rank's rate times the ranks the
# machine's cores can run at once, wire the gradient bytes a rank sends
# per step over its link (2 (P - 1) / P of the gradients for allreduce,
# ring and a colocated ps; half that with bf16). Beside them the same
# ranks on one host over shared memory, a peer whose compute is as
# crowded as the emulated hosts' (they share this machine's cores). Root.
#
#   ./quickstart.sh                       # builds build/ and data/
#   bench/cluster.sh [steps] [rounds] ["HOSTS RATE" ...]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-400}
rounds=${2:-2}
shift 2 || true
[ $# -gt 0 ] || set -- "2 1gbit" "2 10gbit" "4 1gbit"
. bench/lib.sh
[ "$(id -u)" -eq 0 ] || { echo "bench/cluster.sh: needs root" >&2; exit 1; }
trap 'bash tests/cluster/down.sh' EXIT
small="--set parallel.bucket_mb=0.05"
modes=("allreduce|--set parallel.sync=allreduce"
    "allreduce, 0.05 MB buckets|$small"
    "allreduce, 0.05 MB buckets, progress thread|$small --set parallel.progress_thread=on"
    "allreduce, 0.05 MB buckets, deferred update|$small --set parallel.defer_update=true"
    "allreduce, overlap off|--set parallel.overlap=false"
    "ring|--set parallel.sync=ring"
    "ring + bf16|--set parallel.sync=ring --set parallel.compress=bf16"
    "ps colocated|--set parallel.sync=ps")

bench_machine
echo "steps $steps, best of $rounds, batch 64, one rank a host"
for layout in "$@"; do
    read -r hosts rate <<< "$layout"
    bash tests/cluster/up.sh "$hosts" "$rate" >/dev/null
    bits=$(echo "$rate" | sed 's/gbit/000000000/; s/mbit/000000/')
    cores=$(nproc)
    at_once=$((hosts < cores ? hosts : cores))
    for ini in examples/lenet5-fashion.ini examples/mlp-fashion.ini; do
        params=$(build/mpitrain train "$ini" --dry-run 2>/dev/null |
            sed -n 's/.*parameters \[0, \([0-9]*\)).*/\1/p' | head -1)
        declare -A best=()
        for ((r = 0; r < rounds; r++)); do
            keep_best one "$(bench_rate 1 "$ini" "$steps")"
            # The same ranks on one host, over shared memory: what the
            # network costs, on cores that run them as they run here.
            keep_best shm "$(bench_rate "$hosts" "$ini" "$steps" \
                --set parallel.shared_memory=false)"
            for m in "${modes[@]}"; do
                # shellcheck disable=SC2086
                v=$(BENCH_MPIRUN=tests/cluster/mpirun.sh \
                    MPITRAIN_CLUSTER_HOSTS=$hosts \
                    bench_rate "$hosts" "$ini" "$steps" ${m#*|})
                keep_best "${m%%|*}" "$v"
            done
        done
        echo
        echo "$ini, $hosts hosts at $rate: $params parameters" \
            "($((params * 4 / 1024)) KiB of gradients); one rank" \
            "${best[one]} samples/s, $hosts on shared memory ${best[shm]};" \
            "$cores cores run $at_once ranks at once"
        printf '| mode | samples/s | vs one rank | vs shared memory | ideal | of ideal |\n'
        printf '| --- | ---: | ---: | ---: | ---: | ---: |\n'
        for m in "${modes[@]}"; do
            name=${m%%|*}
            bytes=$((params * 4 * 2 * (hosts - 1) / hosts))
            case $name in *bf16*) bytes=$((bytes / 2)) ;; esac
            ideal=$(awk -v one="${best[one]}" -v p="$at_once" -v b="$bytes" \
                -v bits="$bits" 'BEGIN {
                    compute = 64 / (one * p); wire = b * 8 / bits
                    printf "%d", 64 / (compute > wire ? compute : wire) }')
            printf '| %s | %d | %s | %s | %d | %s |\n' "$name" \
                "${best[$name]}" "$(ratio_of "${best[$name]}" "${best[one]}")" \
                "$(ratio_of "${best[$name]}" "${best[shm]}")" "$ideal" \
                "$(ratio_of "${best[$name]}" "$ideal")"
        done
        unset best
    done
done
