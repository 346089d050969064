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
flags=(--oversubscribe --bind-to none)
[ "$(id -u)" -ne 0 ] || flags+=(--allow-run-as-root)
modes=("sync|--set parallel.ps_mode=sync"
    "async k=0|--set parallel.ps_mode=async --set parallel.staleness=0"
    "async k=2|--set parallel.ps_mode=async --set parallel.staleness=2"
    "async k=4|--set parallel.ps_mode=async --set parallel.staleness=4")
loads=("none|" "one worker 2x slower|1:2" "every worker jittery|all:3:0.3")

rate() {
    local slow=$1
    shift
    MPITRAIN_BENCH_SLOW=$slow mpirun "${flags[@]}" -x MPITRAIN_BENCH_SLOW \
        -np "$np" build/mpitrain train "$ini" --set parallel.sync=ps \
        --set train.max_steps="$steps" --set train.epochs=100 \
        --set run.dir=/tmp/mpitrain-bench-async --set run.progress=none \
        --set data.test= --set data.validation=0 "$@" 2>&1 |
        sed -n 's/^trained .* \([0-9]*\) samples\/s.*/\1/p'
}

build/mpitrain --version
grep -m1 'model name' /proc/cpuinfo
echo "$ini, $np ranks (colocated servers), $steps steps, best of $rounds"
echo
printf '| load | mode | samples/s | vs sync |\n| --- | --- | ---: | ---: |\n'
for l in "${loads[@]}"; do
    declare -A best=()
    for ((r = 0; r < rounds; r++)); do
        for m in "${modes[@]}"; do
            name=${m%%|*}
            # shellcheck disable=SC2086
            v=$(rate "${l#*|}" ${m#*|})
            v=${v:-0}
            if [ -z "${best[$name]:-}" ] || [ "$v" -gt "${best[$name]}" ]; then
                best[$name]=$v
            fi
        done
    done
    for m in "${modes[@]}"; do
        name=${m%%|*}
        printf '| %s | %s | %d | %s |\n' "${l%%|*}" "$name" "${best[$name]}" \
            "$(awk -v a="${best[$name]}" -v b="${best[sync]}" \
                'BEGIN { printf "%.2fx", b ? a / b : 0 }')"
    done
    unset best
done
