#!/usr/bin/env bash
# Farm utilisation with trials of uneven length: a random search of 24
# trials of the Fashion-MNIST MLP (examples/mlp-fashion.ini) whose epochs
# (1-6) and batch (32-256) vary, so trials last from about one second to ten.
#   bash bench/search_farm.sh [NP [RANKS_PER_TRIAL]]   (top of the tree)
# Prints wall seconds and utilisation: busy rank-seconds (each trial's
# seconds times its ranks) over the run's rank-seconds, start-up included.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
np=${1:-4}
export RPT=${2:-1}
out=runs/bench-farm-$np
rm -rf "$out"
mkdir -p "$out"
bench_machine
sed "s|^dir = runs/mlp-fashion|dir = $out/s|" examples/mlp-fashion.ini >"$out/s.ini"
cat >>"$out/s.ini" <<INI
[search]
method = random
trials = 24
seed = 3
ranks_per_trial = $RPT
train.epochs = int(1, 6)
train.batch = choice(32, 64, 128, 256)
optimizer.lr = loguniform(3e-4, 3e-3)
INI
t0=$(date +%s.%N)
mpirun "${bench_flags[@]}" -np "$np" build/mpitrain search "$out/s.ini" \
    --set data.test= >"$out/s.log" 2>&1
wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}')
read -r e acc trial util <<<"$(search_summary "$out/s" "$wall" "$np")"
echo "random search, 24 trials of 1-6 epochs on $np ranks ($RPT a trial):" \
    "$wall s, $e epochs, best val_accuracy $acc (trial $trial)," \
    "utilisation $util"
