#!/usr/bin/env bash
# ASHA against the full grid on the same space, in the same run:
# examples/search-lenet5.ini (LeNet-5 on Fashion-MNIST, 12 points: lr x
# batch x dropout), every trial up to 9 epochs (cosine schedule over 9),
# asha with min_epochs 1 and eta 3 (rungs 1, 3, 9).
#   bash bench/search_asha.sh [NP]        (from the top of the tree)
# Prints, per method: wall seconds, epochs trained, the best validation
# accuracy and its trial, farm utilisation (busy rank-seconds over the
# run's rank-seconds, from the journal), then asha's ratios to the grid.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
np=${1:-2}
out=runs/bench-search
rm -rf "$out"
mkdir -p "$out"
bench_machine

# The example with [search] method and epochs replaced.
make_ini() { # NAME METHOD-LINES
    sed -e "/^method = /d" -e "s|^dir = runs/search-lenet5|dir = $out/$1|" \
        examples/search-lenet5.ini >"$out/$1.ini"
    printf '%b' "$2" >>"$out/$1.ini"
}
make_ini grid 'method = grid\nmax_epochs = 9\n'
make_ini asha 'method = asha\nmax_epochs = 9\nmin_epochs = 1\neta = 3\n'

declare -A secs res
for m in grid asha; do
    t0=$(date +%s.%N)
    mpirun "${bench_flags[@]}" -np "$np" build/mpitrain search "$out/$m.ini" \
        >"$out/$m.log" 2>&1
    secs[$m]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}')
    res[$m]=$(search_summary "$out/$m" "${secs[$m]}" "$np")
    read -r e acc trial util <<<"${res[$m]}"
    echo "$m: ${secs[$m]} s, $e epochs trained, best val_accuracy $acc" \
        "(trial $trial), utilisation $util ($np ranks)"
done
read -r ge gacc _ _ <<<"${res[grid]}"
read -r ae aacc _ _ <<<"${res[asha]}"
echo "asha/grid: epochs $(ratio_of "$ae" "$ge"), time" \
    "$(ratio_of "${secs[asha]}" "${secs[grid]}"), best accuracy" \
    "$(awk -v a="$aacc" -v g="$gacc" 'BEGIN{printf "%+.2f", (a-g)*100}')" \
    "points"
