#!/usr/bin/env bash
# The asynchronous parameter server against the synchronous one, same
# run: samples/s of ps_mode = sync and async with staleness 0, 2 and 4,
# with every worker at full speed, with one worker slowed down on every
# step (MPITRAIN_BENCH_SLOW=1:2: twice as slow), and with every worker
# jittering on its own (all:3:0.3: 3x as slow on a random 30% of its
# steps). Colocated servers, LeNet-5 of examples/, batch 64.
#
#   ./quickstart.sh          # builds build/ and data/
#   bench/ps_async.sh [steps] [rounds] [ranks]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
rounds=${2:-2}
np=${3:-2}
ini=${INI:-examples/lenet5-fashion.ini}
. bench/lib.sh
modes=("sync|--set parallel.ps_mode=sync"
    "async k=0|--set parallel.ps_mode=async --set parallel.staleness=0"
    "async k=2|--set parallel.ps_mode=async --set parallel.staleness=2"
    "async k=4|--set parallel.ps_mode=async --set parallel.staleness=4")
loads=("none|" "one worker 2x slower|1:2" "every worker jittery|all:3:0.3")

bench_machine
echo "$ini, $np ranks (colocated servers), $steps steps, best of $rounds"
echo
printf '| load | mode | samples/s | vs sync |\n| --- | --- | ---: | ---: |\n'
for l in "${loads[@]}"; do
    declare -A best=()
    for ((r = 0; r < rounds; r++)); do
        for m in "${modes[@]}"; do
            name=${m%%|*}
            # shellcheck disable=SC2086
            v=$(MPITRAIN_BENCH_SLOW=${l#*|} bench_rate "$np" "$ini" "$steps" \
                --set parallel.sync=ps ${m#*|})
            keep_best "$name" "$v"
        done
    done
    for m in "${modes[@]}"; do
        name=${m%%|*}
        printf '| %s | %s | %d | %s |\n' "${l%%|*}" "$name" "${best[$name]}" \
            "$(ratio_of "${best[$name]}" "${best[sync]}")"
    done
    unset best
done
