# Shared by the bench/*.sh scripts (sourced, from the top of the tree).

bench_flags=(--oversubscribe --bind-to none -x MPITRAIN_BENCH_SLOW)
[ "$(id -u)" -ne 0 ] || bench_flags+=(--allow-run-as-root)

# bench_rate NP INI STEPS [--set ...]: samples/s of one training run of
# STEPS steps (rank 0's "trained ... N samples/s" line; no validation or
# test), 0 if it failed. BENCH_MPIRUN: another launcher (the emulated
# cluster's tests/cluster/mpirun.sh).
bench_rate() {
    local np=$1 ini=$2 steps=$3 v
    shift 3
    v=$("${BENCH_MPIRUN:-mpirun}" "${bench_flags[@]}" -np "$np" \
        build/mpitrain train "$ini" \
        --set train.max_steps="$steps" --set train.epochs=100 \
        --set run.dir=/tmp/mpitrain-bench --set run.progress=none \
        --set data.test= --set data.validation=0 "$@" 2>&1 |
        sed -n 's/^trained .* \([0-9]*\) samples\/s.*/\1/p')
    echo "${v:-0}"
}

# The machine a figure comes from.
bench_machine() {
    build/mpitrain --version
    grep -m1 'model name' /proc/cpuinfo
}

# keep_best NAME V: best[NAME] becomes V if larger (the caller declares
# the associative array best).
keep_best() {
    if [ -z "${best[$1]:-}" ] || [ "$2" -gt "${best[$1]}" ]; then
        best[$1]=$2
    fi
}

# ratio_of A B: "A/Bx" with two decimals (0.00x when B is 0).
ratio_of() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", b ? a / b : 0 }'
}

# search_summary DIR WALL NP: "epochs best trial utilisation" of the
# search in DIR from its journal: epochs trained, the best metric at the
# highest rung and its trial, busy rank-seconds (each job's seconds times
# ranks_per_trial, RPT in the environment, 1 by default) over WALL x NP.
search_summary() {
    /usr/bin/python3 - "$1/journal.jsonl" "$2" "$3" "${RPT:-1}" <<'PY'
import json, sys
path, wall, np, rpt = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
busy, epochs, best = 0.0, {}, {}
for line in open(path):
    r = json.loads(line)
    if r["event"] in ("finished", "failed"):
        busy += r.get("seconds", 0.0) * rpt
    if r["event"] == "finished":
        epochs[r["trial"]] = r["epochs"]
        best[r["trial"]] = (r.get("rung", 0), r["metric"] or 0.0)
top = max(best, key=lambda t: best[t])
print(sum(epochs.values()), "%.4f" % best[top][1], top,
      "%.2f" % (busy / (wall * np)))
PY
}
